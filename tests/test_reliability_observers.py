"""Slow and failing user observers never block nor break the scheduler.

Policy (see docs/reliability.md and dask_monitor.dispatch): built-in observers
run inline in the flush; each user observer runs on a daemon thread of its own
behind a queue of at most ``buffer_size`` events. Batches that do not fit are
dropped whole and counted; exceptions are caught, counted, logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from distributed import Client
from tornado.ioloop import PeriodicCallback

from dask_monitor import Monitor, get_plugin
from dask_monitor.alerts.rules import AlertRule
from dask_monitor.config import MonitorConfig
from dask_monitor.dispatch import Dispatched
from dask_monitor.events import Event, WorkerStatus
from dask_monitor.panel._data import health_columns, summary_html
from dask_monitor.pipeline import Pipeline
from tests.workloads import inc

from .conftest import make_cluster, prefix_states, snapshot_states


def short_sleep(x: int) -> int:
    time.sleep(0.005)
    return x


class Sleeper:
    """A user observer that takes one second per batch."""

    name = "sleeper"

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.seen = 0

    def update_batch(self, events: Sequence[Event]) -> None:
        time.sleep(self.seconds)
        self.seen += len(events)

    def update(self, event: Event) -> None:
        self.update_batch([event])


def explode(event: Event) -> None:
    """A user observer that raises on every call."""
    raise RuntimeError("observer bug")


class LoopProbe:
    """Records how late a periodic callback on an event loop runs (max lateness).

    A callback every ``period`` seconds that measures the gap since its last
    run: anything that blocks the loop shows up as a gap beyond ``period``.
    """

    def __init__(self, loop: Any, period: float = 0.01) -> None:
        self.loop = loop
        self.period = period
        self.max_late = 0.0
        self.ticks = 0
        self._last: float | None = None
        self._pc: PeriodicCallback | None = None

    def _tick(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.max_late = max(self.max_late, now - self._last - self.period)
        self._last = now
        self.ticks += 1

    def _start(self) -> None:
        self._pc = PeriodicCallback(self._tick, self.period * 1000)
        self._pc.start()

    def _stop(self) -> None:
        if self._pc is not None:
            self._pc.stop()

    @contextmanager
    def running(self) -> Iterator[LoopProbe]:
        started = threading.Event()
        self.loop.add_callback(lambda: (self._start(), started.set()))
        assert started.wait(10)
        try:
            yield self
        finally:
            stopped = threading.Event()
            self.loop.add_callback(lambda: (self._stop(), stopped.set()))
            stopped.wait(10)


class TestLoopProbe:
    """The probe used below does see a blocked loop."""

    @pytest.mark.slow
    def test_probe_sees_a_blocked_loop(self) -> None:
        """A 0.3 s blocking call on the scheduler loop shows as >= 0.25 s late."""
        with make_cluster(n_workers=1) as cluster:
            probe = LoopProbe(cluster.loop)
            with probe.running():
                time.sleep(0.1)
                cluster.loop.add_callback(time.sleep, 0.3)
                time.sleep(0.5)
            assert probe.max_late >= 0.25


class TestOnACluster:
    """Real cluster, user observers shipped with Monitor.attach."""

    @pytest.mark.slow
    def test_one_second_per_batch_does_not_block_the_loop(self) -> None:
        """An observer sleeping 1 s per batch: the loop is never late by 0.5 s,
        the computation completes, counts equal the scheduler's, and the
        observer's dropped batches are counted exactly and shown on the panel."""
        with (
            make_cluster(n_workers=2) as cluster,
            Client(cluster) as client,
        ):
            probe = LoopProbe(cluster.loop)
            with (
                Monitor.attach(
                    client, observers=[Sleeper(1.0)], interval="50ms", buffer_size=1000
                ) as monitor,
                probe.running(),
            ):
                futures = []
                for wave in range(3):  # waves: each burst fits the plugin's buffer
                    batch = client.map(short_sleep, range(wave * 150, wave * 150 + 150))
                    assert client.gather(batch) == list(
                        range(wave * 150, wave * 150 + 150)
                    )
                    futures += batch
                snap = monitor.snapshot(flush=True)
                assert snapshot_states(snap) == prefix_states(cluster.scheduler)
                del futures
            # Behavioural bound with a wide margin: inline, every flush would
            # block the loop for a whole second.
            assert probe.ticks > 50
            assert probe.max_late < 0.5, probe.max_late
            m = snap["monitor"]
            assert m["dropped"] == 0  # the built-in pipeline lost nothing
            d = m["dispatch"]["sleeper"]
            assert d["received"] == d["delivered"] + d["dropped"] + d["queued"]
            assert d["received"] > 0 and d["dropped"] > 0 and d["errors"] == 0
            assert d["queued"] <= d["capacity"] == 1000
            assert "dropped by slow observers" in summary_html(snap)
            assert any("sleeper" in row for row in health_columns(snap)["metric"])

    @pytest.mark.slow
    def test_observer_raising_every_call_is_isolated_and_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Every call raises: the computation is right, each failure is counted,
        the first one is logged once, and nothing reaches Dask's plugin error log."""
        with (
            make_cluster(n_workers=2) as cluster,
            Client(cluster) as client,
            caplog.at_level(logging.DEBUG, logger="dask_monitor"),
            caplog.at_level(logging.INFO, logger="distributed"),
        ):
            with Monitor.attach(client, observers=[explode]) as monitor:
                futures = client.map(inc, range(50))
                assert client.gather(futures) == list(range(1, 51))
                snap = monitor.snapshot(flush=True)
                assert snapshot_states(snap) == prefix_states(cluster.scheduler)
                del futures
            d = snap["monitor"]["dispatch"]["explode"]
            assert d["delivered"] > 0
            # a plain callable is called once per event: one failure each
            assert snap["monitor"]["observer_errors"]["explode"] == d["delivered"]
            logged = [
                r
                for r in caplog.records
                if r.levelno >= logging.ERROR and "explode" in r.getMessage()
            ]
            assert len(logged) == 1
            assert not [r for r in caplog.records if "Plugin failed" in r.getMessage()]


