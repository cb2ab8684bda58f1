"""ProgressObserver: tasks per state, per prefix and group."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from typing import Any

import pytest

from dask_monitor import batch as batch_module
from dask_monitor.batch import Batch
from dask_monitor.events import NEW, Alert, TaskStatus, WorkerStatus
from dask_monitor.observers import ProgressObserver
from dask_monitor.observers import progress as progress_module


class Reference:
    """The counting rules applied event by event, the obvious way (an oracle)."""

    def __init__(self) -> None:
        self.live: dict[str, bool] = {}  # key -> completed
        self.states: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.completed: Counter[str] = Counter()
        self.erred: Counter[str] = Counter()
        self.recomputed: Counter[str] = Counter()

    def update(self, e: TaskStatus) -> None:
        states = self.states[e.prefix]
        if e.start == NEW:
            if e.key in self.live:
                return
            self.live[e.key] = False
        else:
            if e.key not in self.live:  # seen first in mid-life
                self.live[e.key] = False
                states[e.start] += 1
            states[e.start] -= 1
        if e.finish == "forgotten":
            del self.live[e.key]
        else:
            states[e.finish] += 1
        if e.start == "processing" and e.finish == "memory":
            self.completed[e.prefix] += 1
            if self.live[e.key]:
                self.recomputed[e.prefix] += 1
            self.live[e.key] = True
        if e.finish == "erred" and e.start != NEW:
            self.erred[e.prefix] += 1

    def prefix(self, name: str) -> dict[str, Any]:
        return {
            "states": {s: n for s, n in self.states[name].items() if n},
            "completed": self.completed[name],
            "erred": self.erred[name],
            "recomputed": self.recomputed[name],
        }


def _row(snapshot: Any, name: str) -> dict[str, Any]:
    row = snapshot["prefixes"][name]
    return {k: row[k] for k in ("states", "completed", "erred", "recomputed")}


def _all_counts_non_negative(observer: ProgressObserver) -> bool:
    tables = (observer._prefixes, observer._groups)
    rows = [r for t in tables for r in (*t.rows.values(), t.other)]
    return all(n >= 0 for r in rows for n in r.states.values()) and all(
        n >= 0 for n in observer._totals.values()
    )


class TestProgressObserver:
    def test_full_lifecycle(self, stream: Any) -> None:
        """Tasks of several prefixes run to the end: nothing left, all done."""
        events = stream.merge(
            *(
                stream.lifecycle(f"{p}-{i}", 1_000.0 + i, queued=i % 2 == 0)
                for p in ("inc", "add", "sum")
                for i in range(4)
            )
        )
        progress = ProgressObserver()
        progress.update_batch(events)
        snap = progress.snapshot()
        assert snap["totals"] == {
            "states": {},
            "completed": 12,
            "erred": 0,
            "recomputed": 0,
            "retried": 0,
            "done": 12,
            "remaining": 0,
            "total": 12,
            "rate": 0.0,
            "eta": None,
            "eta_low": None,
            "eta_high": None,
        }
        assert sorted(snap["prefixes"]) == ["add", "inc", "sum"]
        for row in snap["prefixes"].values():
            assert (row["states"], row["done"], row["total"]) == ({}, 4, 4)

    def test_counts_in_mid_run(self, stream: Any) -> None:
        """Half-way through, each state holds the tasks that are in it."""
        progress = ProgressObserver()
        progress.update_batch(
            [
                *stream.lifecycle("inc-1")[:2],  # waiting
                *stream.lifecycle("inc-2")[:3],  # processing
                *stream.lifecycle("inc-3", release=False),  # memory
                *stream.lifecycle("add-1", queued=True)[:3],  # queued
                *stream.lifecycle("add-2", error="ValueError('x')", release=False),
            ]
        )
        snap = progress.snapshot()
        inc = snap["prefixes"]["inc"]
        assert inc["states"] == {"waiting": 1, "processing": 1, "memory": 1}
        assert (inc["completed"], inc["done"], inc["remaining"], inc["total"]) == (
            1,
            1,
            2,
            3,
        )
        add = snap["prefixes"]["add"]
        assert add["states"] == {"queued": 1, "erred": 1}
        assert (add["erred"], add["done"], add["remaining"]) == (1, 1, 1)
        assert snap["totals"]["states"] == {
            "waiting": 1,
            "queued": 1,
            "processing": 1,
            "memory": 1,
            "erred": 1,
        }
        assert snap["groups"]["inc-g"]["prefix"] == "inc"
        assert snap["groups"]["inc-g"]["states"] == inc["states"]

    def test_states_in_scheduler_order(self, stream: Any) -> None:
        """States are listed in the order of ``STATES``, zero counts left out."""
        progress = ProgressObserver()
        progress.update_batch(
            [
                *stream.lifecycle("a-1", release=False),
                *stream.lifecycle("a-2")[:1],
                *stream.lifecycle("a-3")[:2],
            ]
        )
        assert list(progress.snapshot()["prefixes"]["a"]["states"]) == [
            "released",
            "waiting",
            "memory",
        ]

    @pytest.mark.parametrize("sizes", [[1], [7, 100, 3], [500], [10**9]])
    def test_matches_the_reference_however_batched(
        self, stream: Any, sizes: list[int]
    ) -> None:
        """A realistic stream, batched any way, gives the oracle's counts."""
        events = list(stream.workload(2_000, 5, erred=0.05, group_size=150))
        reference = Reference()
        for e in events:
            reference.update(e)
        progress = ProgressObserver()
        for batch in stream.chunks(events, sizes):
            progress.update_batch(batch)
            assert _all_counts_non_negative(progress)
        snap = progress.snapshot()
        for name in ("p0", "p1", "p2", "p3", "p4"):
            assert _row(snap, name) == reference.prefix(name)
        assert snap["totals"]["completed"] == sum(reference.completed.values())
        assert progress.unknown == 0

    def test_recompute_is_counted(self, stream: Any) -> None:
        """A task computed again after its data was lost counts once as done."""
        first = stream.lifecycle("inc-1", release=False)
        again = [
            stream.task("inc-1", "memory", "released", 1_010.0),
            stream.task("inc-1", "released", "waiting", 1_010.0),
            stream.task("inc-1", "waiting", "processing", 1_011.0, worker="w"),
            stream.task("inc-1", "processing", "memory", 1_012.0, duration=1.0),
        ]
        for batches in ([first + again], [first, again], [[e] for e in first + again]):
            progress = ProgressObserver()
            for batch in batches:
                progress.update_batch(batch)
            totals = progress.snapshot()["totals"]
            assert (totals["completed"], totals["recomputed"], totals["done"]) == (
                2,
                1,
                1,
            )
            assert progress.snapshot()["prefixes"]["inc"]["recomputed"] == 1

    def test_recompute_twice_in_one_batch(self, stream: Any) -> None:
        """Two recomputations of a task in one batch both count."""
        events = stream.lifecycle("inc-1", release=False)
        for t in (1_010.0, 1_020.0):
            events += [
                stream.task("inc-1", "memory", "released", t),
                stream.task("inc-1", "released", "waiting", t),
                stream.task("inc-1", "waiting", "processing", t, worker="w"),
                stream.task("inc-1", "processing", "memory", t + 1, duration=1.0),
            ]
        progress = ProgressObserver()
        progress.update_batch(events)
        totals = progress.snapshot()["totals"]
        assert (totals["completed"], totals["recomputed"], totals["done"]) == (3, 2, 1)

    def test_key_created_again_is_not_a_recompute(self, stream: Any) -> None:
        """A key forgotten and submitted again is a new task, in any batching."""
        events = stream.lifecycle("inc-1") + stream.lifecycle("inc-1", 1_100.0)
        for batches in ([events], [events[:5], events[5:]], [[e] for e in events]):
            progress = ProgressObserver()
            for batch in batches:
                progress.update_batch(batch)
            totals = progress.snapshot()["totals"]
            assert (totals["completed"], totals["recomputed"], totals["done"]) == (
                2,
                0,
                2,
            )
            assert totals["states"] == {}

    def test_duplicate_creation_is_ignored(self, stream: Any) -> None:
        """The plugin may report a creation twice: the task counts once."""
        created = stream.task("inc-1", NEW, "released")
        waiting = stream.task("inc-1", "released", "waiting")
        for batches in (
            [[created, created]],
            [[created], [created]],
            [[created, waiting, created]],
            [[created, waiting], [created]],
        ):
            progress = ProgressObserver()
            for batch in batches:
                progress.update_batch(batch)
            totals = progress.snapshot()["totals"]
            assert sum(totals["states"].values()) == 1
            assert totals["total"] == (1 if waiting in batches[0] else 0)

    def test_a_live_task_reported_again_and_moved_on_counts_as_moved(
        self, stream: Any
    ) -> None:
        """The plugin folds a task's report from ``update_graph`` (Dask lists
        a graph's tasks that exist already in ``released`` too) with its next
        move: ``new -> waiting`` of a live task is ``released -> waiting``."""
        created = stream.task("inc-1", NEW, "released")
        folded = stream.task("inc-1", NEW, "waiting")
        other = stream.task("inc-2", NEW, "waiting")  # a new task, folded too
        for batches in (
            [[created], [folded, other]],
            [[created, folded, other]],
            [[other, created], [folded]],
        ):
            for wide in (False, True):
                progress = ProgressObserver()
                for batch in batches:
                    if wide:  # a group per task: batches taken event by event
                        batch = [
                            stream.task(e.key, e.start, e.finish, group=e.key)
                            for e in batch
                        ]
                    progress.update_batch(batch)
                snap = progress.snapshot()
                assert snap["totals"]["states"] == {"waiting": 2}
                assert snap["totals"]["total"] == 2
                assert progress.unknown == 0
                assert snap["prefixes"]["inc"]["states"] == {"waiting": 2}

    def test_unknown_key_counts_as_created_where_first_seen(self, stream: Any) -> None:
        """A task first seen in mid-life is counted from there, never below zero."""
        progress = ProgressObserver()
        progress.update_batch([stream.task("inc-1", "waiting", "processing")])
        snap = progress.snapshot()
        assert snap["prefixes"]["inc"]["states"] == {"processing": 1}
        assert snap["totals"]["remaining"] == 1
        assert progress.unknown == 1
        progress.update_batch(stream.lifecycle("inc-1")[-3:])
        snap = progress.snapshot()
        assert snap["totals"]["states"] == {}
        assert (snap["totals"]["completed"], snap["totals"]["done"]) == (1, 1)
        assert _all_counts_non_negative(progress)

    def test_lost_events_never_make_counts_negative(self, stream: Any) -> None:
        """With a tenth of the events dropped, every count stays >= 0."""
        rng = random.Random(1)
        events = [
            e for e in stream.workload(1_000, 4, group_size=100) if rng.random() > 0.1
        ]
        progress = ProgressObserver()
        for batch in stream.chunks(events, [50, 1, 333]):
            progress.update_batch(batch)
            assert _all_counts_non_negative(progress)
        assert progress.unknown > 0

    def test_errors(self, stream: Any) -> None:
        """Transitions into erred count, but not a failure from before we looked."""
        progress = ProgressObserver()
        progress.update_batch(
            [
                *stream.lifecycle("inc-1", error="ValueError()", release=False),
                stream.task("inc-2", NEW, "erred"),
                stream.task("inc-3", NEW, "memory"),
                stream.task("inc-4", NEW, "processing", worker="w"),
            ]
        )
        totals = progress.snapshot()["totals"]
        assert totals["states"] == {"processing": 1, "memory": 1, "erred": 2}
        assert (totals["erred"], totals["completed"], totals["done"]) == (1, 0, 1)
        assert (totals["remaining"], totals["total"]) == (1, 2)

    def test_fold_beyond_max_prefixes_keeps_totals_exact(self, stream: Any) -> None:
        """Prefixes beyond the cap share a hidden row; totals stay exact."""
        events = list(stream.workload(600, 10, group_size=20))
        cut = len(events) // 2
        reference = Reference()
        for e in events[:cut]:
            reference.update(e)
        progress = ProgressObserver(max_prefixes=3)
        progress.update_batch(events[:cut])
        snap = progress.snapshot()
        seen = {e.prefix for e in events[:cut]}
        assert len(seen) > 3
        assert len(snap["prefixes"]) == 3
        assert snap["prefixes_folded"] == len(seen) - 3
        states: Counter[str] = Counter()
        for c in reference.states.values():
            states.update(c)
        assert snap["totals"]["states"] == {s: n for s, n in states.items() if n}
        assert snap["totals"]["completed"] == sum(reference.completed.values())
        for name in snap["prefixes"]:
            assert _row(snap, name) == reference.prefix(name)
        assert progress.snapshot(top_prefixes=1)["prefixes_folded"] == len(seen) - 1

    def test_groups_are_dropped_when_forgotten(self, stream: Any) -> None:
        """A group whose tasks are all forgotten leaves the table; its prefix stays."""
        progress = ProgressObserver()
        progress.update_batch(stream.lifecycle("inc-1", group="inc-a"))
        progress.update_batch(stream.lifecycle("inc-2", group="inc-b", forget=False))
        snap = progress.snapshot()
        assert list(snap["groups"]) == ["inc-b"]
        assert snap["prefixes"]["inc"]["done"] == 2

    def test_fold_beyond_max_groups_and_reopen(self, stream: Any) -> None:
        """Groups beyond the cap are folded; once they are gone new ones fit."""
        progress = ProgressObserver(max_groups=2)
        running = [
            stream.lifecycle(f"inc-{g}", group=f"inc-{g}", forget=False)
            for g in range(3)
        ]
        progress.update_batch([e for life in running for e in life])
        snap = progress.snapshot()
        assert sorted(snap["groups"]) == ["inc-0", "inc-1"]
        assert snap["groups_folded"] == 1
        assert snap["totals"]["states"] == {"released": 3}
        progress.update_batch(
            [
                stream.task(f"inc-{g}", "released", "forgotten", group=f"inc-{g}")
                for g in range(3)
            ]
        )
        snap = progress.snapshot()
        assert (snap["groups"], snap["groups_folded"]) == ({}, 0)
        progress.update_batch(stream.lifecycle("inc-9", group="inc-9", forget=False))
        assert list(progress.snapshot()["groups"]) == ["inc-9"]

    def test_closed_table_stays_exact(
        self, stream: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past the folded names it remembers, a table folds every new name."""
        monkeypatch.setattr(progress_module, "FOLDED_NAMES", 2)
        progress = ProgressObserver(max_groups=1)
        lives = [
            stream.lifecycle(f"inc-{g}", group=f"inc-{g}", forget=False)
            for g in range(5)
        ]
        progress.update_batch([e for life in lives for e in life])
        snap = progress.snapshot()
        assert list(snap["groups"]) == ["inc-0"]
        assert snap["groups_folded"] == 2  # a lower bound once closed
        assert snap["totals"]["states"] == {"released": 5}
        progress.update_batch(
            [
                stream.task(f"inc-{g}", "released", "forgotten", group=f"inc-{g}")
                for g in range(5)
            ]
        )
        progress.update_batch(stream.lifecycle("inc-7", group="inc-7", forget=False))
        assert list(progress.snapshot()["groups"]) == ["inc-7"]

    def test_snapshot_shows_the_most_recently_active(self, stream: Any) -> None:
        """Rows come most recent first, ties by name; the rest are counted."""
        progress = ProgressObserver()
        for name, t in (("b", 1.0), ("a", 3.0), ("c", 3.0), ("d", 2.0)):
            progress.update(stream.task(f"{name}-1", NEW, "released", t))
        snap = progress.snapshot(top_prefixes=3, top_groups=2)
        assert list(snap["prefixes"]) == ["a", "c", "d"]
        assert snap["prefixes_folded"] == 1
        assert list(snap["groups"]) == ["a-g", "c-g"]
        assert snap["groups_folded"] == 2
        assert snap["prefixes"]["a"]["last_active"] == 3.0

    def test_last_active_is_the_latest_event(self, stream: Any) -> None:
        """A row's last_active is the time of its latest event, batched or not."""
        events = stream.merge(
            stream.lifecycle("inc-1", 1_000.0, release=False),
            stream.lifecycle("add-1", 1_002.5, release=False),
        )
        progress = ProgressObserver()
        progress.update_batch(events)
        snap = progress.snapshot()
        assert snap["prefixes"]["inc"]["last_active"] == 1_003.0
        assert snap["prefixes"]["add"]["last_active"] == 1_005.5
        assert snap["groups"]["add-g"]["last_active"] == 1_005.5
        assert progress.last_active == 1_005.5

    def test_remaining_and_prefix_names(self, stream: Any) -> None:
        """remaining() counts active tasks overall or per prefix."""
        progress = ProgressObserver()
        progress.update_batch(
            [*stream.lifecycle("inc-1")[:3], *stream.lifecycle("add-1")[:2]]
        )
        assert progress.remaining() == 2
        assert progress.remaining("inc") == 1
        assert progress.remaining("nope") == 0
        assert sorted(progress.prefix_names()) == ["add", "inc"]

    def test_ignores_other_events(self, stream: Any) -> None:
        """Worker events and alerts in a batch are skipped, tasks still count."""
        progress = ProgressObserver()
        progress.update_batch(
            [
                WorkerStatus("tcp://w:1", "added", 1_000.0, 2),
                *stream.lifecycle("inc-1")[:2],
                Alert("stall", "warning", "quiet", 1_000.0, key="inc-1"),
            ]
        )
        assert progress.snapshot()["totals"]["states"] == {"waiting": 1}

    def test_reset(self, stream: Any) -> None:
        """reset() forgets tasks, rows and totals."""
        progress = ProgressObserver()
        progress.update_batch(list(itertools.islice(stream.workload(100, 3), 400)))
        progress.reset()
        assert progress.snapshot() == ProgressObserver().snapshot()
        progress.update_batch(stream.lifecycle("inc-1", release=False))
        assert progress.snapshot()["totals"]["done"] == 1

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_prefixes": 0},
            {"max_groups": -1},
            {"max_folded": 0},
            {"max_folded": True},
            {"max_folded": 2.5},
        ],
    )
    def test_rejects_bad_settings(self, kwargs: dict[str, Any]) -> None:
        """Caps must be positive integers."""
        with pytest.raises(ValueError, match="positive integer") as info:
            ProgressObserver(**kwargs)
        assert next(iter(kwargs)) in str(info.value)

    def test_max_folded_bounds_the_folded_names(self, stream: Any) -> None:
        """With ``max_folded`` a table remembers that many folded names, no more."""
        lives = [
            stream.lifecycle(f"p{i}-1", group=f"p{i}-g", forget=False) for i in range(6)
        ]
        events = [e for life in lives for e in life]
        bounded = ProgressObserver(max_prefixes=1, max_groups=1, max_folded=2)
        bounded.update_batch(events)
        snap = bounded.snapshot()
        assert (snap["prefixes_folded"], snap["groups_folded"]) == (2, 2)
        assert snap["totals"]["states"] == {"released": 6}
        default = ProgressObserver(max_prefixes=1, max_groups=1)
        default.update_batch(events)
        assert default.snapshot()["prefixes_folded"] == 5
        assert default.snapshot()["totals"] == snap["totals"]


