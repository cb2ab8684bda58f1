"""Sampling: the latest task events, and a uniform sample of the whole run."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Sequence
from itertools import islice
from operator import attrgetter, countOf
from typing import cast

from dask_monitor.events import Event, TaskStatus
from dask_monitor.observers._common import check_count
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


class SamplingObserver:
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
        self._reservoir: list[TaskStatus] = []
        self._records: list[EventRecord | None] = []
        self._cache: dict[int, tuple[TaskStatus, EventRecord]] = {}
        self._rng = random.Random(self.seed)
        self._w = 1.0
        self._next = 0  # index (among task events) of the next one to sample
        self.seen = 0

    # -- events ------------------------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; events other than task events are ignored."""
        n = len(events)
        if not n:
            return
        tasks: Sequence[TaskStatus]
        if countOf(map(type, events), TaskStatus) == n:
            tasks = events  # type: ignore[assignment]
        else:
            tasks = [e for e in events if type(e) is TaskStatus]
            n = len(tasks)
            if not n:
                return
        keep = self.recent_size
        if isinstance(tasks, list | tuple):
            self._recent.extend(tasks[-keep:])
        else:
            self._recent.extend(islice(tasks, max(0, n - keep), None))
        self._sample(tasks, n)

    def _sample(self, tasks: Sequence[TaskStatus], n: int) -> None:
        base = self.seen
        k = self.reservoir_size
        sample = self._reservoir
        if len(sample) < k:
            take = min(k - len(sample), n)
            sample.extend(tasks[i] for i in range(take))
            self._records.extend([None] * take)
            if len(sample) < k:
                self.seen = base + n
                return
            self._w = math.exp(math.log(self._u()) / k)
            self._next = base + take - 1 + self._skip()
        rng = self._rng
        records = self._records
        end = base + n
        while self._next < end:
            slot = rng.randrange(k)
            sample[slot] = tasks[self._next - base]
            records[slot] = None
            self._w *= math.exp(math.log(self._u()) / k)
            self._next += self._skip()
        self.seen = end

    def _u(self) -> float:
        """A uniform number in (0, 1]."""
        return 1.0 - self._rng.random()

    def _skip(self) -> int:
        """Distance to the next sampled event (Algorithm L)."""
        w = self._w
        if w >= 1.0:
            return 1
        return math.floor(math.log(self._u()) / math.log1p(-w)) + 1

    # -- reading -----------------------------------------------------------

    def recent(self) -> list[TaskStatus]:
        """The latest task events, oldest first."""
        return list(self._recent)

    def reservoir(self) -> list[TaskStatus]:
        """The uniform sample (in no particular order)."""
        return list(self._reservoir)

    def snapshot(self) -> Samples:
        """Recent events, the sample and the count of task events, as plain data."""
        max_text = self.max_text
        cache = self._cache
        fresh: dict[int, tuple[TaskStatus, EventRecord]] = {}
        recent: list[EventRecord] = []
        for e in self._recent:
            hit = cache.get(id(e))
            if hit is None or hit[0] is not e:
                hit = (e, record(e, max_text))
            fresh[id(e)] = hit
            recent.append(hit[1])
        self._cache = fresh
        records = self._records
        for i, r in enumerate(records):
            if r is None:
                records[i] = record(self._reservoir[i], max_text)
        return {
            "recent": recent,
            "reservoir": cast(list[EventRecord], list(records)),
            "seen": self.seen,
        }
