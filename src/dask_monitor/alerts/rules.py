"""Alert rules: observers of task events that emit :class:`~dask_monitor.events.Alert`.

A rule sees the same event batches as the other observers (never the
scheduler) and, for conditions that need time to pass without events (a stall,
a straggler), a periodic :meth:`AlertRule.tick`. Each rule has a cooldown per
``(kind, subject)`` so that one problem does not flood subscribers. All
timestamps come from event timestamps or from the ``now`` given to ``tick``,
so rules are testable with synthetic events and a fake clock.

The built-in rules read a batch as columns (:func:`~dask_monitor.batch.as_batch`,
which turns a plain list of events into a :class:`~dask_monitor.batch.Batch`):
counts of states, index lists and C-speed scans, a dictionary update for the
tasks entering ``processing``; they make a
:class:`~dask_monitor.events.TaskStatus` only for an alert that names a task.
Where the order of the events within a batch changes the outcome (the count of
active tasks dropping to zero, a task entering and leaving ``processing`` in
one batch, a full table) they follow it, event by event if they must.

This module does not import Dask.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, ClassVar, Protocol

from dask_monitor.batch import Batch, as_batch, key_text, pick, uniform
from dask_monitor.config import (
    AlertsConfig,
    ErrorBurstSettings,
    StallSettings,
    StragglerSettings,
    WorkerLostSettings,
)
from dask_monitor.events import NEW, Alert, Event, TaskStatus, WorkerStatus
from dask_monitor.observers.errors import CAUSE_TAG

__all__ = [
    "ERROR_BURST",
    "STALL",
    "STRAGGLER",
    "TOPIC",
    "WORKER_LOST",
    "AlertLog",
    "AlertRule",
    "ErrorBurstRule",
    "StallRule",
    "StragglerRule",
    "WorkerLostRule",
    "default_rules",
    "topics",
]

logger = logging.getLogger(__name__)

STALL = "stall"
ERROR_BURST = "error-burst"
STRAGGLER = "straggler"
WORKER_LOST = "worker-lost"

#: Dask event topic of every alert; ``f"{TOPIC}-{kind}"`` carries one kind.
TOPIC = "dask-monitor-alerts"

# The rules' defaults are their settings' defaults: one place for them.
_STALL = StallSettings()
_BURST = ErrorBurstSettings()
_STRAGGLER = StragglerSettings()
_LOST = WorkerLostSettings()

_ACTIVE = frozenset({"waiting", "queued", "processing", "no-worker"})
_NOT_AN_ERROR_SOURCE = frozenset({"waiting", "erred", NEW})
_MAX_COOLDOWNS = 10_000
_PROCESSING = "processing"
_MEMORY = "memory"
_ERRED = "erred"
_FORGOTTEN = "forgotten"


def topics(kind: str) -> list[str]:
    """The Dask event topics an alert of ``kind`` is logged under."""
    return [TOPIC, f"{TOPIC}-{kind}"]


def _finished(batch: Batch, state: str) -> Sequence[int]:
    """Indices of the task events of ``batch`` that reached ``state``.

    A batch of one finish state is answered without the batch's shared
    index (:meth:`~dask_monitor.batch.Batch.where_finish`), others with it
    (built only if ``state`` is there).
    """
    finishes = batch.finishes
    if not finishes:
        return ()
    if uniform(finishes):
        return range(len(finishes)) if finishes[0] == state else ()
    if not batch.has_finish(state):
        return ()
    return batch.where_finish(state)


def _state_pairs(
    counts: Counter[tuple[str, str, str, str]],
) -> dict[tuple[str, str], int]:
    """Counts per ``(start, finish)`` of counts per (group, prefix, start, finish)."""
    pairs: dict[tuple[str, str], int] = {}
    get = pairs.get
    for (_, _, s0, f), c in counts.items():
        pairs[s0, f] = get((s0, f), 0) + c
    return pairs


def _follow(batch: Batch, active: int) -> tuple[int, int]:
    """The stall rule's count of active tasks through ``batch``, in order.

    Returns the final count (not clipped) and the index of the last event
    that made work appear while none was pending (``-1`` if none did).
    """
    last = -1
    contains = _ACTIVE.__contains__
    for i, (was, now) in enumerate(
        zip(map(contains, batch.starts), map(contains, batch.finishes), strict=True)
    ):
        if was != now:
            if now:
                if active <= 0:
                    active = 0
                    last = i
                active += 1
            else:
                active -= 1
    return active, last


def _from_processing(batch: Batch, rows: Sequence[int]) -> Sequence[int]:
    """The ``rows`` (indices, in order) of task events that left ``processing``."""
    starts = batch.starts
    if type(rows) is range and rows.stop - rows.start == len(starts):
        return batch.where_start(_PROCESSING)
    left = pick(starts, rows)
    if left.count(_PROCESSING) == len(left):
        return rows
    return [i for i, s in zip(rows, left, strict=True) if s == _PROCESSING]


def _last_progress(
    starts: list[str], finishes: list[str], finish: str | None, erred: bool = True
) -> int:
    """Index of the last completion (``memory``, or ``erred`` from ``processing``).

    ``-1`` if there is none; ``finish`` is the finish state of every event,
    if they have one; ``erred``: whether any event erred (else errors are
    not looked for). Scans from the end, at C speed.
    """
    n = len(finishes)
    if finish is not None:
        if finish == _MEMORY:
            return n - 1
        if finish == _ERRED and _PROCESSING in starts:
            return n - 1 - starts[::-1].index(_PROCESSING)
        return -1
    try:
        last = n - 1 - finishes[::-1].index(_MEMORY)
    except ValueError:
        last = -1
    if not erred:
        return last
    i = last
    index = finishes.index
    progress = last
    while True:  # errors from processing after it
        try:
            i = index(_ERRED, i + 1)
        except ValueError:
            return progress
        if starts[i] == _PROCESSING:
            progress = i


def _completed(batch: Batch, lo: int, hi: int) -> list[str]:
    """Prefixes of the task events ``lo`` to ``hi`` from processing to memory."""
    if lo == 0 and hi == len(batch.keys):
        memory = _finished(batch, _MEMORY)
        if not memory:
            return []
        return pick(batch.prefixes, _from_processing(batch, memory))
    finishes = batch.finishes[lo:hi]
    if finishes.count(_MEMORY) == hi - lo:  # all completions (between errors)
        starts = batch.starts[lo:hi]
        if starts.count(_PROCESSING) == hi - lo:
            return batch.prefixes[lo:hi]
    memory = batch.where_finish(_MEMORY)
    rows = memory[bisect_left(memory, lo) : bisect_left(memory, hi)]
    return pick(batch.prefixes, _from_processing(batch, rows))


class _Sketches(Protocol):
    """What the straggler rule needs of the durations observer."""

    def sketch(self, prefix: str) -> Any: ...


class AlertRule:
    """Base class of alert rules: an observer that emits alerts, with a cooldown.

    Subclass it, set :attr:`kind`, and override :meth:`update_batch` (events)
    and/or :meth:`tick` (time passing); call :meth:`emit` to raise an alert.
    Subscribe an instance like any observer (``Monitor.attach(client,
    observers=[MyRule()])``): the pipeline binds it to its alert subject and
    ticks it on every flush.

    ``update_batch`` gets a sequence of events in the order they happened:
    from the pipeline a :class:`~dask_monitor.batch.Batch`, which iterates
    as :class:`~dask_monitor.events.TaskStatus` and other events (made on
    first use) and also offers its columns; a list when called directly.
    ``as_batch(events)`` gives the columns of either.

    Parameters
    ----------
    cooldown
        Seconds during which a second alert with the same ``(kind, subject)``
        is suppressed (counted in :attr:`suppressed`); ``0`` for none.

    Notes
    -----
    Not thread-safe: the pipeline calls it from one thread. Exceptions raised
    by a rule are isolated by the pipeline's subject (logged once, counted).
    """

    #: Kind of the alerts the rule emits.
    kind: ClassVar[str] = "custom"

    def __init__(self, *, cooldown: float = 60.0) -> None:
        if isinstance(cooldown, bool) or not cooldown >= 0:
            raise ValueError(f"cooldown must be >= 0 seconds, got {cooldown!r}")
        self.cooldown = float(cooldown)
        self.name = getattr(self, "name", type(self).__name__)
        self.fired = 0
        self.suppressed = 0
        self._sink: Callable[[Alert], object] | None = None
        self._last: dict[tuple[str, str | None], float] = {}

    def bind(self, sink: Callable[[Alert], object] | None) -> None:
        """Send emitted alerts to ``sink`` (the pipeline does this)."""
        self._sink = sink

    @property
    def bound(self) -> bool:
        """Whether the rule has somewhere to send its alerts."""
        return self._sink is not None

    def emit(self, alert: Alert, subject: str | None = None) -> bool:
        """Send ``alert`` unless one of its ``(kind, subject)`` is cooling down.

        Parameters
        ----------
        alert
            The alert; its ``timestamp`` is the time used for the cooldown.
        subject
            What the cooldown is kept for: a prefix, a worker, or ``None``
            (the whole cluster).

        Returns
        -------
        bool
            ``True`` if the alert was sent, ``False`` if suppressed.
        """
        key = (alert.kind, subject)
        last = self._last.get(key)
        if last is not None and alert.timestamp - last < self.cooldown:
            self.suppressed += 1
            return False
        if len(self._last) >= _MAX_COOLDOWNS and key not in self._last:
            self._forget_cooldowns(alert.timestamp)
        self._last[key] = alert.timestamp
        self.fired += 1
        sink = self._sink
        if sink is None:
            logger.warning(
                "alert rule %s is not bound; alert lost: %s", self.name, alert
            )
        else:
            sink(alert)
        return True

    def cooling(self, subject: str | None, now: float, kind: str | None = None) -> bool:
        """Whether an alert about ``subject`` at ``now`` would be suppressed.

        Time-based rules check this before building an alert, so that a
        condition that lasts is not counted as suppressed on every tick.
        """
        last = self._last.get((kind or self.kind, subject))
        return last is not None and now - last < self.cooldown

    def _forget_cooldowns(self, now: float) -> None:
        expired = [k for k, t in self._last.items() if now - t >= self.cooldown]
        for k in expired:
            del self._last[k]
        if len(self._last) >= _MAX_COOLDOWNS:  # still full: drop the oldest half
            oldest = sorted(self._last, key=self._last.__getitem__)
            for k in oldest[: len(oldest) // 2]:
                del self._last[k]

    # -- observer interface --------------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, a ``Sequence`` in order (override)."""

    def tick(self, now: float) -> None:
        """Time passed (called on every flush, even without events; override)."""

    def reset(self) -> None:
        """Forget task state (Dask restarted); cooldowns are kept."""

    def restart(self) -> None:
        """Dask restarted: forget the task state it forgot (by default
        :meth:`reset`). Alerts fired, counts and cooldowns stay."""
        self.reset()

    def reconcile(self, processing: Collection[Any], active: int) -> None:
        """Transitions were dropped: set task state to what the scheduler has.

        ``processing`` holds the keys processing now, ``active`` the number
        of tasks waiting, queued, no-worker or processing (override).
        """

    def stats(self) -> dict[str, Any]:
        """Alerts fired and suppressed, as plain data."""
        return {"kind": self.kind, "fired": self.fired, "suppressed": self.suppressed}


