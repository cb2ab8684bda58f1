"""Batches of events stored as columns.

The plugin's flush turns buffered transitions into one :class:`Batch`: a list
per field of the task events (keys, prefixes, groups, start and finish
states, workers, spans), a sparse table of the rarer fields (compute times,
result sizes, error texts), and the few other events (workers joining or
leaving) with their positions. The built-in observers read the columns with
C-speed builtins (``Counter(zip(...))``, comprehensions over index lists) and
never touch an event object; :class:`~dask_monitor.events.TaskStatus` objects
are made only when someone asks for them, once, and cached: a user observer,
a sampled event, an erred task.

Observers and alert rules ask a batch the same questions: which events left
or reached a state (:meth:`Batch.where_start`, :meth:`Batch.where_finish`),
entered or left one (:meth:`Batch.entering`, :meth:`Batch.leaving`), made a
given move (:meth:`Batch.moved`, :meth:`Batch.completions`), whether the batch
is one kind of transition (:meth:`Batch.same_start`, :meth:`Batch.same_finish`),
how many events made each move (:meth:`Batch.transitions`,
:meth:`Batch.state_pairs`). The batch answers each once and shares the answer
(treat it as read-only); an observer asks by intent rather than scanning the
columns itself. Whether the order of some events matters (a key among them
twice) is :func:`repeats`.

A :class:`Batch` is also a read-only ``Sequence`` of events in the order they
happened, so an observer written for plain lists of events takes it as it is.

This module uses the standard library only.
"""

from __future__ import annotations

import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from itertools import compress, repeat
from operator import eq
from typing import Any, NamedTuple, TypeVar, cast, overload

from dask_monitor.events import Event, TaskStatus, make_task_status, make_task_statuses

__all__ = [
    "NO_DETAILS",
    "Batch",
    "Details",
    "LastBatch",
    "as_batch",
    "key_text",
    "pick",
    "positions",
    "repeats",
    "row_event",
    "uniform",
]


class Details(NamedTuple):
    """The rare fields of one task event, where any is known (the fields of
    :class:`~dask_monitor.events.TaskStatus` of the same names).

    Built once per completion or error: the plugin makes them with
    ``tuple.__new__(Details, values)``, which skips the keyword handling of
    ``Details(...)`` (about twice as fast; see ``benchmarks/README.md``).
    """

    duration: float | None = None
    begin: float | None = None
    end: float | None = None
    nbytes: int | None = None
    exception: str | None = None
    traceback: str | None = None
    transfer: float | None = None
    disk: float | None = None


_T = TypeVar("_T")

_PROCESSING = "processing"
_MEMORY = "memory"

#: The details of a task event without any.
NO_DETAILS = Details()


