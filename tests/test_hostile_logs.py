"""Event logs are untrusted input: a hostile file is a clear error, fast."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

from dask_monitor import replay
from dask_monitor.sinks import eventlog
from dask_monitor.sinks.eventlog import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MAGIC,
    EventLogError,
    read_header,
)


def write_log(path: Path, header: dict[str, Any], records: list[Any]) -> Path:
    """A log written by hand: preamble, header, length-prefixed records."""
    head = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **header}
    parts = [MAGIC, bytes([FORMAT_VERSION])]
    for item in [head, *records]:
        payload = msgpack.packb(item, use_bin_type=True)
        parts += [struct.pack(">I", len(payload)), payload]
    path.write_bytes(b"".join(parts))
    return path


TASK = ["t", "inc-1", "inc", "inc-g", "processing", "memory", 5.0, "tcp://w:1"]


class TestHostileLogs:
    """Each hostile file raises EventLogError with a reason, never a raw error."""

    def test_an_endless_file_is_refused_on_its_first_bytes(self) -> None:
        """/dev/zero is refused at once, not read until memory runs out."""
        with pytest.raises(EventLogError, match="bad magic"):
            read_header("/dev/zero")
        with pytest.raises(EventLogError, match="bad magic"):
            replay("/dev/zero")

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ({"config": {"throughput_bins": 10**12}}, "throughput-bins"),
            ({"config": {"throughput_bin": 1e-15}}, "throughput-bin"),
            ({"config": ["a", "list"]}, "'config' is a list"),
            ({"config": {"alerts": "x"}}, r"monitor\.alerts"),
            ({"started": "abc"}, "'started' is a str"),
            ({"started": float("nan")}, "'started' is nan"),
            ({"cluster": 3}, "'cluster' is a int"),
        ],
    )
    def test_a_bad_header_is_an_error_naming_the_field(
        self, tmp_path: Path, header: dict[str, Any], reason: str
    ) -> None:
        """A tiny file whose header asks for 10**12 bins, or has odd types, fails."""
        path = write_log(tmp_path / "bad.dmlog", header, [["b", [TASK]]])
        assert path.stat().st_size < 200
        with pytest.raises(EventLogError, match=reason):
            replay(path)

    @pytest.mark.parametrize(
        ("row", "reason"),
        [
            (["t", "k", 3, "g", "processing", "memory", 5.0], "prefix is a int"),
            (["t", "k", "p", "g", "processing", "memory", "now"], "timestamp is a str"),
            ([*TASK, "slow"], "duration is a str"),
            (["t", "k"], "a task event of 2 fields"),
            (["w", "tcp://w:1", "exploded", 1.0, 2], "malformed worker event"),
            (["a", {"kind": "x"}], "alert needs"),
            (["z", 1], "unknown event kind"),
            (
                [*TASK, None, None, None, None, None, None, None, "slow"],
                "transfer is a str",
            ),
            (
                ["m", "tcp://w:1", 1.0, 3, 2, 1, 0, None, 5.0, 0.0, 0.0],
                "malformed resources",
            ),
            (
                ["m", "tcp://w:1", 1.0, "3", 2, 1, 0, None, 5.0, 0.0, 0.0, False],
                "malformed resources",
            ),
            (
                ["m", "tcp://w:1", 1.0, 3, 2, 1, 0, None, 5.0, 0.0, 0.0, 1],
                "malformed resources",
            ),
        ],
    )
    def test_rows_of_the_wrong_shape_are_refused(
        self, tmp_path: Path, row: list[Any], reason: str
    ) -> None:
        """A row with a field of the wrong type fails with the field named."""
        path = write_log(tmp_path / "bad.dmlog", {}, [["b", [TASK, row]]])
        with pytest.raises(EventLogError, match=f"bad record at byte .*{reason}"):
            replay(path)

    def test_deep_nesting_gives_a_reason(self, tmp_path: Path) -> None:
        """A record nested beyond msgpack's limit says why, not an empty message."""
        path = tmp_path / "deep.dmlog"
        write_log(path, {}, [])
        payload = b"\x91" * 5000 + b"\x01"  # 5,000 nested one-element arrays
        with path.open("ab") as f:
            f.write(struct.pack(">I", len(payload)) + payload)
        with pytest.raises(EventLogError, match=r"at byte \d+: \w+"):
            replay(path)

    def test_an_oversized_record_is_refused_before_reading_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A length prefix above the limit (with the bytes present) is corrupt."""
        monkeypatch.setattr(eventlog, "MAX_RECORD_BYTES", 1_000)
        path = write_log(tmp_path / "big.dmlog", {}, [["b", [TASK] * 100]])
        with pytest.raises(EventLogError, match="more than the 1,000 allowed"):
            replay(path)

    def test_a_sound_hand_written_log_still_replays(self, tmp_path: Path) -> None:
        """The checks refuse only what is wrong: a well-formed log replays."""
        path = write_log(
            tmp_path / "ok.dmlog",
            {"started": 1.0, "config": {"throughput_bins": 60}},
            [["b", [["t", "inc-1", "inc", "inc-g", "new", "processing", 4.0], TASK]]],
        )
        assert replay(path)["totals"]["completed"] == 1


class TestExports:
    """What leaves as a file is safe where it is opened."""

    def test_csv_cells_cannot_be_formulas(self, tmp_path: Path) -> None:
        """Keys starting with = + - @ are written with a leading quote."""
        import csv

        from dask_monitor.replay import export_events

        rows = [
            ["t", k, "p", "p-g", "processing", "memory", 5.0, "tcp://w:1"]
            for k in ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "safe")
        ]
        log = write_log(tmp_path / "run.dmlog", {}, [["b", rows]])
        out, fmt, n = export_events(log, tmp_path / "e.csv")
        assert fmt == "csv" and n == 5
        with open(out, newline="") as f:
            keys = [row["key"] for row in csv.DictReader(f)]
        assert keys == [
            '\'=HYPERLINK("http://x")',
            "'+1",
            "'-2",
            "'@SUM(A1)",
            "safe",
        ]

    def test_a_prefix_named_other_does_not_collide_in_prometheus(self) -> None:
        """A real prefix 'other' is folded: one prefix="other" sample per family."""
        pytest.importorskip("prometheus_client")
        from dask_monitor.config import MonitorConfig
        from dask_monitor.events import NEW, TaskStatus
        from dask_monitor.pipeline import Pipeline
        from dask_monitor.sinks.prometheus import MonitorCollector

        pipeline = Pipeline(MonitorConfig(), clock=lambda: 10.0)
        events = []
        for prefix in ("other", "inc", "dec"):
            for i in range(3):
                key = f"{prefix}-{i}"
                events += [
                    TaskStatus(key, prefix, prefix, NEW, "processing", 1.0, "w"),
                    TaskStatus(
                        key, prefix, prefix, "processing", "memory", 2.0, "w", 1.0
                    ),
                ]
        pipeline.process(events)
        collector = MonitorCollector(pipeline.snapshot, top=5)
        for family in collector.collect():
            labels = [
                tuple(sorted(s.labels.items()))
                for s in family.samples
                if s.name == family.name or s.name.endswith("_total")
            ]
            assert len(labels) == len(set(labels)), family.name
            if family.name == "dask_monitor_tasks_completed":
                by = {s.labels["prefix"]: s.value for s in family.samples}
                assert by == {"inc": 3, "dec": 3, "other": 3}