class StallRule(AlertRule):
    """Tasks are waiting or processing, but none has finished for ``seconds``.

    Counts tasks in ``waiting``, ``queued``, ``processing`` and ``no-worker``
    from the transitions it sees; a task reaching ``memory`` or ``erred``
    counts as progress. The stall clock starts at the last progress, or when
    work appeared after an idle period.
    """

    kind = STALL

    @classmethod
    def from_settings(cls, settings: StallSettings) -> StallRule:
        """The rule as ``monitor.alerts.stall`` sets it up."""
        return cls(seconds=settings.seconds, cooldown=settings.cooldown)

    def __init__(
        self, *, seconds: float = _STALL.seconds, cooldown: float = _STALL.cooldown
    ) -> None:
        super().__init__(cooldown=cooldown)
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds!r}")
        self.seconds = float(seconds)
        self.reset()

    def reset(self) -> None:
        """Forget the counts (Dask restarted)."""
        self.active = 0
        self.processing = 0
        self.since: float | None = None

    def reconcile(self, processing: Collection[Any], active: int) -> None:
        """Take the scheduler's counts: dropped transitions left ours wrong."""
        self.processing = len(processing)
        self.active = active

    def update_batch(self, events: Sequence[Event]) -> None:
        """Count active tasks; note the time of the latest progress.

        Read as columns (see :func:`~dask_monitor.batch.as_batch`): counts
        of the states entered and left give the new counts (a column of one
        state is counted at once), and the latest progress is found by
        scanning the finish states from the end. Only the times the count
        of active tasks drops to zero within the batch depend on the order:
        they are followed event by event when that can happen (work appears
        and fewer tasks are active than events leave an active state).
        """
        batch = as_batch(events)
        starts = batch.starts
        n = len(starts)
        if not n:
            return
        finishes = batch.finishes
        start = starts[0] if uniform(starts) else None
        finish = finishes[0] if uniform(finishes) else None
        processing = self.processing
        if start is not None and finish is not None:
            leaving = n if start in _ACTIVE else 0
            processing -= n if start == _PROCESSING else 0
            entering = n if finish in _ACTIVE else 0
            processing += n if finish == _PROCESSING else 0
        else:  # from counts of (start, finish): a few keys
            leaving = entering = 0
            shared = batch.counted()
            pairs: Mapping[tuple[str, str], int] = (
                Counter(zip(starts, finishes, strict=True))
                if shared is None
                else _state_pairs(shared)
            )
            # A move from an active state to another (``waiting ->
            # processing``) changes no count of active tasks: not counted.
            for (s0, f), c in pairs.items():
                if s0 in _ACTIVE:
                    if f not in _ACTIVE:
                        leaving += c
                    if s0 == _PROCESSING:
                        processing -= c
                if f in _ACTIVE:
                    if s0 not in _ACTIVE:
                        entering += c
                    if f == _PROCESSING:
                        processing += c
        # Tasks becoming active, and no longer: known for one kind of
        # transition, else bounded by the counts of states entered and left.
        ups, downs = entering, leaving
        if start is not None and finish is not None and ups == downs:
            ups = downs = 0  # from an active state to another, or neither
        active = self.active
        if not ups or active > downs:
            # No task becomes active, or the count cannot come back to zero.
            active += entering - leaving
            last = -1
        elif start is not None and finish is not None:
            # Every event makes a task active, none pending before.
            active += entering
            last = 0
        elif not leaving:
            # Nothing leaves the active states (a graph arriving): work appears
            # with the first task that becomes active, none pending before.
            contains = _ACTIVE.__contains__
            last = next(
                i
                for i, (s0, f) in enumerate(zip(starts, finishes, strict=True))
                if contains(f) and not contains(s0)
            )
            active = entering
        else:
            active, last = _follow(batch, active)
        progress = _last_progress(starts, finishes, finish, batch.has_finish(_ERRED))
        if progress > last:
            last = progress
        if last >= 0:
            self.since = batch.timestamp(last)
        self.active = max(active, 0)
        self.processing = max(processing, 0)

    def tick(self, now: float) -> None:
        """Emit an alert if work is pending and nothing finished for too long."""
        since = self.since
        if self.active <= 0 or since is None:
            return
        idle = now - since
        if idle < self.seconds or self.cooling(None, now):
            return
        self.emit(
            Alert(
                kind=STALL,
                severity="warning",
                message=(
                    f"No task finished for {idle:.0f} s while "
                    + (
                        "1 task is"
                        if self.active == 1
                        else f"{self.active:,} tasks are"
                    )
                    + f" waiting or processing ({self.processing:,} processing)"
                ),
                timestamp=now,
                details={
                    "idle": idle,
                    "active": self.active,
                    "processing": self.processing,
                    "seconds": self.seconds,
                },
            )
        )


