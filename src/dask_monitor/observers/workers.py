"""Workers: load, completions and utilisation of each worker."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from itertools import islice, repeat
from typing import cast

from dask_monitor.events import Event, TaskStatus, WorkerStatus
from dask_monitor.observers._common import (
    CHUNK,
    ERRED,
    MEMORY,
    PROCESSING,
    Clock,
    check_count,
)
from dask_monitor.snapshot import WorkerRow

__all__ = ["WorkersObserver"]

RUNNING = "running"
REMOVED = "removed"


def _moving(events: Sequence[TaskStatus]) -> list[TaskStatus]:
    """The events that enter or leave ``processing``."""
    return [e for e in events if e.finish == PROCESSING or e.start == PROCESSING]


class _Worker:
    """What is known of one worker."""

    __slots__ = (
        "busy",
        "completed",
        "erred",
        "first_seen",
        "last_seen",
        "nthreads",
        "processing",
        "status",
    )

    def __init__(self, t: float, nthreads: int | None = None) -> None:
        self.status = RUNNING
        self.nthreads = nthreads
        self.processing = 0
        self.completed = 0
        self.erred = 0
        self.busy = 0.0
        self.first_seen = t
        self.last_seen = t


class WorkersObserver:
    """Per worker: status, threads, tasks processing now, completions, busy time.

    Parameters
    ----------
    max_workers
        Workers kept. Removed workers stay until the table is full, then the
        one removed longest ago makes room; a new worker that finds no room
        (all running) is not tracked and its task events are counted in
        :attr:`untracked`.
    clock
        Returns the current time, the end of a running worker's lifetime in
        its utilisation.
    max_tasks
        Tasks remembered as processing (key -> worker), to attribute a
        departure from ``processing`` that carries no worker; beyond it the
        oldest entries are dropped (counted in :attr:`forgotten`). Only kept
        once such a departure was seen (see Notes).

    Notes
    -----
    ``processing`` counts ``-> processing`` transitions on a worker minus the
    transitions out of ``processing`` from it. Those carry the worker where
    the task ran (the plugin tracks it for every departure, lost worker and
    ``KilledWorker`` included), so the observer does not look keys up. Should
    a departure come without a worker, the observer starts remembering where
    each task starts (key -> worker, bounded by ``max_tasks``) to fill later
    ones in; departures it cannot attribute are counted in
    :attr:`unattributed`.

    ``busy`` sums the compute durations of the worker's completions;
    ``utilisation`` is ``busy / (nthreads * lifetime)`` clipped to ``[0, 1]``
    (``0.0`` when ``nthreads`` is unknown), where the lifetime ends at
    ``clock()`` for a running worker and at its removal otherwise. A worker
    added again after its removal starts a new row. Not thread-safe.
    """

    name = "workers"

    def __init__(
        self,
        *,
        max_workers: int = 10_000,
        clock: Clock = time.time,
        max_tasks: int = 1_000_000,
    ) -> None:
        self.max_workers = check_count("max_workers", max_workers)
        self.max_tasks = check_count("max_tasks", max_tasks)
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self._rows: dict[str, _Worker] = {}
        self._where: dict[str, str | None] | None = None
        self.untracked = 0
        self.unattributed = 0
        self.forgotten = 0

    # -- events ------------------------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, in the order they happened."""
        n = len(events)
        if n > CHUNK and isinstance(events, list | tuple):
            for i in range(0, n, CHUNK):  # see CHUNK
                self.update_batch(events[i : i + CHUNK])
            return
        if not n:
            return
        tasks = cast("Sequence[TaskStatus]", events)
        try:  # AttributeError: a worker event or an alert is in the batch
            moving = _moving(tasks)
        except AttributeError:
            self._mixed(events)
            return
        self._tasks(moving)

    def _mixed(self, events: Sequence[Event]) -> None:
        """A batch with worker events or alerts: take it in order, in runs."""
        run: list[TaskStatus] = []
        for e in events:
            if type(e) is TaskStatus:
                run.append(e)
            elif type(e) is WorkerStatus:
                self._tasks(_moving(run))
                run = []
                self._worker(e)
        self._tasks(_moving(run))

    def _row(self, address: str, t: float) -> _Worker | None:
        """The row of a worker, new if needed; ``None`` if there is no room."""
        row = self._rows.get(address)
        if row is None:
            rows = self._rows
            if len(rows) >= self.max_workers:
                removed = [
                    (r.last_seen, a) for a, r in rows.items() if r.status == REMOVED
                ]
                if not removed:
                    return None
                del rows[min(removed)[1]]
            row = rows[address] = _Worker(t)
        return row

    def _worker(self, e: WorkerStatus) -> None:
        rows = self._rows
        t = e.timestamp
        if e.action == "added":
            row = rows.get(e.address)
            if row is not None and row.status == REMOVED:
                del rows[e.address]  # the address is reused: a new worker
                row = None
            row = self._row(e.address, t)
            if row is None:
                self.untracked += 1
                return
            if e.nthreads is not None:
                row.nthreads = e.nthreads
            row.last_seen = max(row.last_seen, t)
        else:
            row = self._row(e.address, t)
            if row is None:
                self.untracked += 1
                return
            row.status = REMOVED
            row.processing = 0
            row.last_seen = max(row.last_seen, t)
            where = self._where
            if where is not None:
                for key in [k for k, w in where.items() if w == e.address]:
                    del where[key]

    def _tasks(self, moving: list[TaskStatus]) -> None:
        """Take the task events that enter or leave ``processing``."""
        if not moving:
            return
        enter = [e for e in moving if e.finish == PROCESSING]
        leave = [e for e in moving if e.start == PROCESSING]
        gained = Counter([e.worker for e in enter])
        ran = [e.worker for e in leave]
        where = self._where
        if where is None and None in ran:
            # A departure that does not say where the task ran: from now on,
            # remember where tasks start (this one stays unattributed).
            where = self._where = {}
        if where is not None:
            self._remember(where, enter, leave, ran)
        if None in ran:
            self.unattributed += ran.count(None)
        lost = Counter(ran)

        t_last = moving[-1].timestamp
        latest: dict[str | None, float] | None = None
        if moving[0].timestamp != t_last:
            latest = {}
            for w, t in zip(
                [e.worker for e in enter] + ran,
                [e.timestamp for e in enter] + [e.timestamp for e in leave],
                strict=True,
            ):
                if t > latest.get(w, -math.inf):
                    latest[w] = t

        rows: dict[str | None, _Worker] = {}
        for address in gained.keys() | lost.keys():
            if address is None:
                continue
            t = t_last if latest is None else latest[address]
            row = self._row(address, t)
            if row is None:
                self.untracked += gained[address] + lost[address]
                continue
            rows[address] = row
            row.processing = max(0, row.processing + gained[address] - lost[address])
            if t > row.last_seen:
                row.last_seen = t

        if not leave:
            return
        if ran.count(ran[0]) == len(ran):
            # One worker: no need to pair events with workers.
            row = rows.get(ran[0])
            if row is not None:
                memory = [e for e in leave if e.finish == MEMORY]
                row.completed += len(memory)
                row.busy += sum([e.duration for e in memory if e.duration is not None])
                row.erred += sum(1 for e in leave if e.finish == ERRED)
            return
        busy: dict[str | None, float] = {}
        completed: list[str | None] = []
        erred: list[str | None] = []
        get = busy.get
        for w, e in zip(ran, leave, strict=True):
            f = e.finish
            if f == MEMORY:
                completed.append(w)
                d = e.duration
                if d is not None:
                    busy[w] = get(w, 0.0) + d
            elif f == ERRED:
                erred.append(w)
        for w, c in Counter(completed).items():
            if w in rows:
                rows[w].completed += c
        for w, b in busy.items():
            if w in rows:
                rows[w].busy += b
        for w, c in Counter(erred).items():
            if w in rows:
                rows[w].erred += c

    def _remember(
        self,
        where: dict[str, str | None],
        enter: list[TaskStatus],
        leave: list[TaskStatus],
        ran: list[str | None],
    ) -> None:
        """Track key -> worker; fill in ``ran`` where an event has no worker."""
        if enter:
            where.update(
                zip([e.key for e in enter], [e.worker for e in enter], strict=True)
            )
            excess = len(where) - self.max_tasks
            if excess > 0:
                for key in list(islice(where, excess)):
                    del where[key]
                self.forgotten += excess
        if leave:
            popped = list(map(where.pop, [e.key for e in leave], repeat(None)))
            ran[:] = [w or p for w, p in zip(ran, popped, strict=True)]

    # -- reading -----------------------------------------------------------

    def utilisation(self, address: str, now: float | None = None) -> float:
        """Share of a worker's thread time spent computing, ``0.0`` to ``1.0``."""
        row = self._rows.get(address)
        if row is None:
            return 0.0
        return self._utilisation(row, self.clock() if now is None else now)

    @staticmethod
    def _utilisation(row: _Worker, now: float) -> float:
        end = now if row.status == RUNNING else row.last_seen
        lifetime = end - row.first_seen
        if not row.nthreads or lifetime <= 0:
            return 0.0
        return min(1.0, max(0.0, row.busy / (row.nthreads * lifetime)))

    def snapshot(self) -> dict[str, WorkerRow]:
        """One row per worker, by address, as plain data."""
        now = self.clock()
        return {
            address: {
                "status": row.status,
                "nthreads": row.nthreads,
                "processing": row.processing,
                "completed": row.completed,
                "erred": row.erred,
                "busy": row.busy,
                "utilisation": self._utilisation(row, now),
                "first_seen": row.first_seen,
                "last_seen": row.last_seen,
            }
            for address, row in sorted(self._rows.items())
        }
