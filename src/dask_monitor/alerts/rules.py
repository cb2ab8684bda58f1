"""Alert rules: observers of task events that emit :class:`~dask_monitor.events.Alert`.

A rule sees the same event batches as the other observers (never the
scheduler) and, for conditions that need time to pass without events (a stall,
a straggler), a periodic :meth:`AlertRule.tick`. Each rule has a cooldown per
``(kind, subject)`` so that one problem does not flood subscribers. All
timestamps come from event timestamps or from the ``now`` given to ``tick``,
so rules are testable with synthetic events and a fake clock.

This module does not import Dask.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

from dask_monitor.config import AlertsConfig
from dask_monitor.events import NEW, Alert, Event, TaskStatus, WorkerStatus

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

_ACTIVE = frozenset({"waiting", "queued", "processing", "no-worker"})
_NOT_AN_ERROR_SOURCE = frozenset({"waiting", "erred", NEW})
_MAX_COOLDOWNS = 10_000


def topics(kind: str) -> list[str]:
    """The Dask event topics an alert of ``kind`` is logged under."""
    return [TOPIC, f"{TOPIC}-{kind}"]


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
        """Take a batch of events (override)."""

    def tick(self, now: float) -> None:
        """Time passed (called on every flush, even without events; override)."""

    def reset(self) -> None:
        """Forget task state (Dask restarted); cooldowns are kept."""

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

    def __init__(self, *, seconds: float = 300.0, cooldown: float = 600.0) -> None:
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

    def update_batch(self, events: Sequence[Event]) -> None:
        """Count active tasks; note the time of the latest progress."""
        active = self.active
        processing = self.processing
        since = self.since
        for e in events:
            if type(e) is not TaskStatus:
                continue
            start = e.start
            finish = e.finish
            was = start in _ACTIVE
            now_active = finish in _ACTIVE
            if was != now_active:
                if now_active:
                    if active <= 0:
                        active = 0
                        since = e.timestamp
                    active += 1
                else:
                    active -= 1
            if start == "processing":
                processing -= 1
            if finish == "processing":
                processing += 1
            if finish == "memory" or (finish == "erred" and start == "processing"):
                since = e.timestamp
        self.active = max(active, 0)
        self.processing = max(processing, 0)
        self.since = since

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
                    f"No task finished for {idle:.0f} s while {self.active} tasks "
                    f"are waiting or processing ({self.processing} processing)"
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

    def __init__(
        self,
        *,
        count: int = 10,
        window: float = 60.0,
        rate: float = 0.5,
        min_tasks: int = 20,
        cooldown: float = 300.0,
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

    def reset(self) -> None:
        """Forget the recent errors and the per-prefix counts."""
        self._recent: deque[TaskStatus] = deque(maxlen=self.count)
        self._prefixes: dict[str, list[int]] = {}  # prefix -> [done, erred]

    def _row(self, prefix: str) -> list[int] | None:
        row = self._prefixes.get(prefix)
        if row is None and len(self._prefixes) < self.max_prefixes:
            row = self._prefixes[prefix] = [0, 0]
        return row

    def update_batch(self, events: Sequence[Event]) -> None:
        """Count finished and erred tasks; check both conditions on each error."""
        for e in events:
            if type(e) is not TaskStatus:
                continue
            finish = e.finish
            if finish == "memory":
                if e.start == "processing":
                    row = self._row(e.prefix)
                    if row is not None:
                        row[0] += 1
            elif finish == "erred" and e.start not in _NOT_AN_ERROR_SOURCE:
                self._erred(e)

    def _erred(self, e: TaskStatus) -> None:
        recent = self._recent
        recent.append(e)
        row = self._row(e.prefix)
        if row is not None:
            row[1] += 1
        if (
            len(recent) == self.count
            and e.timestamp - recent[0].timestamp <= self.window
        ):
            span = e.timestamp - recent[0].timestamp
            prefixes = Counter(r.prefix for r in recent)
            self.emit(
                Alert(
                    kind=ERROR_BURST,
                    severity="error",
                    message=(
                        f"{self.count} tasks erred within {span:.1f} s "
                        f"(last: {e.key!r}: {e.exception_type or 'error'})"
                    ),
                    timestamp=e.timestamp,
                    prefix=e.prefix if len(prefixes) == 1 else None,
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
        if row is not None:
            done, erred = row
            finished = done + erred
            if finished >= self.min_tasks and erred / finished >= self.rate:
                self.emit(
                    Alert(
                        kind=ERROR_BURST,
                        severity="error",
                        message=(
                            f"{erred} of {finished} finished {e.prefix!r} tasks "
                            f"erred ({100 * erred / finished:.0f}%)"
                        ),
                        timestamp=e.timestamp,
                        prefix=e.prefix,
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
                    subject=e.prefix,
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

    def __init__(
        self,
        durations: _Sketches,
        *,
        factor: float = 3.0,
        quantile: float = 0.95,
        min_seconds: float = 30.0,
        min_samples: int = 20,
        check_interval: float = 1.0,
        max_tasks: int = 100_000,
        cooldown: float = 300.0,
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
        # key -> [start, prefix, worker, reported]
        self.inflight: dict[str, list[Any]] = {}

    def update_batch(self, events: Sequence[Event]) -> None:
        """Track tasks entering and leaving ``processing``."""
        table = self.inflight
        for e in events:
            if type(e) is not TaskStatus:
                continue
            if e.finish == "processing":
                if e.start != "processing" and e.key not in table:
                    if len(table) < self.max_tasks:
                        table[e.key] = [e.timestamp, e.prefix, e.worker, False]
                    else:
                        self.untracked += 1
            elif e.start == "processing" or e.finish == "forgotten":
                table.pop(e.key, None)

    def tick(self, now: float) -> None:
        """Scan the in-flight tasks (at most every ``check_interval``)."""
        if now - self._checked < self.check_interval or not self.inflight:
            return
        self._checked = now
        thresholds: dict[str, tuple[float, float] | None] = {}
        found: dict[str, list[tuple[float, str, list[Any]]]] = {}
        for key, row in self.inflight.items():
            start, prefix, _, reported = row
            if reported:
                continue
            if prefix in thresholds:
                limit = thresholds[prefix]
            else:
                limit = thresholds[prefix] = self._threshold(prefix)
            if limit is None:
                continue
            elapsed = now - start
            if elapsed > limit[0]:
                found.setdefault(prefix, []).append((elapsed, key, row))
        for prefix, rows in found.items():
            if self.cooling(prefix, now):
                continue
            limit = thresholds[prefix]
            assert limit is not None
            threshold, typical = limit
            elapsed, key, row = max(rows, key=lambda r: r[0])
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
                    key=key,
                    worker=row[2],
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
                for _, _, r in rows:
                    r[3] = True

    def _threshold(self, prefix: str) -> tuple[float, float] | None:
        sketch = self.durations.sketch(prefix)
        if sketch is None or sketch.count < self.min_samples:
            return None
        typical = sketch.quantile(self.quantile)
        if typical is None:
            return None
        return max(self.min_seconds, self.factor * typical), max(typical, 1e-9)


class WorkerLostRule(AlertRule):
    """A worker left the cluster while it was processing tasks."""

    kind = WORKER_LOST

    def __init__(self, *, min_processing: int = 1, cooldown: float = 60.0) -> None:
        super().__init__(cooldown=cooldown)
        self.min_processing = min_processing

    def update_batch(self, events: Sequence[Event]) -> None:
        """Look for ``removed`` worker events with tasks in flight."""
        for e in events:
            if type(e) is not WorkerStatus or e.action != "removed":
                continue
            if e.processing < self.min_processing:
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
    c = config
    if c.stall.enabled:
        rules.append(StallRule(seconds=c.stall.seconds, cooldown=c.stall.cooldown))
    if c.error_burst.enabled:
        b = c.error_burst
        rules.append(
            ErrorBurstRule(
                count=b.count,
                window=b.window,
                rate=b.rate,
                min_tasks=b.min_tasks,
                cooldown=b.cooldown,
            )
        )
    if c.straggler.enabled:
        s = c.straggler
        rules.append(
            StragglerRule(
                durations,
                factor=s.factor,
                quantile=s.quantile,
                min_seconds=s.min_seconds,
                min_samples=s.min_samples,
                check_interval=s.check_interval,
                max_tasks=s.max_tasks,
                cooldown=s.cooldown,
            )
        )
    if c.worker_lost.enabled:
        w = c.worker_lost
        rules.append(
            WorkerLostRule(min_processing=w.min_processing, cooldown=w.cooldown)
        )
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
