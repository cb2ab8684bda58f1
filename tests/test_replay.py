"""Record a real run, replay its log: the same snapshot, bar wall-clock fields."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import pytest
from distributed import Client, wait

from dask_monitor import Monitor, replay
from dask_monitor.replay import config_from_header, export_events, replay_snapshots
from dask_monitor.sinks.eventlog import (
    EventLogVersionError,
    EventLogWarning,
    footer_offset,
    read_header,
)
from tests.workloads import fail_if_odd, inc

from .conftest import make_cluster

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")


def workload(client: Client) -> None:
    futures = client.map(inc, range(60))
    client.gather(futures)
    da.ones((100, 100), chunks=(20, 20)).sum().compute()
    pdf = pd.DataFrame({"k": [i % 5 for i in range(500)], "x": range(500)})
    dd.from_pandas(pdf, npartitions=8).groupby("k").x.sum().compute()
    bad = client.map(fail_if_odd, range(6))
    wait(bad)
    del futures, bad


def comparable(snapshot: Any) -> dict[str, Any]:
    """The parts of a snapshot that do not depend on the wall clock."""
    prefixes = {
        name: {
            k: v
            for k, v in row.items()
            if k not in ("rate", "eta", "eta_low", "eta_high")
        }
        for name, row in snapshot["prefixes"].items()
    }
    totals = {
        k: v
        for k, v in snapshot["totals"].items()
        if k not in ("rate", "eta", "eta_low", "eta_high")
    }
    workers = {
        addr: {k: row[k] for k in ("status", "nthreads", "completed", "erred", "busy")}
        for addr, row in snapshot["workers"].items()
    }
    throughput = snapshot["throughput"]
    return {
        "totals": totals,
        "prefixes": prefixes,
        "groups": snapshot["groups"],
        "errors": snapshot["errors"],
        "workers": workers,
        "throughput": (throughput["total"], sum(throughput["counts"])),
        "events": snapshot["monitor"]["events"],
        "started": snapshot["started"],
        "alerts": (snapshot["alerts"].get("counts"), snapshot["alerts"].get("recent")),
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A real run recorded from the start; its log and its last live snapshot."""
    path = tmp_path_factory.mktemp("log") / "run.dmlog"
    with make_cluster() as cluster, Client(cluster) as client:
        with dask.config.set({"monitor.record": str(path)}):
            monitor = Monitor.attach(client, interval="20ms")
        workload(client)
        deadline = time.time() + 10  # let the released tasks be forgotten
        while cluster.scheduler.tasks and time.time() < deadline:
            time.sleep(0.02)
        live = monitor.snapshot(flush=True)
        stats = monitor.stop_recording()
        assert stats is not None and stats["dropped"] == 0
        monitor.detach()
    return path, live


class TestReplay:
    def test_replay_equals_the_live_snapshot(self, recorded: tuple[Path, Any]) -> None:
        """Totals, prefixes, groups, durations, errors, workers, throughput: equal."""
        path, live = recorded
        snap = replay(path)
        assert live["totals"]["done"] > 100
        assert live["errors"]
        assert comparable(snap) == comparable(live)

    def test_replay_clock_is_the_last_event(self, recorded: tuple[Path, Any]) -> None:
        """The replayed snapshot's time is the run's last event's."""
        path, live = recorded
        snap = replay(path)
        last = max(e["timestamp"] for e in snap["samples"]["recent"])
        assert snap["timestamp"] >= last
        assert snap["timestamp"] <= live["timestamp"]

    def test_header_records_the_live_settings(self, recorded: tuple[Path, Any]) -> None:
        """The live pipeline's settings are in the header and used by replay."""
        path, _ = recorded
        header = read_header(path)
        assert header["config"]["interval"] == pytest.approx(0.02)
        assert config_from_header(header).interval == pytest.approx(0.02)
        assert header["cluster"]["workers"] == 2

    def test_step_by_step(self, recorded: tuple[Path, Any]) -> None:
        """replay_snapshots: one snapshot per batch, done never decreases."""
        path, live = recorded
        done = [s["totals"]["done"] for s in replay_snapshots(path)]
        assert done == sorted(done)
        assert done[-1] == live["totals"]["done"]

    def test_truncated_log_replays_complete_records(
        self, recorded: tuple[Path, Any], tmp_path: Path
    ) -> None:
        """Cut in the middle of the last record: a warning, the rest replayed."""
        path, live = recorded
        cut = tmp_path / "cut.dmlog"
        # A writer that died wrote no footer: cut inside the batch before it.
        end = footer_offset(path)
        assert end is not None
        cut.write_bytes(path.read_bytes()[: end[0] - 3])
        with pytest.warns(EventLogWarning):
            snap = replay(cut)
        assert 0 < snap["monitor"]["events"] < live["monitor"]["events"]

    def test_wrong_version(self, recorded: tuple[Path, Any], tmp_path: Path) -> None:
        """Another format version: a clear error."""
        path, _ = recorded
        data = bytearray(path.read_bytes())
        data[7] = 99
        bad = tmp_path / "bad.dmlog"
        bad.write_bytes(bytes(data))
        with pytest.raises(EventLogVersionError, match="version 99"):
            replay(bad)

    def test_export(self, recorded: tuple[Path, Any], tmp_path: Path) -> None:
        """Parquet and CSV exports read back in pandas, one row per task event."""
        path, live = recorded
        out, fmt, rows = export_events(path, tmp_path / "e.parquet")
        assert fmt == "parquet"
        df = pd.read_parquet(out)
        assert len(df) == rows > 0
        assert (df.finish == "memory").sum() == live["totals"]["completed"]
        out, fmt, rows = export_events(path, tmp_path / "w.csv", kind="workers")
        assert fmt == "csv"
        workers = pd.read_csv(out)
        assert len(workers) == rows == 2
        assert list(workers.columns)[-1] == "expected"
        assert not workers.expected.any()


