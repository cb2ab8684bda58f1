"""ErrorsObserver: erred tasks deduplicated by prefix and exception type."""

from __future__ import annotations

from typing import Any

import pytest

from dask_monitor.events import NEW
from dask_monitor.observers import ErrorsObserver
from dask_monitor.observers.errors import cause_line, parse_cause, truncate


def _erred(
    stream: Any,
    key: str,
    exception: str | None,
    t: float = 1_000.0,
    traceback: str | None = "Traceback ...",
    worker: str | None = "tcp://w:1",
    start: str = "processing",
) -> Any:
    return stream.task(
        key, start, "erred", t, exception=exception, traceback=traceback, worker=worker
    )


class TestErrorsObserver:
    def test_deduplicated_by_prefix_and_type(self, stream: Any) -> None:
        """One row per (prefix, exception type), most frequent first."""
        errors = ErrorsObserver()
        errors.update_batch(
            [
                _erred(stream, "load-1", "ValueError('a')", 1_000.0),
                _erred(stream, "load-2", "ValueError('b')", 1_002.0),
                _erred(stream, "load-3", "KeyError('x')", 1_001.0),
                _erred(stream, "save-1", "ValueError('c')", 1_003.0),
                _erred(stream, "save-2", "ValueError('d')", 1_004.0),
                _erred(stream, "save-3", "ValueError('e')", 1_005.0),
            ]
        )
        rows = errors.snapshot()["errors"]
        assert [(r["prefix"], r["type"], r["count"]) for r in rows] == [
            ("save", "ValueError", 3),
            ("load", "ValueError", 2),
            ("load", "KeyError", 1),
        ]
        load = rows[1]
        assert (load["key"], load["exception"], load["worker"]) == (
            "load-1",
            "ValueError('a')",
            "tcp://w:1",
        )
        assert (load["first"], load["last"]) == (1_000.0, 1_002.0)

    def test_every_erred_transition(self, stream: Any) -> None:
        """Dependents erred by blame and tasks erred before attach count too."""
        errors = ErrorsObserver()
        errors.update_batch(
            [
                _erred(stream, "a-1", "OSError()"),
                _erred(stream, "a-2", "OSError()", start="waiting", worker=None),
                _erred(stream, "a-3", "OSError()", start=NEW),
                stream.task("a-4", "processing", "memory"),
            ]
        )
        assert [r["count"] for r in errors.snapshot()["errors"]] == [3]

    def test_unknown_exception(self, stream: Any) -> None:
        """An erred task without exception text is of type "unknown"."""
        errors = ErrorsObserver()
        errors.update(_erred(stream, "a-1", None, traceback=None, worker=None))
        row = errors.snapshot()["errors"][0]
        assert (row["type"], row["exception"], row["traceback"], row["worker"]) == (
            "unknown",
            "",
            "",
            None,
        )

    def test_texts_are_truncated(self, stream: Any) -> None:
        """Long texts are cut with a marker: exception head, traceback tail."""
        errors = ErrorsObserver(max_text=100)
        exception = "ValueError('" + "x" * 500 + "')"
        traceback = (
            "Traceback (most recent call last):\n" + "frame\n" * 100 + "ValueError"
        )
        errors.update(_erred(stream, "a-1", exception, traceback=traceback))
        row = errors.snapshot()["errors"][0]
        assert len(row["exception"]) <= 100 and len(row["traceback"]) <= 100
        assert row["exception"].startswith("ValueError('xxx")
        assert "truncated" in row["exception"]
        assert row["traceback"].endswith("frame\nValueError")
        assert "truncated" in row["traceback"]

    def test_truncate(self) -> None:
        """truncate() leaves short texts alone and never exceeds the limit."""
        assert truncate("short", 10) == "short"
        for limit in (1, 5, 40, 100):
            for keep in ("head", "tail"):
                assert len(truncate("y" * 1_000, limit, keep=keep)) <= limit

    def test_rows_are_capped(self, stream: Any) -> None:
        """Beyond max_rows new pairs are only counted in errors_folded."""
        errors = ErrorsObserver(max_rows=2)
        errors.update_batch(
            [
                _erred(stream, "a-1", "E1()"),
                _erred(stream, "a-2", "E2()"),
                _erred(stream, "a-3", "E3()"),
                _erred(stream, "a-4", "E3()"),
                _erred(stream, "a-5", "E1()"),
            ]
        )
        snap = errors.snapshot()
        assert [(r["type"], r["count"]) for r in snap["errors"]] == [
            ("E1", 2),
            ("E2", 1),
        ]
        assert snap["errors_folded"] == 2

    def test_reset(self, stream: Any) -> None:
        """reset() forgets every row and the folded count."""
        errors = ErrorsObserver(max_rows=1)
        errors.update_batch(
            [_erred(stream, "a-1", "E1()"), _erred(stream, "a-2", "E2()")]
        )
        errors.reset()
        assert errors.snapshot() == {"errors": [], "errors_folded": 0}

    @pytest.mark.parametrize("kwargs", [{"max_rows": 0}, {"max_text": 0}])
    def test_rejects_bad_settings(self, kwargs: dict[str, int]) -> None:
        """Caps must be positive."""
        with pytest.raises(ValueError):
            ErrorsObserver(**kwargs)