def _flushed(events: list[TaskStatus], size: int) -> list[Batch]:
    """``events`` cut into batches of ``size``, each stamped with its latest time.

    As the plugin makes them: columns only, no event objects.
    """
    out = []
    for i in range(0, len(events), size):
        part = events[i : i + size]
        t = max(e.timestamp for e in part)
        b = Batch.from_events(
            [TaskStatus(e.key, e.prefix, e.group, e.start, e.finish, t) for e in part]
        )
        b._events = None
        out.append(b)
    return out


class TestColumns:
    """Batches are read by their columns; they count as the same events in a list."""

    @pytest.mark.parametrize(
        ("prefixes", "group_size", "size"),
        [(5, 150, 1_000), (300, 2, 1_000), (300, 2, 7), (40, 3, 20_000)],
    )
    def test_batch_and_list_give_the_same_snapshot(
        self,
        stream: Any,
        monkeypatch: pytest.MonkeyPatch,
        prefixes: int,
        group_size: int,
        size: int,
    ) -> None:
        """Few transitions counted, or many taken one by one: same counts and rows."""
        rng = random.Random(2)
        events = [
            e
            for e in stream.workload(
                3_000, prefixes, erred=0.05, group_size=group_size, flush=0.05
            )
            if rng.random() > 0.02
        ]
        # Duplicate creations and recomputations, for the in-order path.
        events[100:100] = [events[0], events[0]]
        batches = _flushed(events, size)
        from_lists = ProgressObserver(max_prefixes=50, max_groups=100)
        for b in batches:
            from_lists.update_batch(list(b))
        for b in batches:
            b._events = None

        def no_objects(*args: object) -> TaskStatus:
            raise AssertionError("a TaskStatus was made")

        monkeypatch.setattr(batch_module, "make_task_status", no_objects)
        from_columns = ProgressObserver(max_prefixes=50, max_groups=100)
        for b in batches:
            from_columns.update_batch(b)
            assert _all_counts_non_negative(from_columns)
        for top in ((200, 50), (3, 2), (0, 0)):
            assert from_columns.snapshot(*top) == from_lists.snapshot(*top)
        assert from_columns.unknown == from_lists.unknown > 0

    def test_many_transitions_match_the_reference(self, stream: Any) -> None:
        """A batch where every event is another transition counts like the oracle."""
        events = list(stream.workload(2_000, 400, erred=0.05, group_size=1))
        reference = Reference()
        for e in events:
            reference.update(e)
        progress = ProgressObserver()
        for b in _flushed(events, 500):
            progress.update_batch(b)
        snap = progress.snapshot(top_prefixes=1_000)
        for name in reference.states:
            assert _row(snap, name) == reference.prefix(name)
        assert snap["totals"]["completed"] == sum(reference.completed.values())
        assert snap["totals"]["erred"] == sum(reference.erred.values())