class TestRecordOnARunningCluster:
    def test_record_and_stop(self, tmp_path: Path) -> None:
        """monitor.record(path) records from the call; drops show in the snapshot."""
        path = tmp_path / "late.dmlog"
        with (
            make_cluster(n_workers=1) as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="20ms") as monitor,
        ):
            client.gather(client.map(inc, range(10)))
            monitor.record(path, flush_interval="50ms")
            before = path.stat().st_size if path.exists() else 0
            client.gather(client.map(inc, range(100, 120)))
            snap = monitor.snapshot(flush=True)
            sinks = snap["monitor"]["sinks"]
            assert sinks["eventlog"]["dropped"] == 0
            # The new tasks reach the file while recording (flushed every 50
            # ms), before recording stops.
            deadline = time.time() + 5
            while path.stat().st_size <= before and time.time() < deadline:
                time.sleep(0.02)
            assert path.stat().st_size > before
            stats = monitor.stop_recording()
            assert monitor.stop_recording() is None
        assert stats is not None
        snap = replay(path)
        assert snap["prefixes"]["inc"]["completed"] == 20


def test_recorded_alerts_are_replayed_once(tmp_path: Path) -> None:
    """Alerts in the log reach the replayed alert log; rules raise no more."""
    from dask_monitor.events import Alert, TaskStatus
    from dask_monitor.sinks.eventlog import EventLogWriter

    path = tmp_path / "alerts.dmlog"
    writer = EventLogWriter(path, header={"started": 10.0})
    errors = [
        TaskStatus(
            f"f-{i}",
            "f",
            "f-1",
            "processing",
            "erred",
            11.0 + i * 0.01,
            exception="ValueError('x')",
        )
        for i in range(50)
    ]
    writer.update_batch([Alert("error-burst", "error", "many errors", 11.2)])
    writer.update_batch(errors)
    writer.close()
    snap = replay(path)
    assert snap["alerts"]["counts"] == {"error-burst": 1}
    assert snap["totals"]["erred"] == 50


def test_replay_from_columns_equals_replay_from_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches read as columns give the same snapshots as batches of events."""
    from dask_monitor.batch import Batch
    from dask_monitor.events import Alert, TaskStatus, WorkerStatus
    from dask_monitor.sinks import eventlog
    from dask_monitor.sinks.eventlog import EventLogWriter

    path = tmp_path / "synthetic.dmlog"
    writer = EventLogWriter(path, header={"started": 10.0})
    writer.update_batch([WorkerStatus("tcp://w:1", "added", 10.5, nthreads=2)])
    for b in range(20):
        t = 11.0 + b
        batch: list[Any] = []
        for i in range(b * 5, b * 5 + 5):
            key, prefix = f"p{i % 3}-{i}", f"p{i % 3}"
            batch += [
                TaskStatus(key, prefix, f"{prefix}-g", "new", "released", t, span="s1"),
                TaskStatus(key, prefix, f"{prefix}-g", "released", "processing", t),
            ]
            if i % 7 == 3:
                batch.append(
                    TaskStatus(
                        key,
                        prefix,
                        f"{prefix}-g",
                        "processing",
                        "erred",
                        t + 0.2,
                        worker="tcp://w:1",
                        exception="ValueError('x')",
                        traceback="tb",
                    )
                )
            else:
                batch.append(
                    TaskStatus(
                        key,
                        prefix,
                        f"{prefix}-g",
                        "processing",
                        "memory",
                        t + 0.1,
                        worker="tcp://w:1",
                        duration=0.05,
                        begin=t,
                        end=t + 0.05,
                        nbytes=8,
                        span="s1",
                    )
                )
        if b == 10:
            batch.append(WorkerStatus("tcp://w:2", "added", t + 0.3, nthreads=1))
            writer.update_batch([Alert("stall", "warning", "stuck", t + 0.4)])
        if b % 2:  # as the live flush hands them: a Batch
            writer.update_batch(Batch.from_events(batch))
        else:
            writer.update_batch(batch)
        if b == 5:
            writer.name_spans({"s1": "etl"})
    writer.close()

    from_columns = list(replay_snapshots(path))
    # What the pipeline made of lists of events: Batch.from_events.
    monkeypatch.setattr(
        eventlog,
        "decode_batch",
        lambda items: Batch.from_events([eventlog.decode_event(i) for i in items]),
    )
    from_events = list(replay_snapshots(path))
    assert len(from_columns) == 21  # the alert is no batch for the pipeline
    assert from_columns == from_events
    last = from_columns[-1]
    assert last["totals"]["erred"] == 14 and last["totals"]["completed"] == 86
    assert last["alerts"]["counts"] == {"stall": 1}
    assert len(last["workers"]) == 2
