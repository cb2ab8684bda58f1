"""The stall rule: work is pending, but nothing has finished for a while."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from dask_monitor.alerts.rules.base import STALL, AlertRule
from dask_monitor.batch import Batch, as_batch, pick
from dask_monitor.config import StallSettings
from dask_monitor.events import Alert, Event
from dask_monitor.observers._common import ERRED, MEMORY, PROCESSING

__all__ = ["StallRule"]

#: The rule's defaults are its settings' defaults: one place for them.
_STALL = StallSettings()

_ACTIVE = frozenset({"waiting", "queued", "processing", "no-worker"})


def _first_activation(batch: Batch) -> int:
    """Index of the first task event that makes a task active.

    Found from the finish-state index: the first event reaching each active
    state from elsewhere (most often its first event at all), not a scan of
    the events before it (a graph arriving creates thousands first).
    """
    starts = batch.starts
    found = [
        next((i for i in batch.where_finish(state) if starts[i] not in _ACTIVE), -1)
        for state in _ACTIVE
    ]
    return min(i for i in found if i >= 0)


def _follow(batch: Batch, active: int) -> tuple[int, int]:
    """The count of active tasks through ``batch``, in order.

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


def _leaves_active(batch: Batch, index: dict[str, list[int]]) -> bool:
    """Whether a task event of ``batch`` goes from an active state to another
    state (read from the events reaching each inactive state only)."""
    starts = batch.starts
    for state, rows in index.items():
        if state in _ACTIVE or not rows:
            continue
        before = pick(starts, rows)
        if any(map(before.__contains__, _ACTIVE)):
            return True
    return False


def _last_progress(batch: Batch) -> int:
    """Index of the last task event that finished a task (``-1`` if none did):
    one reaching ``memory``, or ``erred`` from ``processing``."""
    memory = batch.where_finish(MEMORY)
    errors = batch.moved(PROCESSING, ERRED)
    return max(memory[-1] if memory else -1, errors[-1] if errors else -1)


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

        Read as columns (see :func:`~dask_monitor.batch.as_batch`): the
        counts of ``(start, finish)`` pairs give the new counts. Only the
        moment work appears after an idle period depends on the order of the
        events: it is followed event by event when the count of active tasks
        could drop to zero within the batch and rise again.
        """
        batch = as_batch(events)
        n = len(batch.keys)
        if not n:
            return
        start, finish = batch.same_start(), batch.same_finish()
        one_kind = start is not None and finish is not None
        if not one_kind and self._by_state(batch):
            return
        pairs = {(start, finish): n} if one_kind else batch.state_pairs()
        entering = leaving = 0  # tasks becoming active, and no longer
        processing = self.processing
        for (s0, f), c in pairs.items():
            # A move from an active state to another (``waiting ->
            # processing``) changes no count of active tasks.
            if s0 in _ACTIVE:
                if f not in _ACTIVE:
                    leaving += c
                if s0 == PROCESSING:
                    processing -= c
            if f in _ACTIVE:
                if s0 not in _ACTIVE:
                    entering += c
                if f == PROCESSING:
                    processing += c
        active = self.active
        if not entering or active > leaving:
            # The count cannot come back from zero within the batch: work
            # appears in it only if none was pending before and any enters.
            active += entering - leaving
            last = -1
        elif not leaving:
            # Nothing leaves the active states (a graph arriving): work
            # appears with the first task that becomes active.
            last = 0 if one_kind else _first_activation(batch)
            active = entering
        else:
            active, last = _follow(batch, active)
        last = max(last, _last_progress(batch))
        if last >= 0:
            self.since = batch.timestamp(last)
        self.active = max(active, 0)
        self.processing = max(processing, 0)

    def _by_state(self, batch: Batch) -> bool:
        """Count the batch from its events per state, if that is enough.

        A move within the active states changes no count, so the count of
        active tasks changes by those reaching an active state less those
        leaving one: the finish-state index (made by the conversion) and a
        C-speed ``list.count`` per active state tell both, with no counting
        of ``(start, finish)`` pairs event by event. Enough unless the count
        may reach zero within the batch and rise again (none was active
        before and some task leaves the active states, or more tasks leave
        an active state than are active): then ``False``, and nothing is
        changed.

        Cheaper than :meth:`~dask_monitor.batch.Batch.state_pairs` when no
        observer counted the moves (events of many groups), and no dearer
        when one did.
        """
        active = self.active
        index = batch.finish_index()
        if active <= 0 and _leaves_active(batch, index):
            return False  # work appearing and going within the batch: follow it
        left = 0  # events leaving an active state (to another one or not)
        counts = batch.counted()
        if counts is not None:  # counted by an observer already: per distinct move
            for (_, _, s0, _), c in counts.items():
                if s0 in _ACTIVE:
                    left += c
        else:
            starts = batch.starts
            for state in _ACTIVE:
                if state == PROCESSING:
                    left += len(batch.where_start(PROCESSING))
                else:
                    left += starts.count(state)
        if 0 < active <= left:
            return False  # the order of the events may matter: see update_batch
        reached = 0
        for state in _ACTIVE:
            rows = index.get(state)
            if rows:
                reached += len(rows)
        processing = len(index.get(PROCESSING, ()))
        last = _last_progress(batch)
        if active <= 0:
            # Nothing was active and nothing leaves the active states (a graph
            # arriving): the moves leaving one are moves within them, so
            # ``reached - left`` tasks become active, the first one where
            # work appears.
            active = 0
            if reached > left:
                last = max(last, _first_activation(batch))
        if last >= 0:
            self.since = batch.timestamp(last)
        self.active = max(active + reached - left, 0)
        self.processing = max(
            self.processing + processing - len(batch.where_start(PROCESSING)), 0
        )
        return True

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
