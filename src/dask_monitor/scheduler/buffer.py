"""The transition buffer: what the scheduler's hooks record between two flushes.

:class:`TransitionBuffer` owns everything between Dask's hooks and one
:class:`~dask_monitor.batch.Batch`: the bounded flat buffer the ``transition``
hook appends to (O(1): one dict lookup, five fields, no object per
transition), the folding of a creation with its first move, the count of
what was dropped or folded, the workers that joined or left, and the one
key -> worker tracker that says where each task is processing.
:meth:`TransitionBuffer.drain` cuts what was buffered into columns (strided
slices: C speed) and returns them as one batch.

It reads Dask's objects only through the task table it is given (a mapping
from key to an object with ``group``, ``processing_on``, ``state``, as
``Scheduler.tasks``), so benchmarks and tests use it without a scheduler::

    buffer = TransitionBuffer(capacity=10_000, tasks=scheduler.tasks)
    buffer.append("inc-1", "waiting", "processing", stimulus_id="s")
    batch = buffer.drain(now=time.time())

Every method runs on the scheduler's event loop thread (it is not
thread-safe, and needs not be).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from dask.utils import key_split

from dask_monitor.batch import NO_DETAILS, Batch, Details, pick
from dask_monitor.events import NEW, Event, WorkerStatus, exception_type
from dask_monitor.observers.errors import cause_line

__all__ = [
    "FIELDS",
    "Pending",
    "TransitionBuffer",
    "WorkerRecord",
]

#: Fields of one buffered task record, in this order:
#:
#: ``key``
#:     the task's key, as Dask gives it;
#: ``start``, ``finish``
#:     its states before and after (``start`` is :data:`~dask_monitor.events.NEW`
#:     for a creation or a task that existed before the monitor started);
#: ``group``
#:     its ``TaskGroup`` (prefix, group and span names are read off it in the
#:     flush), ``None`` when the scheduler did not know the task;
#: ``detail``
#:     what the flush needs of the transition, by ``finish``: for a task
#:     entering ``processing`` the address of its worker (``str`` or
#:     ``None``), for any other the transition's kwargs (a ``dict``:
#:     ``worker``, ``startstops``, ``nbytes``, exception texts,
#:     ``stimulus_id``), or ``None`` where there were none (creations, tasks
#:     seeded at start); for a completion (``processing -> memory``), read
#:     in the hook, ``(worker, details)``: the worker its report names and
#:     its :class:`~dask_monitor.batch.Details`.
FIELDS = 5

_PROCESSING = "processing"
_MEMORY = "memory"
_ERRED = "erred"
_RELEASED = "released"
_WAITING = "waiting"

#: The worker of a completion whose report named none (``None`` is a name).
_UNSAID: Any = object()

#: States a task leaves ``processing`` for when its worker is lost.
_LEAVE_PROCESSING_FOR_LOSS = frozenset({"released", "no-worker", "waiting"})

#: Dask's stimulus for a worker's report that a task raised: a move
#: ``processing -> released`` under it is a retry (``retries=``).
TASK_ERRED = "task-erred"


class WorkerRecord(NamedTuple):
    """A worker that joined or left, as buffered (see
    :meth:`TransitionBuffer.add_worker`)."""

    #: How many task records were buffered before it: its place in the batch.
    position: int
    address: str
    action: Literal["added", "removed"]
    #: Threads of a worker that joined (``None`` if unknown or removed).
    nthreads: int | None = None
    #: Whether Dask expected a removal (a graceful retirement).
    expected: bool = False


@dataclass(slots=True)
class Pending:
    """What a :class:`TransitionBuffer` held between two drains (see
    :meth:`~TransitionBuffer.take`)."""

    #: Task records, flat: :data:`FIELDS` entries each.
    records: list[Any] = field(default_factory=list)
    #: Workers that joined or left, in order.
    workers: list[WorkerRecord] = field(default_factory=list)
    #: Transitions and creations not buffered because the buffer was full.
    dropped: int = 0
    #: Calls folded into a buffered creation (``new -> waiting``).
    merged: int = 0

    @property
    def events(self) -> int:
        """How many events the batch of these records has."""
        return len(self.records) // FIELDS + len(self.workers)


class TransitionBuffer:
    """Task transitions and worker changes, buffered until the next flush.

    Parameters
    ----------
    capacity
        Records kept between two drains; more task records are dropped and
        counted (worker records are few and always kept, and take room).
    tasks
        The task table (``Scheduler.tasks``): read for a task's group and
        worker when it is buffered, and for error texts and the tasks still
        processing when it is drained. Replace it with :attr:`tasks`.
    """

    def __init__(self, capacity: int, tasks: Mapping[Any, Any] | None = None) -> None:
        self._records: list[Any] = []
        self._workers: list[WorkerRecord] = []
        self._capacity = self._limit = 0
        self.capacity = capacity
        #: The task table read by :meth:`append` and :meth:`drain`.
        self.tasks: Mapping[Any, Any] = {} if tasks is None else tasks
        #: Where each task processing is, as far as the drained records said:
        #: key -> worker address (the one key -> worker tracker).
        self.where: dict[Any, str | None] = {}
        #: Attempts that raised and will be retried: key -> (exception,
        #: traceback) texts, filled from the worker's report by the plugin;
        #: a retry's texts are taken from here when it is drained.
        self.raised: dict[Any, tuple[str | None, str | None]] = {}
        #: Transitions dropped since the last drain.
        self.dropped = 0
        #: Calls folded into a buffered creation since the last drain.
        self.merged = 0
        #: Buffered creations (``new -> released``) by key: the position of
        #: their ``finish`` field in the records (see :meth:`append`).
        self._created: dict[Any, int] = {}

    @property
    def capacity(self) -> int:
        """Records kept between two drains (settable: benchmarks lift it)."""
        return self._capacity

    @capacity.setter
    def capacity(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self._capacity = capacity
        self._limit = FIELDS * (capacity - len(self._workers))

    def __len__(self) -> int:
        """Events buffered (task records and worker records)."""
        return len(self._records) // FIELDS + len(self._workers)

    def __bool__(self) -> bool:
        """Whether a drain has anything to tell: events, or drops."""
        return bool(self._records or self._workers or self.dropped)

    # -- filling (the scheduler's hooks; keep them O(1)) -----------------------------

    def append(
        self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        """Buffer one transition; count it as dropped when the buffer is full.

        Takes Dask's ``SchedulerPlugin.transition`` arguments, so that the
        plugin hands Dask this method as its hook. A task entering
        ``processing`` is buffered with its worker's address (read off the
        task state), a completion with its figures (read off its report here,
        while it is in the CPU cache: in the flush it would not be), other
        transitions with their kwargs (see :data:`FIELDS`).

        A call that leaves the task where it was is no event: Dask reports
        ``waiting -> waiting`` for every task it queues instead of sending it
        to a worker (then ``waiting -> queued``). ``erred -> erred`` is kept
        (the task erred again).

        A task's first move, ``released -> waiting``, right after its creation
        was buffered (``update_graph``; in the same tick of the loop, so
        nearly always before the next drain) is folded into it: one event
        ``new -> waiting`` instead of two.
        """
        if start == finish and finish != _ERRED:
            return
        if start == _RELEASED and self._created:
            at = self._created.pop(key, None)
            if at is not None and finish == _WAITING:
                self._records[at] = _WAITING
                self.merged += 1
                return
        records = self._records
        if len(records) < self._limit:
            ts = self.tasks.get(key)
            if finish == _PROCESSING:
                ws = None if ts is None else ts.processing_on
                detail: Any = kwargs.get("worker") if ws is None else ws.address
            elif finish == _MEMORY and start == _PROCESSING:
                # A completion: read now, while Dask's message is in the CPU
                # cache; the flush would find it cold (see _completion).
                try:
                    detail = (kwargs.get("worker", _UNSAID), _completion(kwargs))
                except Exception:  # a report of another shape: never raise into Dask
                    detail = (kwargs.get("worker", _UNSAID), NO_DETAILS)
            else:
                detail = kwargs
            records += (key, start, finish, None if ts is None else ts.group, detail)
        else:
            self.dropped += 1

    def create(self, keys: Any) -> None:
        """Buffer the creation (``new -> released``) of the tasks ``keys``
        that are in ``released`` (Dask makes no transition for it)."""
        records = self._records
        get = self.tasks.get
        room = (self._limit - len(records)) // FIELDS
        created = self._created
        for key in keys:
            ts = get(key)
            if ts is not None and ts.state == _RELEASED:
                if room <= 0:
                    self.dropped += 1
                    continue
                room -= 1
                created[key] = len(records) + 2  # its finish (see ``append``)
                records += (key, NEW, _RELEASED, ts.group, None)

    def seed(self, key: Any, state: str, group: Any, worker: str | None) -> None:
        """Buffer a task that existed before the monitor started, as first
        seen in ``state`` (``worker``: where it is processing, if it is)."""
        detail = worker if state == _PROCESSING else None
        self._records += (key, NEW, state, group, detail)

    def add_worker(self, address: str, nthreads: int | None) -> None:
        """Buffer a worker that joined."""
        position = len(self._records) // FIELDS
        self._workers.append(WorkerRecord(position, address, "added", nthreads))
        self._limit -= FIELDS  # the room it takes

    def remove_worker(self, address: str, *, expected: bool) -> None:
        """Buffer a worker that left (``expected``: Dask retired it)."""
        position = len(self._records) // FIELDS
        self._workers.append(
            WorkerRecord(position, address, "removed", expected=expected)
        )
        self._limit -= FIELDS  # the room it takes

    def forget(self) -> None:
        """Forget where tasks are and what raised (Dask forgot every task:
        a restart); what is buffered stays."""
        self._created.clear()
        self.where.clear()
        self.raised.clear()

    # -- draining (the flush) -------------------------------------------------------

    def take(self) -> Pending:
        """Hand over what is buffered, and start empty.

        After drops, the tracker forgets tasks no longer processing: their
        departure may have been among what was dropped.
        """
        pending = Pending(self._records, self._workers, self.dropped, self.merged)
        self._records = []
        self._workers = []
        self._created.clear()  # positions in the records just taken
        self._limit = FIELDS * self._capacity
        self.dropped = 0
        self.merged = 0
        if pending.dropped:
            tasks = self.tasks
            self.where = {
                key: worker
                for key, worker in self.where.items()
                if (ts := tasks.get(key)) is not None and ts.state == _PROCESSING
            }
        return pending

    def put_back(self, pending: Pending) -> None:
        """Make ``pending`` (from :meth:`take`) what is buffered again, in
        place of an empty buffer: the next drain takes it. Benchmarks time
        flushes of recorded buffers this way; a creation put back is not
        folded with a later move."""
        if self:
            raise RuntimeError("put_back() needs an empty buffer")
        self._records = pending.records
        self._workers = pending.workers
        self._limit = FIELDS * (self._capacity - len(pending.workers))
        self.dropped = pending.dropped
        self.merged = pending.merged

    def drain(self, now: float) -> Batch:
        """What is buffered as one :class:`~dask_monitor.batch.Batch`
        stamped ``now``; the buffer starts empty (see :meth:`take`)."""
        return self.convert(self.take(), now)

    def convert(self, pending: Pending, now: float) -> Batch:
        """``pending`` (from :meth:`take`) as one batch stamped ``now``.

        The records are cut into columns by strided slices (C speed); prefix,
        group and span names are read off the task groups by comprehensions;
        the batch's index by finish state (shared by the observers) drives
        the rest: only the events that enter or leave ``processing``, err or
        are forgotten are looked at one by one. No event object is made
        here: observers read the columns.
        """
        items = pending.records
        if not items:
            lost: Counter[str] = Counter()  # no task left a worker: none
            others = [
                (r.position, _worker_status(r, now, lost)) for r in pending.workers
            ]
            return Batch.empty(now, others)
        # Keys stay as Dask gives them (tuples too): their text is made only
        # where one is shown or kept (str() of a tuple costs ~1 us).
        raw = items[0::FIELDS]
        starts = items[1::FIELDS]
        finishes = items[2::FIELDS]
        tgs = items[3::FIELDS]
        details_in = items[4::FIELDS]
        n = len(raw)
        tg = tgs[0]
        if tg is not None and tgs[-1] is tg and tgs.count(tg) == n:
            # One task group (a client.map): its names, n times (C speed).
            prefixes = [tg.prefix.name] * n
            groups = [tg.name] * n
            spans = [tg.span_id] * n
        else:
            try:
                prefixes = [tg.prefix.name for tg in tgs]
                groups = [tg.name for tg in tgs]
                spans = [tg.span_id for tg in tgs]
            except AttributeError:  # a task the scheduler did not know
                prefixes, groups, spans = _names(raw, tgs)
        workers: list[str | None] = [None] * n
        batch = Batch(
            keys=raw,
            prefixes=prefixes,
            groups=groups,
            starts=starts,
            finishes=finishes,
            workers=workers,
            spans=spans,
            time=now,
            details={},
            others=[],
        )
        index = batch.finish_index()
        enter = index.get(_PROCESSING, ())
        if pending.workers:
            # Rare: a worker that left counts the tasks taken from it in
            # this batch before it left, so the batch is followed in order.
            self._follow(batch, details_in, pending.workers)
        elif enter and (
            not self.where.keys().isdisjoint(keys := pick(raw, enter))
            or len(set(keys)) < len(keys)
        ):
            # A task entering twice, or again without having left: the
            # order matters, follow the batch event by event.
            self._follow(batch, details_in, ())
        else:
            self._track(batch, details_in, index)
        if _ERRED in index:
            self._error_details(batch, details_in, index[_ERRED])
        return batch

    def _track(
        self, batch: Batch, details_in: list[Any], index: dict[str, list[int]]
    ) -> None:
        """The tracker, column by column: every task entering ``processing``
        here was not there before and enters once, so whatever leaves
        ``processing`` leaves after it entered: the tasks entering are taken
        first, then those leaving (the same rules as :meth:`_follow`)."""
        where = self.where
        raw = batch.keys
        workers = batch.workers
        details = batch.details
        finishes = batch.finishes
        for i in index.get(_PROCESSING, ()):
            where[raw[i]] = workers[i] = details_in[i]
        memory = index.get(_MEMORY, ())
        starts = batch.starts
        for i in memory:
            if starts[i] == _PROCESSING:
                said, details[i] = details_in[i]
                worker = where.pop(raw[i], None)
                workers[i] = worker if said is _UNSAID else said
        leaving = batch.where_start(_PROCESSING)
        if len(leaving) != len(memory):  # not only completions
            for i in leaving:
                finish = finishes[i]
                if finish == _ERRED:
                    kw = details_in[i]
                    worker = where.pop(raw[i], None)
                    workers[i] = (kw.get("worker") if kw else None) or worker
                elif finish != _MEMORY and finish != _PROCESSING:
                    workers[i] = where.pop(raw[i], None)
                    if finish == _RELEASED:
                        self._retry_details(batch, details_in, i)

    def _follow(
        self,
        batch: Batch,
        details_in: list[Any],
        marks: Sequence[WorkerRecord],
    ) -> None:
        """The tracker, event by event, with the worker records at their
        places: a worker that left counts the tasks that left ``processing``
        for ``released``, ``waiting`` or ``no-worker`` from it in this batch."""
        where = self.where
        raw = batch.keys
        workers = batch.workers
        details = batch.details
        lost: Counter[str] = Counter()
        others = batch.others
        now = batch.time
        m = 0
        # The row of the next worker record (-1: none left): one comparison
        # per event, the records themselves are rare.
        at = marks[0].position if marks else -1
        for i, (start, finish) in enumerate(
            zip(batch.starts, batch.finishes, strict=True)
        ):
            if i == at:
                while m < len(marks) and marks[m].position == i:
                    others.append((i, _worker_status(marks[m], now, lost)))
                    m += 1
                at = marks[m].position if m < len(marks) else -1
            if finish == _PROCESSING:
                where[raw[i]] = workers[i] = details_in[i]
            elif start == _PROCESSING:
                worker = where.pop(raw[i], None)
                kw = details_in[i]
                if finish == _MEMORY:
                    said, details[i] = kw
                    if said is not _UNSAID:
                        worker = said
                elif finish == _ERRED:
                    worker = (kw.get("worker") if kw else None) or worker
                else:
                    if finish == _RELEASED:
                        self._retry_details(batch, details_in, i)
                    if worker is not None and finish in _LEAVE_PROCESSING_FOR_LOSS:
                        lost[worker] += 1
                workers[i] = worker
        for record in marks[m:]:  # after the last task record
            others.append((record.position, _worker_status(record, now, lost)))

    def _error_details(
        self, batch: Batch, details_in: list[Any], rows: list[int]
    ) -> None:
        """The error texts of the events at ``rows`` (into ``erred``): from
        the transition's kwargs, else from the task if the scheduler has it.

        A task that erred because a dependency did has no text of its own:
        the task Dask blames (``exception_blame``) gives its texts, and the
        traceback starts with a line naming it (see
        :func:`~dask_monitor.observers.errors.cause_line`). Read here, in
        the flush, for erred events only (never in the hook): a task that
        Dask forgot before the flush (its future released within one
        interval) has no root cause left to read, and keeps type "unknown".
        """
        details = batch.details
        get = self.tasks.get
        raw = batch.keys
        for i in rows:
            ts = get(raw[i])
            exception, traceback = _error_texts(details_in[i], ts)
            if exception is None and ts is not None:
                exception, traceback = _blamed_texts(ts, exception, traceback)
            if exception is not None or traceback is not None:
                details[i] = Details(exception=exception, traceback=traceback)

    def _retry_details(self, batch: Batch, details_in: list[Any], i: int) -> None:
        """Mark event ``i`` (``processing -> released``) as a retried attempt,
        with its exception, if Dask moved it so because the task raised."""
        kw = details_in[i]
        stimulus = kw.get("stimulus_id") if kw else None
        if not isinstance(stimulus, str) or not stimulus.startswith(TASK_ERRED):
            return
        exception, traceback = self.raised.pop(batch.keys[i], (None, None))
        # An empty text still marks the retry when the message was missed.
        batch.details[i] = Details(exception=exception or "", traceback=traceback)


def _worker_status(record: WorkerRecord, now: float, lost: Counter[str]) -> Event:
    """The event of a worker record; a removal takes the count of tasks lost
    with it so far."""
    processing = lost.pop(record.address, 0) if record.action == "removed" else 0
    return WorkerStatus(
        record.address,
        record.action,
        now,
        record.nthreads,
        processing,
        record.expected,
    )


def _names(
    keys: list[Any], tgs: list[Any]
) -> tuple[list[str], list[str], list[str | None]]:
    """Prefix, group and span columns when some tasks had no ``TaskState``."""
    prefixes: list[str] = []
    groups: list[str] = []
    spans: list[str | None] = []
    for key, tg in zip(keys, tgs, strict=True):
        if tg is not None:
            prefixes.append(tg.prefix.name)
            groups.append(tg.name)
            spans.append(tg.span_id)
        else:
            name = key_split(key)
            prefixes.append(name)
            groups.append(name)
            spans.append(None)
    return prefixes, groups, spans


def _completion(kw: dict[str, Any]) -> Details:
    """Compute time, start and stop, size, transfer and disk seconds of a
    completion, from its kwargs (the compute interval is the last
    ``startstops`` entry whose action is ``compute``; transfer and disk
    seconds sum their entries: ``transfer``, ``disk-read``, ``disk-write``)."""
    duration = begin = end = transfer = disk = None
    for ss in kw.get("startstops") or ():
        action = ss.get("action")
        if action == "compute":
            begin = ss["start"]
            end = ss["stop"]
            duration = end - begin
        elif action == "transfer":
            transfer = (transfer or 0.0) + (ss["stop"] - ss["start"])
        elif action == "disk-read" or action == "disk-write":
            disk = (disk or 0.0) + (ss["stop"] - ss["start"])
    # Once per completion: tuple.__new__ skips Details(...)'s argument handling.
    return tuple.__new__(
        Details, (duration, begin, end, kw.get("nbytes"), None, None, transfer, disk)
    )


def _blamed_texts(
    ts: Any, exception: str | None, traceback: str | None
) -> tuple[str | None, str | None]:
    """The texts of the task ``ts`` erred because of, with a line naming it."""
    blame = getattr(ts, "exception_blame", None)
    if blame is None or blame is ts:
        return exception, traceback
    text = getattr(blame, "exception_text", None) or None
    try:
        prefix = blame.prefix.name
    except AttributeError:
        prefix = key_split(blame.key)
    line = cause_line(str(blame.key)[:200], prefix, exception_type(text) or "unknown")
    root = getattr(blame, "traceback_text", None) or ""
    return text, f"{line}\n{root}" if root else line


def _error_texts(kw: dict[str, Any] | None, ts: Any) -> tuple[str | None, str | None]:
    exception = traceback = None
    if kw:
        exception = kw.get("exception_text")
        traceback = kw.get("traceback_text")
    if exception is None and ts is not None:
        exception = getattr(ts, "exception_text", None) or None
        traceback = traceback or getattr(ts, "traceback_text", None) or None
    return exception, traceback
