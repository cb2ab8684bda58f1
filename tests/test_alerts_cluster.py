"""Alert rules on real clusters, delivered through Dask's pub/sub to the client."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from distributed import Client, Event, LocalCluster, wait

from dask_monitor import Monitor
from dask_monitor.alerts import (
    ERROR_BURST,
    STALL,
    STRAGGLER,
    TOPIC,
    WORKER_LOST,
    AlertRule,
)
from dask_monitor.events import Alert, TaskStatus
from dask_monitor.events import Event as MonitorEvent

from .conftest import make_cluster

pytestmark = pytest.mark.slow


def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def blocked(name: str) -> int:
    Event(name).wait()
    return 1


def marker() -> int:
    return 1


class MarkerDone(AlertRule):
    """A user rule: an alert whenever a ``marker`` task finishes."""

    kind = "marker-done"

    def update_batch(self, events: Sequence[MonitorEvent]) -> None:
        for e in events:
            if type(e) is TaskStatus and e.prefix == "marker" and e.finish == "memory":
                alert = Alert(self.kind, "info", "done", e.timestamp, key=e.key)
                self.emit(alert, e.key)


def until(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


class Collector:
    """A thread-safe list of received alerts."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._lock = threading.Lock()

    def __call__(self, alert: Alert) -> None:
        with self._lock:
            self.alerts.append(alert)

    def kinds(self) -> list[str]:
        with self._lock:
            return [a.kind for a in self.alerts]


def subscribed(cluster: LocalCluster) -> bool:
    """Whether some client's subscription to the alert topic reached the scheduler."""
    topic = cluster.scheduler._broker._topics.get(TOPIC)
    return bool(topic is not None and topic.subscribers)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with make_cluster(n_workers=2, threads_per_worker=2) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


FAST = {"interval": "50ms"}


class TestRulesOnACluster:
    """Each built-in rule fires on the real condition and reaches the client."""

    def test_error_burst_reaches_on_callbacks(
        self, cluster: LocalCluster, client: Client
    ) -> None:
        """Raising tasks: an error-burst alert reaches a callback and the snapshot."""
        alerts = {"error_burst": {"count": 3, "window": 60, "cooldown": 600}}
        # Insights off: their insight.erroring alert would follow on its own
        # timer, and this test reads the latest alert.
        insights = {"enabled": False}
        with Monitor.attach(
            client, alerts=alerts, insights=insights, **FAST
        ) as monitor:
            got = Collector()
            everything = Collector()
            unsubscribe = monitor.on(ERROR_BURST, got)
            monitor.on(None, everything)
            until(lambda: subscribed(cluster))
            futures = client.map(boom, range(5))
            wait(futures)
            until(lambda: got.alerts)
            alert = got.alerts[0]
            assert alert.kind == ERROR_BURST and alert.severity == "error"
            assert alert.prefix == "boom" and "ValueError" in alert.message
            snap = monitor.snapshot(flush=True)["alerts"]
            assert snap["counts"][ERROR_BURST] == 1
            assert snap["recent"][-1]["kind"] == ERROR_BURST
            # Kind-specific topic too, for other consumers.
            _, last = client.get_events(f"{TOPIC}-{ERROR_BURST}")[-1]
            assert last["kind"] == ERROR_BURST and last["key"] == alert.key
            assert unsubscribe() is True
            assert unsubscribe() is False
            assert monitor.off(everything) is True

    def test_straggler_from_sleeping_tasks(self, client: Client) -> None:
        """One task sleeping far longer than its prefix's p95: a straggler alert."""
        alerts = {
            "straggler": {
                "min_samples": 5,
                "factor": 3,
                "min_seconds": 0.5,
                "check_interval": 0.05,
            }
        }
        with Monitor.attach(client, alerts=alerts, **FAST) as monitor:
            got = Collector()

            @monitor.on(STRAGGLER)
            def on_straggler(alert: Alert) -> None:
                got(alert)

            client.gather(client.map(sleepy, [0.02] * 10, pure=False))
            slow = client.submit(sleepy, 3.0, pure=False)
            until(lambda: got.alerts)
            alert = got.alerts[0]
            assert alert.prefix == "sleepy" and alert.key == slow.key
            assert alert.worker is not None
            assert alert.details["elapsed"] > alert.details["threshold"]
            assert monitor.off(on_straggler) is True
            del slow

    def test_stall_from_tasks_blocked_on_an_event(self, client: Client) -> None:
        """Tasks waiting on a distributed.Event: a stall alert; then they finish."""
        alerts = {"stall": {"seconds": 0.5}}
        with Monitor.attach(client, alerts=alerts, **FAST) as monitor:

            async def consume(stream: Any) -> Alert:
                async with stream:
                    async for alert in stream:
                        return alert
                raise AssertionError("the stream ended without an alert")

            stream = monitor.alerts(STALL)
            event = Event("dask-monitor-test-stall", client=client)
            futures = client.map(blocked, ["dask-monitor-test-stall"] * 3, pure=False)
            alert = asyncio.run(asyncio.wait_for(consume(stream), 15))
            assert alert.kind == STALL
            assert alert.details["active"] >= 3
            event.set()
            assert client.gather(futures) == [1, 1, 1]


