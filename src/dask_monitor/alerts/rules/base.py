"""The base of alert rules: :class:`AlertRule` (cooldowns, binding to the
pipeline's alert subject) and :class:`AlertLog` (the snapshot's ``alerts``).

Rules see the same event batches as the other observers (never the
scheduler) and, for conditions that need time to pass without events (a stall,
a straggler), a periodic :meth:`AlertRule.tick`. All timestamps come from event
timestamps or from the ``now`` given to ``tick``, so rules are testable with
synthetic events and a fake clock.

This module does not import Dask.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, ClassVar, Protocol

from dask_monitor.events import Alert, Event

__all__ = [
    "ERROR_BURST",
    "STALL",
    "STRAGGLER",
    "TOPIC",
    "WORKER_LOST",
    "AlertLog",
    "AlertRule",
    "topics",
]

logger = logging.getLogger("dask_monitor.alerts.rules")

STALL = "stall"
ERROR_BURST = "error-burst"
STRAGGLER = "straggler"
WORKER_LOST = "worker-lost"

#: Dask event topic of every alert; ``f"{TOPIC}-{kind}"`` carries one kind.
TOPIC = "dask-monitor-alerts"

#: Cooldowns a rule keeps before it forgets expired ones (then the oldest).
_MAX_COOLDOWNS = 10_000


def topics(kind: str) -> list[str]:
    """The Dask event topics an alert of ``kind`` is logged under."""
    return [TOPIC, f"{TOPIC}-{kind}"]


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