class TestRecency:
    """Rows kept in order of activity give the ranking a full sort would."""

    @pytest.mark.parametrize("backwards", [False, True])
    def test_top_rows_are_those_of_a_full_sort(
        self, stream: Any, backwards: bool
    ) -> None:
        """Most recent first, ties by name, whatever the order of the batches."""
        rng = random.Random(3)
        progress = ProgressObserver(max_groups=10_000)
        t = 1_000.0
        for _ in range(200):
            t += rng.choice([0.0, 0.0, 1.0, 2.5])
            if backwards and rng.random() < 0.1:
                t -= 7.0
            names = rng.sample(range(120), rng.randrange(1, 30))
            batch = [stream.task(f"p{i:03d}-{t}", NEW, "released", t) for i in names]
            if rng.random() < 0.3:  # one time per event
                batch = [
                    stream.task(e.key, NEW, "released", t + rng.random()) for e in batch
                ]
                batch.sort(key=lambda e: e.timestamp)
            progress.update_batch(batch)
            for n in (0, 1, 5, 40, 500):
                snap = progress.snapshot(top_prefixes=n, top_groups=n)
                for part in ("prefixes", "groups"):
                    rows = {
                        name: row.last_active
                        for name, row in getattr(progress, f"_{part}").rows.items()
                    }
                    expected = sorted(rows, key=lambda k: (-rows[k], k))[:n]
                    assert list(snap[part]) == expected
                    assert snap[f"{part}_folded"] == len(rows) - len(expected)  # type: ignore[literal-required]