def test_worker_lost_when_a_worker_process_is_killed() -> None:
    """SIGKILL a busy worker process: a worker-lost alert naming it."""
    with (
        make_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, **FAST) as monitor,
    ):
        got = Collector()
        monitor.on(WORKER_LOST, got)
        until(lambda: subscribed(cluster))
        futures = client.map(sleepy, [0.5] * 20, pure=False)
        until(lambda: all(len(p) for p in client.processing().values()))
        victim, pid = next(iter(client.run(os.getpid).items()))
        os.kill(pid, signal.SIGKILL)
        until(lambda: got.alerts, timeout=30)
        alert = got.alerts[0]
        assert alert.worker == victim and alert.severity == "error"
        assert alert.details["processing"] >= 1
        client.gather(futures)


def test_retired_busy_worker_is_no_loss_a_killed_one_is() -> None:
    """retire_workers of a busy worker: no worker-lost alert; SIGKILL: an error.

    Dask tells plugins of both removals alike (``remove_worker`` hook, no
    ``expected``); it logs ``expected: True`` for a retirement in its own
    ``remove-worker`` event, just before. The retired worker's tasks are
    rescheduled as the killed one's are: only the kill is a loss.
    """
    with (
        make_cluster(n_workers=3, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, **FAST) as monitor,
    ):
        got = Collector()
        monitor.on(WORKER_LOST, got)
        until(lambda: subscribed(cluster))
        name = "dask-monitor-test-retire"
        gate = Event(name, client=client)
        futures = client.map(blocked, [name] * 6, pure=False)
        until(lambda: all(len(p) for p in client.processing().values()))
        pids = client.run(os.getpid)
        retired, killed = sorted(pids)[:2]
        client.retire_workers([retired])
        assert retired not in client.scheduler_info()["workers"]

        def removed() -> bool:
            rows = monitor.snapshot(flush=True)["workers"]
            return rows.get(retired, {}).get("status") == "removed"

        until(removed)
        time.sleep(0.3)  # a few flushes: an alert would have reached us
        assert got.alerts == []
        assert WORKER_LOST not in monitor.snapshot(flush=True)["alerts"]["counts"]
        until(lambda: len(client.processing().get(killed, ())) > 0)
        os.kill(pids[killed], signal.SIGKILL)
        until(lambda: got.alerts, timeout=30)
        alert = got.alerts[0]
        assert alert.worker == killed and alert.severity == "error"
        assert alert.details["processing"] >= 1
        assert [a.worker for a in got.alerts] == [killed]
        gate.set()
        assert client.gather(futures) == [1] * 6