def _caused(batch: Batch, i: int) -> bool:
    """Whether event ``i`` erred because a dependency did (the plugin names
    the root cause at the head of its traceback)."""
    details = batch.details.get(i)
    traceback = details[5] if details is not None else None
    return traceback is not None and traceback.startswith(CAUSE_TAG)


class ErrorBurstRule(AlertRule):
    """Many tasks erred within a window, or a prefix's error rate is too high.

    Counts tasks that erred themselves (from ``processing``, ``released``,
    ``no-worker``, ...), not dependents that erred because of them.

    Parameters
    ----------
    count, window
        Alert when ``count`` tasks erred within ``window`` seconds
        (subject: the whole cluster).
    rate, min_tasks
        Alert when at least ``rate`` of a prefix's finished tasks erred, once
        it has at least ``min_tasks`` finished (subject: the prefix).
    max_prefixes
        Prefixes whose error rate is tracked.
    """

    kind = ERROR_BURST

    @classmethod
    def from_settings(cls, settings: ErrorBurstSettings) -> ErrorBurstRule:
        """The rule as ``monitor.alerts.error-burst`` sets it up."""
        return cls(
            count=settings.count,
            window=settings.window,
            rate=settings.rate,
            min_tasks=settings.min_tasks,
            cooldown=settings.cooldown,
        )

    def __init__(
        self,
        *,
        count: int = _BURST.count,
        window: float = _BURST.window,
        rate: float = _BURST.rate,
        min_tasks: int = _BURST.min_tasks,
        cooldown: float = _BURST.cooldown,
        max_prefixes: int = 10_000,
    ) -> None:
        super().__init__(cooldown=cooldown)
        if count < 1 or not window > 0 or not 0 < rate <= 1 or min_tasks < 1:
            raise ValueError(
                "need count >= 1, window > 0, 0 < rate <= 1 and min_tasks >= 1, "
                f"got {count!r}, {window!r}, {rate!r}, {min_tasks!r}"
            )
        self.count = count
        self.window = float(window)
        self.rate = float(rate)
        self.min_tasks = min_tasks
        self.max_prefixes = max_prefixes
        self.reset()

    def restart(self) -> None:
        """Keep the recent errors and the per-prefix counts: they are history
        (errors just before a restart still make a burst)."""

    def reset(self) -> None:
        """Forget the recent errors and the per-prefix counts."""
        #: (timestamp, prefix) of the latest errors.
        self._recent: deque[tuple[float, str]] = deque(maxlen=self.count)
        #: Tasks finished in memory, by tracked prefix (every one is a key).
        self._done: Counter[str] = Counter()
        #: Tasks that erred, by tracked prefix.
        self._failed: dict[str, int] = {}

    def update_batch(self, events: Sequence[Event]) -> None:
        """Count finished and erred tasks; check both conditions on each error.

        Read as columns (see :func:`~dask_monitor.batch.as_batch`): the
        completions from ``processing`` between two errors are counted by
        prefix in one ``Counter`` update; each error is then taken in turn.
        """
        batch = as_batch(events)
        n = len(batch.keys)
        if not n:
            return
        starts = batch.starts
        lo = 0
        for i in _finished(batch, _ERRED):
            if i > lo:
                self._count(_completed(batch, lo, i))
            lo = i + 1
            if starts[i] not in _NOT_AN_ERROR_SOURCE and not _caused(batch, i):
                self._erred(batch, i)
        if n > lo:
            self._count(_completed(batch, lo, n))

    def _count(self, prefixes: list[str]) -> None:
        """Count completions of ``prefixes`` (tracking new prefixes if room)."""
        done = self._done
        room = self.max_prefixes - len(done)
        if room >= len(prefixes):
            done.update(prefixes)
        elif room <= 0:
            done.update(filter(done.__contains__, prefixes))
        else:
            for prefix, c in Counter(prefixes).items():  # in order of appearance
                if prefix in done:
                    done[prefix] += c
                elif len(done) < self.max_prefixes:
                    done[prefix] = c

    def _erred(self, batch: Batch, i: int) -> None:
        """Take the error of task event ``i``."""
        t = batch.timestamp(i)
        prefix = batch.prefixes[i]
        recent = self._recent
        recent.append((t, prefix))
        done = self._done
        tracked = prefix in done
        if not tracked and len(done) < self.max_prefixes:
            done[prefix] = 0
            tracked = True
        if tracked:
            self._failed[prefix] = self._failed.get(prefix, 0) + 1
        e: TaskStatus | None = None
        if len(recent) == self.count and t - recent[0][0] <= self.window:
            e = batch.task(i)
            span = t - recent[0][0]
            prefixes = Counter([p for _, p in recent])
            self.emit(
                Alert(
                    kind=ERROR_BURST,
                    severity="error",
                    message=(
                        f"{self.count} tasks erred within {span:.1f} s "
                        f"(last: {e.key!r}: {e.exception_type or 'error'})"
                    ),
                    timestamp=t,
                    prefix=prefix if len(prefixes) == 1 else None,
                    key=e.key,
                    worker=e.worker,
                    details={
                        "errors": len(recent),
                        "seconds": span,
                        "window": self.window,
                        "prefixes": dict(prefixes.most_common(10)),
                        "exception": e.exception,
                    },
                )
            )
        if tracked:
            erred = self._failed[prefix]
            finished = done[prefix] + erred
            if finished >= self.min_tasks and erred / finished >= self.rate:
                if e is None:
                    e = batch.task(i)
                self.emit(
                    Alert(
                        kind=ERROR_BURST,
                        severity="error",
                        message=(
                            f"{erred} of {finished} finished {prefix!r} tasks "
                            f"erred ({100 * erred / finished:.0f}%)"
                        ),
                        timestamp=t,
                        prefix=prefix,
                        key=e.key,
                        worker=e.worker,
                        details={
                            "erred": erred,
                            "finished": finished,
                            "rate": erred / finished,
                            "threshold": self.rate,
                            "exception": e.exception,
                        },
                    ),
                    subject=prefix,
                )


