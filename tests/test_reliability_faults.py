"""Faults on real clusters: at the end the monitor's counts equal the scheduler's
own ``task_prefixes[...].states`` and nothing of ours reaches Dask's logs as an
error ("Plugin failed ...", or an error logged by a ``dask_monitor`` module).

Covered elsewhere and referenced in docs/reliability.md: one killed worker and
a restart after a run (tests/test_plugin.py::TestCounts), NATS stopped mid-run
(tests/test_nats.py::test_cluster_alerts_survive_a_nats_restart).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster, wait

from dask_monitor import Monitor, get_plugin
from dask_monitor.scheduler.plugin import HANDLERS
from tests.workloads import inc, slow_inc

from .conftest import make_cluster, prefix_states, snapshot_states

pytestmark = pytest.mark.slow


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


class Quiet:
    """A user observer that does nothing (exercises the dispatcher on attach)."""

    name = "quiet"

    def update(self, event: Any) -> None:
        pass


def until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        time.sleep(0.02)


def finished(futures: list[Any]) -> int:
    return sum(f.status == "finished" for f in futures)


def pids(client: Client) -> set[int]:
    """Worker process ids (workers that are going away are left out)."""
    return set(client.run(os.getpid, on_error="ignore").values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def nothing_escapes(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail if Dask logged a plugin failure or one of our modules logged an error."""
    with (
        caplog.at_level(logging.INFO, logger="distributed"),
        caplog.at_level(logging.WARNING, logger="dask_monitor"),
    ):
        yield
    bad = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if "Plugin failed" in r.getMessage()
        or (r.name.startswith("dask_monitor") and r.levelno >= logging.ERROR)
    ]
    assert not bad, bad


@pytest.fixture(scope="module")
def process_cluster() -> Iterator[LocalCluster]:
    """Two single-threaded worker processes behind nannies (they come back)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 20}),
        make_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
    ):
        yield cluster


def test_workers_killed_three_times(process_cluster: LocalCluster) -> None:
    """SIGKILL a worker process three times during one run: counts stay right."""
    scheduler = process_cluster.scheduler
    with Client(process_cluster) as client, Monitor.attach(client) as monitor:
        futures = client.map(slow_inc, range(120), pure=False)
        for kill in range(3):
            until(lambda k=kill, fs=futures: finished(fs) > 15 * k)
            before = until(lambda: len(pids(client)) == 2 and pids(client))
            os.kill(sorted(before)[kill % 2], signal.SIGKILL)
            until(lambda b=before: len(pids(client) - b) == 1)
        results = client.gather(futures)
        assert len(results) == 120
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(scheduler)
        assert snap["prefixes"]["slow_inc"]["states"] == {"memory": 120}
        removed = [w for w in snap["workers"].values() if w["status"] == "removed"]
        assert len(removed) >= 3
        assert snap["monitor"]["dropped"] == 0
        del futures


def test_restart_during_a_run(process_cluster: LocalCluster) -> None:
    """client.restart() while tasks run: counts start over and match afterwards."""
    scheduler = process_cluster.scheduler
    with Client(process_cluster) as client, Monitor.attach(client) as monitor:
        futures = client.map(slow_inc, range(200), pure=False)
        until(lambda fs=futures: finished(fs) >= 5)
        client.restart()
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(scheduler)
        again = client.map(inc, range(30), pure=False)
        client.gather(again)
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(scheduler)
        assert snap["prefixes"]["inc"]["states"] == {"memory": 30}
        del futures, again


def test_scheduler_closing_during_a_run() -> None:
    """The scheduler closes mid-run: the plugin flushes, stops, removes its
    handlers and callback, and its last snapshot equals the scheduler's counts."""
    cluster = make_cluster(n_workers=2)
    scheduler = cluster.scheduler
    client = Client(cluster)
    try:
        Monitor.attach(client, observers=[Quiet()])
        plugin = get_plugin(scheduler)
        assert plugin is not None
        futures = client.map(slow_inc, range(200), pure=False)
        until(lambda fs=futures: finished(fs) >= 10)
        client.close()
        cluster.close()
        assert scheduler.status.name == "closed"
        assert plugin._closed and plugin._pc is None
        assert not set(HANDLERS) & set(scheduler.handlers)
        assert "dask-monitor-flush" not in scheduler.periodic_callbacks
        assert snapshot_states(plugin.snapshot()) == prefix_states(scheduler)
    finally:
        client.close()
        cluster.close()


