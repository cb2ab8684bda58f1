"""Durations: compute-time percentiles per task prefix, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from dask_monitor.events import Event, TaskStatus
from dask_monitor.observers._common import (
    MEMORY,
    PROCESSING,
    check_count,
    task_events,
)
from dask_monitor.observers.sketch import LogHistogram
from dask_monitor.snapshot import DurationStats

__all__ = ["DurationsObserver"]

_QUANTILES = (0.5, 0.9, 0.99)


class DurationsObserver:
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
        self._other = LogHistogram(self.relative_error)
        self._cache: dict[str, tuple[int, DurationStats]] = {}
        self.folded = 0

    # -- events ------------------------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; only ``processing -> memory`` ones count."""
        if not events:
            return
        tasks = cast("Sequence[TaskStatus]", events)
        try:  # AttributeError: a worker event or an alert is in the batch
            memory = [e for e in tasks if e.finish == MEMORY]
        except AttributeError:
            memory = [e for e in task_events(events) if e.finish == MEMORY]
        if not memory:
            return
        done = [e for e in memory if e.start == PROCESSING and e.duration is not None]
        if not done:
            return
        prefixes = [e.prefix for e in done]
        durations = cast("list[float]", [e.duration for e in done])
        first = prefixes[0]
        if prefixes.count(first) == len(prefixes):
            self._sketch(first).add_many(durations)
            return
        by_prefix: dict[str, list[float]] = {}
        for p, d in zip(prefixes, durations, strict=True):
            values = by_prefix.get(p)
            if values is None:
                by_prefix[p] = [d]
            else:
                values.append(d)
        for p, values in by_prefix.items():
            self._sketch(p).add_many(values)

    def _sketch(self, prefix: str) -> LogHistogram:
        sketch = self._sketches.get(prefix)
        if sketch is None:
            if len(self._sketches) < self.max_prefixes:
                sketch = self._sketches[prefix] = LogHistogram(self.relative_error)
            else:
                sketch = self._other
                self.folded += 1
        return sketch

    # -- reading -----------------------------------------------------------

    def prefix_names(self) -> list[str]:
        """Prefixes with a sketch of their own."""
        return list(self._sketches)

    def sketch(self, prefix: str) -> LogHistogram | None:
        """The sketch of a prefix (do not modify it), or ``None``."""
        return self._sketches.get(prefix)

    def quantile(self, prefix: str, q: float) -> float | None:
        """The ``q``-quantile of a prefix's durations; ``None`` without any."""
        sketch = self._sketches.get(prefix)
        return None if sketch is None else sketch.quantile(q)

    def stats(self, prefix: str) -> DurationStats:
        """Count, mean, p50, p90, p99 and max of a prefix's durations.

        All but ``count`` and ``relative_error`` are ``None`` for a prefix
        without durations (unknown, or folded).
        """
        sketch = self._sketches.get(prefix)
        if sketch is None or not sketch.count:
            return self._empty()
        cached = self._cache.get(prefix)
        if cached is not None and cached[0] == sketch.count:
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
        names = self._sketches if prefixes is None else prefixes
        return {name: self.stats(name) for name in names}
