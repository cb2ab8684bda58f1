"""LogHistogram: quantiles within a relative error, in bounded memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dask_monitor.observers import sketch as sketch_module
from dask_monitor.observers.sketch import LogHistogram

QS = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def _lognormal(n: int = 100_000, sigma: float = 1.5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(mean=-3.0, sigma=sigma, size=n)


def _within(estimate: float | None, true: float, alpha: float) -> bool:
    return estimate is not None and abs(estimate - true) <= alpha * true * (1 + 1e-12)


class TestLogHistogram:
    @pytest.mark.parametrize("alpha", [0.01, 0.02, 0.005])
    def test_quantiles_within_relative_error(self, alpha: float) -> None:
        """Every quantile of skewed data is within alpha of numpy's inverted CDF."""
        values = _lognormal()
        h = LogHistogram(alpha)
        h.add_many(values)
        for q in QS:
            true = float(np.quantile(values, q, method="inverted_cdf"))
            assert _within(h.quantile(q), true, alpha), q

    @pytest.mark.parametrize("size", [1, 7, 20, 100])
    def test_python_and_numpy_paths_agree(
        self, monkeypatch: pytest.MonkeyPatch, size: int
    ) -> None:
        """Bucketing without NumPy (or in small batches) gives the same sketch."""
        values = _lognormal(5_000).tolist()
        fast = LogHistogram()
        fast.add_many(values)
        monkeypatch.setattr(sketch_module, "np", None)
        slow = LogHistogram()
        for i in range(0, len(values), size):
            slow.add_many(values[i : i + size])
        assert slow.quantiles(QS) == fast.quantiles(QS)
        assert (slow.count, slow.zeros, slow.min, slow.max) == (
            fast.count,
            fast.zeros,
            fast.min,
            fast.max,
        )
        assert slow.total == pytest.approx(fast.total)

    def test_exact_count_mean_min_max(self) -> None:
        """count, mean, min and max are exact; q=0 and q=1 are min and max."""
        h = LogHistogram()
        h.add_many([0.5, 2.0, 4.0, 1.5])
        h.add(8.0)
        assert (h.count, h.mean, h.min, h.max) == (5, 3.2, 0.5, 8.0)
        assert h.quantiles([0.0, 1.0]) == [0.5, 8.0]
        assert len(h) == 5

    def test_zero_bucket(self) -> None:
        """Zero, negative and tiny values count, and come back as 0 (or the min)."""
        h = LogHistogram()
        h.add_many([0.0, 0.0, 1e-12, -1.0, 1.0])
        assert (h.count, h.zeros) == (5, 4)
        assert h.quantile(0.5) == 0.0  # in the zero bucket
        assert _within(h.quantile(0.99), 1.0, 0.01)

    def test_empty(self) -> None:
        """An empty sketch has no quantiles and no mean."""
        h = LogHistogram()
        assert (h.quantile(0.5), h.mean, h.count) == (None, None, 0)

    def test_memory_for_two_decades(self) -> None:
        """Durations spanning two decades fit in under 1 KB of counts."""
        h = LogHistogram(0.01)
        h.add_many(np.geomspace(0.01, 1.0, 100_000))
        assert h.nbytes() < 1_000

    def test_memory_is_capped(self) -> None:
        """Values spanning 60 decades keep at most max_buckets, low ones merged."""
        h = LogHistogram(0.01, max_buckets=512)  # 512 buckets: 4.4 decades
        values = np.geomspace(1e-30, 1e30, 100_000)
        h.add_many(values)
        assert h.nbytes() <= 512 * 4
        for q in (0.95, 0.99, 0.999):  # the top decades keep their guarantee
            true = float(np.quantile(values, q, method="inverted_cdf"))
            assert _within(h.quantile(q), true, 0.01), q
        assert h.count == 100_000

    def test_counts_widen_before_overflow(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Counts move to 64 bits before a 32-bit bucket could overflow."""
        monkeypatch.setattr(sketch_module, "_INT32_MAX", 10)
        h = LogHistogram()
        h.add_many([1.0] * 8)
        assert h._counts.typecode == "i"
        h.add_many([1.0] * 8)
        assert h._counts.typecode == "q"
        assert h.quantile(0.5) == 1.0 and h.count == 16

    def test_merge(self) -> None:
        """Merging two sketches equals sketching all their values."""
        a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
        x, y = _lognormal(1_000, seed=1), _lognormal(1_000, seed=2) * 100
        a.add_many(x)
        b.add_many(y)
        both.add_many(np.concatenate([x, y]))
        a.merge(b)
        assert a.quantiles(QS) == both.quantiles(QS)
        assert a.count == 2_000
        with pytest.raises(ValueError, match="different relative errors"):
            a.merge(LogHistogram(0.02))

    def test_clear(self) -> None:
        """clear() forgets every value."""
        h = LogHistogram()
        h.add_many([1.0, 2.0])
        h.clear()
        assert (h.count, h.nbytes(), h.quantile(0.5)) == (0, 0, None)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"relative_error": 0.0},
            {"relative_error": 0.05},
            {"max_buckets": 1},
            {"min_value": 0.0},
        ],
    )
    def test_rejects_bad_settings(self, kwargs: dict[str, float]) -> None:
        """The relative error must be in (0, 0.02], the store big enough."""
        with pytest.raises(ValueError):
            LogHistogram(**kwargs)  # type: ignore[arg-type]

    def test_rejects_bad_quantile(self) -> None:
        """Quantiles outside [0, 1] are an error."""
        h = LogHistogram()
        h.add(1.0)
        with pytest.raises(ValueError, match="quantiles"):
            h.quantile(1.5)

    def test_bucket_values(self) -> None:
        """A bucket is reported by a value within alpha of both its bounds."""
        h = LogHistogram(0.02)
        gamma = h._gamma
        for i in range(-5, 5):
            value = gamma**i * h._value_scale
            assert math.isclose((value - gamma ** (i - 1)) / gamma ** (i - 1), 0.02)
            assert math.isclose((gamma**i - value) / gamma**i, 0.02)