class StragglerRule(AlertRule):
    """A task has been processing far longer than its prefix usually takes.

    Keeps a bounded table of in-flight tasks (key -> start, prefix, worker)
    from the transitions, and scans it at most every ``check_interval``
    seconds: a task processing for more than ``factor`` times its prefix's
    ``quantile`` duration, and at least ``min_seconds``, is a straggler once
    the prefix has ``min_samples`` durations. One alert per prefix (cooldown),
    naming the slowest task; a task is reported once.

    Parameters
    ----------
    durations
        The pipeline's :class:`~dask_monitor.observers.DurationsObserver`.
    """

    kind = STRAGGLER

    @classmethod
    def from_settings(
        cls, settings: StragglerSettings, durations: _Sketches
    ) -> StragglerRule:
        """The rule as ``monitor.alerts.straggler`` sets it up."""
        return cls(
            durations,
            factor=settings.factor,
            quantile=settings.quantile,
            min_seconds=settings.min_seconds,
            min_samples=settings.min_samples,
            check_interval=settings.check_interval,
            max_tasks=settings.max_tasks,
            cooldown=settings.cooldown,
        )

    def __init__(
        self,
        durations: _Sketches,
        *,
        factor: float = _STRAGGLER.factor,
        quantile: float = _STRAGGLER.quantile,
        min_seconds: float = _STRAGGLER.min_seconds,
        min_samples: int = _STRAGGLER.min_samples,
        check_interval: float = _STRAGGLER.check_interval,
        max_tasks: int = _STRAGGLER.max_tasks,
        cooldown: float = _STRAGGLER.cooldown,
    ) -> None:
        super().__init__(cooldown=cooldown)
        if not factor > 0 or not 0 < quantile < 1 or min_samples < 1 or max_tasks < 1:
            raise ValueError(
                "need factor > 0, 0 < quantile < 1, min_samples >= 1, max_tasks >= 1"
            )
        self.durations = durations
        self.factor = float(factor)
        self.quantile = float(quantile)
        self.min_seconds = float(min_seconds)
        self.min_samples = min_samples
        self.check_interval = float(check_interval)
        self.max_tasks = max_tasks
        self.untracked = 0
        self._checked = float("-inf")
        self.reset()

    def reset(self) -> None:
        """Forget the in-flight tasks."""
        #: key (as Dask gives it) -> (start, prefix, worker) of the tasks
        #: processing, oldest first.
        self.inflight: dict[Any, tuple[float, str, str | None]] = {}
        #: The in-flight tasks already reported.
        self._reported: set[Any] = set()

    def reconcile(self, processing: Collection[Any], active: int) -> None:
        """Forget in-flight tasks that are no longer processing: their
        departure was dropped, and they would read as ever slower."""
        keep = (
            processing if isinstance(processing, set | frozenset) else set(processing)
        )
        self.inflight = {k: v for k, v in self.inflight.items() if k in keep}
        self._reported &= keep

    def update_batch(self, events: Sequence[Event]) -> None:
        """Track tasks entering and leaving ``processing``.

        Read as columns (see :func:`~dask_monitor.batch.as_batch`): the tasks
        leaving are popped by a ``map`` and those entering added with one
        ``dict.update``; a task that enters and leaves in the same batch
        stays if it entered after it last left. Only when the order matters
        more (a task entering twice, no room for all) is the batch taken
        event by event.
        """
        batch = as_batch(events)
        keys = batch.keys
        n = len(keys)
        if not n:
            return
        starts = batch.starts
        finishes = batch.finishes
        start = starts[0] if uniform(starts) else None
        if start is not None and uniform(finishes):  # one kind of transition
            finish = finishes[0]
            if finish == _PROCESSING:
                if start != _PROCESSING:
                    self._enter(batch, range(n))
            elif start == _PROCESSING or finish == _FORGOTTEN:
                self._leave(keys)
            return
        # Entering: to processing from elsewhere. Leaving: from processing to
        # elsewhere, or forgotten.
        processing = _finished(batch, _PROCESSING)
        forgotten = _finished(batch, _FORGOTTEN)
        left: Sequence[int] = ()  # leaving processing
        gone: Sequence[int] = ()  # forgotten, from elsewhere than processing
        if start == _PROCESSING:
            enter: Sequence[int] = ()
            left = (
                [i for i in range(n) if finishes[i] != _PROCESSING]
                if processing
                else range(n)
            )
        elif start is not None:
            enter = processing
            gone = forgotten
        else:
            enter = [i for i in processing if starts[i] != _PROCESSING]
            left = [
                i for i in batch.where_start(_PROCESSING) if finishes[i] != _PROCESSING
            ]
            if forgotten:
                gone = [i for i in forgotten if starts[i] != _PROCESSING]
        if not enter:
            if left or gone:
                self._leave(pick(keys, left) + pick(keys, gone))
            return
        if left or gone:
            entering = pick(keys, enter)
            table = self.inflight
            room = len(table) + len(enter) <= self.max_tasks
            if (
                room
                and not self.untracked
                and table.keys().isdisjoint(entering)
                and len(set(entering)) == len(entering)
            ):
                # Each task entering was not processing before this batch (it
                # would be in the table: none went untracked) and enters once:
                # if it leaves, it leaves after entering. So: the forgotten
                # first (one may be created again and enter), the entering,
                # then the leaving: what following the batch in order does.
                if gone:
                    self._leave(pick(keys, gone))
                self._enter(batch, enter, entering)
                if left:
                    self._leave(pick(keys, left))
                return
            leave = sorted(chain(left, gone))
            leaving = pick(keys, leave)
            first_in = dict(zip(entering, enter, strict=True))
            if not room or len(first_in) != len(entering):
                # No room for all, or a task entering twice: follow the order.
                self._in_order(batch, sorted(chain(enter, leave)))
                return
            # Each task enters at most once: it stays if it did not leave
            # after entering (a task that left before is popped, then added
            # back: what following the batch in order does).
            last_out = dict(zip(leaving, leave, strict=True))
            self._leave(list(last_out))
            if not first_in.keys().isdisjoint(last_out):
                enter = [i for k, i in first_in.items() if last_out.get(k, -1) < i]
        self._enter(batch, enter)

    def _enter(
        self, batch: Batch, rows: Sequence[int], new: list[Any] | None = None
    ) -> None:
        """Add the tasks of events ``rows``, entering ``processing``.

        ``new``: their keys, when the caller checked already that each is
        new to the table, enters once, and that there is room for all.
        """
        keys = pick(batch.keys, rows) if new is None else new
        times = batch.times
        entries = list(
            zip(
                [batch.time] * len(keys) if times is None else pick(times, rows),
                pick(batch.prefixes, rows),
                pick(batch.workers, rows),
                strict=True,
            )
        )
        table = self.inflight
        if new is not None:
            table.update(zip(keys, entries, strict=True))
            return
        added = dict(zip(keys, entries, strict=True))
        if len(added) == len(keys) and len(table) + len(added) <= self.max_tasks:
            if not table:
                self.inflight = added
                return
            if table.keys().isdisjoint(added):
                table.update(added)
                return
        # A task entering twice, or already in the table, or no room for all:
        # one by one, in order.
        for key, entry in zip(keys, entries, strict=True):
            if key not in table:
                if len(table) < self.max_tasks:
                    table[key] = entry
                else:
                    self.untracked += 1

    def _leave(self, keys: list[str]) -> None:
        """Drop the tasks of ``keys`` (that left ``processing``)."""
        table = self.inflight
        if table:
            deque(map(table.pop, keys, repeat(None)), maxlen=0)
            if self._reported:
                self._reported.difference_update(keys)

    def _in_order(self, batch: Batch, rows: Sequence[int]) -> None:
        """Take the task events at ``rows`` (entering or leaving) one by one."""
        table = self.inflight
        reported = self._reported
        keys = batch.keys
        starts = batch.starts
        finishes = batch.finishes
        prefixes = batch.prefixes
        workers = batch.workers
        times = batch.times
        time = batch.time
        for i in rows:
            key = keys[i]
            if finishes[i] == _PROCESSING:
                if starts[i] != _PROCESSING and key not in table:
                    if len(table) < self.max_tasks:
                        table[key] = (
                            time if times is None else times[i],
                            prefixes[i],
                            workers[i],
                        )
                    else:
                        self.untracked += 1
            else:
                table.pop(key, None)
                if reported:
                    reported.discard(key)

    def tick(self, now: float) -> None:
        """Scan the in-flight tasks (at most every ``check_interval``)."""
        if now - self._checked < self.check_interval or not self.inflight:
            return
        self._checked = now
        reported = self._reported
        thresholds: dict[str, tuple[float, float] | None] = {}
        found: dict[str, list[tuple[float, str, str | None]]] = {}
        for key, (start, prefix, worker) in self.inflight.items():
            if key in reported:
                continue
            if prefix in thresholds:
                limit = thresholds[prefix]
            else:
                limit = thresholds[prefix] = self._threshold(prefix)
            if limit is None:
                continue
            elapsed = now - start
            if elapsed > limit[0]:
                found.setdefault(prefix, []).append((elapsed, key, worker))
        for prefix, rows in found.items():
            if self.cooling(prefix, now):
                continue
            limit = thresholds[prefix]
            assert limit is not None
            threshold, typical = limit
            elapsed, key, worker = max(rows, key=lambda r: r[0])
            sent = self.emit(
                Alert(
                    kind=STRAGGLER,
                    severity="warning",
                    message=(
                        f"Task {key!r} has been processing for {elapsed:.1f} s, "
                        f"{elapsed / typical:.1f}x the p{100 * self.quantile:g} "
                        f"of {prefix!r} ({typical:.2f} s)"
                    ),
                    timestamp=now,
                    prefix=prefix,
                    key=key_text(key),
                    worker=worker,
                    details={
                        "elapsed": elapsed,
                        "typical": typical,
                        "quantile": self.quantile,
                        "factor": self.factor,
                        "threshold": threshold,
                        "stragglers": len(rows),
                    },
                ),
                subject=prefix,
            )
            if sent:
                reported.update([r[1] for r in rows])

    def _threshold(self, prefix: str) -> tuple[float, float] | None:
        sketch = self.durations.sketch(prefix)
        if sketch is None or sketch.count < self.min_samples:
            return None
        typical = sketch.quantile(self.quantile)
        if typical is None:
            return None
        return max(self.min_seconds, self.factor * typical), max(typical, 1e-9)


