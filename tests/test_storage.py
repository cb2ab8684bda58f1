"""Event logs in object storage: recorded to and replayed from fsspec URLs,
against a real S3-compatible server (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import dask
import fsspec
import msgpack
import pytest
from click.testing import CliRunner
from distributed import Client

from dask_monitor import Monitor, replay
from dask_monitor.cli import main
from dask_monitor.config import ConfigError
from dask_monitor.sinks.eventlog import (
    MAGIC,
    EventLog,
    EventLogError,
    EventLogWriter,
    read_events,
    read_header,
    record_settings,
)
from tests.test_eventlog import _events
from tests.test_replay import comparable, workload

from .conftest import make_cluster


def _fs() -> Any:
    return fsspec.filesystem("s3", skip_instance_cache=True)


def _wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` (no timing claim)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def recorded_to_s3(s3_bucket: str) -> tuple[str, Any]:
    """A real run recorded from the start to S3 (the scheduler's own
    ``monitor.record``); the log's URL and the last live snapshot."""
    url = f"{s3_bucket}/runs/x.dmlog"
    with make_cluster() as cluster, Client(cluster) as client:
        with dask.config.set({"monitor.record": url}):
            monitor = Monitor.attach(client, interval="20ms")
        workload(client)
        deadline = time.time() + 10  # let the released tasks be forgotten
        while cluster.scheduler.tasks and time.time() < deadline:
            time.sleep(0.02)
        live = monitor.snapshot(flush=True)
        stats = monitor.stop_recording()
        assert stats is not None and stats["dropped"] == 0
        assert stats["upload_errors"] == 0 and stats["uploads"] >= 1
        monitor.detach()
    return url, live


class TestRecordToObjectStorage:
    def test_a_run_recorded_to_s3_replays_as_it_ran(
        self, recorded_to_s3: tuple[str, Any]
    ) -> None:
        """replay(url) of a real run recorded to S3 equals the live snapshot,
        as a local recording's replay does (totals, prefixes, errors ...)."""
        url, live = recorded_to_s3
        assert _fs().exists(url)
        snap = replay(url)
        assert live["totals"]["done"] > 100
        assert comparable(snap) == comparable(live)

    def test_nothing_is_written_locally_under_the_urls_name(
        self, recorded_to_s3: tuple[str, Any], tmp_path: Path
    ) -> None:
        """The bug this fixes: no local directory named ``s3:`` appears."""
        assert not Path("s3:").exists()

    def test_the_cli_reads_a_url(
        self, recorded_to_s3: tuple[str, Any], tmp_path: Path
    ) -> None:
        """`replay URL`, `report URL` and `export URL` read the log from S3."""
        url, live = recorded_to_s3
        runner = CliRunner()
        out = runner.invoke(main, ["replay", url])
        assert out.exit_code == 0, out.output
        assert f"{live['totals']['done']} tasks done" in out.output
        html = tmp_path / "r.html"
        out = runner.invoke(main, ["report", url, "-o", str(html)])
        assert out.exit_code == 0, out.output
        assert "dask-monitor" in html.read_text()
        csv = tmp_path / "e.csv"
        out = runner.invoke(main, ["export", url, "-o", str(csv)])
        assert out.exit_code == 0, out.output
        assert csv.stat().st_size > 0

    def test_a_missing_url_is_a_clear_error(self, s3_bucket: str) -> None:
        """A URL with no log there: FileNotFoundError naming it; the CLI says
        so in one line (exit 2, no traceback), as for an unknown protocol."""
        url = f"{s3_bucket}/runs/none.dmlog"
        with pytest.raises(FileNotFoundError, match="no event log at s3://"):
            EventLog.open(url)
        for bad, said in ((url, "no event log at"), ("nosuch://b/x", "nosuch")):
            out = CliRunner().invoke(main, ["replay", bad])
            assert out.exit_code == 2, out.output
            assert said in out.output and "Traceback" not in out.output