class Batch(Sequence[Event]):
    """One batch of events, as columns of its task events.

    Parameters
    ----------
    keys, prefixes, groups, starts, finishes, workers, spans
        One entry per task event, in order: the fields of
        :class:`~dask_monitor.events.TaskStatus` of the same names, except
        that ``keys`` holds the keys as Dask gives them (``str``, or tuples
        for collections: :func:`key_text` makes the ``str`` that events
        carry, only where a key is shown or kept).
    time
        The latest timestamp of the batch; the timestamp of every task event
        when ``times`` is ``None`` (the plugin stamps a flush with one time).
    times
        One timestamp per task event, or ``None``.
    details
        ``{index: Details(duration, begin, end, nbytes, exception, traceback,
        transfer, disk)}`` for the task events that have any of these
        (completions and errors).
    others
        The other events (worker events ...), each with the number of task
        events that came before it.

    Notes
    -----
    Columns are shared by every observer of the batch: treat them as
    read-only. Making events (iterating, indexing, :attr:`events`) is done
    once and cached; it is not thread-safe, so a batch handed to another
    thread should be materialised first (``list(batch)``).
    """

    __slots__ = (
        "__weakref__",
        "_events",
        "_finish_index",
        "_moves",
        "_pairs",
        "_same",
        "_start_rows",
        "_timed",
        "_transitions",
        "details",
        "finishes",
        "groups",
        "keys",
        "others",
        "prefixes",
        "spans",
        "starts",
        "time",
        "times",
        "workers",
    )

    def __init__(
        self,
        *,
        keys: list[Any],
        prefixes: list[str],
        groups: list[str],
        starts: list[str],
        finishes: list[str],
        workers: list[str | None],
        spans: list[str | None],
        time: float,
        times: list[float] | None = None,
        details: dict[int, Details] | None = None,
        others: list[tuple[int, Event]] | None = None,
    ) -> None:
        self.keys = keys
        self.prefixes = prefixes
        self.groups = groups
        self.starts = starts
        self.finishes = finishes
        self.workers = workers
        self.spans = spans
        self.time = time
        self.times = times
        self.details: dict[int, Details] = {} if details is None else details
        self.others: list[tuple[int, Event]] = [] if others is None else others
        self._events: list[Event] | None = None
        self._finish_index: dict[str, list[int]] | None = None
        self._transitions: Counter[tuple[str, str, str, str]] | None = None
        self._start_rows: dict[str, Sequence[int]] | None = None
        self._same: tuple[str | None, str | None] | None = None
        self._moves: dict[tuple[str | None, str | None], Sequence[int]] = {}
        self._pairs: Counter[tuple[str, str]] | None = None
        self._timed: list[int] | None = None

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> Batch:
        """The batch of a sequence of events (a replay, a test, a user).

        A :class:`Batch` is returned as it is.
        """
        if isinstance(events, Batch):
            return events
        keys: list[str] = []
        prefixes: list[str] = []
        groups: list[str] = []
        starts: list[str] = []
        finishes: list[str] = []
        workers: list[str | None] = []
        spans: list[str | None] = []
        times: list[float] = []
        details: dict[int, Details] = {}
        others: list[tuple[int, Event]] = []
        for e in events:
            if type(e) is not TaskStatus:
                others.append((len(keys), e))
                continue
            if (
                e.duration is not None
                or e.begin is not None
                or e.end is not None
                or e.nbytes is not None
                or e.exception is not None
                or e.traceback is not None
                or e.transfer is not None
                or e.disk is not None
            ):
                details[len(keys)] = Details(
                    e.duration,
                    e.begin,
                    e.end,
                    e.nbytes,
                    e.exception,
                    e.traceback,
                    e.transfer,
                    e.disk,
                )
            keys.append(e.key)
            prefixes.append(e.prefix)
            groups.append(e.group)
            starts.append(e.start)
            finishes.append(e.finish)
            workers.append(e.worker)
            spans.append(e.span)
            times.append(e.timestamp)
        batch = cls.from_columns(
            keys=keys,
            prefixes=prefixes,
            groups=groups,
            starts=starts,
            finishes=finishes,
            workers=workers,
            spans=spans,
            timestamps=times,
            details=details,
            others=others,
        )
        if isinstance(events, list):
            batch._events = events
        return batch

    @classmethod
    def empty(cls, time: float, others: list[tuple[int, Event]] | None = None) -> Batch:
        """A batch without task events (worker events in ``others``, maybe)."""
        return cls(
            keys=[],
            prefixes=[],
            groups=[],
            starts=[],
            finishes=[],
            workers=[],
            spans=[],
            time=time,
            others=others,
        )

    @classmethod
    def from_columns(
        cls,
        *,
        keys: list[Any],
        prefixes: list[str],
        groups: list[str],
        starts: list[str],
        finishes: list[str],
        workers: list[str | None],
        spans: list[str | None],
        timestamps: list[float],
        details: dict[int, Details] | None = None,
        others: list[tuple[int, Event]] | None = None,
    ) -> Batch:
        """A batch of columns with one timestamp per task event.

        ``time`` is the latest timestamp (other events' included), and
        ``times`` is dropped when every task event has that time.
        """
        time = max(timestamps) if timestamps else 0.0
        for _, other in others or ():
            t = getattr(other, "timestamp", None)
            if isinstance(t, int | float) and t > time:
                time = float(t)
        same = (
            bool(timestamps)
            and timestamps[0] == time
            and timestamps.count(time) == len(timestamps)
        )
        return cls(
            keys=keys,
            prefixes=prefixes,
            groups=groups,
            starts=starts,
            finishes=finishes,
            workers=workers,
            spans=spans,
            time=time,
            times=None if same or not timestamps else timestamps,
            details=details,
            others=others,
        )

    # -- columns -------------------------------------------------------------

    @property
    def tasks(self) -> int:
        """Number of task events."""
        return len(self.keys)

    def timestamp(self, i: int) -> float:
        """Timestamp of task event ``i``."""
        times = self.times
        return self.time if times is None else times[i]

    def timestamps(self) -> list[float]:
        """One timestamp per task event (made for batches stamped with one time)."""
        times = self.times
        return [self.time] * len(self.keys) if times is None else times

    def detail(self, i: int) -> Details:
        """The rare fields of task event ``i`` (see :data:`Details`)."""
        return self.details.get(i, NO_DETAILS)

    def finish_index(self) -> dict[str, list[int]]:
        """Indices of the task events by the state they reached, in order.

        Built on the first call (one pass) and shared by every observer of
        the batch: do not modify.
        """
        index = self._finish_index
        if index is None:
            finishes = self.finishes
            if self.same_finish() is not None:
                index = {finishes[0]: list(range(len(finishes)))}
            else:
                rows: defaultdict[str, list[int]] = defaultdict(list)
                for i, f in enumerate(finishes):
                    rows[f].append(i)
                index = dict(rows)
            self._finish_index = index
        return index

    def where_finish(self, state: str) -> Sequence[int]:
        """Indices of the task events that reached ``state``, in order (a
        range when every event did: sliced by :func:`pick`, not indexed)."""
        if self.same_finish() == state:
            return range(len(self.keys))
        if self._finish_index is None and state not in self.finishes:
            return []  # no index built for a state the batch does not have
        return self.finish_index().get(state, [])

    def where_start(self, state: str) -> Sequence[int]:
        """Indices of the task events that left ``state``, in order (cached
        per state: shared by the observers of the batch)."""
        cache = self._start_rows
        if cache is None:
            cache = self._start_rows = {}
        rows = cache.get(state)
        if rows is None:
            rows = cache[state] = positions(self.starts, state)
        return rows

    # -- selectors by intent: computed once, shared by every observer ---------

    def same_start(self) -> str | None:
        """The state every task event left, or ``None`` (several, or no event).

        A batch of one kind of transition (a flush of completions only) lets
        observers count it whole instead of per state.
        """
        return self._uniform()[0]

    def same_finish(self) -> str | None:
        """The state every task event reached, or ``None`` (see :meth:`same_start`)."""
        return self._uniform()[1]

    def _uniform(self) -> tuple[str | None, str | None]:
        same = self._same
        if same is None:
            starts = self.starts
            finishes = self.finishes
            if starts:
                same = (
                    starts[0] if uniform(starts) else None,
                    finishes[0] if uniform(finishes) else None,
                )
            else:
                same = (None, None)
            self._same = same
        return same

    def moved(self, start: str, finish: str) -> Sequence[int]:
        """Indices of the task events from ``start`` to ``finish``, in order."""
        return self._moved(start, finish)

    def entering(self, state: str) -> Sequence[int]:
        """Indices of the task events that reached ``state`` from another state."""
        return self._moved(None, state, state)

    def leaving(self, state: str) -> Sequence[int]:
        """Indices of the task events that left ``state`` for another state."""
        return self._moved(state, None, state)

    def completions(self) -> Sequence[int]:
        """Indices of the task events that completed (``processing -> memory``)."""
        return self._moved(_PROCESSING, _MEMORY)

    def timed_completions(self) -> list[int]:
        """Indices of the completions that carry :data:`Details` (compute
        times, sizes ...), in the order the details were taken: what the
        duration sketches and the per-prefix times read."""
        rows = self._timed
        if rows is None:
            details = self.details
            starts = self.starts
            finishes = self.finishes
            rows = self._timed = [
                i
                for i in details
                if finishes[i] == _MEMORY and starts[i] == _PROCESSING
            ]
        return rows

    def _moved(
        self, start: str | None, finish: str | None, other: str | None = None
    ) -> Sequence[int]:
        """Indices of the events from ``start`` to ``finish``, in order; a
        ``None`` state stands for any state but ``other``. Cached per
        ``(start, finish)``."""
        rows = self._moves.get((start, finish))
        if rows is None:
            rows = self._moves[start, finish] = self._select(start, finish, other)
        return rows

    def _select(
        self, start: str | None, finish: str | None, other: str | None
    ) -> Sequence[int]:
        same_start, same_finish = self._uniform()
        if same_start is not None and same_finish is not None:
            # One kind of transition: every event or none, as a range (sliced
            # by :func:`pick`, not indexed).
            if (same_start == start if start is not None else same_start != other) and (
                same_finish == finish if finish is not None else same_finish != other
            ):
                return range(len(self.keys))
            return ()
        # The events that reached ``finish`` filtered by their start, or
        # those that left ``start`` filtered by their finish.
        if finish is not None:
            rows = self.where_finish(finish)
            column, want, same = self.starts, start, same_start
        else:
            assert start is not None
            rows = self.where_start(start)
            column, want, same = self.finishes, finish, same_finish
        if not rows:
            return ()
        if same is not None:  # one state in the other column: all or none
            return rows if (same == want if want is not None else same != other) else ()
        if want is not None:
            return [i for i in rows if column[i] == want]
        if other not in column:  # a C-speed scan spares the filter
            return rows
        return [i for i in rows if column[i] != other]

    def state_pairs(self) -> Counter[tuple[str, str]]:
        """How many task events made each ``(start, finish)``.

        From :meth:`transitions` when an observer counted them already.
        Counted once and shared: do not modify.
        """
        pairs = self._pairs
        if pairs is None:
            counts = self._transitions
            if counts is None:
                pairs = Counter(zip(self.starts, self.finishes, strict=True))
            else:
                pairs = Counter()
                for (_, _, s, f), c in counts.items():
                    pairs[s, f] += c
            self._pairs = pairs
        return pairs

    def transitions(self) -> Counter[tuple[str, str, str, str]]:
        """How many task events made each ``(group, prefix, start, finish)``.

        Counted once and shared by every observer of the batch: do not modify.
        """
        counts = self._transitions
        if counts is None:
            groups = self.groups
            prefixes = self.prefixes
            if groups and uniform(groups) and uniform(prefixes):
                # One group (a client.map): pairs of states are cheaper to count.
                g = groups[0]
                p = prefixes[0]
                counts = Counter(
                    {
                        (g, p, s, f): c
                        for (s, f), c in Counter(
                            zip(self.starts, self.finishes, strict=True)
                        ).items()
                    }
                )
            else:
                counts = Counter(
                    zip(groups, prefixes, self.starts, self.finishes, strict=True)
                )
            self._transitions = counts
        return counts

    def counted(self) -> Counter[tuple[str, str, str, str]] | None:
        """:meth:`transitions` if an observer made them already, else ``None``
        (for observers that can do with less when they are not there)."""
        return self._transitions

    def has_finish(self, state: str) -> bool:
        """Whether any task event reached ``state`` (a C-speed scan)."""
        index = self._finish_index
        if index is not None:
            return state in index
        return state in self.finishes

    def task(self, i: int) -> TaskStatus:
        """Task event ``i`` as a :class:`~dask_monitor.events.TaskStatus`."""
        events = self._events
        if events is not None and not self.others:
            return events[i]  # type: ignore[return-value]
        return self._make(i)

    def row(self, i: int) -> tuple[Any, ...]:
        """Task event ``i`` as the arguments of
        :func:`~dask_monitor.events.make_task_status`, but for its key, kept
        as Dask gave it (see :func:`row_event`).

        A tuple is cheaper to keep than an event, and a key's text is made
        only for rows that become events: ``str()`` of a tuple key costs more
        than the rest of the row.
        """
        times = self.times
        d = self.details.get(i, NO_DETAILS)
        # Unpacked by name: cheaper than d[0]..d[7] or d.duration ...
        duration, begin, end, nbytes, exception, traceback, transfer, disk = d
        return (
            self.keys[i],
            self.prefixes[i],
            self.groups[i],
            self.starts[i],
            self.finishes[i],
            self.time if times is None else times[i],
            self.workers[i],
            duration,
            begin,
            end,
            nbytes,
            exception,
            traceback,
            self.spans[i],
            transfer,
            disk,
        )

    def take(self, indices: Sequence[int]) -> Batch:
        """The batch of the task events at ``indices`` (in that order).

        Other events are left out.
        """
        details = self.details
        times = self.times
        if type(indices) is range and indices.step == 1:  # slices: C speed
            lo, hi = indices.start, indices.stop
            return Batch(
                keys=self.keys[lo:hi],
                prefixes=self.prefixes[lo:hi],
                groups=self.groups[lo:hi],
                starts=self.starts[lo:hi],
                finishes=self.finishes[lo:hi],
                workers=self.workers[lo:hi],
                spans=self.spans[lo:hi],
                time=self.time,
                times=None if times is None else times[lo:hi],
                details={i - lo: d for i, d in details.items() if lo <= i < hi},
            )
        keys = self.keys
        prefixes = self.prefixes
        groups = self.groups
        starts = self.starts
        finishes = self.finishes
        workers = self.workers
        spans = self.spans
        return Batch(
            keys=[keys[i] for i in indices],
            prefixes=[prefixes[i] for i in indices],
            groups=[groups[i] for i in indices],
            starts=[starts[i] for i in indices],
            finishes=[finishes[i] for i in indices],
            workers=[workers[i] for i in indices],
            spans=[spans[i] for i in indices],
            time=self.time,
            times=None if times is None else [times[i] for i in indices],
            details=(
                {j: details[i] for j, i in enumerate(indices) if i in details}
                if details
                else {}
            ),
        )

    def chunks(self, size: int) -> Iterator[Batch]:
        """The batch cut into consecutive batches of at most ``size`` task events.

        Other events go with the chunk they precede.
        """
        n = len(self.keys)
        if n <= size:
            yield self
            return
        others = self.others
        j = 0
        for lo in range(0, n, size):
            hi = min(lo + size, n)
            part = self.take(range(lo, hi))
            mine: list[tuple[int, Event]] = []
            while j < len(others) and (others[j][0] < hi or hi == n):
                pos, event = others[j]
                mine.append((max(pos - lo, 0), event))
                j += 1
            part.others = mine
            yield part

    # -- the Sequence of events ----------------------------------------------

    @property
    def events(self) -> list[Event]:
        """Every event, in order, as objects (made once, then cached)."""
        events = self._events
        if events is None:
            tasks = make_task_statuses(
                key_texts(self.keys),
                self.prefixes,
                self.groups,
                self.starts,
                self.finishes,
                repeat(self.time) if self.times is None else self.times,
                self.workers,
                self.spans,
                self.details,
            )
            if not self.others:
                events = cast("list[Event]", tasks)
            else:
                events = []
                i = 0
                for pos, other in self.others:
                    events += tasks[i:pos]
                    events.append(other)
                    i = pos
                events += tasks[i:]
            self._events = events
        return events

    def _make(self, i: int) -> TaskStatus:
        return row_event(self.row(i))

    def __len__(self) -> int:
        return len(self.keys) + len(self.others)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self.events[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Batch):
            return self.events == other.events
        if isinstance(other, list | tuple):
            return self.events == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<Batch tasks={len(self.keys)} others={len(self.others)} "
            f"time={self.time!r}>"
        )


