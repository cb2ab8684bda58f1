"""ThroughputObserver: finishes per time bin, and the recent rate."""

from __future__ import annotations

from typing import Any

import pytest

from dask_monitor.events import NEW
from dask_monitor.observers import ThroughputObserver


def _done(
    stream: Any, prefix: str, n: int, t: float, start: str = "processing"
) -> list[Any]:
    return [
        stream.task(f"{prefix}-{i}", start, "memory", t, prefix=prefix, duration=0.1)
        for i in range(n)
    ]


def _steady(
    stream: Any,
    throughput: ThroughputObserver,
    clock: Any,
    per_second: dict[str, int],
    seconds: int,
) -> None:
    """Feed ``per_second[prefix]`` finishes a second for ``seconds`` seconds."""
    for _ in range(seconds):
        batch = [
            e for p, n in per_second.items() for e in _done(stream, p, n, clock.now)
        ]
        throughput.update_batch(batch)
        clock.advance(1.0)


class TestThroughputObserver:
    def test_bins_by_event_time(self, stream: Any, clock: Any) -> None:
        """Finishes are counted in the bin of their timestamp, up to clock()."""
        throughput = ThroughputObserver(clock=clock)
        throughput.update_batch(
            [
                *_done(stream, "a", 3, 1_000.2),
                *_done(stream, "a", 2, 1_001.5),
                *_done(stream, "a", 1, 1_003.0),
            ]
        )
        clock.now = 1_005.5
        snap = throughput.snapshot()
        assert snap["bin"] == 1.0
        assert snap["start"] == 1_000.0
        assert snap["counts"] == [3, 2, 0, 1, 0, 0]
        assert (snap["total"], snap["late"]) == (6, 0)

    def test_what_counts_as_finished(self, stream: Any, clock: Any) -> None:
        """Completions and errors count; states reported at attach time do not."""
        throughput = ThroughputObserver(clock=clock)
        throughput.update_batch(
            [
                stream.task("a-1", "processing", "memory"),
                stream.task("a-2", "processing", "erred", exception="E()"),
                stream.task("a-3", "waiting", "erred", exception="E()"),
                stream.task("a-4", NEW, "memory"),
                stream.task("a-5", NEW, "erred"),
                stream.task("a-6", "waiting", "processing", worker="w"),
                stream.task("a-7", "memory", "released"),
            ]
        )
        assert throughput.snapshot()["total"] == 3

    def test_late_events(self, stream: Any, clock: Any) -> None:
        """A finish older than the ring is counted in late and total only."""
        throughput = ThroughputObserver(bins=5, clock=clock)
        throughput.update_batch(_done(stream, "a", 1, 1_010.0))
        throughput.update_batch(_done(stream, "a", 2, 1_002.0))
        throughput.update_batch(_done(stream, "a", 4, 1_007.0))
        clock.now = 1_010.0
        snap = throughput.snapshot()
        assert (snap["late"], snap["total"]) == (2, 7)
        assert snap["counts"] == [4, 0, 0, 1]  # from the first bin with a finish
        assert snap["start"] == 1_007.0

    def test_ring_keeps_the_last_bins(self, stream: Any, clock: Any) -> None:
        """The series is at most ``bins`` long and forgets older bins."""
        throughput = ThroughputObserver(bins=10, clock=clock)
        _steady(stream, throughput, clock, {"a": 2}, 25)
        snap = throughput.snapshot()
        assert len(snap["counts"]) == 10
        assert snap["counts"] == [2] * 9 + [0]  # the bin of clock() is empty
        assert snap["start"] == clock.now - 9

    def test_bin_width(self, stream: Any, clock: Any) -> None:
        """Bins of 5 s sum five seconds of finishes."""
        throughput = ThroughputObserver(bin_seconds=5.0, clock=clock)
        _steady(stream, throughput, clock, {"a": 1}, 10)
        assert throughput.snapshot()["counts"] == [5, 5, 0]

    def test_series_for_the_most_active_prefixes(self, stream: Any, clock: Any) -> None:
        """Only the ``top_prefixes`` most active prefixes get series, busiest first."""
        throughput = ThroughputObserver(top_prefixes=2, clock=clock)
        _steady(stream, throughput, clock, {"c": 1}, 1)
        _steady(stream, throughput, clock, {"a": 10, "b": 5, "c": 1}, 40)
        snap = throughput.snapshot()
        assert list(snap["prefixes"]) == ["a", "b"]
        assert snap["prefixes"]["a"][-2:] == [10, 0]
        assert len(snap["prefixes"]["a"]) == len(snap["counts"])
        assert sum(snap["counts"]) == 41 * 1 + 40 * 15

    def test_rate_of_a_steady_stream(self, stream: Any, clock: Any) -> None:
        """Ten finishes a second read as 10/s, with a narrow range."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"a": 10}, 60)
        assert throughput.rate() == pytest.approx(10.0)
        assert throughput.rate_range() == (pytest.approx(10.0), pytest.approx(10.0))
        assert throughput.rate("a") == pytest.approx(10.0)
        assert throughput.rate("b") == 0.0

    def test_rate_of_a_bursty_stream(self, stream: Any, clock: Any) -> None:
        """Alternating 1 and 9 a second reads as 5/s over a 30 s window, within
        its range."""
        throughput = ThroughputObserver(clock=clock, window=30.0)
        for i in range(60):
            throughput.update_batch(_done(stream, "a", 1 if i % 2 else 9, clock.now))
            clock.advance(1.0)
        rate = throughput.rate()
        low, high = throughput.rate_range()
        assert rate == pytest.approx(5.0)
        assert low < rate < high
        assert high - low < 5.0

    def test_rate_in_the_first_second(self, stream: Any, clock: Any) -> None:
        """Before a bin is complete the rate counts from the first finish."""
        throughput = ThroughputObserver(clock=clock)
        throughput.update_batch(_done(stream, "a", 4, clock.now))
        clock.advance(0.5)
        assert throughput.rate() == 4.0  # over at least one bin

    def test_idle_rate_is_zero(self, stream: Any, clock: Any) -> None:
        """Nothing finished in the window: rate and range are 0.0."""
        throughput = ThroughputObserver(clock=clock, window=30.0)
        assert throughput.rate() == 0.0
        _steady(stream, throughput, clock, {"a": 3}, 10)
        clock.advance(31.0)
        assert throughput.rate() == 0.0
        assert throughput.rate_range() == (0.0, 0.0)
        assert throughput.rate("a") == 0.0

    def test_rate_restarts_after_a_pause(self, stream: Any, clock: Any) -> None:
        """After a long pause the rate counts from the new burst, not the window."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"a": 3}, 10)
        clock.advance(100.0)
        _steady(stream, throughput, clock, {"a": 8}, 5)
        assert throughput.rate() == pytest.approx(8.0)

    def test_explicit_now(self, stream: Any, clock: Any) -> None:
        """rate(now=...) reads the rate at another time than clock()."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"a": 2}, 10)
        assert throughput.rate(now=clock.now + 100) == 0.0
        assert throughput.rate(now=clock.now) == pytest.approx(2.0)

    def test_prefix_table_is_bounded(self, stream: Any, clock: Any) -> None:
        """Beyond max_prefixes idle prefixes are dropped, or finishes untracked."""
        throughput = ThroughputObserver(max_prefixes=2, clock=clock)
        throughput.update_batch(
            _done(stream, "a", 1, clock.now) + _done(stream, "b", 1, clock.now)
        )
        throughput.update_batch(_done(stream, "c", 2, clock.now))
        assert throughput.untracked == 2
        clock.advance(60.0)
        throughput.update_batch(_done(stream, "c", 2, clock.now))
        assert throughput.rate("c") > 0.0
        assert throughput.untracked == 2
        assert throughput.snapshot()["total"] == 6

    def test_reset(self, stream: Any, clock: Any) -> None:
        """reset() forgets every bin and rate."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"a": 3}, 5)
        throughput.reset()
        assert throughput.rate() == 0.0
        snap = throughput.snapshot()
        assert (snap["counts"], snap["total"], snap["prefixes"]) == ([0], 0, {})

    @pytest.mark.parametrize(
        "kwargs",
        [{"bin_seconds": 0}, {"bins": 0}, {"top_prefixes": -1}, {"window": 0}],
    )
    def test_rejects_bad_settings(self, kwargs: dict[str, float]) -> None:
        """Widths and sizes must be positive."""
        with pytest.raises(ValueError):
            ThroughputObserver(**kwargs)  # type: ignore[arg-type]