class TestErrorsBatches:
    def test_batch_and_list_give_the_same_rows(self, stream: Any) -> None:
        """A columnar Batch gives the rows of the equivalent list."""
        from dask_monitor.batch import Batch

        events = list(stream.workload(5_000, erred=0.05, seed=2))
        events += [
            _erred(stream, "x-1", None, traceback=None, worker=None),
            _erred(stream, "x-2", "  KeyError: 'k'", t=1_001.0, start=NEW),
            _erred(stream, "x-3", "boom", t=999.0),
        ]
        snaps = []
        for wrap in (list, Batch.from_events):
            errors = ErrorsObserver(max_rows=3)
            for batch in stream.chunks(events, [700]):
                errors.update_batch(wrap(batch))
            snaps.append(errors.snapshot())
        assert snaps[0] == snaps[1]
        assert snaps[0]["errors_folded"] > 0


class TestRetriesAndCauses:
    """Retried attempts and failures of a dependency, from synthetic events."""

    def test_retried_attempts_are_counted_in_their_row(self, stream: Any) -> None:
        """processing -> released with an exception is an attempt that raised:
        counted in its (prefix, type) row and in the row's retried."""
        errors = ErrorsObserver()
        errors.update_batch(
            [
                stream.task(
                    f"load-{i}",
                    "processing",
                    "released",
                    1_000.0 + i,
                    exception=f"ValueError('try {i}')",
                    traceback="Traceback ...",
                    worker="tcp://w:1",
                )
                for i in range(3)
            ]
            + [_erred(stream, "load-9", "ValueError('last')", 1_010.0)]
            # A worker lost: no exception, no error.
            + [stream.task("load-7", "processing", "released", 1_011.0)]
        )
        [row] = errors.snapshot()["errors"]
        assert (row["prefix"], row["type"], row["count"], row["retried"]) == (
            "load",
            "ValueError",
            4,
            3,
        )
        assert row["caused_by"] is None

    def test_failures_of_a_dependency_are_grouped_under_their_cause(
        self, stream: Any
    ) -> None:
        """An erred event whose traceback starts with a cause line joins the
        row of its root cause, with caused_by; its own errors stay apart."""
        cause = cause_line("boom-1", "boom", "KeyError")
        errors = ErrorsObserver()
        errors.update_batch(
            [_erred(stream, "boom-1", "KeyError(1)")]
            + [
                _erred(
                    stream,
                    f"inc-{i}",
                    "KeyError(1)",
                    1_001.0 + i,
                    traceback=f"{cause}\nTraceback ...",
                    start="waiting",
                )
                for i in range(4)
            ]
        )
        rows = {(r["prefix"], r["type"]): r for r in errors.snapshot()["errors"]}
        assert set(rows) == {("boom", "KeyError"), ("inc", "caused by boom: KeyError")}
        caused = rows["inc", "caused by boom: KeyError"]
        assert caused["count"] == 4
        assert caused["caused_by"] == {
            "key": "boom-1",
            "prefix": "boom",
            "type": "KeyError",
        }
        assert rows["boom", "KeyError"]["caused_by"] is None

    def test_cause_lines_read_back_any_key(self) -> None:
        """A cause line survives keys with quotes, newlines and brackets;
        other tracebacks name no cause."""
        key = "('x', \"y\\n\", [1])"
        line = cause_line(key, "x", "ValueError")
        assert parse_cause(line + "\nrest") == {
            "key": key,
            "prefix": "x",
            "type": "ValueError",
        }
        assert parse_cause("Traceback (most recent call last):") is None
        assert parse_cause(None) is None
        assert parse_cause(line[:-3]) is None  # cut: no cause rather than junk