class LastBatch:
    """Recognises the latest batch it was shown, without keeping it alive.

    The same batch is recognised (held by a weak reference), and so is
    another batch made from the same list of events (the list is held: a
    list of events given to several observers becomes one batch in each).
    """

    __slots__ = ("_events", "_ref")

    def __init__(self) -> None:
        self._ref: weakref.ref[Batch] | None = None
        self._events: list[Event] | None = None

    def __contains__(self, batch: Batch) -> bool:
        ref = self._ref
        if ref is not None and ref() is batch:
            return True
        events = self._events
        return events is not None and batch._events is events

    def remember(self, batch: Batch) -> None:
        """Make ``batch`` the latest one."""
        self._ref = weakref.ref(batch)
        self._events = batch._events

    def clear(self) -> None:
        """Forget the latest batch."""
        self._ref = None
        self._events = None


def repeats(values: list[Any]) -> bool:
    """Whether a value occurs more than once in ``values`` (keys of a batch:
    then the order of their events decides what they do)."""
    return len(set(values)) != len(values)


def pick(column: list[_T], rows: Sequence[int]) -> list[_T]:
    """The entries of ``column`` at ``rows`` (a new list; a slice for a range)."""
    if type(rows) is range:
        return column[rows.start : rows.stop]
    return [column[i] for i in rows]


