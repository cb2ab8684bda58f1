"""Durations: compute-time percentiles per task prefix, in bounded memory.

A batch is read as columns (:class:`~dask_monitor.batch.Batch`): the
durations of its ``processing -> memory`` events come from the sparse
details table (completions and errors only, in batch order), without a scan
of the whole batch and without making event objects.

Durations wait in a list per prefix and go to the prefix's sketch in one
``add_many`` call when :data:`_FLUSH_AT` of them wait or when anything is
read: a sketch's set-up cost per call (NumPy's, or a new sketch's) is then
paid once per prefix for many batches. What is read is the same as if every
batch had gone straight to the sketches (but for the rounding of the sum).

The same flush counts each prefix's durations in the fixed buckets of
:data:`~dask_monitor.snapshot.DURATION_BUCKETS` (exact counts, for
Prometheus' histogram): one ``searchsorted`` and ``bincount`` over the values
a prefix's sketch gets as an array anyway, or a ``bisect`` per value for a
handful, so a completion costs a few tens of nanoseconds more.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate

from dask_monitor.batch import as_batch
from dask_monitor.events import Event
from dask_monitor.observers._common import (
    BatchObserver,
    check_count,
)
from dask_monitor.observers.sketch import LogHistogram
from dask_monitor.snapshot import DURATION_BUCKETS, DurationStats

try:  # the sketch's own optional dependency; counts do not depend on it
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional at run time
    np = None  # type: ignore[assignment]

__all__ = ["DurationsObserver"]

_QUANTILES = (0.5, 0.9, 0.99)
#: Durations kept waiting for their sketches at most (about 32 bytes each).
_FLUSH_AT = 16_384
#: Values of one prefix from which a flush counts buckets with NumPy.
_FEW = 48
_BOUNDS = DURATION_BUCKETS
_NP_BOUNDS = None if np is None else np.asarray(_BOUNDS, dtype=np.float64)


class DurationsObserver(BatchObserver):
    """Streaming statistics of compute durations, per task prefix.

    Each prefix gets a :class:`~dask_monitor.observers.sketch.LogHistogram`
    fed with the ``duration`` of its ``processing -> memory`` events (events
    without a duration are skipped).

    Parameters
    ----------
    relative_error
        Relative error of the reported quantiles, in ``(0, 0.02]``.
    max_prefixes
        Prefixes with a sketch of their own (about 1 KB each for durations
        spanning two decades, at most 8 KB); durations of further prefixes go
        to one internal catch-all sketch and are counted in :attr:`folded`.

    Notes
    -----
    Not thread-safe: feed and read it from one thread (the pipeline's).
    """

    name = "durations"

    def __init__(
        self, *, relative_error: float = 0.01, max_prefixes: int = 10_000
    ) -> None:
        if not 0 < relative_error <= 0.02:
            raise ValueError(
                f"relative_error must be in (0, 0.02], got {relative_error!r}"
            )
        self.relative_error = float(relative_error)
        self.max_prefixes = check_count("max_prefixes", max_prefixes)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self._sketches: dict[str, LogHistogram] = {}
        # Per prefix with a sketch: durations per fixed bucket (not
        # cumulative; the last one counts those above the last bound). An
        # array, not a list: the garbage collector does not walk it.
        self._buckets: dict[str, array[int]] = {}
        self._other = LogHistogram(self.relative_error)
        self._cache: dict[str, tuple[int, DurationStats]] = {}
        # Durations not yet in a sketch: per prefix with a sketch of its own
        # (made at the flush for a new prefix), and those of folded prefixes.
        self._pending: dict[str, list[float]] = {}
        self._pending_other: list[float] = []
        self._unborn = 0  # prefixes in _pending without a sketch yet
        self._waiting = 0  # durations in _pending and _pending_other
        self.folded = 0

    # -- events ------------------------------------------------------------

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; only ``processing -> memory`` ones count."""
        if not events:
            return
        batch = as_batch(events)
        details = batch.details
        if not details:
            return
        done = [i for i in batch.timed_completions() if details[i][0] is not None]
        if not done:
            return
        prefixes = batch.prefixes
        pending = self._pending
        get = pending.get
        folded: list[str] = []
        for i in done:
            p = prefixes[i]
            values = get(p)
            if values is None:
                values = self._start(p, folded)
            values.append(details[i][0])  # type: ignore[arg-type]
        for p in folded:  # they stood for the catch-all in this batch only
            del pending[p]
        self._waiting += len(done)
        if self._waiting >= _FLUSH_AT:
            self._flush()

    def _start(self, prefix: str, folded: list[str]) -> list[float]:
        """The list of waiting durations of a prefix not in ``_pending``."""
        pending = self._pending
        if prefix in self._sketches:
            values: list[float] = []
        elif len(self._sketches) + self._unborn < self.max_prefixes:
            values = []
            self._unborn += 1
        else:  # folded: counted once a batch, like a sketch looked up per batch
            values = self._pending_other
            self.folded += 1
            folded.append(prefix)
        pending[prefix] = values
        return values

    def _flush(self) -> None:
        """Put the waiting durations into their sketches."""
        if not self._waiting:
            return
        sketches = self._sketches
        buckets = self._buckets
        error = self.relative_error
        size = len(_BOUNDS) + 1
        for prefix, values in self._pending.items():
            sketch = sketches.get(prefix)
            if sketch is None:
                sketch = sketches[prefix] = LogHistogram(error)
                buckets[prefix] = array("q", bytes(8 * size))
            counts = buckets[prefix]
            if len(values) < _FEW or np is None:
                for x in values:
                    counts[bisect_left(_BOUNDS, x)] += 1
                sketch.add_many(values)
                continue
            column = np.asarray(values, dtype=np.float64)
            index = np.searchsorted(_NP_BOUNDS, column, side="left")
            for i, n in enumerate(np.bincount(index, minlength=size).tolist()):
                counts[i] += n
            sketch.add_many(column)  # type: ignore[arg-type]
        if self._pending_other:
            self._other.add_many(self._pending_other)
        self._pending = {}
        self._pending_other = []
        self._unborn = 0
        self._waiting = 0

    # -- reading -----------------------------------------------------------

    def prefix_names(self) -> list[str]:
        """Prefixes with a sketch of their own."""
        self._flush()
        return list(self._sketches)

    def sketch(self, prefix: str) -> LogHistogram | None:
        """The sketch of a prefix (do not modify it), or ``None``."""
        self._flush()
        return self._sketches.get(prefix)

    def quantile(self, prefix: str, q: float) -> float | None:
        """The ``q``-quantile of a prefix's durations; ``None`` without any."""
        self._flush()
        sketch = self._sketches.get(prefix)
        return None if sketch is None else sketch.quantile(q)

    def stats(self, prefix: str) -> DurationStats:
        """Count, mean, p50, p90, p99, max and fixed buckets of a prefix's durations.

        ``buckets`` are cumulative counts at the bounds of
        :data:`~dask_monitor.snapshot.DURATION_BUCKETS` (shared with the
        observer's cache until the next duration: do not modify). For a prefix without
        durations (unknown, or folded) all but ``count`` and
        ``relative_error`` are ``None`` and ``buckets`` is absent.
        """
        self._flush()
        sketch = self._sketches.get(prefix)
        if sketch is None or not sketch.count:
            return self._empty()
        cached = self._cache.get(prefix)
        if cached is not None and cached[0] == sketch.count:
            # A shallow copy: ``buckets`` is shared (copying it for every
            # prefix at every snapshot cost more than the rest of a read).
            return dict(cached[1])  # type: ignore[return-value]
        p50, p90, p99 = sketch.quantiles(_QUANTILES)
        stats: DurationStats = {
            "count": sketch.count,
            "mean": sketch.mean,
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "max": sketch.max,
            "relative_error": self.relative_error,
            "buckets": list(accumulate(self._buckets[prefix][:-1])),
        }
        self._cache[prefix] = (sketch.count, stats)
        return dict(stats)  # type: ignore[return-value]

    def _empty(self) -> DurationStats:
        return {
            "count": 0,
            "mean": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
            "relative_error": self.relative_error,
        }

    def snapshot(
        self, prefixes: Iterable[str] | None = None
    ) -> dict[str, DurationStats]:
        """Stats of the given prefixes (all with a sketch when ``None``), as plain data.

        Every requested name gets an entry, empty stats for one without
        durations.
        """
        self._flush()
        names = self._sketches if prefixes is None else prefixes
        return {name: self.stats(name) for name in names}