class WorkerLostRule(AlertRule):
    """A worker left the cluster while it was processing tasks, unexpectedly.

    A removal Dask expected (a graceful ``retire_workers``: its tasks are
    rescheduled by design) is no loss and raises no alert.
    """

    kind = WORKER_LOST

    @classmethod
    def from_settings(cls, settings: WorkerLostSettings) -> WorkerLostRule:
        """The rule as ``monitor.alerts.worker-lost`` sets it up."""
        return cls(min_processing=settings.min_processing, cooldown=settings.cooldown)

    def __init__(
        self,
        *,
        min_processing: int = _LOST.min_processing,
        cooldown: float = _LOST.cooldown,
    ) -> None:
        super().__init__(cooldown=cooldown)
        self.min_processing = min_processing

    def update_batch(self, events: Sequence[Event]) -> None:
        """Look for ``removed`` worker events with tasks in flight.

        Only the batch's other events are read (see
        :attr:`~dask_monitor.batch.Batch.others`), never its task events.
        """
        for _, e in as_batch(events).others:
            if type(e) is not WorkerStatus or e.action != "removed":
                continue
            if e.expected or e.processing < self.min_processing:
                continue
            self.emit(
                Alert(
                    kind=WORKER_LOST,
                    severity="error",
                    message=(
                        f"Worker {e.address} left while processing "
                        f"{e.processing} task{'s' if e.processing != 1 else ''}"
                    ),
                    timestamp=e.timestamp,
                    worker=e.address,
                    details={"processing": e.processing},
                ),
                subject=e.address,
            )