def test_client_disconnects_and_reconnects() -> None:
    """The client's connection drops and Dask reconnects it; a second client
    comes and goes: monitoring goes on and counts stay right."""
    with make_cluster(n_workers=2) as cluster, Client(cluster) as client:
        scheduler = cluster.scheduler
        monitor = Monitor.attach(client)
        first = client.map(inc, range(20), pure=False)
        client.gather(first)
        # Drop the client's connection: Dask's client reconnects by itself.
        client.sync(client.scheduler_comm.comm.close)
        until(lambda: client.status == "running" and client.scheduler_comm is not None)
        second = client.map(inc, range(100, 130), pure=False)
        client.gather(second)
        snap = monitor.snapshot(flush=True)
        # The scheduler dropped the first keys with the old connection.
        assert snapshot_states(snap) == prefix_states(scheduler)
        assert snap["prefixes"]["inc"]["states"]["memory"] >= 30
        # Another client attaches, computes and disconnects without detaching.
        other = Client(cluster)
        Monitor.attach(other)
        extra = other.map(inc, range(200, 210), pure=False)
        other.gather(extra)
        other.close()
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(scheduler)
        monitor.detach()
        # The attachment left behind by the vanished client keeps the plugin
        # running (the safe side for a client that reconnects).
        assert get_plugin(scheduler) is not None
        del first, second, extra


def test_attached_and_detached_twenty_times_during_a_computation() -> None:
    """20 attach/detach cycles while tasks run; the last attach seeds from
    scheduler.tasks, so at the end counts equal the scheduler's; nothing is
    left behind (handlers, callback, dispatcher threads)."""
    with make_cluster(n_workers=2) as cluster, Client(cluster) as client:
        scheduler = cluster.scheduler
        futures = client.map(slow_inc, range(300), pure=False)
        until(lambda: len(scheduler.tasks) == 300)
        for _ in range(20):
            monitor = Monitor.attach(client, observers=[Quiet()])
            snap = monitor.snapshot(flush=True)
            assert snap["totals"]["total"] > 0
            monitor.detach()
            assert get_plugin(scheduler) is None
        assert futures[-1].status != "finished"  # the churn happened mid-run
        with Monitor.attach(client) as monitor:
            client.gather(futures)
            snap = monitor.snapshot(flush=True)
            assert snapshot_states(snap) == prefix_states(scheduler)
            assert snap["prefixes"]["slow_inc"]["states"] == {"memory": 300}
        assert not set(HANDLERS) & set(scheduler.handlers)
        assert "dask-monitor-flush" not in scheduler.periodic_callbacks
        until(
            lambda: (
                not [
                    t
                    for t in threading.enumerate()
                    if t.name.startswith("dask-monitor-dispatch")
                ]
            ),
            timeout=5,
        )
        del futures


def test_dashboard_disabled() -> None:
    """No dashboard at all: the plugin starts, counts, and logs no error."""
    with (
        make_cluster(
            n_workers=1, dashboard_address=None, scheduler_kwargs={"dashboard": False}
        ) as cluster,
        Client(cluster) as client,
        Monitor.attach(client) as monitor,
    ):
        assert "/status" not in str(cluster.scheduler.services)
        futures = client.map(inc, range(25))
        bad = client.map(boom, range(3))
        wait(futures + bad)
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(cluster.scheduler)
        del futures, bad


PROMETHEUS_MISSING = textwrap.dedent(
    """
    import json, sys
    sys.modules["prometheus_client"] = None  # import prometheus_client -> ImportError
    from distributed import Client
    from dask_monitor import Monitor, get_plugin
    from tests.conftest import make_cluster, prefix_states, snapshot_states

    def inc(x):
        return x + 1

    with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
        with Monitor.attach(client) as monitor:
            futures = client.map(inc, range(20))
            client.gather(futures)
            snap = monitor.snapshot(flush=True)
            plugin = get_plugin(cluster.scheduler)
            print(json.dumps({
                "equal": snapshot_states(snap) == prefix_states(cluster.scheduler),
                "completed": snap["totals"]["completed"],
                "metrics": plugin._unregister_metrics is not None,
            }))
    """
)


def test_prometheus_client_not_installed() -> None:
    """prometheus_client cannot be imported: the plugin starts and counts."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", PROMETHEUS_MISSING],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"equal": True, "completed": 20, "metrics": False}
    assert "Traceback" not in result.stderr, result.stderr


def test_nats_unreachable_from_the_start() -> None:
    """NATS URL with nothing listening: alerts are made, counted as dropped by
    the NATS sink, and the computation and counts are unaffected."""
    nats = {"url": f"nats://127.0.0.1:{free_port()}", "backlog": 2}
    alerts = {"error_burst": {"count": 1, "cooldown": 0}}
    with (
        make_cluster(n_workers=1) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, nats=nats, alerts=alerts, interval="50ms") as monitor,
    ):
        futures = client.map(inc, range(20))
        bad = client.map(boom, range(5), pure=False)
        wait(futures + bad)
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(cluster.scheduler)
        sink = snap["alerts"]["sinks"]["nats"]
        assert snap["alerts"]["total"] >= 1  # alerts were made all the same
        assert sink["connected"] is False and sink["sent"] == 0
        assert sink["backlog"] <= 2
        del futures, bad
