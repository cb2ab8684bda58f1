"""EtaObserver: time to completion from progress and throughput."""

from __future__ import annotations

from typing import Any

import pytest

from dask_monitor.events import NEW
from dask_monitor.observers import EtaObserver, ProgressObserver, ThroughputObserver


def _observers(clock: Any) -> tuple[ProgressObserver, ThroughputObserver, EtaObserver]:
    progress = ProgressObserver()
    throughput = ThroughputObserver(clock=clock)
    return progress, throughput, EtaObserver(progress, throughput, clock=clock)


def _submit(stream: Any, prefix: str, n: int, t: float) -> list[Any]:
    return [
        e
        for i in range(n)
        for e in (
            stream.task(f"{prefix}-{i}", NEW, "released", t),
            stream.task(f"{prefix}-{i}", "released", "waiting", t),
        )
    ]


def _complete(stream: Any, prefix: str, keys: range, t: float) -> list[Any]:
    return [
        e
        for i in keys
        for e in (
            stream.task(f"{prefix}-{i}", "waiting", "processing", t, worker="w"),
            stream.task(f"{prefix}-{i}", "processing", "memory", t, duration=0.1),
        )
    ]


class TestEtaObserver:
    def test_steady_under_varying_durations(self, stream: Any, clock: Any) -> None:
        """With 1 and 9 tasks done in turn each second, ETA stays near remaining/5."""
        progress, throughput, eta = _observers(clock)
        batch = _submit(stream, "x", 2_000, clock.now)
        progress.update_batch(batch)
        done = 0
        checked = 0
        for second in range(200):
            n = 1 if second % 2 else 9
            batch = _complete(stream, "x", range(done, done + n), clock.now)
            done += n
            progress.update_batch(batch)
            throughput.update_batch(batch)
            clock.advance(1.0)
            if second >= 10:  # after a few seconds of history
                estimate, low, high = eta.estimate()
                expected = progress.remaining() / 5
                assert estimate == pytest.approx(expected, rel=0.2), second
                assert low is not None and high is not None
                assert low <= estimate <= high
                checked += 1
        assert checked == 190

    def test_done_is_zero(self, stream: Any, clock: Any) -> None:
        """Nothing remaining: the ETA is 0.0."""
        _, _, eta = _observers(clock)
        assert eta.estimate() == (0.0, 0.0, 0.0)
        assert eta.snapshot() == {"eta": 0.0, "eta_low": 0.0, "eta_high": 0.0}

    def test_no_rate_yet_is_none(self, stream: Any, clock: Any) -> None:
        """Tasks waiting and none finished recently: no estimate."""
        progress, _, eta = _observers(clock)
        progress.update_batch(_submit(stream, "x", 10, clock.now))
        assert eta.estimate() == (None, None, None)

    def test_per_prefix(self, stream: Any, clock: Any) -> None:
        """A prefix's ETA uses its own remaining tasks and rate."""
        progress, throughput, eta = _observers(clock)
        progress.update_batch(_submit(stream, "a", 100, clock.now))
        progress.update_batch(_submit(stream, "b", 100, clock.now))
        for second in range(40):
            keys = range(second * 2, second * 2 + 2)
            batch = _complete(stream, "a", keys, clock.now)
            progress.update_batch(batch)
            throughput.update_batch(batch)
            clock.advance(1.0)
        estimate, low, high = eta.estimate("a")
        assert estimate == pytest.approx(20 / 2.0, rel=0.1)  # 20 left at 2/s
        assert low == high == estimate  # a perfectly steady rate
        assert eta.estimate("b") == (None, None, None)
        assert eta.estimate("nope") == (0.0, 0.0, 0.0)

    def test_range_is_open_when_the_rate_may_be_zero(
        self, stream: Any, clock: Any
    ) -> None:
        """A rate whose low end is zero leaves the pessimistic end unknown."""
        progress, throughput, eta = _observers(clock)
        progress.update_batch(_submit(stream, "x", 100, clock.now))
        for second in range(10):
            n = 10 if second == 0 else 0
            batch = _complete(stream, "x", range(n), clock.now)
            progress.update_batch(batch)
            throughput.update_batch(batch)
            clock.advance(1.0)
        estimate, low, high = eta.estimate()
        assert estimate is not None and low is not None
        assert high is None

    def test_needs_no_events(self, stream: Any, clock: Any) -> None:
        """Events and reset leave it alone: it reads the other observers."""
        progress, _, eta = _observers(clock)
        eta.update_batch(_submit(stream, "x", 5, clock.now))
        eta.update(stream.task("x-1", NEW, "released"))
        eta.reset()
        assert eta.estimate() == (0.0, 0.0, 0.0)
        assert progress.remaining() == 0
