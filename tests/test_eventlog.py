"""The event log: format, rotation, damaged files, the writer's queue."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from dask_monitor.batch import Details
from dask_monitor.events import Alert, TaskStatus, WorkerResources, WorkerStatus
from dask_monitor.sinks.eventlog import (
    FORMAT_VERSION,
    MAGIC,
    EventLog,
    EventLogError,
    EventLogVersionError,
    EventLogWarning,
    EventLogWriter,
    decode_event,
    encode_event,
    footer_offset,
    read_events,
    read_header,
    record_settings,
    segments,
)


def _events(n: int, t0: float = 1000.0) -> list[TaskStatus]:
    return [
        TaskStatus(
            f"inc-{i}",
            "inc",
            "inc-g",
            "processing",
            "memory",
            t0 + i,
            worker="tcp://w:1",
            duration=0.5,
            begin=t0,
            end=t0 + 0.5,
            nbytes=28,
            span="s1",
        )
        for i in range(n)
    ]


def _write(path: Path, batches: list[list[object]], **kwargs: object) -> EventLogWriter:
    writer = EventLogWriter(path, header={"cluster": {"workers": 2}}, **kwargs)  # type: ignore[arg-type]
    for batch in batches:
        writer.update_batch(batch)  # type: ignore[arg-type]
    writer.close()
    return writer


class TestFormat:
    def test_round_trip(self, tmp_path: Path) -> None:
        """Every kind of event reads back equal, in order, with the header."""
        alert = Alert("stall", "warning", "stuck", 5.0, prefix="inc", details={"s": 3})
        worker = WorkerStatus("tcp://w:1", "added", 1.0, nthreads=2)
        batches: list[list[object]] = [[worker], _events(3), [alert]]
        writer = _write(tmp_path / "run.dmlog", batches)
        assert writer.events == 5 and writer.dropped == 0
        events = list(read_events(tmp_path / "run.dmlog"))
        assert events == [worker, *_events(3), alert]
        header = read_header(tmp_path / "run.dmlog")
        assert header["version"] == FORMAT_VERSION
        assert header["cluster"] == {"workers": 2}
        for name in ("library", "dask", "distributed", "started"):
            assert name in header

    def test_expected_removals_read_back(self, tmp_path: Path) -> None:
        """A removal Dask expected keeps its flag; other rows stay 6 fields."""
        retired = WorkerStatus("tcp://w:1", "removed", 1.0, 2, 3, expected=True)
        lost = WorkerStatus("tcp://w:2", "removed", 2.0, 2, 1)
        assert encode_event(retired)[-1] is True and len(encode_event(lost)) == 6
        _write(tmp_path / "run.dmlog", [[retired, lost]])
        assert list(read_events(tmp_path / "run.dmlog")) == [retired, lost]
        with pytest.raises(ValueError):
            decode_event(["w", "tcp://w:1", "removed", 1.0, 2, 3, "yes"])

    def test_batches_resets_and_span_names_are_records(self, tmp_path: Path) -> None:
        """Batches keep their boundaries; resets and span names are recorded."""
        path = tmp_path / "run.dmlog"
        writer = EventLogWriter(path)
        writer.update_batch(_events(2))
        writer.name_spans({"s1": "etl"})
        writer.reset()
        writer.update_batch(_events(1))
        writer.close()
        kinds = [(r.kind, len(r.events)) for r in EventLog.open(path).records()]
        assert kinds == [("b", 2), ("s", 0), ("r", 0), ("b", 1)]
        assert list(EventLog.open(path).records())[1].names == {"s1": "etl"}

    def test_rotation_keeps_every_record(self, tmp_path: Path) -> None:
        """Small segments: several files, every event read back in order."""
        path = tmp_path / "run.dmlog"
        batches: list[list[object]] = [
            list(_events(10, t0=1000.0 + 10 * i)) for i in range(30)
        ]
        _write(path, batches, max_bytes=2_000)
        files = segments(path)
        assert len(files) > 3
        assert files[1].name == "run.dmlog.1"
        events = list(read_events(path))
        assert events == [e for b in batches for e in b]

    def test_writing_replaces_an_old_log(self, tmp_path: Path) -> None:
        """A new recording at the same path leaves no stale segments behind."""
        path = tmp_path / "run.dmlog"
        _write(path, [list(_events(10)) for _ in range(30)], max_bytes=2_000)
        _write(path, [_events(1)])
        assert segments(path) == [path]
        assert len(list(read_events(path))) == 1


class TestDamage:
    def test_torn_last_record_is_skipped_with_a_warning(self, tmp_path: Path) -> None:
        """Cut in the middle of the last record: all complete records are read."""
        path = tmp_path / "run.dmlog"
        _write(path, [_events(3), _events(4)])
        # A writer that died wrote no footer: cut inside the batch before it.
        end = footer_offset(path)
        assert end is not None
        data = path.read_bytes()
        path.write_bytes(data[: end[0] - 5])
        with pytest.warns(EventLogWarning, match="torn last record"):
            events = list(read_events(path))
        assert events == _events(3)

    def test_torn_length_prefix(self, tmp_path: Path) -> None:
        """Cut inside a record's length: skipped with a warning too."""
        path = tmp_path / "run.dmlog"
        _write(path, [_events(3)])
        path.write_bytes(path.read_bytes() + b"\x00\x00")
        with pytest.warns(EventLogWarning):
            assert len(list(read_events(path))) == 3

    def test_wrong_version_fails_clearly(self, tmp_path: Path) -> None:
        """A log of another format version names both versions."""
        path = tmp_path / "run.dmlog"
        _write(path, [_events(1)])
        data = bytearray(path.read_bytes())
        data[len(MAGIC)] = FORMAT_VERSION + 1
        path.write_bytes(bytes(data))
        with pytest.raises(EventLogVersionError, match=f"version {FORMAT_VERSION + 1}"):
            list(read_events(path))

    def test_empty_file_fails(self, tmp_path: Path) -> None:
        """An empty first file is not a log: a clear error."""
        path = tmp_path / "run.dmlog"
        path.write_bytes(b"")
        with pytest.raises(EventLogError, match="empty"):
            EventLog.open(path)

    def test_not_a_log_fails(self, tmp_path: Path) -> None:
        """Another kind of file: a clear error."""
        path = tmp_path / "run.dmlog"
        path.write_text("hello")
        with pytest.raises(EventLogError, match="not a dask-monitor event log"):
            EventLog.open(path)

    def test_corrupt_record_fails(self, tmp_path: Path) -> None:
        """A complete record that does not decode is corruption, not a torn tail."""
        path = tmp_path / "run.dmlog"
        _write(path, [_events(1)])
        path.write_bytes(path.read_bytes() + b"\x00\x00\x00\x02\xc1\xc1")
        with pytest.raises(EventLogError, match="corrupt record"):
            list(read_events(path))

    def test_empty_later_segment_is_skipped(self, tmp_path: Path) -> None:
        """A crash right after rotation leaves an empty segment: warned, skipped."""
        path = tmp_path / "run.dmlog"
        _write(path, [_events(2)])
        (tmp_path / "run.dmlog.1").write_bytes(b"")
        with pytest.warns(EventLogWarning, match="empty"):
            assert len(list(read_events(path))) == 2


