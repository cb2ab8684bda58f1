"""Settings of the scheduler's sinks are checked before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client

from dask_monitor import Monitor, replay
from dask_monitor.config import ConfigError, MonitorConfig
from dask_monitor.scheduler.plugin import HANDLERS, MonitorPlugin, get_plugin
from dask_monitor.sinks.eventlog import record_settings
from dask_monitor.sinks.prometheus import prometheus_settings
from tests.conftest import make_cluster
from tests.workloads import inc


class TestRecordSettings:
    """monitor.record: every field has a type and bounds, named when wrong."""

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ({"path": "/x", "max-bytes": 1}, r"monitor\.record\.max-bytes"),
            ({"path": "/x", "max-bytes": -5}, r"monitor\.record\.max-bytes"),
            ({"path": "/x", "max-bytes": "lots"}, r"monitor\.record\.max-bytes"),
            ({"path": "/x", "queue-size": 1.9}, r"monitor\.record\.queue-size"),
            ({"path": "/x", "queue-size": True}, r"monitor\.record\.queue-size"),
            ({"path": "/x", "queue-size": 0}, r"monitor\.record\.queue-size"),
            ({"path": "/x", "flush-interval": "1ns"}, r"monitor\.record\.flush"),
            ({"path": 3}, r"monitor\.record\.path"),
            (["/x"], r"monitor\.record must be"),
            ({"path": "/x", "size": 3}, r"unknown monitor\.record"),
        ],
    )
    def test_bad_values_raise_config_error_naming_them(
        self, value: Any, message: str
    ) -> None:
        """A bad field raises ConfigError with the setting's name."""
        with pytest.raises(ConfigError, match=message):
            record_settings(value)

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ({"top-prefixes": 0}, r"monitor\.prometheus\.top-prefixes"),
            ({"top-prefixes": 1.5}, r"monitor\.prometheus\.top-prefixes"),
            ({"enabled": "yes"}, r"monitor\.prometheus\.enabled"),
            ({"port": 1}, r"monitor\.prometheus\.port"),
        ],
    )
    def test_prometheus_settings_name_themselves(
        self, value: Any, message: str
    ) -> None:
        """monitor.prometheus fields raise ConfigError with their name."""
        with pytest.raises(ConfigError, match=message):
            prometheus_settings(value)


class TestStart:
    """A start that fails leaves nothing behind."""

    def test_failed_starts_leave_no_handlers(self) -> None:
        """Three starts with a bad monitor.record leave no dask_monitor_* handler."""
        with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
            scheduler = cluster.scheduler
            with dask.config.set({"monitor.record": {"path": "/x", "queue-size": -5}}):
                for _ in range(3):
                    with pytest.raises(ConfigError, match="queue-size"):
                        Monitor.attach(client)
            assert not [h for h in scheduler.handlers if h in HANDLERS]
            assert get_plugin(scheduler) is None or not get_plugin(scheduler).pipeline
            # ... and a good attach afterwards works.
            with Monitor.attach(client) as monitor:
                client.gather(client.map(inc, range(5)))
                assert monitor.snapshot(flush=True)["totals"]["completed"] == 5

    def test_a_step_failing_after_setup_undoes_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failure after the handlers were added removes them and the flush."""
        with make_cluster(n_workers=1) as cluster, Client(cluster):
            scheduler = cluster.scheduler

            def fail(self: MonitorPlugin, settings: Any) -> None:
                raise RuntimeError("metrics broke")

            monkeypatch.setattr(MonitorPlugin, "_start_metrics", fail)
            plugin = MonitorPlugin()
            with pytest.raises(RuntimeError, match="metrics broke"):
                cluster.sync(plugin.start, scheduler)
            assert not [h for h in scheduler.handlers if h in HANDLERS]
            assert "dask-monitor-flush" not in scheduler.periodic_callbacks


class TestRecordRpc:
    """A bad record call does not end the recording in progress."""

    def test_bad_options_keep_the_running_recording(
        self, tmp_path: Path, client: Client
    ) -> None:
        """record() with bad options raises and the first log keeps growing."""
        with Monitor.attach(client) as monitor:
            good = tmp_path / "good.dmlog"
            monitor.record(str(good))
            with pytest.raises(Exception, match="max-bytes"):
                monitor.record(str(tmp_path / "bad.dmlog"), max_bytes=1)
            client.gather(client.map(inc, range(20)))
            stats = monitor.stop_recording()
        assert stats is not None and stats["events"] >= 20
        assert not (tmp_path / "bad.dmlog").exists()


class TestAttachSettings:
    """Settings asked for at attach are not silently ignored."""

    def test_settings_a_running_plugin_lacks_are_named(self, client: Client) -> None:
        """A second attach asking for other settings warns, naming each one."""
        with Monitor.attach(client, interval="100ms"):
            with pytest.warns(UserWarning, match=r"monitor\.interval: asked 0\.05"):
                second = Monitor.attach(client, interval="50ms")
            second.detach()
            # Asking for nothing (or for what runs) is no warning.
            Monitor.attach(client).detach()
            Monitor.attach(client, interval="100ms").detach()


class TestSecretsLeaveNothing:
    """A NATS password given to the scheduler reaches no client, header or log."""

    def test_attach_info_and_event_log_header_are_redacted(
        self, tmp_path: Path, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The config a client sees and the one recorded in a log hide the password."""
        from dask_monitor.sinks.eventlog import read_header

        url = "nats://alice:s3cret@127.0.0.1:1"
        with Monitor.attach(client, nats={"url": url}) as monitor:
            assert "s3cret" not in repr(monitor.config.to_dict(secrets=True))
            path = tmp_path / "run.dmlog"
            monitor.record(str(path))
            client.gather(client.map(inc, range(3)))
            monitor.stop_recording()
            snap = monitor.snapshot(flush=True)
        assert "s3cret" not in repr(read_header(str(path)))
        assert "s3cret" not in repr(snap)
        assert "s3cret" not in caplog.text