class TestSegments:
    def test_rotation_uploads_segments_as_they_close(self, s3_bucket: str) -> None:
        """With small segments, each closed one is in the bucket before the
        writer closes (the open one waits for its timer or the close)."""
        url = f"{s3_bucket}/rot/a.dmlog"
        writer = EventLogWriter(url, max_bytes=2000, upload_interval=3600.0)
        try:
            for i in range(40):
                writer.update_batch(_events(10, t0=1000.0 + 100 * i))
            _wait_for(lambda: writer.segment >= 3, "three rotations")
            fs = _fs()
            root = url.removeprefix("s3://")
            _wait_for(
                lambda: fs.exists(f"{root}.1") and fs.exists(f"{root}.2"),
                "closed segments uploaded",
            )
            assert fs.exists(root)  # segment 0 too
            with fs.open(f"{root}.1", "rb") as f:
                assert f.read(len(MAGIC)) == MAGIC
        finally:
            writer.close()
        assert writer.errors == 0 and writer.upload_errors == 0
        assert writer.stats()["segments"] == writer.segment + 1
        assert len(EventLog.open(url).files) == writer.segment + 1
        assert len(list(read_events(url))) == 400

    def test_the_open_segment_is_uploaded_on_a_timer(self, s3_bucket: str) -> None:
        """Before any rotation or close, the open segment reaches the bucket
        with the events written so far (a crash loses at most the interval)."""
        url = f"{s3_bucket}/timer/a.dmlog"
        writer = EventLogWriter(url, flush_interval=0.02, upload_interval=0.05)
        try:
            writer.update_batch(_events(25))
            _wait_for(
                lambda: _fs().exists(url) and _count(url) == 25,
                "the open segment uploaded with its events",
            )
            assert writer.segment == 0
        finally:
            writer.close()

    def test_a_new_recording_replaces_the_old_logs_segments(
        self, s3_bucket: str
    ) -> None:
        """Recording again at a URL removes the old log's extra segments."""
        url = f"{s3_bucket}/again/a.dmlog"
        first = EventLogWriter(url, max_bytes=2000)
        for i in range(20):
            first.update_batch(_events(10, t0=1000.0 + 100 * i))
        first.close()
        assert first.segment >= 1
        second = EventLogWriter(url)
        second.update_batch(_events(3))
        second.close()
        assert _fs().exists(url)
        assert len(EventLog.open(url).files) == 1
        assert len(list(read_events(url))) == 3

    def test_a_url_holding_something_else_is_not_overwritten(
        self, s3_bucket: str
    ) -> None:
        """An object that is not an event log is left alone: FileExistsError."""
        url = f"{s3_bucket}/other/notes.txt"
        with _fs().open(url, "wb") as f:
            f.write(b"precious")
        with pytest.raises(FileExistsError, match="not a dask-monitor event log"):
            EventLogWriter(url)
        with _fs().open(url, "rb") as f:
            assert f.read() == b"precious"

    def test_hostile_input_checks_hold_for_urls(self, s3_bucket: str) -> None:
        """A URL to bytes that are no log fails on its first bytes, as a file does."""
        url = f"{s3_bucket}/bad/x.dmlog"
        with _fs().open(url, "wb") as f:
            f.write(b"NOTALOG" + bytes(100))
        with pytest.raises(EventLogError, match="bad magic bytes"):
            replay(url)
        payload = msgpack.packb({"format": "dask-monitor-eventlog", "version": 2})
        with _fs().open(url, "wb") as f:
            f.write(MAGIC + bytes([2]) + (2**31).to_bytes(4, "big") + payload)
        with pytest.raises(EventLogError, match="truncated header"):
            read_header(url)


def _count(url: str) -> int:
    try:
        return len(list(read_events(url)))
    except (EventLogError, FileNotFoundError):
        return -1