class TestWriter:
    def test_full_queue_drops_and_counts(self, tmp_path: Path) -> None:
        """Beyond queue_size waiting events, batches are dropped and counted."""
        path = tmp_path / "run.dmlog"
        writer = EventLogWriter(path, queue_size=5)
        writer.update_batch(_events(6))  # more than fits: dropped whole
        writer.close()
        assert writer.dropped == 6
        assert writer.stats()["dropped"] == 6
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert list(read_events(path)) == []

    def test_an_unencodable_event_costs_only_itself(self, tmp_path: Path) -> None:
        """A lone surrogate in a key or a non-msgpack detail drops that event only."""

        class Number:  # not msgpack-safe, like numpy's int64
            pass

        bad_key = TaskStatus(
            "inc-\udc80", "inc", "inc-g", "processing", "memory", 1.0, "tcp://w:1"
        )
        bad_alert = Alert("custom", "info", "m", 2.0, details={"n": Number()})
        batches: list[list[object]] = [
            _events(2),
            [*_events(2, t0=2000.0), bad_key],
            [bad_alert],
            _events(3, t0=3000.0),
        ]
        path = tmp_path / "run.dmlog"
        writer = _write(path, batches)
        stats = writer.stats()
        assert stats["unencodable"] == 2 and stats["dropped"] == 2
        assert stats["errors"] == 0
        events = [e for r in EventLog.open(path).records() for e in r.events]
        assert len(events) == 7 == writer.events
        assert [e.timestamp for e in events][-3:] == [3000.0, 3001.0, 3002.0]

    def test_writer_is_a_sink(self) -> None:
        """The pipeline lists the writer's counters in the monitor section."""
        assert EventLogWriter.is_sink

    def test_record_settings(self) -> None:
        """monitor.record: a path, a mapping, or nothing."""
        assert record_settings(None) is None
        assert record_settings("/tmp/x") == {"path": "/tmp/x"}
        assert record_settings({"path": None}) is None
        assert record_settings(
            {"path": "/x", "max-bytes": "2 MiB", "flush-interval": "50ms"}
        ) == {"path": "/x", "max_bytes": 2 * 2**20, "flush_interval": 0.05}
        with pytest.raises(ValueError, match="unknown"):
            record_settings({"path": "/x", "size": 3})