class TestSubscriptions:
    """Callbacks: sync and async, kind filters, unsubscribe; user rules."""

    def test_user_rule_shipped_as_an_observer(
        self, cluster: LocalCluster, client: Client
    ) -> None:
        """A user AlertRule passed in observers= emits alerts like built-in ones."""
        with Monitor.attach(client, observers=[MarkerDone(cooldown=0)], **FAST) as m:
            got = Collector()
            m.on("marker-done", got)
            until(lambda: subscribed(cluster))
            future = client.submit(marker, pure=False)
            until(lambda: got.alerts)
            assert got.alerts[0].key == future.key
            assert m.snapshot()["alerts"]["counts"]["marker-done"] >= 1

    def test_async_callbacks_and_unsubscribe(
        self, cluster: LocalCluster, client: Client
    ) -> None:
        """An async callback runs; an unsubscribed one stops receiving."""
        alerts = {"error_burst": {"count": 1, "cooldown": 0}}
        with Monitor.attach(client, alerts=alerts, **FAST) as monitor:
            got_async = Collector()
            dropped = Collector()

            async def on_async(alert: Alert) -> None:
                await asyncio.sleep(0)
                got_async(alert)

            monitor.on(ERROR_BURST, on_async)
            unsubscribe = monitor.on(None, dropped)
            until(lambda: subscribed(cluster))
            wait(client.submit(boom, 1, pure=False))
            until(lambda: got_async.alerts and dropped.alerts)
            unsubscribe()
            wait(client.submit(boom, 2, pure=False))
            until(lambda: len(got_async.alerts) >= 2)
            assert len(dropped.alerts) == 1
            assert monitor.off(on_async) is True


class TestDroppedTransitions:
    """After transitions were dropped, rules take the scheduler's task state."""

    def test_rules_forget_tasks_whose_departure_was_dropped(self) -> None:
        """A buffer too small for the run: no stale in-flight task, no stale count."""
        import time as _time

        from dask_monitor.alerts import StallRule, StragglerRule
        from dask_monitor.scheduler.plugin import get_plugin

        def nap(x: int) -> int:
            _time.sleep(0.01)
            return x

        with (
            make_cluster(n_workers=2) as cluster,
            Client(cluster) as client,
            Monitor.attach(client, buffer_size=5, interval="50ms") as monitor,
        ):
            client.gather(client.map(nap, range(200)))
            snap = monitor.snapshot(flush=True)
            assert snap["monitor"]["dropped"] > 0
            monitor.snapshot(flush=True)
            plugin = get_plugin(cluster.scheduler)
            assert plugin is not None and plugin.pipeline is not None
            rules = plugin.pipeline.rules
            [straggler] = [r for r in rules if isinstance(r, StragglerRule)]
            [stall] = [r for r in rules if isinstance(r, StallRule)]
            processing = {
                ts.key
                for ws in cluster.scheduler.workers.values()
                for ts in ws.processing
            }
            assert set(straggler.inflight) <= processing
            assert stall.processing == len(processing)


class TestErrorBurstRootsOnly:
    """The error-burst rule counts tasks that failed, not their dependents."""

    def test_dependents_of_one_failure_make_no_burst(self) -> None:
        """One failing task and ten dependents: one error, no burst of three."""
        from tests.workloads import fail_if_odd

        def add(x: int, i: int) -> int:
            return x + i

        with (
            make_cluster(n_workers=2) as cluster,
            Client(cluster) as client,
            Monitor.attach(
                client, alerts={"error_burst": {"count": 3}}, interval="50ms"
            ) as monitor,
        ):
            root = client.submit(fail_if_odd, 1)
            dependents = [client.submit(add, root, i) for i in range(10)]
            wait(dependents)
            assert all(f.status == "error" for f in dependents)
            snap = monitor.snapshot(flush=True)
            assert snap["totals"]["erred"] == 11  # all of them erred ...
            assert snap["alerts"]["counts"].get("error-burst", 0) == 0  # ... one failed