class TestBoundary:
    def test_a_bad_url_fails_naming_the_setting_before_any_side_effect(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unknown protocol, no place, or ``..``: ConfigError naming
        monitor.record.path, and nothing made locally."""
        monkeypatch.chdir(tmp_path)
        for url in ("nosuch://bucket/x.dmlog", "s3://", "s3://b/../x.dmlog"):
            with pytest.raises(ConfigError, match=r"monitor\.record\.path"):
                record_settings(url)
            with pytest.raises(ConfigError, match=r"monitor\.record\.path"):
                EventLogWriter(url)
        assert list(tmp_path.iterdir()) == []

    def test_a_client_picks_no_url_without_a_url_directory(
        self, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """monitor.record(url) is refused unless the scheduler's
        monitor.record.directory is a URL the log falls under; then it records."""
        monkeypatch.chdir(tmp_path)
        with make_cluster() as cluster, Client(cluster) as client:
            with Monitor.attach(client) as monitor:
                with pytest.raises(ConfigError, match="URL"):
                    monitor.record(f"{s3_bucket}/runs/c.dmlog")
                with pytest.raises(ConfigError, match=r"monitor\.record\.path"):
                    monitor.record("nosuch://bucket/x.dmlog")
                with (
                    dask.config.set({"monitor.record.directory": str(tmp_path)}),
                    pytest.raises(ConfigError, match="local directory"),
                ):
                    monitor.record(f"{s3_bucket}/runs/c.dmlog")
                allowed = f"{s3_bucket}/allowed"
                with dask.config.set({"monitor.record.directory": allowed}):
                    for outside in (f"{s3_bucket}/runs/c.dmlog", "../c.dmlog"):
                        with pytest.raises(ConfigError):
                            monitor.record(outside)
                    monitor.record(f"{allowed}/c.dmlog")
                    client.gather(client.map(_inc, range(10)))
                    stats = monitor.stop_recording()
                assert stats is not None and stats["path"] == f"{allowed}/c.dmlog"
            assert cluster.scheduler.tasks is not None
        assert list(tmp_path.iterdir()) == []
        done = replay(f"{allowed}/c.dmlog")["totals"]["done"]
        assert done == 10

    def test_a_url_in_a_clients_settings_is_refused(self, s3_bucket: str) -> None:
        """A URL that came with the plugin's config (not the scheduler's own
        ``monitor.record``, no URL directory) fails the start: ConfigError."""
        from dask_monitor.config import MonitorConfig
        from dask_monitor.scheduler.plugin import MonitorPlugin

        url = f"{s3_bucket}/runs/d.dmlog"
        plugin = MonitorPlugin(MonitorConfig.from_config(record=url))
        with (
            make_cluster(n_workers=1) as cluster,
            pytest.raises(ConfigError, match="client"),
        ):
            cluster.sync(plugin.start, cluster.scheduler)
        assert not _fs().exists(url)

    def test_credentials_in_a_url_never_appear(
        self, s3_bucket: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """user:pass@ or a query string: refused, and the secret is in no
        message, log line or object left in the bucket."""
        secret = "S3CR3T-VALUE"
        bucket = s3_bucket.removeprefix("s3://")
        urls = [
            f"s3://key:{secret}@{bucket}/c/a.dmlog",
            f"{s3_bucket}/c/a.dmlog?token={secret}",
        ]
        with caplog.at_level(logging.DEBUG, logger="dask_monitor"):
            for url in urls:
                for make in (record_settings, EventLogWriter, EventLog.open):
                    with pytest.raises(ConfigError) as info:
                        make(url)
                    assert secret not in str(info.value)
                    assert "***" in str(info.value) or "?" not in str(info.value)
        assert secret not in caplog.text
        assert not _fs().exists(f"{bucket}/c")


def _inc(x: int) -> int:
    return x + 1


class TestUploadFailures:
    def test_a_failed_upload_is_counted_and_tried_again(self, s3_bucket: str) -> None:
        """Uploads to a bucket that does not exist yet fail (counted, the
        recording goes on); once it exists the next upload brings everything."""
        bucket = "dm-late"
        url = f"s3://{bucket}/a.dmlog"
        writer = EventLogWriter(url, flush_interval=0.02, upload_interval=0.05)
        try:
            writer.update_batch(_events(5))
            _wait_for(lambda: writer.upload_errors >= 1, "a failed upload")
            assert writer.errors == 0
            _fs().mkdir(bucket)
            writer.update_batch(_events(5, t0=2000.0))
            _wait_for(lambda: _count(url) == 10, "the retried upload")
        finally:
            writer.close()
        assert writer.dropped == 0
        assert writer.stats()["upload_errors"] >= 1

    def test_upload_interval_is_a_bounded_setting(self) -> None:
        """monitor.record.upload-interval: a duration, 1 s to 1 h, named when bad."""
        ok = record_settings({"path": "s3://b/a.dmlog", "upload-interval": "30s"})
        assert ok is not None and ok["upload_interval"] == 30.0
        for bad in ("1ms", "2 days"):
            with pytest.raises(ConfigError, match=r"monitor\.record\.upload-interval"):
                record_settings({"path": "s3://b/a.dmlog", "upload-interval": bad})


class TestRunNames:
    def test_a_directory_alone_records_each_run_under_a_new_name(
        self, s3_bucket: str, tmp_path: Path
    ) -> None:
        """With only monitor.record.directory set (a URL or local), every
        cluster's run is recorded as <date>-<cluster>-<n>.dmlog, n counting up."""
        for directory in (f"{s3_bucket}/nightly", str(tmp_path / "nightly")):
            logs = []
            for _ in range(2):
                with (
                    dask.config.set({"monitor.record.directory": directory}),
                    make_cluster(n_workers=1) as cluster,
                    Client(cluster) as client,
                ):
                    monitor = Monitor.attach(client, interval="20ms")
                    client.gather(client.map(_inc, range(7)))
                    stats = monitor.stop_recording()
                    monitor.detach()
                assert stats is not None
                logs.append(stats["path"])
            date = time.strftime("%Y-%m-%d", time.gmtime())
            names = [log.rsplit("/", 1)[-1] for log in logs]
            assert all(n.startswith(date) for n in names), names
            assert names[0].endswith("-1.dmlog") and names[1].endswith("-2.dmlog")
            assert all(log.startswith(directory) for log in logs)
            for log in logs:
                assert replay(log)["totals"]["done"] == 7