class TestHistory:
    """Retries and restarts: cumulative counts are history."""

    def test_a_retried_task_counts_one_retry_and_is_done_once(
        self, stream: Any
    ) -> None:
        """A task that raised, was retried and completed: one retry, no
        error, done once; a lost worker's task is no retry."""
        kw = {"prefix": "flaky", "group": "flaky-g"}
        events = [
            stream.task("flaky-1", NEW, "released", 1.0, **kw),
            stream.task("flaky-1", "released", "waiting", 1.0, **kw),
            stream.task("flaky-1", "waiting", "processing", 1.0, **kw),
            stream.task(
                "flaky-1", "processing", "released", 2.0, exception="E('x')", **kw
            ),
            stream.task("flaky-1", "released", "waiting", 2.0, **kw),
            stream.task("flaky-1", "waiting", "processing", 2.0, **kw),
            stream.task("flaky-1", "processing", "released", 3.0, **kw),  # lost
            stream.task("flaky-1", "released", "waiting", 3.0, **kw),
            stream.task("flaky-1", "waiting", "processing", 3.0, **kw),
            stream.task("flaky-1", "processing", "memory", 4.0, **kw),
        ]
        for batches in ([events], [[e] for e in events]):
            progress = ProgressObserver()
            for batch in batches:
                progress.update_batch(batch)
            snap = progress.snapshot()
            t = snap["totals"]
            assert (t["retried"], t["erred"], t["completed"], t["done"]) == (
                1,
                0,
                1,
                1,
            )
            assert t["total"] == 1 and t["states"] == {"memory": 1}
            assert snap["prefixes"]["flaky"]["retried"] == 1
            assert snap["groups"]["flaky-g"]["retried"] == 1

    def test_restart_forgets_live_states_and_keeps_history(self, stream: Any) -> None:
        """After restart(): no live state, remaining 0, total == done, and the
        cumulative counts of prefixes and totals unchanged; new tasks count
        from zero states."""
        events = stream.merge(
            *(stream.lifecycle(f"inc-{i}", 1.0 + i, release=False) for i in range(4)),
            *(
                stream.lifecycle(f"bad-{i}", 1.0 + i, error="E('x')", release=False)
                for i in range(2)
            ),
        )
        # Two tasks still in flight at the restart.
        events += [stream.task(f"inc-{i}", NEW, "waiting", 20.0) for i in range(10, 12)]
        progress = ProgressObserver()
        progress.update_batch(events)
        before = progress.snapshot()
        progress.restart()
        after = progress.snapshot()
        t = after["totals"]
        assert t["states"] == {} and t["remaining"] == 0
        for field in ("completed", "erred", "recomputed", "retried", "done"):
            assert t[field] == before["totals"][field], field
        assert t["total"] == t["done"] == 6
        assert after["prefixes"]["bad"]["erred"] == 2
        assert after["prefixes"]["inc"]["states"] == {}
        assert after["groups"] == {}
        # The same keys again (Dask forgot them): new tasks, counted afresh.
        progress.update_batch(stream.lifecycle("inc-0", 30.0, release=False))
        snap = progress.snapshot()
        assert snap["prefixes"]["inc"]["states"] == {"memory": 1}
        assert snap["totals"]["completed"] == 5
        assert snap["totals"]["recomputed"] == 0
        assert snap["totals"]["total"] == snap["totals"]["done"] == 7
        assert _all_counts_non_negative(progress)


class TestKeys:
    def test_take_names_duplicate_creations_and_recomputations(self) -> None:
        """A live key created again and a key completed twice are the repeats."""
        keys = progress_module.Keys()

        def event(key: str, start: str, finish: str) -> TaskStatus:
            return TaskStatus(key, "a", "a-0", start, finish, 1.0)

        first = Batch.from_events(
            [
                event("x", NEW, "released"),
                event("x", "released", "processing"),
                event("x", "processing", "memory"),
            ]
        )
        assert keys.take(first) == progress_module.Repeats([], [])
        again = Batch.from_events(
            [
                event("y", NEW, "released"),
                event("x", NEW, "released"),  # reported again with a new graph
                event("x", "memory", "processing"),  # its data was lost
                event("x", "processing", "memory"),
            ]
        )
        repeats = keys.take(again)
        assert repeats == progress_module.Repeats(duplicates=[1], recomputed=[3])
        assert keys.take(again) is repeats  # asked again: the same answer
        assert repeats.within([2, 3]) == progress_module.Repeats([], [1])
