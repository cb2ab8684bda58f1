"""Progress: how many tasks are in each state, per task prefix and task group.

Counts move with each transition (``start -= 1``, ``finish += 1``), aggregated
per batch with one ``Counter`` over ``(group, prefix, start, finish)``: a few
distinct tuples per batch, whatever its size. Keys are looked at only on the
events that need them (creations, completions, forgets: half of the stream),
to ignore duplicate creations and to recognise recomputations.

A task the monitor first sees in mid-life (it attached late, or a creation was
dropped) leaves a state it was never counted in. Rather than look every key up
(a hash-table miss per event), a count that would go negative is set back to
zero after the batch and the difference is counted as tasks created there
(:attr:`ProgressObserver.unknown`): exactly "created in ``start`` first" when
no other task of the row was in that state, and exact again once they leave.
Counts never go negative and totals always equal the sum of the rows.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TypedDict, cast

from dask_monitor.events import NEW, Event, TaskStatus
from dask_monitor.observers._common import (
    CHUNK,
    ERRED,
    FORGOTTEN,
    MEMORY,
    PROCESSING,
    check_count,
    task_events,
)
from dask_monitor.snapshot import (
    ACTIVE_STATES,
    STATES,
    DurationStats,
    GroupRow,
    PrefixRow,
    Totals,
)

__all__ = ["ProgressObserver", "ProgressSnapshot"]

_WAITING, _QUEUED, _NO_WORKER, _PROCESSING = ACTIVE_STATES
_ORDER = {s: i for i, s in enumerate(STATES)}
#: Folded names a table remembers at least (see ``_Table``).
FOLDED_NAMES = 10_000


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

    __slots__ = ("completed", "erred", "last_active", "prefix", "recomputed", "states")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.states: defaultdict[str, int] = defaultdict(int)
        self.completed = 0
        self.erred = 0
        self.recomputed = 0
        self.last_active = 0.0

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


class _Table:
    """Rows by name, at most ``capacity`` of them; the rest share ``other``.

    A name that did not fit is remembered in ``folded`` (at most
    ``max(capacity, FOLDED_NAMES)`` names; beyond that the table is ``closed``
    to new names and stops counting them) so that it stays folded while it
    may have live tasks in ``other``: a row started later for it would count
    their departures without their arrivals. With ``drop_empty``, rows whose
    tasks are all forgotten are dropped, and once ``other`` is empty too the
    folded names are forgotten and the table opens again.
    """

    __slots__ = ("capacity", "closed", "drop_empty", "folded", "other", "rows")

    def __init__(self, capacity: int, drop_empty: bool) -> None:
        self.capacity = capacity
        self.drop_empty = drop_empty
        self.rows: dict[str, _Row] = {}
        self.other = _Row("")
        self.folded: set[str] = set()
        self.closed = False

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
            if len(folded) < max(self.capacity, FOLDED_NAMES):
                folded.add(name)
            else:
                self.closed = True
        return self.other

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


def _activity(item: tuple[str, _Row]) -> tuple[float, str]:
    return -item[1].last_active, item[0]


def _top(rows: dict[str, _Row], n: int) -> list[tuple[str, _Row]]:
    """The ``n`` most recently active rows, most recent first, ties by name."""
    if n <= 0:
        return []
    if len(rows) <= n:
        return sorted(rows.items(), key=_activity)
    return heapq.nsmallest(n, rows.items(), key=_activity)


class ProgressObserver:
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

    Notes
    -----
    Memory: the two tables (at most ``max_prefixes + max_groups`` rows of a
    few hundred bytes, plus the names of folded prefixes and groups, at most
    ``max(cap, 10_000)`` each: they are counted exactly up to there, and a
    lower bound is reported beyond), and the keys of the live
    tasks (a set, and a set of those that completed), removed when a task is
    forgotten: it is what it takes to ignore duplicate creations and to count
    recomputations.

    Counting rules:

    * ``new -> s`` creates a task in ``s``; a ``new`` for a task that is live
      already (a duplicate report) is ignored. ``new`` and ``forgotten`` are
      no states.
    * A task first seen in mid-life counts as created in the state it left
      (see the module docstring: :attr:`unknown` counts them).
    * ``completed`` counts ``processing -> memory`` (a task reported in memory
      when the monitor attached is in memory, not completed); ``erred``
      counts transitions into ``erred``, but from ``new`` (a task that failed
      before the monitor attached); ``recomputed`` counts completions of a task that
      had completed before in the same life (its data was lost with a
      worker); ``done`` is ``completed - recomputed + erred``.
    * ``remaining`` counts tasks now waiting, queued, no-worker or
      processing; ``total`` is ``done + remaining``.
    * ``last_active`` of a row is the time of its latest event.

    Not thread-safe: feed and read it from one thread (the pipeline's).
    """

    name = "progress"

    def __init__(self, *, max_prefixes: int = 10_000, max_groups: int = 1_000) -> None:
        self.max_prefixes = check_count("max_prefixes", max_prefixes)
        self.max_groups = check_count("max_groups", max_groups)
        self.reset()

    def reset(self) -> None:
        """Forget everything (Dask's ``restart`` drops tasks without transitions)."""
        self._live: set[str] = set()
        self._done: set[str] = set()
        self._prefixes = _Table(self.max_prefixes, drop_empty=False)
        self._groups = _Table(self.max_groups, drop_empty=True)
        self._totals: defaultdict[str, int] = defaultdict(int)
        self._completed = 0
        self._erred = 0
        self._recomputed = 0
        self._unknown = 0
        self._last_active = 0.0

    # -- events ------------------------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, in the order they happened.

        Events other than :class:`TaskStatus` are ignored.
        """
        n = len(events)
        if n > CHUNK and isinstance(events, list | tuple):
            # A few passes over each chunk while it is in the CPU cache beat
            # the same passes over a batch too big for it; counts do not
            # depend on how a stream is cut.
            for i in range(0, n, CHUNK):
                self.update_batch(events[i : i + CHUNK])
            return
        if not n:
            return
        # Read a task attribute off every event first: AttributeError for a
        # worker event or an alert, before anything changed.
        tasks = cast("Sequence[TaskStatus]", events)
        try:
            fins = [e.finish for e in tasks]
        except AttributeError:
            tasks = task_events(events)
            if not tasks:
                return
            fins = [e.finish for e in tasks]
        self._take(tasks, fins)

    def _take(self, events: Sequence[TaskStatus], fins: list[str]) -> None:
        starts = [e.start for e in events]
        groups = [e.group for e in events]
        prefixes = [e.prefix for e in events]
        counts = Counter(zip(groups, prefixes, starts, fins, strict=True))
        # Latest time per row: one time for the whole batch when the events
        # share it (the plugin stamps a flush's events with one time).
        t_last = events[-1].timestamp
        latest: tuple[dict[str, float], dict[str, float]] | None = None
        if events[0].timestamp != t_last:
            times = [e.timestamp for e in events]
            t_last = max(times)
            latest = (
                dict(zip(groups, times, strict=True)),
                dict(zip(prefixes, times, strict=True)),
            )
        if t_last > self._last_active:
            self._last_active = t_last

        # Keys: creations, completions, forgets. The common batch takes three
        # set operations per task; anything unusual (a duplicate creation, a
        # key created again, a recomputation) is followed event by event.
        live = self._live
        done = self._done
        new = [e.key for e in events if e.start == NEW] if NEW in starts else []
        gone = (
            [e.key for e in events if e.finish == FORGOTTEN]
            if FORGOTTEN in fins
            else []
        )
        completed = (
            [e for e in events if e.finish == MEMORY and e.start == PROCESSING]
            if MEMORY in fins
            else []
        )
        in_order = False
        if new:
            if live.isdisjoint(new):
                n = len(live)
                live.update(new)
                if len(live) - n != len(new):  # created twice in the batch
                    live.difference_update(new)
                    in_order = True
            else:
                in_order = True
        if completed and not in_order:
            keys = [e.key for e in completed]
            if done.isdisjoint(keys):
                n = len(done)
                done.update(keys)
                if len(done) - n != len(keys):  # completed twice in the batch
                    done.difference_update(keys)
                    in_order = True
            else:
                in_order = True
            if in_order:
                live.difference_update(new)  # back to the state before the batch
        recomputed: list[TaskStatus] = []
        if in_order:
            duplicates, recomputed = self._in_order(events)
            for e in duplicates:
                counts[e.group, e.prefix, e.start, e.finish] -= 1
        elif gone:
            live.difference_update(gone)
            done.difference_update(gone)

        # States.
        ptable = self._prefixes
        gtable = self._groups
        prows: dict[str, _Row] = {}  # this batch's rows, by name
        grows: dict[str, _Row] = {}
        totals = self._totals
        left: list[tuple[str, _Row, _Row]] = []
        emptied: set[str] = set()
        prow = ptable.rows.get
        grow = gtable.rows.get
        for (g, p, s0, f), c in counts.items():
            if not c:
                continue
            row = prows.get(p)
            if row is None:
                row = prows[p] = prow(p) or ptable.row(p, p)
            group = grows.get(g)
            if group is None:
                group = grows[g] = grow(g) or gtable.row(g, p)
            if s0 == f:
                continue
            if s0 != NEW and s0 != FORGOTTEN:
                row.states[s0] -= c
                group.states[s0] -= c
                totals[s0] -= c
                left.append((s0, row, group))
            if f != FORGOTTEN:
                row.states[f] += c
                group.states[f] += c
                totals[f] += c
            else:
                emptied.add(g)
        for rows, when in (
            (prows, None if latest is None else latest[1]),
            (grows, None if latest is None else latest[0]),
        ):
            for name, row in rows.items():
                t = t_last if when is None else when[name]
                if t > row.last_active:
                    row.last_active = t
        for s, row, group in left:
            n = row.states[s]
            if n < 0:  # tasks seen first in mid-life: created in s
                row.states[s] = 0
                totals[s] -= n
                self._unknown -= n
            n = group.states[s]
            if n < 0:
                group.states[s] = 0

        if completed:
            self._completed += len(completed)
            self._count(completed, "completed")
        if recomputed:
            self._recomputed += len(recomputed)
            self._count(recomputed, "recomputed")
        if ERRED in fins:
            erred = [e for e in events if e.finish == ERRED and e.start != NEW]
            if erred:
                self._erred += len(erred)
                self._count(erred, "erred")
        if emptied:
            gtable.drop_if_empty(emptied)

    def _in_order(
        self, events: Sequence[TaskStatus]
    ) -> tuple[list[TaskStatus], list[TaskStatus]]:
        """Follow keys event by event (rare: duplicates, recomputes, reused keys).

        Returns the duplicate creations (to be ignored) and the recomputations.
        """
        live = self._live
        done = self._done
        duplicates: list[TaskStatus] = []
        recomputed: list[TaskStatus] = []
        for e in events:
            s = e.start
            f = e.finish
            if s == NEW:
                if e.key in live:
                    duplicates.append(e)
                    continue
                live.add(e.key)
            if f == FORGOTTEN:
                live.discard(e.key)
                done.discard(e.key)
            elif f == MEMORY and s == PROCESSING:
                if e.key in done:
                    recomputed.append(e)
                else:
                    done.add(e.key)
        return duplicates, recomputed

    def _count(self, events: list[TaskStatus], field: str) -> None:
        """Add events to the ``field`` counts of their prefix and group rows."""
        for table, names in (
            (self._prefixes, [e.prefix for e in events]),
            (self._groups, [e.group for e in events]),
        ):
            get = table.rows.get
            other = table.other
            for name, c in Counter(names).items():
                row = get(name, other)
                setattr(row, field, getattr(row, field) + c)

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
        for name, row in _top(ptable.rows, top_prefixes):
            left = row.remaining()
            d = row.done()
            prefixes[name] = {
                "states": _states(row.states),
                "completed": row.completed,
                "erred": row.erred,
                "recomputed": row.recomputed,
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
        for name, row in _top(gtable.rows, top_groups):
            left = row.remaining()
            d = row.done()
            groups[name] = {
                "prefix": row.prefix,
                "states": _states(row.states),
                "completed": row.completed,
                "erred": row.erred,
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