#: A process that records to S3 until it is killed: one batch of ten events
#: a line, each batch's first event at 1000 + 100 * i, small segments so
#: that they rotate, the open one uploaded on a short timer.
_RECORD_UNTIL_KILLED = """
import sys, time
import fsspec
fsspec.config.conf["s3"] = {"client_kwargs": {"endpoint_url": sys.argv[1]}}
from dask_monitor.sinks.eventlog import EventLogWriter
from tests.test_eventlog import _events
writer = EventLogWriter(sys.argv[2], max_bytes=2000, flush_interval=0.02,
                        upload_interval=0.05)
for i in range(100_000):
    writer.update_batch(_events(10, t0=1000.0 + 100 * i))
    print(i, writer.segment, flush=True)
    time.sleep(0.005)
"""


class TestCrash:
    def test_a_killed_writer_loses_at_most_its_open_segment(
        self, s3_bucket: str
    ) -> None:
        """A writer process killed with SIGKILL mid-run leaves a log that reads:
        every segment it closed is there in full, the events are the ones it
        wrote, in order and without a gap, and a listing says it is unfinished."""
        import os
        import signal
        import subprocess
        import sys

        from dask_monitor.runs import run_summary

        url = f"{s3_bucket}/crash/a.dmlog"
        endpoint = fsspec.config.conf["s3"]["client_kwargs"]["endpoint_url"]
        root = Path(__file__).resolve().parent.parent
        proc = subprocess.Popen(
            [sys.executable, "-c", _RECORD_UNTIL_KILLED, endpoint, url],
            cwd=root,
            env={**os.environ, "PYTHONPATH": f"{root}/src{os.pathsep}{root}"},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            segment = 0
            for line in proc.stdout:  # until the writer is past its third segment
                batch, segment = map(int, line.split())
                if batch > 3000:  # ~15 s: it should have rotated long before
                    break
                if segment >= 3 and _fs().exists(url.removeprefix("s3://") + ".2"):
                    break
            assert segment >= 3, "the writer stopped before rotating"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        log = EventLog.open(url)
        assert len(log.files) >= 3  # segments 0, 1 and 2 at least
        events = list(log.events())
        starts = [e.timestamp for e in events[::10]]
        # What the writer wrote, in order, from the first batch, no gap:
        assert starts == [1000.0 + 100 * i for i in range(len(starts))]
        assert len(events) % 10 == 0  # whole batches: a torn record is dropped
        # Segments 0 and 1 were closed before segment 2 existed: every event
        # in them is read back (a log of copies of just those two is the
        # reference).
        fs, key = _fs(), url.removeprefix("s3://")
        fs.copy(key, key.replace("a.dmlog", "b.dmlog"))
        fs.copy(key + ".1", key.replace("a.dmlog", "b.dmlog") + ".1")
        closed = list(read_events(url.replace("a.dmlog", "b.dmlog")))
        assert len(closed) >= 20 and events[: len(closed)] == closed
        summary = run_summary(url)
        assert summary.error is None and not summary.complete
        assert summary.tasks == len(events)
