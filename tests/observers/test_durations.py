"""DurationsObserver: compute-time percentiles per prefix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dask_monitor.events import NEW
from dask_monitor.observers import DurationsObserver


def _completions(
    stream: Any, prefix: str, durations: Any, t: float = 1_000.0
) -> list[Any]:
    return [
        stream.task(f"{prefix}-{i}", "processing", "memory", t, duration=float(d))
        for i, d in enumerate(durations)
    ]


class TestDurationsObserver:
    def test_quantiles_within_relative_error(self, stream: Any) -> None:
        """p50/p90/p99 of 100k skewed durations are within 1% of the truth."""
        values = np.random.default_rng(0).lognormal(-2.0, 1.5, 100_000)
        durations = DurationsObserver()
        events = _completions(stream, "load", values)
        for i in range(0, len(events), 10_000):
            durations.update_batch(events[i : i + 10_000])
        stats = durations.stats("load")
        assert stats["count"] == 100_000
        assert stats["relative_error"] == 0.01
        assert stats["mean"] == pytest.approx(values.mean())
        assert stats["max"] == values.max()
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            true = float(np.quantile(values, q, method="inverted_cdf"))
            assert abs(stats[name] - true) <= 0.01 * true, name  # type: ignore[literal-required]
        for q in (0.05, 0.25, 0.75, 0.999):
            true = float(np.quantile(values, q, method="inverted_cdf"))
            estimate = durations.quantile("load", q)
            assert estimate is not None and abs(estimate - true) <= 0.01 * true

    def test_memory_is_bounded(self, stream: Any) -> None:
        """A prefix's sketch stays under 1 KB for durations over two decades."""
        durations = DurationsObserver()
        durations.update_batch(_completions(stream, "x", np.geomspace(0.01, 1, 50_000)))
        sketch = durations.sketch("x")
        assert sketch is not None and sketch.nbytes() < 1_000

    def test_only_completions_with_a_duration(self, stream: Any) -> None:
        """Only processing -> memory events with a duration count."""
        durations = DurationsObserver()
        durations.update_batch(
            [
                stream.task("x-1", "processing", "memory", duration=2.0),
                stream.task("x-2", "processing", "memory"),  # no duration
                stream.task("x-3", NEW, "memory", duration=5.0),  # before we looked
                stream.task("x-4", "processing", "erred", duration=7.0),
                stream.task("x-5", "waiting", "processing", duration=9.0),
            ]
        )
        assert durations.stats("x")["count"] == 1
        assert durations.stats("x")["max"] == 2.0

    def test_several_prefixes_in_one_batch(self, stream: Any) -> None:
        """Durations are kept apart per prefix."""
        durations = DurationsObserver()
        durations.update_batch(
            stream.merge(
                _completions(stream, "fast", [0.01] * 50),
                _completions(stream, "slow", [10.0] * 50),
            )
        )
        assert durations.quantile("fast", 0.5) == pytest.approx(0.01, rel=0.01)
        assert durations.quantile("slow", 0.5) == pytest.approx(10.0, rel=0.01)
        assert sorted(durations.prefix_names()) == ["fast", "slow"]

    def test_unknown_prefix(self) -> None:
        """A prefix without durations has empty stats and no quantile."""
        durations = DurationsObserver(relative_error=0.02)
        assert durations.stats("nope") == {
            "count": 0,
            "mean": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
            "relative_error": 0.02,
        }
        assert durations.quantile("nope", 0.5) is None

    def test_snapshot(self, stream: Any) -> None:
        """snapshot() gives stats for the asked prefixes, or for all of them."""
        durations = DurationsObserver()
        durations.update_batch(_completions(stream, "a", [1.0, 2.0]))
        assert list(durations.snapshot()) == ["a"]
        snap = durations.snapshot(["a", "b"])
        assert snap["a"]["count"] == 2 and snap["b"]["count"] == 0
        stream.assert_plain(snap)

    def test_stats_follow_new_durations(self, stream: Any) -> None:
        """Stats change when durations arrive (cached only while unchanged)."""
        durations = DurationsObserver()
        durations.update_batch(_completions(stream, "a", [1.0]))
        first = durations.stats("a")
        first["count"] = 99  # callers get copies
        durations.update_batch(_completions(stream, "a", [3.0]))
        assert durations.stats("a")["count"] == 2
        assert durations.stats("a")["max"] == 3.0

    def test_fold_beyond_max_prefixes(self, stream: Any) -> None:
        """Durations of prefixes beyond the cap are counted as folded."""
        durations = DurationsObserver(max_prefixes=2)
        for name in ("a", "b", "c", "d"):
            durations.update_batch(_completions(stream, name, [1.0, 1.0]))
        assert sorted(durations.prefix_names()) == ["a", "b"]
        assert durations.folded == 2
        assert durations.stats("c")["count"] == 0

    def test_reset(self, stream: Any) -> None:
        """reset() forgets every sketch."""
        durations = DurationsObserver()
        durations.update_batch(_completions(stream, "a", [1.0]))
        durations.reset()
        assert durations.snapshot() == {}
        assert durations.stats("a")["count"] == 0

    @pytest.mark.parametrize(
        "kwargs", [{"relative_error": 0.05}, {"relative_error": 0}, {"max_prefixes": 0}]
    )
    def test_rejects_bad_settings(self, kwargs: dict[str, float]) -> None:
        """The relative error must be in (0, 0.02], the cap positive."""
        with pytest.raises(ValueError):
            DurationsObserver(**kwargs)  # type: ignore[arg-type]


