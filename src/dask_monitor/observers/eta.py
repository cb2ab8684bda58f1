"""ETA: time until the remaining tasks are done.

The work left is counted per prefix, in thread-seconds: the prefix's remaining
tasks times its recent mean compute duration (a task now running counts as
half done). It is divided by the parallelism the cluster gives that work:
the threads holding tasks now, at most the tasks left; or, when far fewer
threads computed lately (Little's law: compute seconds finished per second,
from the workers' busy time) than hold tasks, that lower figure. Prefixes of
very different speeds are so weighted by what they cost, not by their count,
and an estimate exists as soon as a few tasks finished; tiny tasks, whose
pace the scheduler sets, keep the low parallelism they really get. Without
durations (no durations observer, or nothing finished yet) it falls back to
``remaining / rate``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

from dask_monitor.events import Event
from dask_monitor.observers._common import Clock, check_positive
from dask_monitor.observers.progress import ProgressObserver
from dask_monitor.observers.throughput import ThroughputObserver

if TYPE_CHECKING:
    from dask_monitor.observers.durations import DurationsObserver
    from dask_monitor.observers.workers import WorkersObserver

__all__ = ["Estimate", "EtaEstimator", "EtaSnapshot"]

#: ``(eta, low, high)`` in seconds; see :meth:`EtaEstimator.estimate`.
Estimate = tuple[float | None, float | None, float | None]

#: The share of its duration a running task still has ahead of it, on average.
_RUNNING_LEFT = 0.5
#: Below this share of the threads holding tasks computing lately, the
#: scheduler (not the threads) sets the pace: the parallelism is the busy time.
_COMPUTING = 0.5
#: Seconds between two checkpoints of a prefix's duration sums.
_CHECKPOINT_EVERY = 1.0


class EtaSnapshot(TypedDict):
    """What :meth:`EtaEstimator.snapshot` returns (seconds)."""

    eta: float | None
    eta_low: float | None
    eta_high: float | None


class _Model:
    """The work left and the parallelism, read once per point in time."""

    __slots__ = ("mean", "now", "parallel", "prefixes", "threads")

    def __init__(self, now: float) -> None:
        self.now = now
        # prefix -> (thread-seconds left, tasks left, busy threads lately)
        self.prefixes: dict[str, tuple[float, float, float]] = {}
        self.parallel = 0.0  # threads busy lately, over every prefix
        self.threads = 0  # threads of the running workers (0: unknown)
        self.mean: float | None = None  # recent mean duration, all prefixes


class EtaEstimator:
    """Estimated time to completion, from progress, durations and throughput.

    Not an observer of events: it reads the observers it is given when asked.

    Parameters
    ----------
    progress
        Gives the remaining tasks (per prefix).
    throughput
        Gives the recent rates (overall and per prefix) and their range.
    durations
        Gives the compute durations per prefix; without it the estimate is
        ``remaining / rate``.
    workers
        Gives the threads there are and those holding tasks now, and the
        compute seconds done (the parallelism lately).
    cluster_wide
        Whether the work counted is all the cluster's (the parallelism is
        then read from all the workers' busy time); a span's ETA sets it to
        ``False`` and takes its own prefixes' ``rate * duration`` instead.
    clock
        Returns the current time, at which rates are read.
    recent
        Seconds over which a prefix's mean duration is taken (the whole run's
        mean when nothing of it finished that recently).

    Notes
    -----
    The range is the estimate scaled by the spread of the recent rate (two
    standard errors of its per-bin rates, see
    :meth:`ThroughputObserver.rate_range`); ``high`` is ``None`` when the low
    end of the rate is zero. Needs no events of its own (:meth:`update_batch`
    does nothing): it keeps checkpoints of the durations observer's sums,
    taken when it is read. Subscribe it after the observers it reads, so that
    it is listed and reset with them. Not thread-safe.
    """

    name = "eta"

    def __init__(
        self,
        progress: ProgressObserver,
        throughput: ThroughputObserver,
        *,
        durations: DurationsObserver | None = None,
        workers: WorkersObserver | None = None,
        clock: Clock = time.time,
        recent: float = 5.0,
        cluster_wide: bool = True,
    ) -> None:
        self.progress = progress
        self.throughput = throughput
        self.durations = durations
        self.workers = workers
        self.clock = clock
        self.recent = check_positive("recent", recent)
        self.cluster_wide = cluster_wide
        self.reset()

    def update(self, event: Event) -> None:
        """Take one event (nothing to do)."""

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events (nothing to do)."""

    def reset(self) -> None:
        """Forget the duration checkpoints."""
        # prefix -> (time, count, sum of durations), oldest first
        self._checkpoints: dict[str, deque[tuple[float, int, float]]] = {}
        # (time, the workers' compute seconds), oldest first
        self._busy: deque[tuple[float, float]] = deque()
        self._model: _Model | None = None

    # -- reading -----------------------------------------------------------

    def estimate(
        self, prefix: str | None = None, *, now: float | None = None
    ) -> Estimate:
        """``(eta, low, high)`` in seconds, for all tasks or one prefix.

        ``(0.0, 0.0, 0.0)`` when nothing remains; ``(None, None, None)`` when
        tasks remain but there is nothing to estimate from (no duration and
        no recent finish); ``high`` is ``None`` when the low end of the rate
        range is zero.
        """
        remaining = self.progress.remaining(prefix)
        if remaining <= 0:
            return 0.0, 0.0, 0.0
        now = self.clock() if now is None else now
        rate = self.throughput.rate(prefix, now=now)
        eta = self._from_work(prefix, now)
        if eta is None:
            if rate <= 0:
                return None, None, None
            eta = remaining / rate
        if rate <= 0:
            rate = self.throughput.rate(now=now)
            low, high = self.throughput.rate_range(now=now)
        else:
            low, high = self.throughput.rate_range(prefix, now=now)
        if rate <= 0:
            return eta, eta, eta
        return (
            eta,
            min(eta, eta * rate / high) if high > 0 else None,
            max(eta, eta * rate / low) if low > 0 else None,
        )

    def snapshot(self) -> EtaSnapshot:
        """The overall estimate, as plain data."""
        eta, low, high = self.estimate()
        return {"eta": eta, "eta_low": low, "eta_high": high}

    # -- the work model ------------------------------------------------------

    def _from_work(self, prefix: str | None, now: float) -> float | None:
        """Thread-seconds left over the parallelism; ``None`` without durations."""
        if self.durations is None:
            return None
        model = self._model
        if model is None or model.now != now:
            model = self._model = self._build(now)
        if model.mean is None:
            return None
        if prefix is None:
            work = sum(w for w, _, _ in model.prefixes.values())
            tasks = sum(n for _, n, _ in model.prefixes.values())
            parallel = model.parallel
        else:
            entry = model.prefixes.get(prefix)
            if entry is None:
                return None
            work, tasks, parallel = entry
            if parallel <= 0:
                # Not running lately: it will get the threads the others
                # leave; as a first guess, all of them.
                parallel = float(model.threads or tasks)
        return _divide(work, tasks, parallel, model.threads)

    def _build(self, now: float) -> _Model:
        """Read the work left and the recent parallelism, per prefix."""
        model = _Model(now)
        durations = self.durations
        assert durations is not None
        throughput = self.throughput
        if self.workers is not None:
            model.threads = self.workers.threads()
        # Rows of the progress observer (read-only): remaining and processing.
        rows = self.progress._prefixes.rows
        other = self.progress._prefixes.other
        left: list[tuple[str, int, int]] = []
        for name, row in rows.items():
            remaining = row.remaining()
            if remaining > 0:
                left.append((name, remaining, row.states.get("processing", 0)))
        folded = other.remaining()
        processing = sum(p for _, _, p in left) + other.states.get("processing", 0)
        # Tasks processing beyond the threads wait on their worker.
        threads = model.threads
        running_share = (
            min(1.0, threads / processing) if threads and processing else 1.0
        )

        means: dict[str, float] = {}
        recent_count = 0
        recent_sum = 0.0
        checkpoints = self._checkpoints
        seen: dict[str, deque[tuple[float, int, float]]] = {}
        for name, _, _ in left:
            sketch = durations.sketch(name)
            if sketch is None or not sketch.count:
                continue
            marks = checkpoints.get(name)
            if marks is None:
                marks = deque()
            seen[name] = marks
            count, total = sketch.count, sketch.total
            if marks and now - marks[-1][0] > self.recent:
                # Not read for longer than the window: the latest mark may
                # predate finishes of another burst, which are no "recent".
                marks.clear()
            if not marks or now - marks[-1][0] >= _CHECKPOINT_EVERY:
                marks.append((now, count, total))
            horizon = now - self.recent
            while len(marks) > 1 and marks[1][0] <= horizon:
                marks.popleft()
            _, c0, s0 = marks[0]
            if count > c0:
                means[name] = (total - s0) / (count - c0)
                recent_count += count - c0
                recent_sum += total - s0
            else:
                means[name] = total / count
        self._checkpoints = seen  # prefixes with nothing left are forgotten
        if recent_count:
            model.mean = recent_sum / recent_count
        elif means:
            model.mean = sum(means.values()) / len(means)
        else:
            return model
        mean = model.mean
        parallel = 0.0
        for name, remaining, running in left:
            d = means.get(name, mean)
            work = (remaining - _RUNNING_LEFT * running * running_share) * d
            busy = throughput.rate(name, now=now) * d
            model.prefixes[name] = (max(work, 0.0), float(remaining), busy)
            parallel += busy
        if folded:
            share = other.states.get("processing", 0) * running_share
            work = (folded - _RUNNING_LEFT * share) * mean
            model.prefixes[""] = (max(work, 0.0), float(folded), 0.0)
        lately = self._busy_lately(now, mean) if self.cluster_wide else None
        if lately is not None:
            parallel = lately
        holding = self.workers.busy_threads() if self.workers is not None else 0
        if holding and (parallel <= 0 or parallel >= _COMPUTING * holding):
            # The threads holding tasks now: it follows a new stage or the
            # tail at once, where the busy time lately (counted as tasks
            # finish) lags by a task's length. Unless far fewer threads were
            # computing lately than held tasks: tasks too short for the
            # scheduler to keep the threads busy.
            parallel = float(holding)
        elif parallel <= 0:
            parallel = float(threads)  # nothing to go by: all the threads
        model.parallel = parallel
        return model

    def _busy_lately(self, now: float, mean: float) -> float | None:
        """Compute seconds finished per second over the recent window.

        Read from the workers' busy time at checkpoints; the window starts
        no earlier than the current burst of finishes (less a mean duration,
        when its first tasks began), so idle time before it does not count.
        """
        if self.workers is None:
            return None
        busy = self.workers.busy_seconds
        marks = self._busy
        if marks and now - marks[-1][0] > self.recent:
            marks.clear()  # as for durations: a stale mark is no base
        if not marks or now - marks[-1][0] >= _CHECKPOINT_EVERY:
            marks.append((now, busy))
        horizon = now - self.recent
        while len(marks) > 1 and marks[1][0] <= horizon:
            marks.popleft()
        t0, b0 = marks[0]
        burst = self.throughput.burst_start
        start = t0 if burst is None else max(t0, burst - mean)
        if busy <= b0 or now - start < _CHECKPOINT_EVERY:
            return None
        return (busy - b0) / (now - start)


def _divide(work: float, tasks: float, parallel: float, threads: int) -> float | None:
    """``work / parallel`` with the parallelism capped by threads and tasks left."""
    cap = min(threads, tasks) if threads else tasks
    parallel = min(parallel, cap) if cap > 0 else parallel
    if parallel <= 0:
        return None
    return work / parallel
