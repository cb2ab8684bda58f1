"""Synthetic event streams and a fake clock for observer tests.

Observers see events, never the scheduler, so every test here builds its
events by hand. The :class:`Stream` helper (fixture ``stream``) writes the
usual task lifecycles and realistic workloads so that tests state only what
they are about; :class:`FakeClock` (fixture ``clock``) stands in for
``time.time``. Both are reached through fixtures: two ``conftest.py`` files
cannot both be imported by name.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterable, Iterator

import msgpack
import pytest

from dask_monitor.events import NEW, Event, TaskStatus, WorkerStatus

WORKERS = tuple(f"tcp://10.0.0.{i}:8786" for i in range(1, 9))


class FakeClock:
    """A clock that moves only when told to; call it for the time."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        self.now += seconds
        return self.now


class Stream:
    """Builders of synthetic task events, in the order Dask would report them."""

    workers_addresses = WORKERS

    @staticmethod
    def task(
        key: str,
        start: str,
        finish: str,
        t: float = 1_000.0,
        *,
        prefix: str | None = None,
        group: str | None = None,
        **fields: object,
    ) -> TaskStatus:
        """One transition; prefix and group default to the key's prefix.

        ``"inc-3"`` has prefix ``"inc"`` and group ``"inc-g"``.
        """
        prefix = prefix if prefix is not None else key.rsplit("-", 1)[0]
        group = group if group is not None else f"{prefix}-g"
        return TaskStatus(key, prefix, group, start, finish, t, **fields)  # type: ignore[arg-type]

    @classmethod
    def lifecycle(
        cls,
        key: str,
        t: float = 1_000.0,
        *,
        prefix: str | None = None,
        group: str | None = None,
        step: float = 1.0,
        worker: str = WORKERS[0],
        duration: float = 0.5,
        nbytes: int = 8,
        queued: bool = False,
        error: str | None = None,
        release: bool = True,
        forget: bool = True,
    ) -> list[TaskStatus]:
        """The transitions of one task from creation to forgotten.

        ``new -> released -> waiting [-> queued] -> processing -> memory``
        (or ``-> erred`` when ``error`` is given) ``-> released -> forgotten``;
        ``release=False`` stops in memory (or erred), ``forget=False`` in
        released. Transition ``i`` happens at ``t + i * step``.
        """
        kw = {"prefix": prefix, "group": group}
        path = [(NEW, "released"), ("released", "waiting")]
        path += (
            [("waiting", "queued"), ("queued", "processing")]
            if queued
            else [("waiting", "processing")]
        )
        out = [cls.task(key, s, f, t + i * step, **kw) for i, (s, f) in enumerate(path)]
        out[-1] = cls.task(
            key, path[-1][0], "processing", out[-1].timestamp, worker=worker, **kw
        )
        t_end = t + len(path) * step
        if error is None:
            out.append(
                cls.task(
                    key,
                    "processing",
                    "memory",
                    t_end,
                    worker=worker,
                    duration=duration,
                    begin=t_end - duration,
                    end=t_end,
                    nbytes=nbytes,
                    **kw,
                )
            )
            done = "memory"
        else:
            out.append(
                cls.task(
                    key,
                    "processing",
                    "erred",
                    t_end,
                    worker=worker,
                    exception=error,
                    traceback=f"Traceback (most recent call last):\n{error}",
                    **kw,
                )
            )
            done = "erred"
        if release:
            out.append(cls.task(key, done, "released", t_end + step, **kw))
            if forget:
                out.append(
                    cls.task(key, "released", "forgotten", t_end + 2 * step, **kw)
                )
        return out

    @staticmethod
    def merge(*streams: Iterable[TaskStatus]) -> list[TaskStatus]:
        """Interleave event lists by timestamp (stable for equal times)."""
        return list(heapq.merge(*streams, key=lambda e: e.timestamp))

    @staticmethod
    def workers(t: float = 1_000.0, nthreads: int = 2, n: int = 2) -> list[Event]:
        """``added`` events for the first ``n`` workers of :data:`WORKERS`."""
        return [WorkerStatus(w, "added", t, nthreads) for w in WORKERS[:n]]

    @staticmethod
    def chunks(
        events: list[TaskStatus], sizes: Iterable[int]
    ) -> Iterator[list[TaskStatus]]:
        """Cut ``events`` into consecutive batches of the given sizes (cycled)."""
        cycle = list(sizes)
        i = 0
        j = 0
        while i < len(events):
            n = cycle[j % len(cycle)]
            yield events[i : i + n]
            i += n
            j += 1

    @staticmethod
    def assert_plain(data: object) -> None:
        """Fail unless ``data`` survives JSON and msgpack unchanged (plain data)."""
        assert json.loads(json.dumps(data, allow_nan=False)) == data
        assert msgpack.unpackb(msgpack.packb(data), strict_map_key=True) == data

    @staticmethod
    def workload(
        ntasks: int,
        prefixes: int = 10,
        *,
        seed: int = 0,
        t0: float = 1_000.0,
        rate: float = 20_000.0,
        group_size: int = 1_000,
        erred: float = 0.01,
        queued: float = 0.5,
        flush: float | None = None,
    ) -> Iterator[TaskStatus]:
        """A realistic stream: ~6 transitions per task, many tasks in flight.

        Tasks come in groups (one prefix each, prefixes taken in turn); a group
        is submitted shortly before the cluster reaches it; the cluster starts
        ``rate`` tasks per second on :data:`WORKERS`; durations are lognormal;
        results are released about a second after they were computed and then
        forgotten; a share ``erred`` of the tasks fail. With ``flush`` every
        timestamp is rounded up to a multiple of it (one float per flush, like
        the plugin's). Names are shared objects, like Dask's. Events come in
        time order.
        """
        rng = random.Random(seed)
        group_size = max(1, min(group_size, ntasks // max(1, prefixes)))
        heap: list[tuple[float, int, tuple[object, ...]]] = []
        names: dict[str, str] = {}
        times: dict[float, float] = {}
        seq = 0

        def push(t: float, *fields: object) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (t, seq, fields))

        def pop() -> TaskStatus:
            t, _, fields = heapq.heappop(heap)
            if flush:
                t = (int(t / flush) + 1) * flush
                t = times.setdefault(t, t)
                if len(times) > 1_000:
                    times.clear()
            key, prefix, group, start, finish, *rest = fields
            return TaskStatus(key, prefix, group, start, finish, t, *rest)  # type: ignore[arg-type]

        for i in range(ntasks):
            g = i // group_size
            prefix = names.setdefault(f"p{g % prefixes}", f"p{g % prefixes}")
            group = names.setdefault(f"{prefix}-{g:08x}", f"{prefix}-{g:08x}")
            key = f"('{group}', {i})"
            begin = t0 + i / rate
            submit = t0 + (g * group_size) / rate - 0.2
            worker = WORKERS[i % len(WORKERS)]
            push(submit, key, prefix, group, NEW, "released")
            push(submit, key, prefix, group, "released", "waiting")
            if rng.random() < queued:
                push(submit, key, prefix, group, "waiting", "queued")
                push(begin, key, prefix, group, "queued", "processing", worker)
            else:
                push(begin, key, prefix, group, "waiting", "processing", worker)
            duration = rng.lognormvariate(-5.0, 1.0)
            end = begin + duration
            if rng.random() < erred:
                push(
                    end,
                    key,
                    prefix,
                    group,
                    "processing",
                    "erred",
                    worker,
                    None,
                    None,
                    None,
                    None,
                    "ValueError('bad input')",
                    "Traceback (most recent call last):\nValueError: bad input",
                )
                done = "erred"
            else:
                push(
                    end,
                    key,
                    prefix,
                    group,
                    "processing",
                    "memory",
                    worker,
                    duration,
                    begin,
                    end,
                    8_000,
                )
                done = "memory"
            released = end + rng.uniform(0.5, 1.5)
            push(released, key, prefix, group, done, "released")
            push(released + 0.1, key, prefix, group, "released", "forgotten")
            while heap and heap[0][0] < submit:
                yield pop()
        while heap:
            yield pop()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at t = 1000 s."""
    return FakeClock()


@pytest.fixture
def stream() -> Stream:
    """Builders of synthetic task events and workloads."""
    return Stream()