class TestDurationsBatches:
    def test_batch_and_list_give_the_same_stats(self, stream: Any) -> None:
        """A columnar Batch gives the stats of the equivalent list."""
        from dask_monitor.batch import Batch

        events = list(stream.workload(20_000, prefixes=30, seed=3))
        snaps = []
        for wrap in (list, Batch.from_events):
            durations = DurationsObserver(max_prefixes=20)
            for i, batch in enumerate(stream.chunks(events, [1, 500, 5_000])):
                durations.update_batch(wrap(batch))
                if i % 7 == 0:
                    durations.snapshot()  # reads between batches
            snaps.append((durations.snapshot(), durations.folded))
        assert snaps[0] == snaps[1]
        assert snaps[0][1] > 0

    def test_reads_see_every_duration(self, stream: Any) -> None:
        """Durations waiting for their sketch are in every read."""
        durations = DurationsObserver()
        durations.update_batch(_completions(stream, "a", [1.0, 2.0]))
        assert durations.prefix_names() == ["a"]
        durations.update_batch(_completions(stream, "b", [4.0]))
        assert durations.quantile("b", 0.5) == pytest.approx(4.0, rel=0.01)
        durations.update_batch(_completions(stream, "a", [8.0]))
        sketch = durations.sketch("a")
        assert sketch is not None and sketch.count == 3 and sketch.max == 8.0
        durations.update_batch(_completions(stream, "a", [16.0]))
        assert durations.stats("a")["max"] == 16.0
        durations.update_batch(_completions(stream, "c", [1.0]))
        assert list(durations.snapshot()) == ["a", "b", "c"]


def test_fixed_buckets_count_exactly_at_and_below_each_bound(stream: Any) -> None:
    """``buckets[i]`` is the number of durations ``<= DURATION_BUCKETS[i]``,
    a duration equal to a bound counting in it, for small and large flushes."""
    from dask_monitor.snapshot import DURATION_BUCKETS

    rng = np.random.default_rng(3)
    few = [0.0005, 0.001, 0.0011, 0.3, 5000.0]  # 0.001 sits on a bound
    many = [*(10 ** rng.uniform(-4, 4, 5000)).tolist(), *DURATION_BUCKETS]
    for values in (few, many):
        durations = DurationsObserver()
        durations.update_batch(_completions(stream, "inc", values))
        stats = durations.stats("inc")
        expected = [sum(v <= b for v in values) for b in DURATION_BUCKETS]
        assert stats["buckets"] == expected
        assert stats["count"] == len(values)
        assert durations.stats("inc")["buckets"] == expected  # from the cache
