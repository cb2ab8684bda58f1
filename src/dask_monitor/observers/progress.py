"""Progress: how many tasks are in each state, per task prefix and task group.

Counts move with each transition (``start -= 1``, ``finish += 1``), aggregated
per batch with one ``Counter`` over the batch's columns ``(group, prefix,
start, finish)``: a few distinct tuples per batch, whatever its size.
Completions (``processing -> memory``) and errors are read off the same counts.
When nearly every event of a batch is another tuple (thousands of prefixes or
groups at once) counting would cost more than it saves: the tuples are then
taken one by one, and the totals per state come from the columns. Keys are
looked at only on the events that need them (creations, completions, forgets:
half of the stream, picked from the key column by index), to ignore
duplicate creations and to recognise recomputations; :class:`Keys` does it
once per batch for the progress observer and the per-span views together.
No event object is made.

A task the monitor first sees in mid-life (it attached late, or a creation was
dropped) leaves a state it was never counted in. Rather than look every key up
(a hash-table miss per event), a count that would go negative is set back to
zero after the batch and the difference is counted as tasks created there
(:attr:`ProgressObserver.unknown`): exactly "created in ``start`` first" when
no other task of the row was in that state, and exact again once they leave.
Counts never go negative and totals always equal the sum of the rows.

Each table keeps its rows in the order of their latest activity: a row whose
``last_active`` moves forward is taken out of the dict and put back at its
end (as it is met, when the batch has one time: the plugin's case), and a
row made by the batch is at the end already. The snapshot's most recently
active rows are then the last ones of the dict, read backwards; only rows
that tie on ``last_active`` are sorted (by name), instead of ranking every
row. Should timestamps go backwards, the table notices it and sorts its rows
once, at the next snapshot.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import repeat
from typing import NamedTuple, TypedDict

from dask_monitor.batch import Batch, LastBatch, as_batch, pick
from dask_monitor.events import NEW, Event
from dask_monitor.observers._common import (
    CHUNK,
    ERRED,
    FORGOTTEN,
    MEMORY,
    PROCESSING,
    RELEASED,
    BatchObserver,
    check_count,
)
from dask_monitor.observers.errors import retried_attempts
from dask_monitor.snapshot import (
    ACTIVE_STATES,
    STATES,
    DurationStats,
    GroupRow,
    PrefixRow,
    Totals,
)

__all__ = ["Keys", "ProgressObserver", "ProgressSnapshot", "Repeats"]

_WAITING, _QUEUED, _NO_WORKER, _PROCESSING = ACTIVE_STATES
_ORDER = {s: i for i, s in enumerate(STATES)}
#: Folded names a table remembers at least, by default (see ``_Table``).
FOLDED_NAMES = 10_000
#: ``last_active`` of a row not touched yet (made by the batch being taken).
_FRESH = float("-inf")


class ProgressSnapshot(TypedDict):
    """What :meth:`ProgressObserver.snapshot` returns.

    ``rate``, ``eta*`` and ``durations`` in the rows are placeholders
    (``0.0``, ``None``, an empty :class:`DurationStats`) for the pipeline to
    fill from the throughput, ETA and durations observers.
    """

    totals: Totals
    prefixes: dict[str, PrefixRow]  # the most recently active prefixes
    prefixes_folded: int  # prefixes not in ``prefixes``
    groups: dict[str, GroupRow]  # the most recently active groups
    groups_folded: int  # groups not in ``groups``


class _Row:
    """Counts of one prefix or group (or of the catch-all row)."""

    __slots__ = (
        "completed",
        "erred",
        "last_active",
        "prefix",
        "recomputed",
        "retried",
        "states",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.states: defaultdict[str, int] = defaultdict(int)
        self.completed = 0
        self.erred = 0
        self.recomputed = 0
        self.retried = 0
        self.last_active = _FRESH

    def remaining(self) -> int:
        get = self.states.get
        return (
            get(_WAITING, 0)
            + get(_QUEUED, 0)
            + get(_NO_WORKER, 0)
            + get(_PROCESSING, 0)
        )

    def done(self) -> int:
        return self.completed - self.recomputed + self.erred


def _last_active(item: tuple[str, _Row]) -> float:
    return item[1].last_active


def _by_name(items: list[tuple[str, _Row]], n: int) -> list[tuple[str, _Row]]:
    """The first ``n`` of ``items`` by name (names are unique in a table)."""
    if len(items) > n:
        return heapq.nsmallest(n, items)
    items.sort()
    return items


class _Table:
    """Rows by name, at most ``capacity`` of them; the rest share ``other``.

    A name that did not fit is remembered in ``folded`` (at most
    ``max_folded`` names, ``max(capacity, FOLDED_NAMES)`` by default; beyond
    that the table is ``closed`` to new names and stops counting them) so
    that it stays folded while it may have live tasks in ``other``: a row
    started later for it would count their departures without their arrivals.
    With ``drop_empty``, rows whose tasks are all forgotten are dropped, and
    once ``other`` is empty too the folded names are forgotten and the table
    opens again.

    ``rows`` is in the order of ``last_active`` (see :meth:`start_batch`
    and :meth:`touch`) while
    ``ordered`` is true; ``newest`` is at least the latest ``last_active`` of
    a row.
    """

    __slots__ = (
        "capacity",
        "closed",
        "drop_empty",
        "folded",
        "max_folded",
        "newest",
        "ordered",
        "other",
        "rows",
    )

    def __init__(
        self, capacity: int, drop_empty: bool, max_folded: int | None = None
    ) -> None:
        self.capacity = capacity
        self.drop_empty = drop_empty
        self.max_folded = (
            max(capacity, FOLDED_NAMES) if max_folded is None else max_folded
        )
        self.rows: dict[str, _Row] = {}
        self.other = _Row("")
        self.folded: set[str] = set()
        self.closed = False
        self.newest = 0.0
        self.ordered = True

    def row(self, name: str, prefix: str) -> _Row:
        """The row of ``name``, started (or folded) when it is new.

        ``prefix`` is the prefix a new row belongs to.
        """
        row = self.rows.get(name)
        if row is not None:
            return row
        folded = self.folded
        if not self.closed and name not in folded:
            if len(self.rows) < self.capacity:
                row = self.rows[name] = _Row(prefix)
                return row
            if len(folded) < self.max_folded:
                folded.add(name)
            else:
                self.closed = True
        return self.other

    def start_batch(self, t: float) -> bool:
        """Whether the rows of a batch stamped ``t`` (one time for all its
        events) may be moved to the end as the observer meets them, instead
        of by :meth:`touch`: when ``t`` is not before any row's time (``t``
        is then the newest)."""
        if t > 0.0 and t >= self.newest:
            self.newest = t
            return True
        return False

    def touch(
        self, rows: dict[str, _Row], t: float, when: dict[str, float] | None
    ) -> None:
        """Move ``last_active`` of a batch's ``rows`` forward (to the end of the dict).

        ``rows`` by name (``other`` among them maybe); their time is ``t``, or
        ``when[name]`` when ``when`` is given (then rows are moved in the
        order of their times). For batches :meth:`start_batch` turned down:
        times of their own, or before a row's time.
        """
        table = self.rows
        other = self.other
        items = (
            rows.items()
            if when is None
            else sorted(rows.items(), key=lambda item: when[item[0]])
        )
        for name, row in items:
            t1 = t if when is None else when[name]
            if row.last_active == _FRESH:
                row.last_active = 0.0
            if t1 > row.last_active:
                row.last_active = t1
                if row is not other:
                    del table[name]
                    table[name] = row
                    if t1 < self.newest:
                        self.ordered = False
                    else:
                        self.newest = t1
            elif t1 <= 0.0 < self.newest:  # a new row stayed at the end, at 0.0
                self.ordered = False

    def top(self, n: int) -> list[tuple[str, _Row]]:
        """The ``n`` most recently active rows, most recent first, ties by name."""
        if n <= 0:
            return []
        rows = self.rows
        if not self.ordered:  # timestamps went backwards: sort once
            items = sorted(rows.items(), key=_last_active)
            rows.clear()
            rows.update(items)
            self.newest = max(items[-1][1].last_active, 0.0) if items else 0.0
            self.ordered = True
        top: list[tuple[str, _Row]] = []
        tied: list[tuple[str, _Row]] = []
        t_tied: float | None = None
        for item in reversed(rows.items()):
            t = item[1].last_active
            if t != t_tied:
                if tied:
                    top += _by_name(tied, n - len(top))
                    if len(top) >= n:
                        return top
                tied = [item]
                t_tied = t
            else:
                tied.append(item)
        if tied:
            top += _by_name(tied, n - len(top))
        return top

    def drop_if_empty(self, names: set[str]) -> None:
        """Drop the rows among ``names`` that have no live task left."""
        if not self.drop_empty:
            return
        rows = self.rows
        other = self.other
        for name in names:
            row = rows.get(name, other)
            if not any(row.states.values()):
                if row is other:
                    if self.folded or self.closed:
                        self.folded.clear()
                        self.closed = False
                else:
                    del rows[name]

    def restart(self) -> None:
        """Dask forgot every task: no row has live tasks any more.

        The rows' cumulative counts stay; with ``drop_empty`` every row goes
        (as Dask dropped its task groups) and the folded names are forgotten.
        """
        if self.drop_empty:
            self.rows.clear()
            self.other = _Row("")
            self.folded.clear()
            self.closed = False
            return
        for row in (*self.rows.values(), self.other):
            row.states.clear()

    @property
    def folded_count(self) -> int:
        """Names folded into ``other`` (a lower bound once the table is closed)."""
        return len(self.folded)


def _states(counts: dict[str, int]) -> dict[str, int]:
    """Non-zero counts in the order of :data:`STATES` (unknown states last)."""
    return {
        s: counts[s]
        for s in sorted(counts, key=lambda s: _ORDER.get(s, len(_ORDER)))
        if counts[s]
    }


def _empty_durations() -> DurationStats:
    return {
        "count": 0,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
        "relative_error": 0.0,
    }


class Repeats(NamedTuple):
    """The events of a batch that repeat what its keys did before (both empty
    in the common case): indices in the batch, in order."""

    #: Creations of a task that is live already (Dask reports the tasks of a
    #: graph that exist already with its new ones).
    duplicates: list[int]
    #: Completions of a task that had completed before in the same life (its
    #: data was lost with a worker).
    recomputed: list[int]

    def within(self, rows: Sequence[int]) -> Repeats:
        """The repeats of the batch of the events at ``rows`` (a chunk)."""
        if not self.duplicates and not self.recomputed:
            return self
        where = {i: j for j, i in enumerate(rows)}
        return Repeats(
            [where[i] for i in self.duplicates if i in where],
            [where[i] for i in self.recomputed if i in where],
        )


_NO_REPEATS = Repeats([], [])


def _add_unseen(seen: set[object], keys: list[object]) -> bool:
    """Add ``keys`` to ``seen`` if none is there yet and none repeats (then
    the order of their events does not matter); else leave ``seen`` as it was."""
    if not seen.isdisjoint(keys):
        return False
    before = len(seen)
    seen.update(keys)
    if len(seen) - before == len(keys):
        return True
    seen.difference_update(keys)  # a key twice in ``keys``
    return False


class Keys:
    """The keys of live tasks: what it takes to ignore duplicate creations and
    to recognise recomputations.

    Holds the keys of the live tasks and of those that completed, removed when
    a task is forgotten. :meth:`take` takes a batch and tells its
    :class:`Repeats`; its answer for the latest batch is kept, so that several
    observers of one batch (the progress observer and the per-span views)
    share one tracker and pay for it once.
    """

    __slots__ = ("_latest", "_repeats", "done", "live")

    def __init__(self) -> None:
        self.live: set[object] = set()
        self.done: set[object] = set()
        self._latest = LastBatch()  # the batch of ``_repeats``
        self._repeats = _NO_REPEATS

    def clear(self) -> None:
        """Forget every key."""
        self.live.clear()
        self.done.clear()
        self._latest.clear()

    def take(self, batch: Batch) -> Repeats:
        """Take the keys of ``batch``: its creations, completions and forgotten
        tasks; return the events that repeat what a key did before.

        Keys created or completed once in the batch, and not before, are
        taken with set operations; otherwise (a duplicate creation, a key
        created again, a recomputation) the order of the events decides, and
        they are followed one by one.
        """
        if batch in self._latest:
            return self._repeats
        keys = batch.keys
        live = self.live
        done = self.done
        created = pick(keys, batch.where_start(NEW))
        completed = pick(keys, batch.completions())
        repeats = _NO_REPEATS
        if not _add_unseen(live, created):
            repeats = self._in_order(batch)
        elif not _add_unseen(done, completed):
            live.difference_update(created)  # back to the state before the batch
            repeats = self._in_order(batch)
        else:
            gone = pick(keys, batch.where_finish(FORGOTTEN))
            live.difference_update(gone)
            done.difference_update(gone)
        self._latest.remember(batch)
        self._repeats = repeats
        return repeats

    def _in_order(self, batch: Batch) -> Repeats:
        """Follow keys event by event (rare: duplicates, recomputes, reused keys)."""
        live = self.live
        done = self.done
        duplicates: list[int] = []
        recomputed: list[int] = []
        for i, (k, s, f) in enumerate(
            zip(batch.keys, batch.starts, batch.finishes, strict=True)
        ):
            if s == NEW:
                if k in live:
                    duplicates.append(i)
                    if f != FORGOTTEN:
                        continue
                else:
                    live.add(k)
            if f == FORGOTTEN:
                live.discard(k)
                done.discard(k)
            elif f == MEMORY and s == PROCESSING:
                if k in done:
                    recomputed.append(i)
                else:
                    done.add(k)
        return Repeats(duplicates, recomputed)


class ProgressObserver(BatchObserver):
    """Counts of tasks per state, per task prefix and per task group.

    Parameters
    ----------
    max_prefixes
        Prefixes with a row of their own; tasks of further prefixes are
        counted in one internal catch-all row, so that totals stay exact.
        Prefix rows are never dropped.
    max_groups
        Groups with a row of their own, likewise; a group whose tasks are all
        forgotten is dropped (as Dask does), which makes room for new ones.
    max_folded
        Names of folded prefixes (and of folded groups) each table remembers;
        ``None`` for ``max(cap, 10_000)``, ``cap`` being the table's
        ``max_prefixes`` or ``max_groups``.

    Notes
    -----
    Memory: the two tables (at most ``max_prefixes + max_groups`` rows of a
    few hundred bytes, plus the names of folded prefixes and groups, at most
    ``max_folded`` each: they are counted exactly up to there, and a
    lower bound is reported beyond), and the keys of the live
    tasks (a set, and a set of those that completed), removed when a task is
    forgotten: it is what it takes to ignore duplicate creations and to count
    recomputations.

    Counting rules:

    * ``new -> s`` creates a task in ``s``. ``new -> released`` for a task
      that is live already is ignored: Dask lists the tasks of a graph that
      exist already in ``released`` with its new ones (``update_graph``), and
      the plugin reports them all. ``new -> s`` for a live task is such a
      report folded with the task's next move (see
      :meth:`~dask_monitor.scheduler.plugin.MonitorPlugin.transition`): it counts as
      ``released -> s``. ``new`` and ``forgotten`` are no states.
    * A task first seen in mid-life counts as created in the state it left
      (see the module docstring: :attr:`unknown` counts them).
    * ``completed`` counts ``processing -> memory`` (a task reported in memory
      when the monitor attached is in memory, not completed); ``erred``
      counts transitions into ``erred``, but from ``new`` (a task that failed
      before the monitor attached); ``recomputed`` counts completions of a task that
      had completed before in the same life (its data was lost with a
      worker); ``done`` is ``completed - recomputed + erred``. These counts
      are history: they stay when Dask forgets the tasks, and across
      :meth:`restart`.
    * ``retried`` counts attempts that raised and that Dask retried: a
      ``processing -> released`` event carrying an exception text (see
      :func:`~dask_monitor.observers.errors.retried_attempts`). The task goes
      on (to ``waiting``): it is in no ``erred`` count, and counts in
      ``done`` once, when it finally completes or errs.
    * ``remaining`` counts tasks now waiting, queued, no-worker or
      processing; ``total`` is ``done + remaining``.
    * ``last_active`` of a row is the time of its latest event.

    Not thread-safe: feed and read it from one thread (the pipeline's).
    """

    name = "progress"

    def __init__(
        self,
        *,
        max_prefixes: int = 10_000,
        max_groups: int = 1_000,
        max_folded: int | None = None,
    ) -> None:
        self.max_prefixes = check_count("max_prefixes", max_prefixes)
        self.max_groups = check_count("max_groups", max_groups)
        self.max_folded = (
            None if max_folded is None else check_count("max_folded", max_folded)
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything (see :meth:`restart` for Dask's ``restart``)."""
        keys = getattr(self, "keys", None)
        if keys is None:
            #: The keys of live tasks (shared with the per-span views).
            self.keys = Keys()
        else:
            keys.clear()
        self._prefixes = _Table(self.max_prefixes, False, self.max_folded)
        self._groups = _Table(self.max_groups, True, self.max_folded)
        self._totals: defaultdict[str, int] = defaultdict(int)
        self._completed = 0
        self._erred = 0
        self._recomputed = 0
        self._retried = 0
        self._unknown = 0
        self._last_active = 0.0

    def restart(self) -> None:
        """Dask restarted: it forgot every task, without transitions.

        Live state goes (state counts, the keys of live tasks, the groups, as
        Dask dropped its task groups); the history stays (per-prefix and total
        ``completed``, ``erred``, ``recomputed``, ``retried``, ``done``), so
        that ``remaining`` is 0 and ``total == done`` right after.
        """
        self.keys.clear()
        self._prefixes.restart()
        self._groups.restart()
        self._totals.clear()

    # -- events ------------------------------------------------------------

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, in the order they happened.

        Events other than :class:`~dask_monitor.events.TaskStatus` are
        ignored. A :class:`~dask_monitor.batch.Batch` is read by its columns.
        """
        batch = as_batch(events)
        n = len(batch.keys)
        if not n:
            return
        if n > CHUNK:
            # The keys are taken for the whole batch (once, shared with the
            # per-span views), the counts chunk by chunk.
            self.take(batch, self.keys.take(batch))
            return
        self._take(batch)

    def take(self, batch: Batch, repeats: Repeats) -> None:
        """Count ``batch``, whose keys another observer took already.

        ``repeats`` is what :meth:`Keys.take` said of ``batch``: the indices
        of its duplicate creations and of its recomputations. The per-span
        views count their batches so, keeping no keys of their own.
        """
        n = len(batch.keys)
        if n > CHUNK:
            # A few passes over each chunk while it is in the CPU cache beat
            # the same passes over a batch too big for it; counts do not
            # depend on how a stream is cut.
            for lo, part in zip(range(0, n, CHUNK), batch.chunks(CHUNK), strict=True):
                self._take(part, repeats.within(range(lo, lo + len(part.keys))))
        elif n:
            self._take(batch, repeats)

    def _take(self, batch: Batch, repeats: Repeats | None = None) -> None:
        """Count ``batch``; ``repeats`` is :meth:`Keys.take` of it, if known."""
        groups = batch.groups
        prefixes = batch.prefixes
        # Moves per (group, prefix, start, finish): counted once per tuple
        # when the batch holds a few tuples many times each (the common
        # case); taken event by event when most events are of another group
        # (thousands at once), where counting would cost more than it saves.
        sample = groups[:64]
        per_event = len(set(sample)) * 4 > len(sample)
        counts = None if per_event else batch.transitions()
        if per_event:
            self._count_totals(batch)  # from the columns, not per event
        if repeats is None:
            repeats = self.keys.take(batch)
        if repeats.duplicates:
            counts = self._without_duplicates(
                batch, counts, repeats.duplicates, per_event
            )
        moves = (
            counts.items()
            if counts is not None
            else zip(
                zip(groups, prefixes, batch.starts, batch.finishes, strict=True),
                repeat(1),
            )
        )
        # Latest time per row: the batch's time when its events share it
        # (the plugin stamps a flush with one time).
        times = batch.times
        if times is None:
            t_last = batch.time
            when: tuple[dict[str, float], dict[str, float]] | None = None
        else:
            t_last = max(times)
            when = (
                dict(zip(groups, times, strict=True)),
                dict(zip(prefixes, times, strict=True)),
            )
        if t_last > self._last_active:
            self._last_active = t_last

        totals = self._totals
        ptable = self._prefixes
        gtable = self._groups
        prows: dict[str, _Row] = {}  # this batch's rows, by name
        grows: dict[str, _Row] = {}
        negative: list[tuple[str, _Row]] = []  # rows with a count below zero
        gnegative: list[tuple[str, _Row]] = []
        emptied: set[str] = set()
        ptrows = ptable.rows
        gtrows = gtable.rows
        prow = ptrows.get
        grow = gtrows.get
        pother = ptable.other
        gother = gtable.other
        # A row whose ``last_active`` moves forward goes to the end of its
        # table. With one time for the batch, not before any row's (the
        # common case), rows are moved here as they are met: a call per row
        # would cost as much as the rest of the loop when a batch holds
        # thousands of prefixes. Otherwise they are collected for
        # ``_Table.touch``, which moves them in the order of their times.
        as_met = when is None and (
            ptable.start_batch(t_last) & gtable.start_batch(t_last)
        )
        n_completed = 0
        n_erred = 0
        lost = False  # a move processing -> released: a retry, maybe
        for (g, p, s0, f), c in moves:
            if not c:
                continue
            # (Calling ``row`` again for a name is harmless: a folded name
            # stays folded.)
            row = prow(p) or ptable.row(p, p)
            group = grow(g) or gtable.row(g, p)
            if not as_met:
                prows[p] = row
                grows[g] = group
            else:
                last = row.last_active
                if t_last > last:
                    row.last_active = t_last
                    if last != _FRESH and row is not pother:  # new rows are last
                        del ptrows[p]
                        ptrows[p] = row
                last = group.last_active
                if t_last > last:
                    group.last_active = t_last
                    if last != _FRESH and group is not gother:
                        del gtrows[g]
                        gtrows[g] = group
            if s0 == f:
                if f == ERRED:  # erred again: an error, no move
                    row.erred += c
                    group.erred += c
                    n_erred += c
                continue
            if s0 != NEW and s0 != FORGOTTEN:
                states = row.states
                v = states[s0] - c
                states[s0] = v
                if v < 0:
                    negative.append((s0, row))
                states = group.states
                v = states[s0] - c
                states[s0] = v
                if v < 0:
                    gnegative.append((s0, group))
                if not per_event:
                    totals[s0] -= c
            if f != FORGOTTEN:
                row.states[f] += c
                group.states[f] += c
                if not per_event:
                    totals[f] += c
                if f == MEMORY:
                    if s0 == PROCESSING:
                        row.completed += c
                        group.completed += c
                        n_completed += c
                elif f == ERRED and s0 != NEW:
                    row.erred += c
                    group.erred += c
                    n_erred += c
                elif f == RELEASED and s0 == PROCESSING:
                    lost = True
            else:
                emptied.add(g)
        if not as_met:
            ptable.touch(prows, t_last, None if when is None else when[1])
            gtable.touch(grows, t_last, None if when is None else when[0])
        self._clip(negative, gnegative)
        self._completed += n_completed
        self._erred += n_erred
        if lost and batch.details:
            self._count_retries(batch)
        if repeats.recomputed:
            self._count_recomputed(batch, repeats.recomputed)
        if emptied:
            gtable.drop_if_empty(emptied)

    def _clip(
        self, negative: list[tuple[str, _Row]], gnegative: list[tuple[str, _Row]]
    ) -> None:
        """Set back to zero the counts of prefix rows (``negative``) and group
        rows (``gnegative``) still below zero at the end of a batch: tasks
        seen first in mid-life, counted as created in that state."""
        totals = self._totals
        for s, row in negative:
            v = row.states[s]
            if v < 0:
                row.states[s] = 0
                totals[s] -= v
                self._unknown -= v
        for s, group in gnegative:
            if group.states[s] < 0:
                group.states[s] = 0

    def _count_totals(self, batch: Batch) -> None:
        """Move the totals per state by the states the events left and reached."""
        totals = self._totals
        for s, c in Counter(batch.starts).items():
            if s != NEW and s != FORGOTTEN:
                totals[s] -= c
        for f in set(batch.finishes):
            if f != FORGOTTEN:
                totals[f] += len(batch.where_finish(f))

    def _without_duplicates(
        self,
        batch: Batch,
        counts: Counter[tuple[str, str, str, str]] | None,
        duplicates: list[int],
        totals_counted: bool,
    ) -> Counter[tuple[str, str, str, str]]:
        """The moves of ``batch`` with its duplicate creations taken for what
        they are: no move (``new -> released``), or ``released -> f``.

        A copy (the batch's counts are shared with other observers);
        ``totals_counted``: the totals were moved by every event already
        (see :meth:`_count_totals`), and are corrected here.
        """
        counts = Counter(batch.transitions() if counts is None else counts)
        totals = self._totals
        groups = batch.groups
        prefixes = batch.prefixes
        finishes = batch.finishes
        for i in duplicates:
            g, p, f = groups[i], prefixes[i], finishes[i]
            counts[g, p, NEW, f] -= 1
            if f == RELEASED:  # reported again: no move
                if totals_counted:
                    totals[f] -= 1
            else:  # reported again in released, then moved on
                counts[g, p, RELEASED, f] += 1
                if totals_counted:
                    totals[RELEASED] -= 1
        return counts

    def _count_recomputed(self, batch: Batch, recomputed: list[int]) -> None:
        """Count the completions of ``batch`` at ``recomputed`` as recomputations."""
        self._recomputed += len(recomputed)
        for table, names in (
            (self._prefixes, pick(batch.prefixes, recomputed)),
            (self._groups, pick(batch.groups, recomputed)),
        ):
            get = table.rows.get
            other = table.other
            for name, c in Counter(names).items():
                get(name, other).recomputed += c

    def _count_retries(self, batch: Batch) -> None:
        """Count the attempts of ``batch`` that raised and were retried."""
        retried = retried_attempts(batch)
        if not retried:
            return
        self._retried += len(retried)
        prefixes = batch.prefixes
        groups = batch.groups
        for table, names in (
            (self._prefixes, [prefixes[i] for i in retried]),
            (self._groups, [groups[i] for i in retried]),
        ):
            get = table.rows.get
            other = table.other
            for name, c in Counter(names).items():
                get(name, other).retried += c

    # -- reading -----------------------------------------------------------

    @property
    def unknown(self) -> int:
        """Tasks counted as created in the state they were first seen leaving."""
        return self._unknown

    @property
    def last_active(self) -> float:
        """Time of the latest event seen (``0.0`` before any)."""
        return self._last_active

    def prefix_names(self) -> list[str]:
        """Names of the prefixes that have a row (folded ones have none)."""
        return list(self._prefixes.rows)

    def remaining(self, prefix: str | None = None) -> int:
        """Tasks now waiting, queued, no-worker or processing.

        Of one prefix, or of all of them when ``prefix`` is ``None``; ``0`` for
        a prefix without a row.
        """
        if prefix is None:
            get = self._totals.get
            return sum(get(s, 0) for s in ACTIVE_STATES)
        row = self._prefixes.rows.get(prefix)
        return 0 if row is None else row.remaining()

    def snapshot(
        self, top_prefixes: int = 200, top_groups: int = 50
    ) -> ProgressSnapshot:
        """Totals and the most recently active prefixes and groups, as plain data.

        Parameters
        ----------
        top_prefixes, top_groups
            How many rows to include, most recently active first (ties by
            name); ``prefixes_folded`` and ``groups_folded`` count the others,
            folded names included. Totals always cover every task.
        """
        remaining = self.remaining()
        done = self._completed - self._recomputed + self._erred
        totals: Totals = {
            "states": _states(self._totals),
            "completed": self._completed,
            "erred": self._erred,
            "recomputed": self._recomputed,
            "retried": self._retried,
            "done": done,
            "remaining": remaining,
            "total": done + remaining,
            "rate": 0.0,
            "eta": None,
            "eta_low": None,
            "eta_high": None,
        }
        ptable = self._prefixes
        prefixes: dict[str, PrefixRow] = {}
        for name, row in ptable.top(top_prefixes):
            left = row.remaining()
            d = row.done()
            prefixes[name] = {
                "states": _states(row.states),
                "completed": row.completed,
                "erred": row.erred,
                "recomputed": row.recomputed,
                "retried": row.retried,
                "done": d,
                "remaining": left,
                "total": d + left,
                "durations": _empty_durations(),
                "rate": 0.0,
                "eta": None,
                "eta_low": None,
                "eta_high": None,
                "last_active": row.last_active,
            }
        gtable = self._groups
        groups: dict[str, GroupRow] = {}
        for name, row in gtable.top(top_groups):
            left = row.remaining()
            d = row.done()
            groups[name] = {
                "prefix": row.prefix,
                "states": _states(row.states),
                "completed": row.completed,
                "erred": row.erred,
                "retried": row.retried,
                "done": d,
                "remaining": left,
                "total": d + left,
                "last_active": row.last_active,
            }
        return {
            "totals": totals,
            "prefixes": prefixes,
            "prefixes_folded": len(ptable.rows) - len(prefixes) + ptable.folded_count,
            "groups": groups,
            "groups_folded": len(gtable.rows) - len(groups) + gtable.folded_count,
        }