class TestCurrentPace:
    """The rate is the pace of the last seconds: bursts, pauses and the end."""

    def test_burst_after_idle_reads_its_own_pace(self, stream: Any, clock: Any) -> None:
        """100 quick finishes, 12 s idle, then 40/s: the rate reads 40/s, not an
        average diluted by the pause."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"warm": 100}, 1)
        clock.advance(12.0)
        _steady(stream, throughput, clock, {"nap": 40}, 4)
        assert throughput.rate() == pytest.approx(40.0, rel=0.1)
        assert throughput.rate("nap") == pytest.approx(40.0, rel=0.1)
        assert throughput.rate("warm") == 0.0

    def test_rate_decays_to_zero_when_nothing_finishes(
        self, stream: Any, clock: Any
    ) -> None:
        """After the last finish the rate falls, and is 0 once the window passed."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"a": 20}, 10)
        during = throughput.rate()
        clock.advance(3.0)
        assert 0.0 < throughput.rate() < during
        clock.advance(3.0)
        assert throughput.rate() == 0.0
        assert throughput.rate("a") == 0.0
        assert throughput.rate_range() == (0.0, 0.0)

    def test_per_prefix_pace(self, stream: Any, clock: Any) -> None:
        """Each prefix reads its own pace; one that stopped reads 0."""
        throughput = ThroughputObserver(clock=clock)
        _steady(stream, throughput, clock, {"a": 30, "b": 5}, 10)
        _steady(stream, throughput, clock, {"b": 5}, 8)
        assert throughput.rate("a") == 0.0
        assert throughput.rate("b") == pytest.approx(5.0, rel=0.05)
        assert throughput.rate() == pytest.approx(5.0, rel=0.05)

    def test_average_rate_and_run_seconds(self, stream: Any, clock: Any) -> None:
        """The run spans the first task event to the latest finish; the average
        is its finishes over it, idle time included, and stays after the end."""
        throughput = ThroughputObserver(clock=clock)
        assert (throughput.average_rate(), throughput.run_seconds()) == (None, None)
        throughput.update_batch(
            [stream.task("a-0", NEW, "released", clock.now, prefix="a")]
        )
        assert (throughput.average_rate(), throughput.run_seconds()) == (None, None)
        clock.advance(1.0)
        _steady(stream, throughput, clock, {"a": 10}, 10)  # finishes at 1..10 s
        clock.advance(10.0)
        _steady(stream, throughput, clock, {"a": 10}, 10)  # at 21..30 s
        clock.advance(60.0)
        assert throughput.run_seconds() == pytest.approx(30.0)
        assert throughput.average_rate() == pytest.approx(200 / 30.0)
        assert throughput.rate() == 0.0


class TestThroughputBatches:
    def test_batch_and_list_give_the_same_series(self, stream: Any, clock: Any) -> None:
        """A columnar Batch (one time or a time per event) counts like a list."""
        from dask_monitor.batch import Batch

        events = list(stream.workload(20_000, prefixes=40, seed=4, erred=0.02))
        events += [stream.task("z-1", NEW, "erred", events[-1].timestamp)]
        snaps = []
        for wrap in (list, Batch.from_events):
            throughput = ThroughputObserver(
                top_prefixes=5, max_prefixes=30, clock=clock
            )
            for batch in stream.chunks(events, [1, 999, 4_000]):
                throughput.update_batch(wrap(batch))
            clock.now = events[-1].timestamp
            snaps.append(
                (
                    throughput.snapshot(),
                    throughput.rate(),
                    throughput.rate_range(),
                    throughput.rate("p1"),
                    throughput.untracked,
                )
            )
        assert snaps[0] == snaps[1]
        assert snaps[0][0]["total"] > 0