class TestRecordPaths:
    """Recording never overwrites or deletes what is not an event log."""

    def test_a_file_that_is_not_a_log_is_not_overwritten(self, tmp_path: Path) -> None:
        """A plain file at the path, or at a segment's path, stays as it was."""
        from dask_monitor.sinks.eventlog import EventLogWriter

        important = tmp_path / "important.txt"
        important.write_text("keep me")
        with pytest.raises(FileExistsError, match="not a dask-monitor event log"):
            EventLogWriter(important)
        assert important.read_text() == "keep me"
        # A log whose numbered neighbour is someone else's file.
        log = tmp_path / "run.dmlog"
        EventLogWriter(log).close()
        other = tmp_path / "run.dmlog.1"
        other.write_text("also mine")
        with pytest.raises(FileExistsError, match=r"run\.dmlog\.1"):
            EventLogWriter(log)
        assert other.read_text() == "also mine" and log.exists()
        with pytest.raises(IsADirectoryError):
            EventLogWriter(tmp_path)

    def test_directory_confines_paths(self, tmp_path: Path) -> None:
        """With monitor.record.directory, paths outside it (.., links) are refused."""
        from dask_monitor.sinks.eventlog import record_settings

        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "escape").symlink_to(tmp_path)
        inside = record_settings({"path": "run.dmlog", "directory": str(logs)})
        assert inside == {"path": str(logs.resolve() / "run.dmlog")}
        for bad in ("../run.dmlog", str(tmp_path / "x.dmlog"), "escape/run.dmlog"):
            with pytest.raises(
                ConfigError, match=r"outside monitor\.record\.directory"
            ):
                record_settings({"path": bad, "directory": str(logs)})

    def test_the_rpc_refuses_what_it_must_not_write(
        self, tmp_path: Path, client: Client
    ) -> None:
        """A raw RPC cannot overwrite a file, write a relative path or escape."""
        important = tmp_path / "important.txt"
        important.write_text("keep me")
        with Monitor.attach(client):
            rpc = client.scheduler.dask_monitor_record
            with pytest.raises(FileExistsError):
                client.sync(rpc, path=str(important))
            with pytest.raises(ConfigError, match="must be absolute"):
                client.sync(rpc, path="relative.dmlog")
            with pytest.raises(ConfigError, match="on the scheduler only"):
                client.sync(rpc, path=str(tmp_path / "a"), options={"directory": "/"})
            logs = tmp_path / "logs"
            with dask.config.set({"monitor.record.directory": str(logs)}):
                with pytest.raises(ConfigError, match="outside"):
                    client.sync(rpc, path=str(tmp_path / "out.dmlog"))
                logs.mkdir()
                stats = client.sync(rpc, path="inside.dmlog")
                assert stats["path"] == str(logs.resolve() / "inside.dmlog")
                client.sync(client.scheduler.dask_monitor_stop_recording)
        assert important.read_text() == "keep me"