def row_event(row: tuple[Any, ...]) -> TaskStatus:
    """The event of a :meth:`Batch.row`."""
    key = row[0]
    if type(key) is str:
        return make_task_status(*row)
    return make_task_status(str(key), *row[1:])


def key_text(key: Any) -> str:
    """A task key as events carry it: ``str(key)`` (tuples become their text)."""
    return key if type(key) is str else str(key)


def key_texts(keys: list[Any]) -> list[str]:
    """:func:`key_text` of every key (the list itself when all are ``str``)."""
    if set(map(type, keys)) <= {str}:
        return keys
    return [k if type(k) is str else str(k) for k in keys]


def as_batch(events: Sequence[Event] | Any) -> Batch:
    """``events`` as a :class:`Batch` (itself if it is one)."""
    if isinstance(events, Batch):
        return events
    return Batch.from_events(events)


def uniform(column: list[Any]) -> bool:
    """Whether every entry of a non-empty ``column`` equals the first one.

    C-speed: a uniform column (a flush of one kind of transition) costs a
    ``list.count`` that only checks identities.
    """
    first = column[0]
    return column[-1] == first and column.count(first) == len(column)


def positions(column: list[Any], value: Any) -> Sequence[int]:
    """Indices of the entries of ``column`` equal to ``value``, in order.

    C-speed scans: a uniform column is answered by :func:`uniform`; otherwise
    ``list.count`` tells none, all, a few (found by ``list.index``, which
    skips the others at C speed) or many (found by a scan).
    """
    n = len(column)
    if not n:
        return ()
    if column[0] == column[-1] and uniform(column):
        return range(n) if column[0] == value else ()
    c = column.count(value)
    if not c:
        return ()
    if c * 8 <= n:
        index = column.index
        rows: list[int] = []
        i = -1
        for _ in range(c):
            i = index(value, i + 1)
            rows.append(i)
        return rows
    return list(compress(range(n), map(eq, column, repeat(value))))