def _mixed() -> list[object]:
    """Task events with and without details, errors, a worker event, an alert."""
    return [
        WorkerStatus("tcp://w:1", "added", 999.0, nthreads=2),
        TaskStatus("a-1", "a", "a-g", "new", "released", 1000.0, span="s1"),
        TaskStatus("a-1", "a", "a-g", "released", "waiting", 1000.0),
        *_events(2, t0=1000.0),
        TaskStatus(
            "b-1",
            "b",
            "b-g",
            "processing",
            "erred",
            1001.5,
            worker="tcp://w:2",
            exception="ValueError('x')",
            traceback="Traceback ...",
        ),
        WorkerStatus("tcp://w:2", "removed", 1002.0, processing=3),
        TaskStatus("c-1", "c", "c-g", "new", "released", 1000.5, nbytes=0),
        Alert("stall", "warning", "stuck", 1003.0, details={"s": [1, 2]}),
        TaskStatus(
            "d-1",
            "d",
            "d-g",
            "processing",
            "memory",
            1003.5,
            worker="tcp://w:1",
            duration=0.5,
            begin=1003.0,
            end=1003.5,
            nbytes=8,
            transfer=0.25,
            disk=0.1,
        ),
        _resources("tcp://w:1", 1004.0),
    ]


def _resources(address: str, t: float, limit: int | None = 2**30) -> WorkerResources:
    return WorkerResources(address, t, 300, 200, 100, 5, limit, 12.5, 1e3, 2e3, True)


class TestColumns:
    """Batches written from, and read as, columns: the same records as events."""

    @pytest.mark.parametrize(
        "batch",
        [
            _mixed(),
            _events(5),
            [
                TaskStatus("x", "x", "x-g", "new", "released", 7.0, worker=None),
                TaskStatus("y", "x", "x-g", "new", "released", 7.0),
            ],
            [WorkerStatus("tcp://w:1", "added", 1.0)],
            [],
        ],
        ids=["mixed", "details", "one-time", "worker-only", "empty"],
    )
    def test_a_batch_writes_the_same_file_as_its_events(
        self, tmp_path: Path, batch: list[object]
    ) -> None:
        """A Batch (encoded from its columns) and its list of events: same bytes."""
        from dask_monitor.batch import Batch

        columns = Batch.from_events(batch)  # type: ignore[arg-type]
        columns._events = None  # as the flush makes it: no objects
        header = {"started": 1.0}
        paths = []
        for name, given in (("list", batch), ("batch", columns)):
            path = tmp_path / f"{name}.dmlog"
            writer = EventLogWriter(path, header=header)
            writer.update_batch(given)  # type: ignore[arg-type]
            writer.update_batch(given)  # type: ignore[arg-type]
            writer.close()
            assert writer.events == 2 * len(batch)
            paths.append(path)
        assert columns._events is None  # nothing materialised
        records = [list(EventLog.open(p).records()) for p in paths]
        assert records[0] == records[1]
        assert records[1][0].events == batch
        # Byte for byte after each file's header (which has its own times).
        body = []
        for p in paths:
            data = p.read_bytes()
            start = len(MAGIC) + 1
            start += 4 + int.from_bytes(data[start : start + 4], "big")
            body.append(data[start:])
        assert body[0] == body[1]

    def test_chunks_of_a_batch_write_its_events(self, tmp_path: Path) -> None:
        """Chunks (taken rows, time per event, others moved) write their events."""
        from dask_monitor.batch import Batch

        events = _mixed()
        path = tmp_path / "run.dmlog"
        writer = EventLogWriter(path)
        for chunk in Batch.from_events(events).chunks(2):  # type: ignore[arg-type]
            chunk._events = None
            writer.update_batch(chunk)
        writer.close()
        assert list(read_events(path)) == events

    def test_records_read_as_columns(self, tmp_path: Path) -> None:
        """records(columns=True): the batches equal Batch.from_events of the events."""
        from dask_monitor.batch import Batch

        path = tmp_path / "run.dmlog"
        batches: list[list[object]] = [
            _mixed(),
            _events(4),
            [TaskStatus("x", "x", "x-g", "new", "released", 7.0)] * 3,
            [WorkerStatus("tcp://w:1", "added", 1.0)],
        ]
        _write(path, batches)
        log = EventLog.open(path)
        got = [r.batch for r in log.records(columns=True)]
        for batch, events in zip(got, batches, strict=True):
            assert batch is not None and batch._events is None
            want = Batch.from_events(events)  # type: ignore[arg-type]
            for name in (
                "keys",
                "prefixes",
                "groups",
                "starts",
                "finishes",
                "workers",
                "spans",
                "time",
                "times",
                "details",
                "others",
            ):
                assert getattr(batch, name) == getattr(want, name), name
            assert list(batch) == events
        assert [r.events for r in log.records()] == batches

    def test_short_task_rows_read_as_columns(self, tmp_path: Path) -> None:
        """A task row without its trailing defaults still reads (both ways)."""
        import msgpack

        from dask_monitor.sinks.eventlog import decode_batch

        row = ["t", "k", "p", "p-g", "new", "released", 5.0]
        full = TaskStatus("k", "p", "p-g", "new", "released", 5.0)
        batch = decode_batch(msgpack.unpackb(msgpack.packb([row]), use_list=False))
        assert list(batch) == [full]
        with pytest.raises(ValueError, match="unknown event kind"):
            decode_batch([("x", 1)])

    def test_alert_details_keep_their_lists(self, tmp_path: Path) -> None:
        """Arrays in an alert's details read back as lists, as they were written."""
        alert = Alert(
            "a", "info", "m", 1.0, details={"xs": [1, [2, 3]], "d": {"y": []}}
        )
        path = tmp_path / "run.dmlog"
        _write(path, [[alert]])
        assert list(read_events(path)) == [alert]
        (record,) = EventLog.open(path).records(columns=True)
        assert record.batch is not None and record.batch.others == [(0, alert)]


