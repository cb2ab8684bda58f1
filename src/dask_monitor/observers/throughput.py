"""Throughput: tasks finished per time bin, and the recent rate.

A task finishes at ``processing -> memory`` or at a transition into
``erred`` (but from ``new``: a task that failed before the monitor attached
did not finish now). Events are binned by their own timestamp.

A batch is read as columns (:class:`~dask_monitor.batch.Batch`): the finishes
are the indices of the batch's ``memory`` and ``erred`` events with the right
start state, and each time bin takes a ``Counter`` of their prefixes; no
event object is made. The per-prefix work is per prefix and bin, not per
event.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from collections.abc import Sequence
from itertools import groupby

from dask_monitor.batch import as_batch, pick
from dask_monitor.events import NEW, Event
from dask_monitor.observers._common import (
    ERRED,
    MEMORY,
    BatchObserver,
    Clock,
    check_count,
    check_positive,
)
from dask_monitor.snapshot import Throughput

__all__ = ["ThroughputObserver"]

#: Parts of the rate window in a prefix's coarse ring.
_COARSE_SLOTS = 6
#: A prefix replaces the least active one with a series only when this much
#: more active (so that series are not dropped and restarted back and forth).
_HYSTERESIS = 1.5


class _Ring:
    """Counts of ``size`` consecutive time bins of ``width`` seconds.

    Bin ``b`` covers ``[b * width, (b + 1) * width)``; ``last`` is the latest
    bin written; bins before ``last - size + 1`` are gone.
    """

    __slots__ = ("counts", "last", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.counts = [0] * size
        self.last: int | None = None

    def add(self, b: int, n: int) -> bool:
        """Add ``n`` to bin ``b``; ``False`` (nothing added) if ``b`` is gone."""
        last = self.last
        size = self.size
        if last is None:  # every bin is still 0
            self.last = b
        elif b > last:
            counts = self.counts
            if b - last >= size:
                counts[:] = [0] * size
            else:
                for i in range(last + 1, b + 1):
                    counts[i % size] = 0
            self.last = b
        elif b <= last - size:
            return False
        self.counts[b % size] += n
        return True

    def window(self, lo: int, hi: int) -> list[int]:
        """Counts of bins ``lo`` to ``hi`` (inclusive); 0 for bins not held."""
        last = self.last
        if last is None or hi < lo:
            return [0] * max(0, hi - lo + 1)
        counts = self.counts
        size = self.size
        first = last - size + 1
        return [
            counts[b % size] if first <= b <= last else 0 for b in range(lo, hi + 1)
        ]


class _Rate(_Ring):
    """What the recent rate of one stream of finishes needs.

    A ring of bins covering the rate window (itself: one object a prefix),
    the start of the current burst of activity (the first finish after a
    pause longer than the window) and the time of the latest finish.
    """

    __slots__ = ("first", "latest")

    def __init__(self, size: int) -> None:
        self.size = size
        self.counts = [0] * size
        self.last = None
        self.first = 0.0
        self.latest = -math.inf

    def seen(self, t_first: float, t_last: float, window: float) -> None:
        if t_first - self.latest > window:
            self.first = t_first
        if t_last > self.latest:
            self.latest = t_last

    def recent(self, hi: int, nbins: int) -> int:
        """Finishes in the ``nbins`` bins up to bin ``hi``."""
        return sum(self.window(hi - nbins + 1, hi))

    def _bins(self, now: float, width: float, nbins: int) -> tuple[int, int]:
        """The complete bins of the window since the burst started: [lo, hi)."""
        hi = int(max(now, self.latest) // width)
        return max(hi - nbins, int(self.first // width)), hi

    def rate(
        self, now: float, width: float, nbins: int, window: float, min_span: float
    ) -> float:
        """Finishes per second in the window's complete bins.

        The bin in progress counts only while it is the only one since the
        burst started (the rate of the first seconds).
        """
        if self.last is None or now - self.latest > window:
            return 0.0
        lo, hi = self._bins(now, width, nbins)
        if lo < hi:
            count = sum(self.window(lo, hi - 1))
            span = hi * width - max(lo * width, self.first)
        else:
            count = sum(self.window(hi, hi))
            span = max(now, self.latest) - self.first
        return count / max(span, min_span)

    def spread(
        self, now: float, width: float, nbins: int, window: float, min_span: float
    ) -> tuple[float, float]:
        """``rate`` minus and plus two standard errors of the per-bin rates.

        The standard error comes from the complete bins of the window since
        the burst started; with fewer than two, the range is the rate itself.
        """
        rate = self.rate(now, width, nbins, window, min_span)
        if not rate:
            return 0.0, 0.0
        lo, hi = self._bins(now, width, nbins)
        rates = [c / width for c in self.window(lo, hi - 1)]
        n = len(rates)
        if n < 2:
            return rate, rate
        mean = sum(rates) / n
        var = sum([(r - mean) ** 2 for r in rates]) / (n - 1)
        se = math.sqrt(var / n)
        return max(0.0, rate - 2 * se), rate + 2 * se


class ThroughputObserver(BatchObserver):
    """Tasks finished per time bin, overall and for the most active prefixes.

    Parameters
    ----------
    bin_seconds
        Width of a time bin.
    bins
        Bins kept in the ring (``bins * bin_seconds`` of history); a finish
        older than that is counted in ``late`` (and ``total``) only.
    top_prefixes
        Prefixes with a series of their own: the most active ones (finishes
        in the rate window). Each costs ``bins`` integers.
    clock
        Returns the current time; ``snapshot`` and the rates look back from it.
    window
        Seconds over which :meth:`rate` averages: short, so that the rate is
        the current pace (a burst after a pause reads its own rate, and the
        rate falls to 0 this long after the last finish).
    max_prefixes
        Prefixes with a recent-rate state (a ring of 6 coarse bins, about
        200 bytes); when the table is full, prefixes idle for longer than the
        window are dropped, and finishes of prefixes that still do not fit
        are counted in :attr:`untracked` only.

    Notes
    -----
    :meth:`rate` is the number of finishes in the complete bins of the last
    ``window`` seconds (or since activity resumed after a longer pause)
    divided by the time they cover (which ends now, so the rate decays to 0
    when nothing finishes), so a rate that varies from bin to bin
    (bursts of completions) does not make it jump; in the very first bin of a
    burst it is the finishes so far over the time since the first one (at
    least a bin). Prefixes use bins of a sixth of the window, so their rate
    lags by up to that much. :meth:`rate_range` widens the rate by two
    standard errors of the per-bin rates. Not thread-safe: feed and read it
    from one thread.
    """

    name = "throughput"

    def __init__(
        self,
        *,
        bin_seconds: float = 1.0,
        bins: int = 300,
        top_prefixes: int = 10,
        clock: Clock = time.time,
        window: float = 5.0,
        max_prefixes: int = 10_000,
    ) -> None:
        self.bin_seconds = check_positive("bin_seconds", bin_seconds)
        self.bins = check_count("bins", bins)
        if isinstance(top_prefixes, bool) or not isinstance(top_prefixes, int):
            raise ValueError(f"top_prefixes must be an int, got {top_prefixes!r}")
        if top_prefixes < 0:
            raise ValueError(f"top_prefixes must be >= 0, got {top_prefixes!r}")
        self.top_prefixes = top_prefixes
        self.window = check_positive("window", window)
        self.max_prefixes = check_count("max_prefixes", max_prefixes)
        self.clock = clock
        # The rate window in fine bins, and in coarse bins for prefixes.
        self._nbins = max(1, round(self.window / self.bin_seconds))
        self._coarse = max(1, round(self._nbins / _COARSE_SLOTS))
        self._coarse_width = self._coarse * self.bin_seconds
        self._ncoarse = math.ceil(self._nbins / self._coarse)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self._ring = _Ring(self.bins)
        self._rate = _Rate(self._nbins + 1)
        self._first_bin: int | None = None
        self._prefixes: dict[str, _Rate] = {}
        self._series: dict[str, _Ring] = {}
        self._next_scan = -math.inf
        # The first task event seen (any transition), the start of the run.
        self._first_event: float | None = None
        self.total = 0
        self.late = 0
        self.untracked = 0

    # -- events ------------------------------------------------------------

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, in the order they happened."""
        if not events:
            return
        batch = as_batch(events)
        if self._first_event is None and batch.keys:
            self._first_event = batch.timestamp(0)
        memory = batch.has_finish(MEMORY)
        erred = batch.has_finish(ERRED)
        if not memory and not erred:
            return
        starts = batch.starts
        finished: Sequence[int] = batch.completions() if memory else ()
        if erred:
            failed = [i for i in batch.where_finish(ERRED) if starts[i] != NEW]
            if failed:
                finished = sorted([*finished, *failed]) if finished else failed
        if not finished:
            return
        self.total += len(finished)
        width = self.bin_seconds
        prefixes = batch.prefixes
        times = batch.times
        if times is None or times[finished[0]] == times[finished[-1]]:
            t = batch.timestamp(finished[0])
            self._bin(int(t // width), t, t, pick(prefixes, finished))
            return
        for b, run in groupby(finished, key=lambda i: int(times[i] // width)):
            part = list(run)
            names = [prefixes[i] for i in part]
            # Events at different times (the plugin stamps a batch with one):
            # each prefix's burst starts at its own first finish.
            own: dict[str, tuple[float, float]] = {}
            for name, i in zip(names, part, strict=True):
                seen = own.get(name)
                own[name] = (
                    (times[i], times[i]) if seen is None else (seen[0], times[i])
                )
            self._bin(b, times[part[0]], times[part[-1]], names, own)

    def _bin(
        self,
        b: int,
        t_first: float,
        t_last: float,
        names: list[str],
        own: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        """Count the finishes of one bin (``names``: their prefixes; ``own``:
        each prefix's first and last finish in it, if not ``t_first`` and
        ``t_last``)."""
        n = len(names)
        if not self._ring.add(b, n):
            self.late += n
            return
        if self._first_bin is None or b < self._first_bin:
            self._first_bin = b
        window = self.window
        overall = self._rate
        overall.add(b, n)
        overall.seen(t_first, t_last, window)

        coarse = b // self._coarse
        size = self._ncoarse + 1
        slot = coarse % size
        fine = b % self.bins
        table = self._prefixes
        room = self.max_prefixes
        get = table.get
        get_series = self._series.get
        top = self.top_prefixes
        candidates: list[tuple[_Rate, str]] = []
        counts = Counter(names)
        for prefix, c in counts.items():
            state = get(prefix)
            if state is None:
                if len(table) < room:
                    state = table[prefix] = _Rate(size)
                    state.last = coarse  # its first bin (all are 0)
                else:
                    state = self._new_prefix(prefix)
                    if state is None:
                        self.untracked += c
                        continue
            if state.last == coarse:  # _Ring.add, inlined for the common case
                state.counts[slot] += c
            else:
                state.add(coarse, c)
            p_first, p_last = (t_first, t_last) if own is None else own[prefix]
            latest = state.latest  # _Rate.seen, inlined
            if p_first - latest > window:
                state.first = p_first
            if p_last > latest:
                state.latest = p_last
            series = get_series(prefix)
            if series is not None:
                if series.last == b:
                    series.counts[fine] += c
                else:
                    series.add(b, c)
            elif top:
                candidates.append((state, prefix))
        if candidates:
            self._promote(candidates, b, coarse, counts)

    def _new_prefix(self, prefix: str) -> _Rate | None:
        table = self._prefixes
        if len(table) >= self.max_prefixes:
            # Drop the prefixes without a recent finish, all at once and at
            # most once a window (of event time), so that scans stay rare.
            now = self._rate.latest
            if now < self._next_scan:
                return None
            self._next_scan = now + self.window
            horizon = now - self.window
            for name in [n for n, s in table.items() if s.latest < horizon]:
                del table[name]
                self._series.pop(name, None)
            if len(table) >= self.max_prefixes:
                return None
        state = table[prefix] = _Rate(self._ncoarse + 1)
        return state

    def _promote(
        self,
        candidates: list[tuple[_Rate, str]],
        b: int,
        coarse: int,
        counts: Counter[str],
    ) -> None:
        """Give series to the most active prefixes that have none."""
        series = self._series
        top = self.top_prefixes
        table = self._prefixes
        n = self._ncoarse
        # A prefix replaces the least active holder only when clearly busier;
        # the sum of a ring (stale bins included) bounds its recent count.
        bar = -1.0
        if len(series) >= top:
            bar = min(table[p].recent(coarse, n) for p in series) * _HYSTERESIS
        ranked = [
            (state.recent(coarse, n), prefix)
            for state, prefix in candidates
            if sum(state.counts) > bar
        ]
        for recent, prefix in heapq.nlargest(top, ranked):
            if len(series) >= top:
                held = min((table[p].recent(coarse, n), p) for p in series)
                if recent <= held[0] * _HYSTERESIS:
                    break
                del series[held[1]]
            ring = series[prefix] = _Ring(self.bins)
            ring.add(b, counts[prefix])

    # -- reading -----------------------------------------------------------

    def rate(self, prefix: str | None = None, *, now: float | None = None) -> float:
        """Recent finishes per second, of all tasks or of one prefix.

        ``0.0`` when nothing finished in the last ``window`` seconds (or the
        prefix is unknown).
        """
        now = self.clock() if now is None else now
        width = self.bin_seconds
        if prefix is None:
            return self._rate.rate(now, width, self._nbins, self.window, width)
        state = self._prefixes.get(prefix)
        if state is None:
            return 0.0
        return state.rate(now, self._coarse_width, self._ncoarse, self.window, width)

    def rate_range(
        self, prefix: str | None = None, *, now: float | None = None
    ) -> tuple[float, float]:
        """``(low, high)`` plausible recent rates; ``(0.0, 0.0)`` when idle.

        The rate minus and plus two standard errors of the per-bin rates in
        the window (fine bins overall, coarse ones for a prefix).
        """
        now = self.clock() if now is None else now
        width = self.bin_seconds
        if prefix is None:
            return self._rate.spread(now, width, self._nbins, self.window, width)
        state = self._prefixes.get(prefix)
        if state is None:
            return 0.0, 0.0
        return state.spread(now, self._coarse_width, self._ncoarse, self.window, width)

    @property
    def first_event(self) -> float | None:
        """Time of the first task event seen (``None`` before any)."""
        return self._first_event

    @property
    def latest_finish(self) -> float | None:
        """Time of the latest finish (``None`` before any)."""
        latest = self._rate.latest
        return None if latest == -math.inf else latest

    @property
    def burst_start(self) -> float | None:
        """Time of the first finish after the latest pause longer than the window."""
        return None if self._rate.last is None else self._rate.first

    def run_seconds(self) -> float | None:
        """Seconds from the first task event to the latest finish.

        ``None`` before any finish.
        """
        latest = self._rate.latest
        if self._first_event is None or latest == -math.inf:
            return None
        return max(0.0, latest - self._first_event)

    def average_rate(self) -> float | None:
        """Finishes per second over :meth:`run_seconds` (the whole run).

        ``None`` before any finish, or when the run took no time at all
        (every event at one instant: a count over no time is no rate).
        """
        run = self.run_seconds()
        if not run or self.total == 0:
            return None
        return self.total / run

    def snapshot(self) -> Throughput:
        """Finishes per bin up to the bin of ``clock()``, oldest first, as plain data.

        The series starts at the first bin with a finish, or ``bins`` bins ago.
        """
        width = self.bin_seconds
        now_bin = int(self.clock() // width)
        ring = self._ring
        if ring.last is not None:
            now_bin = max(now_bin, ring.last)
        first = now_bin if self._first_bin is None else self._first_bin
        lo = max(first, now_bin - self.bins + 1)
        coarse = int(self.clock() // self._coarse_width)
        order = sorted(
            self._series,
            key=lambda p: (-self._prefixes[p].recent(coarse, self._ncoarse), p),
        )
        return {
            "bin": width,
            "start": lo * width,
            "counts": ring.window(lo, now_bin),
            "prefixes": {p: self._series[p].window(lo, now_bin) for p in order},
            "total": self.total,
            "late": self.late,
        }