class TestRecordingOffTheLoop:
    """Opening and closing an event log never blocks the scheduler's loop."""

    def test_file_work_and_waits_run_on_other_threads(
        self, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Checks, mkdir/open and the wait for the writer all leave the loop."""
        import threading

        from dask_monitor.sinks import eventlog

        seen: dict[str, set[int]] = {"check": set(), "open": set(), "close": set()}

        def spy(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                seen[name].add(threading.get_ident())
                return fn(*args, **kwargs)

            return wrapper

        monkeypatch.setattr(
            eventlog, "_replaceable", spy("check", eventlog._replaceable)
        )
        monkeypatch.setattr(
            eventlog.EventLogWriter, "_open", spy("open", eventlog.EventLogWriter._open)
        )
        monkeypatch.setattr(
            eventlog.EventLogWriter,
            "close",
            spy("close", eventlog.EventLogWriter.close),
        )
        loop_thread = client.run_on_scheduler(threading.get_ident)
        with Monitor.attach(client) as monitor:
            monitor.record(str(tmp_path / "a.dmlog"))
            client.gather(client.map(inc, range(10)))
            monitor.record(str(tmp_path / "b.dmlog"))  # closes a, opens b
            client.gather(client.map(inc, range(10, 20)))
            stats = monitor.stop_recording()
        assert stats["events"] > 0
        assert replay(tmp_path / "a.dmlog")["totals"]["completed"] == 10
        assert all(seen.values()), seen
        assert loop_thread not in set().union(*seen.values())


class TestSinksThroughTheConfig:
    """The record and prometheus sections apply at the plugin's start: the
    config's fields over the scheduler's own, the directory the scheduler's."""

    def test_attach_settings_record_the_run_and_turn_metrics_off(
        self, tmp_path: Path
    ) -> None:
        """``record=`` at attach records from the start (a replay counts every
        task the client ran); ``prometheus={"enabled": False}`` exports nothing."""
        from dask_monitor.sinks import prometheus

        log = tmp_path / "run.dmlog"
        with (
            make_cluster(n_workers=1) as cluster,
            Client(cluster) as client,
            Monitor.attach(
                client,
                record={"path": str(log), "flush-interval": "50ms"},
                prometheus={"enabled": False},
            ),
        ):
            assert not prometheus.registered()
            results = client.gather(client.map(inc, range(200, 230)))
            assert results == list(range(201, 231))
        assert replay(str(log))["prefixes"]["inc"]["completed"] == 30

    def test_the_schedulers_own_settings_fill_what_the_config_leaves_unset(
        self, tmp_path: Path
    ) -> None:
        """A config without a path records where the scheduler's
        ``monitor.record`` says, with the config's own queue size."""
        log = tmp_path / "own.dmlog"
        plugin = MonitorPlugin(MonitorConfig.from_config(record={"queue_size": 5000}))
        own = {"monitor.record": {"path": str(log), "queue-size": 10}}
        with make_cluster(n_workers=1) as cluster, dask.config.set(own):
            cluster.sync(plugin.start, cluster.scheduler)
            try:
                assert plugin.recorder is not None
                assert plugin.recorder.path == log
                assert plugin.recorder.queue_size == 5000
            finally:
                cluster.sync(plugin.close)

    def test_a_config_path_outside_the_schedulers_directory_is_refused(
        self, tmp_path: Path
    ) -> None:
        """The scheduler's ``monitor.record.directory`` confines a path that
        came with the config; the refused start leaves no handler behind."""
        logs = tmp_path / "logs"
        logs.mkdir()
        outside = tmp_path / "out.dmlog"
        plugin = MonitorPlugin(MonitorConfig.from_config(record=str(outside)))
        with (
            make_cluster(n_workers=1) as cluster,
            dask.config.set({"monitor.record.directory": str(logs)}),
        ):
            with pytest.raises(ConfigError, match="outside"):
                cluster.sync(plugin.start, cluster.scheduler)
            assert not [h for h in cluster.scheduler.handlers if h in HANDLERS]
        assert not outside.exists()

    def test_a_bad_setting_of_the_schedulers_own_fails_the_start_cleanly(
        self,
    ) -> None:
        """The scheduler's own monitor.record is validated at start, before
        anything is set up."""
        plugin = MonitorPlugin(MonitorConfig.from_config())
        own = {"monitor.record": {"path": "/x", "queue-size": -5}}
        with make_cluster(n_workers=1) as cluster, dask.config.set(own):
            with pytest.raises(ConfigError, match="queue-size"):
                cluster.sync(plugin.start, cluster.scheduler)
            assert not [h for h in cluster.scheduler.handlers if h in HANDLERS]
            assert "dask-monitor-flush" not in cluster.scheduler.periodic_callbacks
