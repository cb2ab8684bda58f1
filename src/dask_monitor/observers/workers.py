"""Workers: load, completions and utilisation of each worker.

Batches are read as columns (:func:`~dask_monitor.batch.as_batch`), in runs
of task events between worker events: the events entering and leaving
``processing`` are found as index lists (C-speed scans of the start and finish
columns, the batch's shared index of finish states), tallied per worker with
``Counter``; the one loop per event is the sum of compute durations per worker
over the completions. No event object is made.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from itertools import islice, repeat
from operator import itemgetter
from typing import NamedTuple

from dask_monitor.batch import (
    NO_DETAILS,
    Batch,
    Details,
    as_batch,
    pick,
)
from dask_monitor.events import Event, WorkerStatus
from dask_monitor.observers._common import (
    CHUNK,
    ERRED,
    PROCESSING,
    BatchObserver,
    Clock,
    check_count,
    check_positive,
)
from dask_monitor.snapshot import WorkerRow

__all__ = ["WorkersObserver"]

RUNNING = "running"
REMOVED = "removed"


#: The compute duration of details (by position: ``itemgetter`` runs at C
#: speed in ``map``, where an ``attrgetter`` costs more).
_DURATION = itemgetter(Details._fields.index("duration"))
#: ``details.get``'s default, for ``map``.
_NONE = repeat(NO_DETAILS)


class _Worker:
    """What is known of one worker."""

    __slots__ = (
        "busy",
        "completed",
        "erred",
        "first_seen",
        "first_task",
        "last_seen",
        "nthreads",
        "processing",
        "status",
        "steps",
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
        # When a task first entered processing here: the start of its run.
        self.first_task: float | None = None
        # (time, tasks processing from then on): the recent history of the
        # processing count, one step per batch that changed it, oldest first.
        self.steps: deque[tuple[float, int]] = deque()

    def step(self, t: float, processing: int, window: float) -> None:
        """The processing count became ``processing`` at ``t``."""
        steps = self.steps
        if steps:
            last_t, last_p = steps[-1]
            if last_p == processing:
                return
            t = max(t, last_t)  # out of order by a little: keep steps sorted
            if t == last_t:
                steps.pop()
        steps.append((t, processing))
        # Keep the one step in force at the window's start, drop older ones.
        horizon = t - window
        while len(steps) > 1 and steps[1][0] <= horizon:
            steps.popleft()


class _Moves(NamedTuple):
    """The task events of a batch that enter or leave ``processing``."""

    #: Indices of the events entering ``processing``, in order.
    enter: Sequence[int]
    #: The worker each of them entered it on.
    entered: list[str | None]
    #: Indices of the events leaving ``processing``, in order.
    leave: Sequence[int]
    #: The worker each of them ran on (``None``: not known).
    ran: list[str | None]


class WorkersObserver(BatchObserver):
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
    window
        Seconds over which ``utilisation`` (now) looks back.

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

    ``utilisation`` is the share of the worker's threads busy over the last
    ``window`` seconds: the time integral of ``min(processing, nthreads)``
    (a task processing there holds a thread, the ones beyond the threads
    wait) over ``nthreads * window`` (or the time since the worker appeared,
    if shorter); ``0.0`` for a removed worker. A task still running counts
    from the moment it entered ``processing``, so a worker busy on long tasks
    reads busy before any of them finish. The count is stepped once a batch
    per worker, at its latest event in the batch.

    ``busy`` sums the compute durations of the worker's completions;
    ``utilisation_run`` is ``busy / (nthreads * run)`` clipped to ``[0, 1]``,
    where the run starts when a task first entered ``processing`` on the
    worker and ends at its latest task event (at ``clock()`` while tasks are
    processing there): the whole run, unaffected by idle time before or after
    it, and the same in a replay as live. Both are ``0.0`` when ``nthreads``
    is unknown. A worker added again after its removal starts a new row. Not
    thread-safe.
    """

    name = "workers"

    def __init__(
        self,
        *,
        max_workers: int = 10_000,
        clock: Clock = time.time,
        max_tasks: int = 1_000_000,
        window: float = 5.0,
    ) -> None:
        self.max_workers = check_count("max_workers", max_workers)
        self.max_tasks = check_count("max_tasks", max_tasks)
        self.window = check_positive("window", window)
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        #: Compute seconds of every completion seen (all workers, all time).
        self.busy_seconds = 0.0
        self._rows: dict[str, _Worker] = {}
        self._where: dict[str, str | None] | None = None
        self.untracked = 0
        self.unattributed = 0
        self.forgotten = 0
        #: Workers running at the latest restart: dropped when they leave.
        self._leaving: set[str] = set()

    def restart(self) -> None:
        """Dask restarted: it forgot every task and replaces every worker.

        Rows of workers that left are dropped, and so are the rows of the
        workers running now when they leave (the restart shuts them down; the
        new processes join as new rows): a restarted cluster lists the
        workers it has. Running rows keep their figures until then.
        """
        rows = self._rows
        for address in [a for a, r in rows.items() if r.status == REMOVED]:
            del rows[address]
        now = self.clock()
        for row in rows.values():
            row.processing = 0  # Dask forgot those tasks
            row.step(now, 0, self.window)  # threads are free from now on
        self._leaving = set(rows)
        if self._where is not None:
            self._where.clear()

    # -- events ------------------------------------------------------------

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, in the order they happened.

        Task events are read from the columns of the batch (see
        :func:`~dask_monitor.batch.as_batch`), in runs between worker events.
        """
        n = len(events)
        if n > CHUNK and isinstance(events, list | tuple):
            for i in range(0, n, CHUNK):  # see CHUNK
                self.update_batch(events[i : i + CHUNK])
            return
        if not n:
            return
        batch = as_batch(events)
        lo = 0
        for pos, other in batch.others:
            if type(other) is WorkerStatus:
                if pos > lo:
                    self._tasks(batch.take(range(lo, pos)))
                    lo = pos
                self._worker(other)
        if not lo:
            self._tasks(batch)
        elif len(batch.keys) > lo:
            self._tasks(batch.take(range(lo, len(batch.keys))))

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
            self._leaving.discard(e.address)
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
            if e.address in self._leaving:  # shut down by a restart
                self._leaving.discard(e.address)
                rows.pop(e.address, None)
                where = self._where
                if where is not None:
                    for key in [k for k, w in where.items() if w == e.address]:
                        del where[key]
                return
            row = self._row(e.address, t)
            if row is None:
                self.untracked += 1
                return
            row.status = REMOVED
            row.processing = 0
            row.step(t, 0, self.window)
            row.last_seen = max(row.last_seen, t)
            where = self._where
            if where is not None:
                for key in [k for k, w in where.items() if w == e.address]:
                    del where[key]

    def _tasks(self, batch: Batch) -> None:
        """Take the task events of ``batch`` (a run without worker events).

        Only the events that enter or leave ``processing`` count: the batch's
        index lists of them, their workers read from the column and tallied
        with ``Counter``; the busy time, a float sum per worker, is the one
        loop over the completions.
        """
        enter = batch.where_finish(PROCESSING)
        leave = batch.where_start(PROCESSING)
        if not enter and not leave:
            return
        workers = batch.workers
        moves = _Moves(enter, pick(workers, enter), leave, pick(workers, leave))
        lost = Counter(moves.ran)
        if self._where is not None or None in lost:
            workers = self._attribute(batch, moves)
            lost = Counter(moves.ran)
        if None in lost:
            self.unattributed += lost[None]
        rows = self._step(batch, moves, lost)
        if leave:
            self._finished(batch, workers, rows, moves.ran, lost)

    def _step(
        self, batch: Batch, moves: _Moves, lost: Counter[str | None]
    ) -> dict[str | None, _Worker]:
        """Move the processing counts of the workers that tasks entered or
        left (``lost``: departures per worker).

        Returns the rows of those workers, by address.
        """
        enter, entered, leave, ran = moves
        gained = Counter(entered)
        times = batch.times
        latest: dict[str | None, float] | None = None  # per worker, if not one
        t_last = batch.time
        if times is not None:
            n = len(times)
            first = min(enter[0] if enter else n, leave[0] if leave else n)
            t_last = times[max(enter[-1] if enter else -1, leave[-1] if leave else -1)]
            if times[first] != t_last:
                latest = {}
                for w, t in zip(
                    entered + ran,
                    pick(times, enter) + pick(times, leave),
                    strict=True,
                ):
                    if t > latest.get(w, -math.inf):
                        latest[w] = t
        # Events at different times (replays of merged batches, tests; the
        # plugin stamps a batch with one time): the count steps at each
        # event, so that the window sees when each thread was held.
        steps: dict[str | None, list[tuple[int, int]]] | None = None
        if latest is not None:
            steps = {}
            for i, w in zip(enter, entered, strict=True):
                steps.setdefault(w, []).append((i, 1))
            for i, w in zip(leave, ran, strict=True):
                steps.setdefault(w, []).append((i, -1))
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
            if steps is None:
                processing = max(0, row.processing + gained[address] - lost[address])
                if processing != row.processing:
                    row.processing = processing
                    row.step(t, processing, self.window)
            else:
                assert times is not None
                for i, change in sorted(steps[address]):
                    processing = max(0, row.processing + change)
                    if processing != row.processing:
                        row.processing = processing
                        row.step(times[i], processing, self.window)
            if row.first_task is None and gained[address]:
                row.first_task = _first_entry(address, entered, enter, times, t)
            if t > row.last_seen:
                row.last_seen = t
        return rows

    def _finished(
        self,
        batch: Batch,
        workers: list[str | None],
        rows: dict[str | None, _Worker],
        ran: list[str | None],
        lost: Counter[str | None],
    ) -> None:
        """Count the completions and errors of tasks that left ``processing``
        (on ``ran``, as tallied in ``lost``), and their compute time.

        ``workers`` is the batch's worker column, departures attributed.
        """
        completions = batch.completions()
        errors = batch.moved(PROCESSING, ERRED)
        if not completions and not errors:
            return
        details = batch.details
        if lost.get(ran[0]) == len(ran):
            # One worker: no need to pair events with workers.
            row = rows.get(ran[0])
            if row is not None:
                durations = map(_DURATION, map(details.get, completions, _NONE))
                seconds = sum([d for d in durations if d is not None])
                row.completed += len(completions)
                row.erred += len(errors)
                row.busy += seconds
                self.busy_seconds += seconds
            return
        done = pick(workers, completions)
        busy: dict[str | None, float] = {}
        get = busy.get
        for w, d in zip(done, map(details.get, completions, _NONE), strict=True):
            seconds = d[0]  # d.duration, by position: cheaper per completion
            if seconds is not None:  # a completion without one adds no time
                busy[w] = get(w, 0.0) + seconds
        erred = Counter(pick(workers, errors)) if errors else None
        if len(completions) + len(errors) == len(ran):
            # Every departure is a completion or an error (the common batch).
            completed = lost if erred is None else lost - erred
        else:
            completed = Counter(done)
        for w, c in completed.items():
            if w in rows:
                rows[w].completed += c
        for w, b in busy.items():
            if w in rows:
                rows[w].busy += b
                self.busy_seconds += b
        for w, c in erred.items() if erred is not None else ():
            if w in rows:
                rows[w].erred += c

    def _attribute(self, batch: Batch, moves: _Moves) -> list[str | None]:
        """Fill in ``moves.ran`` where a departure from ``processing`` carries no
        worker, from where the task entered it (key -> worker, remembered from
        the first such departure on: that one stays unattributed).

        Returns the batch's worker column with the departures filled in.
        """
        enter, entered, leave, ran = moves
        where = self._where
        if where is None:
            where = self._where = {}
        keys = batch.keys
        if enter:
            where.update(zip(pick(keys, enter), entered, strict=True))
            excess = len(where) - self.max_tasks
            if excess > 0:
                for key in list(islice(where, excess)):
                    del where[key]
                self.forgotten += excess
        if not leave:
            return batch.workers
        popped = list(map(where.pop, pick(keys, leave), repeat(None)))
        ran[:] = [w or p for w, p in zip(ran, popped, strict=True)]
        workers = list(batch.workers)
        for i, w in zip(leave, ran, strict=True):
            workers[i] = w
        return workers

    # -- reading -----------------------------------------------------------

    def utilisation(self, address: str, now: float | None = None) -> float:
        """Share of a worker's threads busy lately (see Notes), ``0.0`` to ``1.0``."""
        row = self._rows.get(address)
        if row is None:
            return 0.0
        return self._utilisation(row, self.clock() if now is None else now)

    def utilisation_run(self, address: str, now: float | None = None) -> float:
        """Share of a worker's thread time spent computing over its whole run."""
        row = self._rows.get(address)
        if row is None:
            return 0.0
        return self._utilisation_run(row, self.clock() if now is None else now)

    def roster(self) -> dict[str, dict[str, float | int | None]]:
        """The running workers: ``{address: {"nthreads", "first_seen"}}``.

        What a recording that starts mid-run writes in its header, so that a
        replay knows the workers it would otherwise never see added.
        """
        return {
            address: {"nthreads": row.nthreads, "first_seen": row.first_seen}
            for address, row in self._rows.items()
            if row.status == RUNNING
        }

    def threads(self) -> int:
        """Threads of the running workers (those whose count is known)."""
        return sum(
            r.nthreads
            for r in self._rows.values()
            if r.status == RUNNING and r.nthreads
        )

    def busy_threads(self) -> int:
        """Threads holding a task now: ``min(processing, nthreads)`` summed."""
        return sum(
            min(r.processing, r.nthreads)
            for r in self._rows.values()
            if r.status == RUNNING and r.nthreads
        )

    def _utilisation(self, row: _Worker, now: float) -> float:
        threads = row.nthreads
        if not threads or row.status != RUNNING:
            return 0.0
        lo = max(now - self.window, row.first_seen)
        if now <= lo:
            return min(1.0, row.processing / threads)
        held = 0.0  # thread-seconds held by tasks in [lo, now]
        steps = row.steps
        for i, (t, processing) in enumerate(steps):
            end = steps[i + 1][0] if i + 1 < len(steps) else now
            start = max(t, lo)
            if end > start:
                held += min(processing, threads) * (min(end, now) - start)
        return min(1.0, max(0.0, held / (threads * (now - lo))))

    @staticmethod
    def _utilisation_run(row: _Worker, now: float) -> float:
        if not row.nthreads or row.first_task is None:
            return 0.0
        end = now if row.status == RUNNING and row.processing else row.last_seen
        run = end - row.first_task
        if run <= 0:
            return 0.0
        return min(1.0, max(0.0, row.busy / (row.nthreads * run)))

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
                "utilisation_run": self._utilisation_run(row, now),
                "first_seen": row.first_seen,
                "last_seen": row.last_seen,
            }
            for address, row in sorted(self._rows.items())
        }


def _first_entry(
    address: str,
    entered: list[str | None],
    enter: Sequence[int],
    times: Sequence[float] | None,
    default: float,
) -> float:
    """Time of the first task of a batch that entered processing on ``address``.

    Once per worker (its first task), so a scan is fine.
    """
    if times is None:
        return default
    for i, w in zip(enter, entered, strict=True):
        if w == address:
            return times[i]
    return default
