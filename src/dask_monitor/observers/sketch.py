"""A streaming quantile sketch with a relative-error guarantee (DDSketch-style).

Positive values fall in logarithmic buckets ``(gamma**(i - 1), gamma**i]`` with
``gamma = (1 + alpha) / (1 - alpha)``; a bucket is reported by the value
``2 * gamma**i / (gamma + 1)``, which is within ``alpha`` (relative) of every
value in it. Values at or below ``min_value`` share a zero bucket and are
reported as ``0.0`` (an absolute error of at most ``min_value``).

Counts live in one dense ``array('i')`` (4 bytes a bucket; widened to
``array('q')`` if a count could overflow): durations spanning two decades
take about 230 buckets (under 1 KB) at ``alpha = 0.01``. Beyond
``max_buckets`` the lowest buckets are merged into one, which loses accuracy
only for quantiles that fall among them (DDSketch's "collapsing lowest" store;
at ``alpha = 0.01`` it takes values spanning 18 decades to get there).

Large batches are bucketed with NumPy when it is installed, small ones value
by value; the results do not depend on which path ran.

References: Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable
quantile sketch with relative-error guarantees", VLDB 2019.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

try:  # NumPy pays for itself on batches of a few dozen values and more.
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional at run time
    np = None  # type: ignore[assignment]

__all__ = ["LogHistogram"]

#: Batches this small take the values one by one (no set-up costs).
_FEW = 48
#: Extra buckets allocated when values added one by one grow the store.
_SLACK = 16
_INT32_MAX = 2**31 - 1


class LogHistogram:
    """Quantiles of positive values to within a relative error, in bounded memory.

    Parameters
    ----------
    relative_error
        Guaranteed relative error ``alpha`` of :meth:`quantile`, in
        ``(0, 0.02]``: a value ``q`` reported for the true ``x`` satisfies
        ``|q - x| <= alpha * x``.
    max_buckets
        Most buckets kept (4 bytes each); beyond, the lowest are merged.
    min_value
        Values at or below it (and negative ones) go to the zero bucket.

    Notes
    -----
    ``count``, ``total`` (the sum), ``min`` and ``max`` are exact. Quantiles
    follow the "inverted CDF" definition: ``quantile(q)`` estimates the
    smallest value ``x`` with at least ``q * count`` values ``<= x``, i.e.
    ``numpy.quantile(values, q, method="inverted_cdf")``. Not thread-safe.
    """

    __slots__ = (
        "_counts",
        "_gamma",
        "_inv_log_gamma",
        "_offset",
        "_value_scale",
        "count",
        "max",
        "max_buckets",
        "min",
        "min_value",
        "relative_error",
        "total",
        "zeros",
    )

    def __init__(
        self,
        relative_error: float = 0.01,
        *,
        max_buckets: int = 2048,
        min_value: float = 1e-9,
    ) -> None:
        if not 0 < relative_error <= 0.02:
            raise ValueError(
                f"relative_error must be in (0, 0.02], got {relative_error!r}"
            )
        if isinstance(max_buckets, bool) or not isinstance(max_buckets, int):
            raise ValueError(f"max_buckets must be an int, got {max_buckets!r}")
        if max_buckets < 2:
            raise ValueError(f"max_buckets must be at least 2, got {max_buckets!r}")
        if not min_value > 0:
            raise ValueError(f"min_value must be positive, got {min_value!r}")
        self.relative_error = float(relative_error)
        self.max_buckets = max_buckets
        self.min_value = float(min_value)
        self._gamma = (1 + relative_error) / (1 - relative_error)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)
        self._value_scale = 2.0 / (self._gamma + 1.0)
        self.clear()

    def clear(self) -> None:
        """Forget all values."""
        self._counts = array("i")
        self._offset = 0  # bucket index of _counts[0]
        self.zeros = 0
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- adding ------------------------------------------------------------

    def add(self, value: float) -> None:
        """Add one value."""
        self.add_many([value])

    def add_many(self, values: Sequence[float]) -> None:
        """Add a batch of values (a list, tuple or NumPy array of floats)."""
        n = len(values)
        if not n:
            return
        if self.count + n > _INT32_MAX and self._counts.typecode == "i":
            self._counts = array("q", self._counts)  # a bucket could overflow
        if n < _FEW:
            self._add_few(values)
            return
        if np is not None:
            self._add_numpy(np.asarray(values, dtype=np.float64))
            return
        lo = self.min_value
        positive = [x for x in values if x > lo]
        self.zeros += n - len(positive)
        self.count += n
        self.total += float(sum(values))
        low = min(values)
        high = max(values)
        if low < self.min:
            self.min = float(low)
        if high > self.max:
            self.max = float(high)
        if positive:
            k = self._inv_log_gamma
            log = math.log
            ceil = math.ceil
            buckets = Counter([ceil(log(x) * k) for x in positive])
            self._store(min(buckets), max(buckets), buckets.items())

    def _add_few(self, values: Sequence[float]) -> None:
        """A handful of values, one by one (what most small prefixes get)."""
        low = min(values)
        high = max(values)
        if low < self.min:
            self.min = float(low)
        if high > self.max:
            self.max = float(high)
        lo = self.min_value
        k = self._inv_log_gamma
        log = math.log
        ceil = math.ceil
        counts = self._counts
        offset = self._offset
        size = len(counts)
        for x in values:
            if x > lo:
                j = ceil(log(x) * k) - offset
                if 0 <= j < size:
                    counts[j] += 1
                else:
                    i = j + offset
                    self._store(i, i, ((i, 1),), slack=_SLACK)
                    counts = self._counts
                    offset = self._offset
                    size = len(counts)
            else:
                self.zeros += 1
        self.count += len(values)
        self.total += float(sum(values))

    def _add_numpy(self, values: Any) -> None:
        n = len(values)
        positive = values[values > self.min_value]
        self.zeros += n - len(positive)
        self.count += n
        self.total += float(values.sum())
        low = float(values.min())
        high = float(values.max())
        if low < self.min:
            self.min = low
        if high > self.max:
            self.max = high
        if len(positive):
            index = np.ceil(np.log(positive) * self._inv_log_gamma).astype(np.int64)
            first = int(index.min())
            counts = np.bincount(index - first)
            nonzero = np.flatnonzero(counts)
            self._store(
                first,
                first + len(counts) - 1,
                zip((nonzero + first).tolist(), counts[nonzero].tolist(), strict=True),
            )

    def _store(
        self,
        first: int,
        last: int,
        items: Iterable[tuple[int, int]],
        slack: int = 0,
    ) -> None:
        """Add ``(bucket index, count)`` pairs whose indices are in [first, last].

        When the store must grow, it grows ``slack`` buckets further than
        needed (values added one by one would otherwise grow it each time).
        """
        counts = self._counts
        if not counts:
            self._offset = first
        offset = self._offset
        end = offset + len(counts)
        if first < offset:
            grow = offset - first + (slack if counts else 0)
            counts[:0] = array(counts.typecode, bytes(counts.itemsize * grow))
            offset = self._offset = offset - grow
        if last >= end:
            grow = last + 1 - end + (slack if end > offset else 0)
            counts.extend(array(counts.typecode, bytes(counts.itemsize * grow)))
        for i, c in items:
            counts[i - offset] += c
        if len(counts) > self.max_buckets:
            self._collapse()

    def _collapse(self) -> None:
        """Merge the lowest buckets so that ``max_buckets`` remain."""
        counts = self._counts
        cut = len(counts) - self.max_buckets
        merged = sum(counts[: cut + 1])
        del counts[:cut]
        counts[0] = merged
        self._offset += cut

    def merge(self, other: LogHistogram) -> None:
        """Add the values of another sketch with the same relative error."""
        if other.relative_error != self.relative_error:
            raise ValueError("cannot merge sketches with different relative errors")
        if not other.count:
            return
        if self.count + other.count > _INT32_MAX and self._counts.typecode == "i":
            self._counts = array("q", self._counts)
        self.zeros += other.zeros
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other._counts:
            first = other._offset
            self._store(
                first,
                first + len(other._counts) - 1,
                ((first + i, c) for i, c in enumerate(other._counts) if c),
            )

    # -- reading -----------------------------------------------------------

    @property
    def mean(self) -> float | None:
        """The exact mean, or ``None`` when empty."""
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """Estimate of the ``q``-quantile (``0 <= q <= 1``); ``None`` when empty."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """Several quantiles at once (one pass over the buckets)."""
        for q in qs:
            if not 0 <= q <= 1:
                raise ValueError(f"quantiles must be in [0, 1], got {q!r}")
        n = self.count
        if not n:
            return [None] * len(qs)
        cumulative = list(accumulate(self._counts, initial=self.zeros))
        out: list[float | None] = []
        for q in qs:
            rank = max(1, math.ceil(q * n - 1e-9))  # 1-based rank of the value
            if q == 0:
                out.append(self.min)
                continue
            if q == 1:
                out.append(self.max)
                continue
            i = bisect_left(cumulative, rank)
            if i == 0:
                value = 0.0
            else:
                value = self._gamma ** (self._offset + i - 1) * self._value_scale
            out.append(min(max(value, self.min), self.max))
        return out

    def nbytes(self) -> int:
        """Bytes held by the bucket counts."""
        return self._counts.itemsize * len(self._counts)

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (
            f"<LogHistogram count={self.count} buckets={len(self._counts)} "
            f"relative_error={self.relative_error}>"
        )