class TestVersions:
    """Version 2 adds transfer and disk seconds and resource samples; version 1
    logs still read."""

    def test_transfer_disk_and_samples_round_trip(self, tmp_path: Path) -> None:
        """Both new kinds of data read back equal, as events and as columns."""
        done = TaskStatus(
            "d-1", "d", "d-g", "processing", "memory", 5.0, worker="tcp://w:1",
            duration=0.5, nbytes=8, transfer=0.25, disk=0.125,
        )  # fmt: skip
        samples = [_resources("tcp://w:1", 6.0), _resources("tcp://w:2", 6.0, None)]
        path = tmp_path / "run.dmlog"
        _write(path, [[done], samples])
        assert list(read_events(path)) == [done, *samples]
        first, second = (r.batch for r in EventLog.open(path).records(columns=True))
        assert first is not None and first.details == {
            0: Details(0.5, None, None, 8, None, None, 0.25, 0.125)
        }
        assert first.details[0].transfer == 0.25
        assert second is not None and second.others == [(0, s) for s in samples]
        assert read_header(path)["version"] == FORMAT_VERSION == 3

    def test_a_version_1_log_reads_without_transfer_or_disk(
        self, tmp_path: Path
    ) -> None:
        """A log written before version 2 (15-field task rows) reads as it was."""
        import msgpack

        rows = [
            ["t", f"a-{i}", "a", "a-g", "processing", "memory", 5.0, "tcp://w:1",
             0.5, 4.5, 5.0, 8, None, None, None]
            for i in range(3)
        ]  # fmt: skip
        parts = [MAGIC, bytes([1])]
        head = {"format": "dask-monitor-eventlog", "version": 1, "started": 1.0}
        for item in [head, ["b", rows]]:
            payload = msgpack.packb(item, use_bin_type=True)
            parts += [len(payload).to_bytes(4, "big"), payload]
        path = tmp_path / "v1.dmlog"
        path.write_bytes(b"".join(parts))
        events = list(read_events(path))
        assert [e.key for e in events] == ["a-0", "a-1", "a-2"]  # type: ignore[union-attr]
        assert all(e.transfer is None and e.disk is None for e in events)  # type: ignore[union-attr]
        (record,) = EventLog.open(path).records(columns=True)
        assert record.batch is not None
        assert record.batch.details[0] == Details(0.5, 4.5, 5.0, 8)
        assert list(record.batch) == events


class TestBounds:
    """The writer's queue holds batches (bounded) and at most one names record."""

    def test_span_names_wait_as_one_record(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """10,000 name_spans calls while the writer is held: one queue entry."""
        import threading

        gate = threading.Event()
        prepare = EventLogWriter._prepare

        def held(self: EventLogWriter) -> None:
            gate.wait(10)
            prepare(self)

        monkeypatch.setattr(EventLogWriter, "_prepare", held)
        path = tmp_path / "run.dmlog"
        writer = EventLogWriter(path)
        for i in range(10_000):
            writer.name_spans({f"id{i}": f"span {i}"})
        assert writer._queue.qsize() == 1
        gate.set()
        writer.close()
        names: dict[str, str] = {}
        for record in EventLog.open(path).records():
            names.update(record.names)
        assert len(names) == 10_000 and names["id9999"] == "span 9999"