def default_rules(config: AlertsConfig, durations: _Sketches) -> list[AlertRule]:
    """The built-in rules enabled by ``config`` (``monitor.alerts.*``)."""
    if not config.enabled:
        return []
    rules: list[AlertRule] = []
    if config.stall.enabled:
        rules.append(StallRule.from_settings(config.stall))
    if config.error_burst.enabled:
        rules.append(ErrorBurstRule.from_settings(config.error_burst))
    if config.straggler.enabled:
        rules.append(StragglerRule.from_settings(config.straggler, durations))
    if config.worker_lost.enabled:
        rules.append(WorkerLostRule.from_settings(config.worker_lost))
    return rules


class _Stats(Protocol):
    name: str

    def stats(self) -> dict[str, Any]: ...


class AlertLog:
    """Keeps the recent alerts and counts per kind, for the snapshot.

    Subscribed to the pipeline's alert subject. Sinks (the NATS publisher)
    register here to show their own figures (sent, dropped, backlog).
    """

    name = "alert-log"

    def __init__(self, *, recent: int = 100, max_kinds: int = 100) -> None:
        self.recent: deque[Alert] = deque(maxlen=recent)
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.max_kinds = max_kinds
        self.sinks: dict[str, _Stats] = {}

    def update(self, event: Event) -> None:
        """Record one alert (other events are ignored)."""
        if type(event) is not Alert:
            return
        self.total += 1
        self.recent.append(event)
        kind = event.kind
        if kind in self.counts or len(self.counts) < self.max_kinds:
            self.counts[kind] += 1
        else:
            self.counts["other"] += 1

    def snapshot(self, rules: Sequence[AlertRule] = ()) -> dict[str, Any]:
        """Recent alerts (oldest first), counts per kind, rules and sinks."""
        sinks: dict[str, Any] = {}
        for name, sink in self.sinks.items():
            try:
                sinks[name] = sink.stats()
            except Exception as exc:  # a sink's figures must not break the snapshot
                sinks[name] = {"error": repr(exc)}
        return {
            "total": self.total,
            "counts": dict(self.counts),
            "recent": [a.to_dict() for a in self.recent],
            "suppressed": sum(r.suppressed for r in rules),
            "rules": {r.name: r.stats() for r in rules},
            "sinks": sinks,
        }
