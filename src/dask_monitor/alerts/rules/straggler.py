"""The straggler rule: a task processing far longer than its prefix usually takes."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from itertools import chain, repeat
from typing import Any, Protocol

from dask_monitor.alerts.rules.base import STRAGGLER, AlertRule
from dask_monitor.batch import Batch, as_batch, key_text, pick
from dask_monitor.config import StragglerSettings
from dask_monitor.events import Alert, Event
from dask_monitor.observers._common import FORGOTTEN, PROCESSING

__all__ = ["StragglerRule"]

#: The rule's defaults are its settings' defaults: one place for them.
_STRAGGLER = StragglerSettings()


class _Sketches(Protocol):
    """What the straggler rule needs of the durations observer."""

    def sketch(self, prefix: str) -> Any: ...


def _stays_processing(batch: Batch) -> bool:
    """Whether a task event of ``batch`` may go from ``processing`` to
    ``processing`` (then entering and leaving are not just reaching and
    leaving it): known per distinct move when an observer counted them."""
    counts = batch.counted()
    if counts is None:
        return True
    return any(s0 == f == PROCESSING for (_, _, s0, f) in counts)


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
        leaving are popped by a ``map`` and those entering added by another
        (``dict.setdefault``, see :meth:`_add_new`); a task that enters and
        leaves in the same batch stays if it entered after it last left.
        Only when the order matters more (a task entering twice, no room for
        all) is the batch taken event by event.
        """
        batch = as_batch(events)
        keys = batch.keys
        if not keys:
            return
        if _stays_processing(batch):
            enter = batch.entering(PROCESSING)
            left = batch.leaving(PROCESSING)
        else:  # no move within processing: the finish and start indices say it
            enter = batch.where_finish(PROCESSING)
            left = batch.where_start(PROCESSING)
        # Leaving: from processing to elsewhere, or forgotten (from anywhere:
        # a task that is not in flight is popped at no cost).
        gone = batch.where_finish(FORGOTTEN)
        if not enter:
            if left or gone:
                self._leave(pick(keys, left) + pick(keys, gone))
            return
        if not left and not gone:
            if len(self.inflight) + len(enter) > self.max_tasks or not self._add_new(
                batch, enter, pick(keys, enter)
            ):
                self._enter(batch, enter)
            return
        entering = pick(keys, enter)
        table = self.inflight
        room = len(table) + len(enter) <= self.max_tasks
        if (
            room
            and not self.untracked
            and (not gone or table.keys().isdisjoint(pick(keys, gone)))
            and self._add_new(batch, enter, entering)
        ):
            # No task forgotten was in flight (they left processing before:
            # the common case), and each task entering was not processing
            # before this batch (it would be in the table: none went
            # untracked) and enters once: if it leaves, it leaves after
            # entering. So the entering, then the leaving: what following
            # the batch in order does.
            if left:
                self._leave(pick(keys, left))
            return
        leave = sorted(chain(left, gone))
        first_in = dict(zip(entering, enter, strict=True))
        if not room or len(first_in) != len(entering):
            # No room for all, or a task entering twice: follow the order.
            self._in_order(batch, sorted(chain(enter, leave)))
            return
        # Each task enters at most once: it stays if it did not leave after
        # entering (a task that left before is popped, then added back: what
        # following the batch in order does).
        last_out = dict(zip(pick(keys, leave), leave, strict=True))
        self._leave(list(last_out))
        if not first_in.keys().isdisjoint(last_out):
            enter = [i for k, i in first_in.items() if last_out.get(k, -1) < i]
        self._enter(batch, enter)

    def _add_new(self, batch: Batch, rows: Sequence[int], keys: list[Any]) -> bool:
        """Add the tasks of events ``rows`` (``keys``), entering ``processing``,
        if each is new to the table and enters once; else change nothing.

        One ``dict.setdefault`` per key (C speed, one hash each): the table
        grew by one per key exactly when all were new and distinct. If not
        (a rare batch), the entries added are taken out again: they are the
        ones whose value is the very tuple made here.
        """
        table = self.inflight
        before = len(table)
        entries = self._entries(batch, rows)
        deque(map(table.setdefault, keys, entries), maxlen=0)
        if len(table) == before + len(keys):
            return True
        for key, entry in zip(keys, entries, strict=True):
            if table.get(key) is entry:
                del table[key]
        return False

    def _entries(
        self, batch: Batch, rows: Sequence[int]
    ) -> list[tuple[float, str, str | None]]:
        """The ``(start, prefix, worker)`` of the task events ``rows``."""
        times = batch.times
        prefixes = pick(batch.prefixes, rows)
        return list(
            zip(
                repeat(batch.time, len(prefixes))
                if times is None
                else pick(times, rows),
                prefixes,
                pick(batch.workers, rows),
                strict=True,
            )
        )

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
            if finishes[i] == PROCESSING:
                if starts[i] != PROCESSING and key not in table:
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
