"""Sampling: the latest task events, and a uniform sample of the whole run.

A batch is read as columns (:class:`~dask_monitor.batch.Batch`) and event
objects are made only for the events read. Until then the reservoir's picks
are rows (:meth:`~dask_monitor.batch.Batch.row`, with the key as Dask gave
it: the text of a tuple key costs more than the rest, and most picks are
replaced before anyone reads them), and the recent events are kept as the
batches they came in (the last ``recent`` task events of each, a copy of
those columns when a batch is much larger), at most ``recent`` events in all.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, cast

from dask_monitor.batch import Batch, as_batch, row_event
from dask_monitor.events import Event, TaskStatus
from dask_monitor.observers._common import BatchObserver, check_count
from dask_monitor.observers.errors import truncate
from dask_monitor.snapshot import EventRecord, Samples

__all__ = ["SamplingObserver", "record"]

_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TaskStatus))
_values = attrgetter(*_FIELDS)


def record(event: TaskStatus, max_text: int | None = None) -> EventRecord:
    """A task event as plain data; its texts cut to ``max_text`` characters."""
    out = dict(zip(_FIELDS, _values(event), strict=True))
    if max_text is not None:
        if event.exception is not None and len(event.exception) > max_text:
            out["exception"] = truncate(event.exception, max_text)
        if event.traceback is not None and len(event.traceback) > max_text:
            out["traceback"] = truncate(event.traceback, max_text, keep="tail")
    return cast(EventRecord, out)


class SamplingObserver(BatchObserver):
    """The last ``recent`` task events and a uniform sample of ``reservoir`` of them.

    The reservoir follows Li's Algorithm L: after it is full, the index of the
    next event to take is drawn directly (a geometric skip), so that the cost
    is per *sampled* event, not per event seen; each of the ``seen`` task
    events so far is in the sample with the same probability.

    Parameters
    ----------
    recent
        Latest task events kept.
    reservoir
        Size of the uniform sample.
    seed
        Seed of the sampler's own ``random.Random`` (reproducible samples).
    max_text
        Characters of exception and traceback texts kept in :meth:`snapshot`.

    Notes
    -----
    Holds at most ``recent + reservoir`` events. Not thread-safe.
    """

    name = "sampling"

    def __init__(
        self,
        *,
        recent: int = 1_000,
        reservoir: int = 1_000,
        seed: int | None = None,
        max_text: int = 2_000,
    ) -> None:
        self.recent_size = check_count("recent", recent)
        self.reservoir_size = check_count("reservoir", reservoir)
        self.max_text = check_count("max_text", max_text)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget everything (and restart the random sequence from the seed)."""
        self._recent: deque[TaskStatus] = deque(maxlen=self.recent_size)
        # Newer recent events not made yet: (batch, first task index kept).
        self._tail: deque[tuple[Batch, int]] = deque()
        self._tail_size = 0
        # Picks are rows (see Batch.row: keys as Dask gave them) until read:
        # most picks are replaced before anyone reads them.
        self._reservoir: list[TaskStatus | tuple[Any, ...]] = []
        self._records: list[EventRecord | None] = []
        self._cache: dict[int, tuple[TaskStatus, EventRecord]] = {}
        self._rng = random.Random(self.seed)
        self._w = 1.0
        self._next = 0  # index (among task events) of the next one to sample
        self.seen = 0

    # -- events ------------------------------------------------------------

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; events other than task events are ignored."""
        if not events:
            return
        batch = as_batch(events)
        n = batch.tasks
        if not n:
            return
        self._keep_recent(batch, n)
        self._sample(batch, n)

    def _keep_recent(self, batch: Batch, n: int) -> None:
        """Keep the last ``recent`` task events of the batch, as it is."""
        keep = self.recent_size
        lo = max(0, n - keep)
        if lo > keep:  # do not hold a much larger batch for its tail
            batch = batch.take(range(lo, batch.tasks))
            lo = 0
        tail = self._tail
        tail.append((batch, lo))
        size = self._tail_size + min(n, keep)
        while size - (tail[0][0].tasks - tail[0][1]) >= keep:
            first, start = tail.popleft()
            size -= first.tasks - start
        if size > keep:
            first, start = tail[0]
            tail[0] = (first, start + size - keep)
            size = keep
        self._tail_size = size
        if size == keep:
            self._recent.clear()  # the tail replaces every event made

    def _made_recent(self) -> deque[TaskStatus]:
        """The recent events, once those of the tail are made."""
        recent = self._recent
        tail = self._tail
        while tail:
            batch, lo = tail.popleft()
            task = batch.task
            recent.extend([task(i) for i in range(lo, batch.tasks)])
        self._tail_size = 0
        return recent

    def _sample(self, batch: Batch, n: int) -> None:
        """Draw the picks among the batch's ``n`` task events (Algorithm L).

        The draws give each pick's slot and event; a row is made only for
        the last pick of each slot in the batch (see :meth:`_place`): early
        in a run most picks of a batch replace picks of the same batch.
        """
        base = self.seen
        k = self.reservoir_size
        sample = self._reservoir
        # slot -> index (in the batch) of the latest pick for it
        picks: dict[int, int] = {}
        if len(sample) < k:
            take = min(k - len(sample), n)
            first = len(sample)
            picks.update(zip(range(first, first + take), range(take), strict=True))
            sample.extend([()] * take)  # made in _place
            self._records.extend([None] * take)
            if len(sample) < k:
                self.seen = base + n
                self._place(batch, picks)
                return
            self._w = math.exp(math.log(self._u()) / k)
            self._next = base + take - 1 + self._skip()
        end = base + n
        nxt = self._next
        if nxt >= end:
            self.seen = end
            self._place(batch, picks)
            return
        # Algorithm L, with _u() and _skip() inlined (the same draws).
        rng = self._rng
        random_ = rng.random
        log = math.log
        exp = math.exp
        log1p = math.log1p
        floor = math.floor
        w = self._w
        while nxt < end:
            picks[int(random_() * k)] = nxt - base  # randrange(k), 3x cheaper
            w *= exp(log(1.0 - random_()) / k)
            if w >= 1.0:
                nxt += 1
            else:
                nxt += floor(log(1.0 - random_()) / log1p(-w)) + 1
        self._w = w
        self._next = nxt
        self.seen = end
        self._place(batch, picks)

    def _place(self, batch: Batch, picks: dict[int, int]) -> None:
        """Put the rows of the batch's picks (slot -> event index) in place."""
        sample = self._reservoir
        records = self._records
        row = batch.row
        for slot, i in picks.items():
            sample[slot] = row(i)
            records[slot] = None

    def _u(self) -> float:
        """A uniform number in (0, 1]."""
        return 1.0 - self._rng.random()

    def _skip(self) -> int:
        """Distance to the next sampled event (Algorithm L)."""
        w = self._w
        if w >= 1.0:
            return 1
        return math.floor(math.log(self._u()) / math.log1p(-w)) + 1

    def _made_reservoir(self) -> list[TaskStatus]:
        """The sample, once its picks are made events."""
        sample = self._reservoir
        for i, pick in enumerate(sample):
            if type(pick) is tuple:
                sample[i] = row_event(pick)
        return cast("list[TaskStatus]", sample)

    # -- reading -----------------------------------------------------------

    def recent(self) -> list[TaskStatus]:
        """The latest task events, oldest first."""
        return list(self._made_recent())

    def reservoir(self) -> list[TaskStatus]:
        """The uniform sample (in no particular order)."""
        return list(self._made_reservoir())

    def snapshot(self) -> Samples:
        """Recent events, the sample and the count of task events, as plain data."""
        max_text = self.max_text
        cache = self._cache
        fresh: dict[int, tuple[TaskStatus, EventRecord]] = {}
        recent: list[EventRecord] = []
        for e in self._made_recent():
            hit = cache.get(id(e))
            if hit is None or hit[0] is not e:
                hit = (e, record(e, max_text))
            fresh[id(e)] = hit
            recent.append(hit[1])
        self._cache = fresh
        records = self._records
        sample = self._made_reservoir()
        for i, r in enumerate(records):
            if r is None:
                records[i] = record(sample[i], max_text)
        return {
            "recent": recent,
            "reservoir": cast(list[EventRecord], list(records)),
            "seen": self.seen,
        }
