"""EtaEstimator: time to completion from progress and throughput."""

from __future__ import annotations

from typing import Any

import pytest

from dask_monitor.events import NEW
from dask_monitor.observers import (
    DurationsObserver,
    EtaEstimator,
    ProgressObserver,
    ThroughputObserver,
    WorkersObserver,
)


def _observers(clock: Any) -> tuple[ProgressObserver, ThroughputObserver, EtaEstimator]:
    progress = ProgressObserver()
    throughput = ThroughputObserver(clock=clock)
    return progress, throughput, EtaEstimator(progress, throughput, clock=clock)


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
        for second in range(4):  # within the rate's window (5 s)
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


class _Cluster:
    """Progress, throughput, durations, workers and ETA observers fed together,
    with two workers of two threads (a fake clock's cluster)."""

    def __init__(self, stream: Any, clock: Any) -> None:
        self.stream = stream
        self.clock = clock
        self.progress = ProgressObserver()
        self.throughput = ThroughputObserver(clock=clock)
        self.durations = DurationsObserver()
        self.workers = WorkersObserver(clock=clock)
        self.eta = EtaEstimator(
            self.progress,
            self.throughput,
            durations=self.durations,
            workers=self.workers,
            clock=clock,
        )
        self.next: dict[str, int] = {}
        self.feed(stream.workers(clock.now, nthreads=2))

    def feed(self, events: list[Any]) -> None:
        for observer in (self.progress, self.throughput, self.durations, self.workers):
            observer.update_batch(events)

    def submit(self, prefix: str, n: int) -> None:
        self.feed(_submit(self.stream, prefix, n, self.clock.now))
        self.next[prefix] = 0

    def start(self, prefix: str, n: int) -> None:
        """Start the next ``n`` tasks of ``prefix``, on the workers in turn."""
        first = self.next[prefix]
        workers = self.stream.workers_addresses
        self.feed(
            [
                self.stream.task(
                    f"{prefix}-{i}",
                    "waiting",
                    "processing",
                    self.clock.now,
                    worker=workers[i % 2],
                )
                for i in range(first, first + n)
            ]
        )
        self.next[prefix] = first + n

    def finish(self, prefix: str, keys: range, duration: float) -> None:
        workers = self.stream.workers_addresses
        self.feed(
            [
                self.stream.task(
                    f"{prefix}-{i}",
                    "processing",
                    "memory",
                    self.clock.now,
                    worker=workers[i % 2],
                    duration=duration,
                )
                for i in keys
            ]
        )


class TestEtaFromWork:
    """Work left per prefix x its duration / the threads it gets."""

    def test_two_prefixes_of_very_different_speed(
        self, stream: Any, clock: Any
    ) -> None:
        """A fast prefix dominates the rate, a slow one the work left: the ETA
        follows the work (thread-seconds left / 4 threads), not the count."""
        c = _Cluster(stream, clock)
        c.submit("a", 400)  # 0.05 s each, on two threads: 40/s
        c.submit("b", 60)  # 2 s each, on two threads: 1/s
        c.start("a", 2)
        c.start("b", 2)
        done_a = done_b = 0
        for second in range(1, 7):
            clock.advance(1.0)
            c.finish("a", range(done_a, done_a + 40), 0.05)
            done_a += 40
            c.start("a", 40)
            if second >= 2:
                c.finish("b", range(done_b, done_b + 1), 2.0)
                done_b += 1
                c.start("b", 1)
        left_a = 400 - done_a
        left_b = 60 - done_b
        # Two tasks of each prefix are running, half done on average.
        expected = ((left_a - 1) * 0.05 + (left_b - 1) * 2.0) / 4
        naive = (left_a + left_b) / c.throughput.rate()
        estimate, low, high = c.eta.estimate()
        assert estimate == pytest.approx(expected, rel=0.1)
        assert naive < expected / 3  # what remaining / rate would have said
        assert low is not None and low <= estimate
        assert high is None or high >= estimate
        b_estimate = c.eta.estimate("b")[0]
        assert b_estimate == pytest.approx((left_b - 1) * 2.0 / 2, rel=0.15)

    def test_work_queued_beyond_the_threads(self, stream: Any, clock: Any) -> None:
        """40 tasks of 4 s on 4 threads, 6 s in: 4 done, 4 half done, 32 queued;
        34 s remain (the rate of one wave would say 18 s)."""
        c = _Cluster(stream, clock)
        c.submit("x", 40)
        c.start("x", 4)
        clock.advance(4.0)
        c.finish("x", range(4), 4.0)
        c.start("x", 4)
        clock.advance(2.0)
        estimate, low, high = c.eta.estimate()
        assert estimate == pytest.approx(34.0, rel=0.1)
        assert low is not None and low <= estimate
        assert high is None or high >= estimate

    def test_falls_back_to_the_rate_without_durations(
        self, stream: Any, clock: Any
    ) -> None:
        """Without a durations observer the ETA is remaining / rate."""
        progress, throughput, eta = _observers(clock)
        progress.update_batch(_submit(stream, "x", 100, clock.now))
        for second in range(5):
            batch = _complete(
                stream, "x", range(second * 10, second * 10 + 10), clock.now
            )
            progress.update_batch(batch)
            throughput.update_batch(batch)
            clock.advance(1.0)
        assert eta.estimate()[0] == pytest.approx(50 / 10.0, rel=0.05)