class Gate:
    """Blocks in update_batch until released; records what it got."""

    name = "gate"

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.calls: list[Any] = []

    def update_batch(self, events: Sequence[Event]) -> None:
        self.entered.set()
        self.open.wait(10)
        self.calls.append(len(events))

    def update(self, event: Event) -> None:
        self.update_batch([event])

    def reset(self) -> None:
        self.calls.append("reset")


def _events(n: int) -> list[Event]:
    return [WorkerStatus(f"tcp://w:{i}", "added", float(i)) for i in range(n)]


def _wait_idle(proxy: Dispatched) -> None:
    deadline = time.monotonic() + 10
    while not proxy.idle and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proxy.idle


class TestDispatched:
    """The bounded queue in front of one user observer."""

    def test_exact_accounting_when_the_queue_overflows(self) -> None:
        """received == delivered + dropped + queued; a batch that does not fit
        is dropped whole; the calls return at once while the observer blocks."""
        gate = Gate()
        proxy = Dispatched(gate, capacity=10)
        proxy.update_batch(_events(4))  # taken by the thread, which blocks
        assert gate.entered.wait(10)
        t0 = time.monotonic()
        for _ in range(3):  # 4 in progress + 4 fit; the next two do not
            proxy.update_batch(_events(4))
        assert time.monotonic() - t0 < 1.0  # did not wait for the observer
        stats = proxy.stats()
        assert stats["received"] == 16
        assert stats["queued"] == 8 and stats["dropped"] == 8
        gate.open.set()
        _wait_idle(proxy)
        stats = proxy.stats()
        assert stats["delivered"] == 8 and stats["queued"] == 0
        assert stats["received"] == stats["delivered"] + stats["dropped"]
        assert gate.calls == [4, 4]
        proxy.close()

    def test_reset_keeps_its_place_and_close_drops_the_rest(self) -> None:
        """reset() runs after earlier batches; close() drops and counts the queue."""
        gate = Gate()
        proxy = Dispatched(gate, capacity=100)
        proxy.update_batch(_events(1))
        assert gate.entered.wait(10)
        proxy.update_batch(_events(2))
        proxy.reset()
        proxy.update_batch(_events(3))
        proxy.close()  # the call in progress finishes; the queue is dropped
        proxy.update_batch(_events(5))  # after close: dropped, counted
        gate.open.set()
        time.sleep(0.05)
        stats = proxy.stats()
        assert stats["delivered"] == 1
        assert stats["dropped"] == 2 + 3 + 5
        assert stats["received"] == 11 and stats["queued"] == 0

    def test_control_calls_are_bounded_while_the_observer_blocks(self) -> None:
        """Thousands of resets and span names while blocked: one of each queued."""

        class Named(Gate):
            def __init__(self) -> None:
                super().__init__()
                self.names: dict[str, str] = {}

            def name_spans(self, names: dict[str, str]) -> None:
                self.calls.append("names")
                self.names.update(names)

        gate = Named()
        proxy = Dispatched(gate, capacity=100)
        proxy.update_batch(_events(1))
        assert gate.entered.wait(10)
        for i in range(5_000):
            proxy.reset()
            proxy.name_spans({f"s{i}": f"span {i}"})
        proxy.update_batch(_events(2))
        proxy.reset()
        gate.open.set()
        _wait_idle(proxy)
        assert gate.calls == [1, "reset", "names", 2, "reset"]
        assert len(gate.names) == 5_000
        proxy.close()

    def test_bad_observer_fails_at_subscription(self) -> None:
        """The proxy validates like a subject: TypeError before any thread."""
        with pytest.raises(TypeError, match="update"):
            Dispatched(object(), capacity=10)

    def test_attributes_come_from_the_observer(self) -> None:
        """Attributes the proxy lacks are the observer's (for introspection)."""
        sleeper = Sleeper(0)
        proxy = Dispatched(sleeper, capacity=10)
        assert proxy.name == "sleeper" and proxy.seconds == 0

    def test_pipeline_dispatches_user_observers_only(self) -> None:
        """Built-ins, alert rules and sinks stay inline; others get a proxy."""

        class Rule(AlertRule):
            name = "user-rule"
            kind = "user"

            def update_batch(self, events: Sequence[Event]) -> None:
                pass

        rule, sleeper = Rule(), Sleeper(0)
        pipeline = Pipeline(MonitorConfig(), observers=[rule, sleeper], dispatch=True)
        observers = pipeline.subject.observers
        assert rule in observers and sleeper not in observers
        [proxy] = [o for o in observers if isinstance(o, Dispatched)]
        assert proxy.observer is sleeper
        assert pipeline.remove_observer(sleeper)
        assert not [o for o in pipeline.subject.observers if isinstance(o, Dispatched)]
        inline = Pipeline(MonitorConfig(), observers=[sleeper])  # replay: inline
        assert sleeper in inline.subject.observers

    def test_failures_on_the_thread_reach_the_snapshot(self) -> None:
        """Errors raised on a dispatcher thread show in observer_errors."""
        pipeline = Pipeline(MonitorConfig(), observers=[explode], dispatch=True)
        pipeline.process(_events(3))
        [proxy] = pipeline._dispatched.values()
        _wait_idle(proxy)
        pipeline.tick()
        snap = pipeline.snapshot()
        assert snap["monitor"]["observer_errors"]["explode"] == 3
        assert snap["monitor"]["dispatch"]["explode"]["delivered"] == 3
        pipeline.close()


def test_detach_stops_the_dispatcher_thread() -> None:
    """Detach closes a user observer's thread; no dispatcher thread is left."""
    with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
        monitor = Monitor.attach(client, observers=[Sleeper(0.01)])
        client.gather(client.map(inc, range(10)))
        monitor.snapshot(flush=True)
        plugin = get_plugin(cluster.scheduler)
        assert plugin is not None and plugin.pipeline is not None
        [proxy] = plugin.pipeline._dispatched.values()
        thread = proxy._thread
        assert thread is not None and thread.is_alive()
        monitor.detach()
        thread.join(5)
        assert not thread.is_alive()
