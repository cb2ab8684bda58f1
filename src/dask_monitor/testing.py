"""Helpers for tests and benchmarks: synthetic events, a fake clock, real snapshots.

Observers see events, never the scheduler, so they (and anything that reads
snapshots: the panel, reports, the terminal) can be tested without a cluster:

- :class:`FakeClock` stands in for ``time.time``: it moves only when told to.
- :class:`EventStream` writes task and worker events in the order Dask reports
  them: one transition, a task's whole life cycle, workers joining and
  leaving, streams merged by time, a realistic workload.
- :class:`RecordingObserver` records what a subject hands it.
- :func:`make_snapshot` feeds a synthetic run through a real
  :class:`~dask_monitor.pipeline.Pipeline` and returns its snapshot, so that
  views are developed and tested against what the monitor really produces.

Everything here is deterministic: the same arguments give the same events and
the same snapshot. This module imports neither Dask nor Bokeh.

Examples
--------
>>> from dask_monitor.pipeline import Pipeline
>>> clock = FakeClock(1_000.0)
>>> pipeline = Pipeline(clock=clock)
>>> pipeline.process(EventStream.lifecycle("inc-1", 1_000.0, release=False))
>>> clock.advance(5.0)
1005.0
>>> pipeline.snapshot()["totals"]["done"]
1
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

from dask_monitor.alerts.rules import AlertRule
from dask_monitor.config import InsightsSettings, MonitorConfig
from dask_monitor.events import (
    NEW,
    Alert,
    Event,
    TaskStatus,
    WorkerResources,
    WorkerStatus,
    make_task_status,
)
from dask_monitor.pipeline import Pipeline
from dask_monitor.snapshot import Snapshot

__all__ = [
    "WORKERS",
    "EventStream",
    "FakeClock",
    "RecordingObserver",
    "make_insight",
    "make_snapshot",
]

#: Worker addresses used by :class:`EventStream` unless told otherwise.
WORKERS: tuple[str, ...] = tuple(f"tcp://10.0.0.{i}:8786" for i in range(1, 9))


class FakeClock:
    """A clock that moves only when told to; call it for the time.

    Pass it wherever dask-monitor takes a ``clock`` (the pipeline, observers
    with a rate or a window), so that rates, ETAs and windows are computed
    against a time the test controls, without sleeping.

    Parameters
    ----------
    now
        The time to start at, in seconds (like ``time.time()``).

    Examples
    --------
    >>> clock = FakeClock(1_000.0)
    >>> clock()
    1000.0
    >>> clock.advance(2.5)
    1002.5
    >>> clock.now = 2_000.0  # or set it
    >>> clock()
    2000.0
    """

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock({self.now!r})"

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        self.now += seconds
        return self.now


class EventStream:
    """Builders of synthetic task and worker events, in the order Dask reports them.

    The builders are static methods: use the class itself or an instance
    (the tests' ``stream`` fixture). Every builder is deterministic; times are
    given, never read from a clock. A task's prefix is the key up to its last
    ``-`` and its group the prefix with ``-g``, unless given
    (``"inc-3"``: prefix ``"inc"``, group ``"inc-g"``).

    Examples
    --------
    >>> events = EventStream.merge(
    ...     EventStream.workers(1_000.0, nthreads=2, n=1),
    ...     EventStream.lifecycle("inc-1", 1_000.0, release=False),
    ...     EventStream.lifecycle("inc-2", 1_000.5, error="ValueError('odd')"),
    ... )
    >>> [(e.key, e.finish) for e in events if isinstance(e, TaskStatus)][-3:]
    [('inc-2', 'erred'), ('inc-2', 'released'), ('inc-2', 'forgotten')]
    """

    #: Addresses of the workers that :meth:`workers` adds.
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
        **fields: Any,
    ) -> TaskStatus:
        """One transition ``start -> finish`` of task ``key`` at time ``t``.

        ``fields`` are the other fields of :class:`~dask_monitor.events.TaskStatus`
        (``worker``, ``duration``, ``begin``, ``end``, ``nbytes``, ``exception``,
        ``traceback``, ``span``, ``transfer``, ``disk``).
        """
        prefix = prefix if prefix is not None else key.rsplit("-", 1)[0]
        group = group if group is not None else f"{prefix}-g"
        return TaskStatus(key, prefix, group, start, finish, t, **fields)

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
        span: str | None = None,
        transfer: float | None = None,
    ) -> list[TaskStatus]:
        """The transitions of one task, from its creation to forgotten.

        ``new -> released -> waiting [-> queued] -> processing -> memory``
        (or ``-> erred`` when ``error``, an exception text, is given)
        ``-> released -> forgotten``. Transition ``i`` happens at
        ``t + i * step``; the compute (``begin`` to ``end``, ``duration``
        seconds) ends with the move into ``memory``.

        Parameters
        ----------
        release
            ``False`` stops in ``memory`` (or ``erred``), as a result held by
            a future.
        forget
            ``False`` stops in ``released``.
        span
            Span id of every transition (``None``: no span).
        transfer
            Seconds the completion spent fetching its inputs (``None``: not
            reported).
        """
        kw: dict[str, Any] = {"prefix": prefix, "group": group}
        if span is not None:
            kw["span"] = span
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
                    transfer=transfer,
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
    def add_worker(address: str, t: float = 1_000.0, nthreads: int = 2) -> WorkerStatus:
        """Worker ``address`` joined the cluster at ``t`` with ``nthreads`` threads."""
        return WorkerStatus(address, "added", t, nthreads)

    @staticmethod
    def remove_worker(
        address: str,
        t: float = 1_000.0,
        *,
        processing: int = 0,
        expected: bool = False,
    ) -> WorkerStatus:
        """Worker ``address`` left at ``t`` while ``processing`` tasks.

        ``expected``: Dask retired it gracefully (no loss: no alert).
        """
        return WorkerStatus(
            address, "removed", t, processing=processing, expected=expected
        )

    @staticmethod
    def workers(t: float = 1_000.0, nthreads: int = 2, n: int = 2) -> list[Event]:
        """``added`` events at ``t`` for the first ``n`` workers of :data:`WORKERS`."""
        return [WorkerStatus(w, "added", t, nthreads) for w in WORKERS[:n]]

    @staticmethod
    def merge(*streams: Iterable[Any]) -> list[Any]:
        """Interleave time-ordered event lists by timestamp.

        Stable: events with equal times keep the order of their streams
        (the first stream's first), so a merge is deterministic.
        """
        return list(heapq.merge(*streams, key=lambda e: e.timestamp))

    @staticmethod
    def chunks(events: Sequence[Any], sizes: Iterable[int]) -> Iterator[list[Any]]:
        """Cut ``events`` into consecutive batches of the given sizes (cycled)."""
        cycle = list(sizes)
        i = 0
        j = 0
        while i < len(events):
            n = cycle[j % len(cycle)]
            yield list(events[i : i + n])
            i += n
            j += 1

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
        time order; the same ``seed`` gives the same stream.
        """
        rng = random.Random(seed)
        group_size = max(1, min(group_size, ntasks // max(1, prefixes)))
        heap: list[tuple[float, int, tuple[Any, ...]]] = []
        names: dict[str, str] = {}
        times: dict[float, float] = {}
        seq = 0

        def push(t: float, *fields: Any) -> None:
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
            return TaskStatus(key, prefix, group, start, finish, t, *rest)

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


class RecordingObserver:
    """An observer that records what it is handed, for assertions.

    Subscribe it like any observer (``subject.subscribe(rec)``,
    ``with subject.subscribed(rec): ...``, ``Pipeline(observers=[rec])``).
    It keeps the batches it got through :meth:`update_batch` and the single
    events it got through :meth:`update`, in order.

    Parameters
    ----------
    name
        Its name in the subject's error counts and the snapshot's list of
        observers.

    Examples
    --------
    >>> from dask_monitor.subject import Subject
    >>> subject = Subject()
    >>> rec = RecordingObserver()
    >>> with subject.subscribed(rec):
    ...     subject.notify_batch(EventStream.lifecycle("inc-1", release=False))
    >>> [e.finish for e in rec.tasks]
    ['released', 'waiting', 'processing', 'memory']
    >>> [e.key for e in rec.finished]
    ['inc-1']
    """

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        #: Batches received through :meth:`update_batch` (as lists), in order.
        self.batches: list[list[Event]] = []
        #: Every event received, through either method, in order.
        self.events: list[Event] = []
        #: Calls of :meth:`reset` (the pipeline's reset, or a Dask restart).
        self.resets = 0

    def update(self, event: Event) -> None:
        """Record one event."""
        self.events.append(event)

    def update_batch(self, events: Sequence[Event]) -> None:
        """Record a batch (a :class:`~dask_monitor.batch.Batch` is read as events)."""
        batch = list(events)
        self.batches.append(batch)
        self.events.extend(batch)

    def reset(self) -> None:
        """Count the reset; what was recorded stays."""
        self.resets += 1

    def clear(self) -> None:
        """Forget what was recorded."""
        self.batches.clear()
        self.events.clear()

    @property
    def tasks(self) -> list[TaskStatus]:
        """The task events recorded, in order."""
        return [e for e in self.events if type(e) is TaskStatus]

    @property
    def finished(self) -> list[TaskStatus]:
        """Task events that finished a task: into ``memory``, or ``erred``
        from an attempt (not from :data:`~dask_monitor.events.NEW`)."""
        return [
            e
            for e in self.tasks
            if e.finish == "memory" or (e.finish == "erred" and e.start != NEW)
        ]

    @property
    def workers(self) -> list[WorkerStatus]:
        """The worker events recorded, in order."""
        return [e for e in self.events if type(e) is WorkerStatus]

    @property
    def alerts(self) -> list[Alert]:
        """The alerts recorded (when subscribed to an alert subject), in order."""
        return [e for e in self.events if type(e) is Alert]

    def keys(self, finish: str | None = None) -> list[str]:
        """Keys of the task events recorded, of those reaching ``finish`` if given."""
        return [e.key for e in self.tasks if finish is None or e.finish == finish]


# -- make_snapshot ----------------------------------------------------------------

_NAMES = (
    "inc",
    "add",
    "work",
    "random_sample",
    "mean_chunk",
    "mean_combine",
    "mean_agg",
    "getitem",
    "sum-aggregate",
    "from_pandas",
    "groupby-chunk",
    "groupby-agg",
    "read_parquet",
    "assign",
    "rechunk-merge",
    "flaky",
)

_EXCEPTIONS = (
    "ValueError('bad record {i}')",
    "KeyError('column_{i}')",
    "ZeroDivisionError('division by zero')",
    "FileNotFoundError('s3://bucket/part-{i}.parquet')",
    "MemoryError()",
)

#: Seconds of a synthetic run handed to the pipeline in one batch. The
#: plugin flushes four times as often (``monitor.interval``), but observers
#: end in the same state however a stream is cut into batches
#: (``tests/test_differential.py``), and four times fewer calls keep a
#: snapshot of 10,000 prefixes under a second to build.
_FLUSH = 1.0

#: Tasks a synthetic run aims at over all its prefixes (a prefix has one at
#: least): enough for realistic samples, few enough to build in well under a
#: second at 10,000 prefixes.
_TASK_BUDGET = 16_000


_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "pipeline.py", line 42, in run\n'
    "    return process(record)\n"
    '  File "pipeline.py", line 17, in process\n'
    "    raise {error}\n"
)


def _prefix_name(i: int) -> str:
    base = _NAMES[i % len(_NAMES)]
    return base if i < len(_NAMES) else f"{base}-{i // len(_NAMES)}"


class _Task(NamedTuple):
    """One task of a planned run, on the plan's own time axis (``u``)."""

    key: str
    prefix: str
    group: str
    worker: str
    begin: float  # when a thread takes it
    end: float  # when it finishes
    nbytes: int
    error: str | None  # exception text if it errs
    span: int  # its prefix's index: the task is in span ``span % len(spans)``


class _Plan(NamedTuple):
    """A run of tasks on a cluster, on a time axis of its own, unscaled."""

    tasks: list[_Task]  # in the order Dask would submit them
    ends: list[float]  # finish times, sorted
    workers: list[str]
    prefixes: list[str]


@functools.lru_cache(maxsize=8)
def _plan(
    n_prefixes: int, n_workers: int, n_errors: int, seed: int, threads: int
) -> _Plan:
    """Plan a run: prefix sizes and durations, errors, and a schedule.

    Each worker thread takes the next task as soon as it is free, in the
    order of a pipeline's stages (a prefix's tasks are spread over a part of
    the run, later prefixes later), the tasks that fail first of all. The
    plan is cached: successive snapshots of one run share it.
    """
    rng = random.Random(seed)
    workers = [f"tcp://127.0.0.1:{40000 + i}" for i in range(n_workers)]
    slots = max(1, n_workers * threads)
    tag = f"{rng.getrandbits(32):08x}"
    mean = min(400.0, max(2.0, _TASK_BUDGET / max(n_prefixes, 1)))
    names = [_prefix_name(i) for i in range(n_prefixes)]
    # Error row i: (3 * i) % n_prefixes fails max(1, n_errors - i) times.
    failing: dict[int, list[str]] = {}
    for i in range(n_errors if n_prefixes else 0):
        text = _EXCEPTIONS[i % len(_EXCEPTIONS)].format(i=i)
        failing.setdefault((3 * i) % n_prefixes, []).extend(
            [text] * max(1, n_errors - i)
        )
    order: list[tuple[float, int, int, float, str | None]] = []
    for i in range(n_prefixes):
        size = max(1, round(mean * rng.lognormvariate(-0.5, 1.0)))
        median = min(2.0, max(0.002, rng.lognormvariate(-3.0, 1.0)))
        errors = failing.get(i, [])
        stage = 1.2 * i / max(n_prefixes, 1)
        for j in range(size + len(errors)):
            duration = median * rng.lognormvariate(0.0, 0.5)
            error = errors[j] if j < len(errors) else None
            # Tasks that fail go first: bad input fails fast, and then every
            # error of the run is in its snapshot, whatever the progress.
            rank = -1.0 + 1e-6 * len(order) if error else stage + j / (size + 1)
            order.append((rank, i, j, duration, error))
    order.sort()
    free = [(0.0, s) for s in range(slots)]
    tasks: list[_Task] = []
    for _, i, j, duration, error in order:
        t, slot = heapq.heappop(free)
        heapq.heappush(free, (t + duration, slot))
        name = names[i]
        group = f"{name}-{tag}"
        tasks.append(
            _Task(
                key=f"('{group}', {j})",
                prefix=name,
                group=group,
                worker=workers[slot // threads],
                begin=t,
                end=t + duration,
                nbytes=8 * (1 + (j * 7919 + i * 104729) % 65536),
                error=error,
                span=i,
            )
        )
    return _Plan(tasks, sorted(t.end for t in tasks), workers, names)


class _ScriptedAlerts(AlertRule):
    """Emits given alerts when the pipeline's clock reaches their times.

    The run's own events raise alerts only where real rules see trouble; a
    snapshot asked for ``n_alerts`` gets them from this rule, through the
    pipeline's alert subject and log like any rule's.
    """

    kind = "scripted"

    def __init__(self, alerts: list[Alert]) -> None:
        super().__init__(cooldown=0.0)
        self.name = "scripted-alerts"
        self._due = alerts

    def tick(self, now: float) -> None:
        while self._due and self._due[0].timestamp <= now:
            self.emit(self._due.pop(0))


def _script_alerts(
    n: int, now: float, elapsed: float, plan: _Plan, seed: int
) -> list[Alert]:
    """``n`` alerts, oldest first, the last at ``now``, cycling through the
    built-in kinds, about the run's prefixes, keys and workers."""
    rng = random.Random(seed * 7 + n)
    gap = min(5.0, elapsed / max(n, 1))
    out: list[Alert] = []
    for i in range(n):
        task = plan.tasks[rng.randrange(len(plan.tasks))] if plan.tasks else None
        prefix = task.prefix if task else None
        worker = task.worker if task else None
        count = 2 + i % 5
        t = now - (n - 1 - i) * gap
        kind = i % 4
        if kind == 0:
            alert = Alert(
                "error-burst",
                "error",
                f"{count} tasks of {prefix!r} erred in the last 60 s",
                t,
                prefix=prefix,
                details={"count": count, "window": 60.0},
            )
        elif kind == 1:
            alert = Alert(
                "straggler",
                "warning",
                f"Task {task.key if task else None!r} has been processing for "
                f"{12.5 * count:.1f} s, {count + 6}x the p95 of {prefix!r}",
                t,
                prefix=prefix,
                key=task.key if task else None,
                worker=worker,
                details={"elapsed": 12.5 * count, "factor": 3.0},
            )
        elif kind == 2:
            alert = Alert(
                "stall",
                "warning",
                f"No task finished for 300 s while {count} tasks are waiting",
                t,
                details={"idle": 300.0, "active": count},
            )
        else:
            alert = Alert(
                "worker-lost",
                "error",
                f"Worker {worker} left while processing {count} tasks",
                t,
                worker=worker,
                details={"processing": count},
            )
        out.append(alert)
    return out


def make_snapshot(
    n_prefixes: int = 12,
    n_workers: int = 4,
    n_errors: int = 3,
    seed: int = 0,
    *,
    progress: float = 0.6,
    now: float | None = None,
    elapsed: float = 120.0,
    seq: int = 1,
    n_events: int = 400,
    threads: int = 2,
    n_alerts: int = 0,
    spans: Sequence[str] = (),
    insights: Sequence[dict[str, Any]] | None = None,
    transfer: Mapping[str, float] | None = None,
) -> Snapshot:
    """The snapshot a real :class:`~dask_monitor.pipeline.Pipeline` makes of a
    synthetic run in progress.

    The run: ``n_workers`` workers of ``threads`` threads each join when it
    starts (``elapsed`` seconds before ``now``) and one graph of tasks over
    ``n_prefixes`` prefixes is submitted; each thread takes the next task as
    soon as it is free, the prefixes in the order of a pipeline's stages
    (earlier ones further along), the tasks that fail first. Durations are
    lognormal around a median of each prefix, and time runs at the pace at
    which the share ``progress`` of the tasks is done at ``now``. Its events
    (those the scheduler plugin reports: ``new -> waiting -> queued ->
    processing -> memory`` or ``erred``) are fed to the pipeline batch by
    batch, one second of the run each, with a :class:`FakeClock` at the
    batch's end and the pipeline ticked after each, as the plugin does after
    its flushes.

    Deterministic: the same arguments give the same snapshot. Snapshots with
    the same ``seed``, shape and start (``now - elapsed``) are of the same
    run: same prefixes, keys and workers, more done for a larger
    ``progress``.

    Parameters
    ----------
    n_prefixes
        Task prefixes; all of them are in ``snapshot["prefixes"]`` (the
        pipeline is set to keep that many).
    n_workers
        Workers, all running, ``threads`` threads each.
    n_errors
        Error rows: row ``i`` is prefix ``(3 * i) % n_prefixes`` failing
        ``max(1, n_errors - i)`` times with its own exception type.
    seed
        Fixes sizes, durations, names and texts.
    progress
        Share of the tasks done at ``now``, 0..1 (1.0: everything finished).
    now
        The snapshot's timestamp; ``time.time()`` when omitted.
    elapsed
        Seconds since the run (and monitoring) started.
    seq
        The snapshot's ``seq`` (views compare it to tell snapshots apart;
        the pipeline's own count is replaced).
    n_events
        Task completions among the sampled recent events
        (``samples["recent"]``, which keeps the other task events between
        them too).
    threads
        Threads per worker.
    n_alerts
        Alerts in ``snapshot["alerts"]``, oldest first, the last at ``now``,
        at most 5 s apart, cycling through the built-in kinds
        (``error-burst``, ``straggler``, ``stall``, ``worker-lost``) and naming
        the run's prefixes, keys and workers. A rule emits them through the
        pipeline's alert subject; the run itself raises alerts only where the
        built-in rules see trouble (many errors).
    spans
        Names of Dask spans: prefix ``i``'s tasks belong to span
        ``f"span-{i % len(spans)}"``, named ``spans[i % len(spans)]``
        (several ids may share a name). None by default.
    insights
        When given, ``snapshot["insights"]`` is set to (a copy of) this list
        (see :func:`make_insight`), in place of what the pipeline found: to
        develop and test views of insights. By default, the pipeline's.
    transfer
        Prefix name -> seconds its tasks spend fetching their inputs per
        second of compute: each completion of the prefix carries that
        multiple of its compute time as ``transfer`` (``startstops``'
        "transfer" action). None by default.

    Examples
    --------
    >>> snap = make_snapshot(n_prefixes=3, n_workers=2, seed=1, now=1e9)
    >>> t = snap["totals"]
    >>> t["done"] + t["remaining"] == t["total"]
    True
    >>> snap == make_snapshot(n_prefixes=3, n_workers=2, seed=1, now=1e9)
    True
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress!r}")
    if elapsed <= 0:
        raise ValueError(f"elapsed must be positive, got {elapsed!r}")
    if n_workers < 1 or threads < 1:
        raise ValueError(
            f"a run needs a worker and a thread, got {n_workers!r} and {threads!r}"
        )
    now = time.time() if now is None else now
    started = now - elapsed
    shape = (n_prefixes, n_workers, n_errors, seed, threads)
    plan = _plan(*shape)
    ends = plan.ends
    # The plan's time u maps to started + scale * u; at now, u_now: just
    # after the completion that makes ``progress``, before the next.
    done = math.ceil(progress * len(ends) - 1e-9)
    if done == 0:
        u_now = 0.0
    elif done < len(ends):
        u_now = (ends[done - 1] + ends[done]) / 2
    else:
        u_now = ends[-1] * 1.05
    scale = elapsed / u_now if u_now > 0 else 1.0
    if done == 0:
        u_now = -1.0  # no thread has taken a task yet

    fetching = tuple(sorted((transfer or {}).items()))
    events = _run_events(shape, started, scale, u_now, tuple(spans), fetching)
    # Keep the last n_events completions among the recent samples.
    recent = len(events) if n_events > 0 else 1
    seen = 0
    for back, (_, event) in enumerate(reversed(events)):
        if type(event) is TaskStatus and event.start == "processing":
            seen += 1
            if seen == n_events:
                recent = back + 1
                break
    # Defaults, not the user's Dask config: the same arguments, the same
    # snapshot, wherever it runs. Room for every prefix and worker asked for.
    config = MonitorConfig(
        max_prefixes=max(10_000, n_prefixes),
        snapshot_prefixes=max(200, n_prefixes),
        max_workers=max(10_000, n_workers),
        max_errors=max(100, n_errors),
        recent_events=recent,
        # Insights given replace the pipeline's: evaluating them (a light
        # snapshot of every prefix each second of the run) would be wasted.
        insights=InsightsSettings(enabled=insights is None),
    )
    # Resource samples come after: they are not among the sampled events.
    events = sorted(events + _samples(plan, started, scale, u_now, now), key=_time)
    clock = FakeClock(started)
    scripted = _ScriptedAlerts(_script_alerts(n_alerts, now, elapsed, plan, seed))
    pipeline = Pipeline(
        config,
        clock=clock,
        raise_errors=True,
        observers=[scripted] if n_alerts > 0 else [],
    )
    # The reservoir sample draws from a random generator: seed it.
    pipeline.sampling.seed = seed
    pipeline.sampling.reset()
    if spans:
        pipeline.name_spans({f"span-{i}": name for i, name in enumerate(spans)})
    _feed(pipeline, clock, events, started, now, _FLUSH)
    clock.now = now
    pipeline.tick(now)
    snapshot = dict(pipeline.snapshot())
    snapshot["seq"] = seq
    if insights is not None:
        snapshot["insights"] = [dict(i) for i in insights]
    return cast(Snapshot, snapshot)


#: What :func:`make_insight` says of each kind unless told otherwise.
_INSIGHT_TEXTS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "tiny-tasks": (
        "Tasks of {subject} take {p50} each: the scheduler's per-task overhead "
        "(about 1 ms) is most of their time.",
        "Make fewer, larger tasks: bigger chunks or partitions, or batch the "
        "inputs of client.map.",
        "https://docs.dask.org/en/stable/best-practices.html#avoid-very-large-graphs",
        {"count": 5_000, "p50": 0.0012, "overhead_share": 0.45},
    ),
    "memory-pressure": (
        "Worker {subject} uses {used} of its memory limit and is spilling to disk.",
        "Use smaller chunks, persist less at once, or give workers more memory.",
        "https://distributed.dask.org/en/stable/worker-memory.html",
        {"memory_share": 0.82, "spilled_bytes": 1_500_000_000},
    ),
}


def make_insight(
    kind: str = "tiny-tasks",
    severity: str = "warning",
    subject: str = "inc",
    *,
    subject_type: str | None = None,
    message: str | None = None,
    evidence: dict[str, Any] | None = None,
    advice: str | None = None,
    link: str | None = None,
    since: float = 1_000.0,
) -> dict[str, Any]:
    """One insight as ``snapshot["insights"]`` holds it, for tests of views.

    Texts default to a plausible sentence of the kind (``tiny-tasks`` and
    ``memory-pressure`` have their own) naming ``subject``, so a hostile
    subject ends up inside the message too, as a real insight's would.

    Examples
    --------
    >>> make_insight("tiny-tasks", subject="inc")["message"][:17]
    'Tasks of inc take'
    """
    template, default_advice, default_link, default_evidence = _INSIGHT_TEXTS.get(
        kind,
        (
            "Something about {subject} needs attention.",
            "Look at {subject}.",
            "https://docs.dask.org/en/stable/best-practices.html",
            {"count": 10},
        ),
    )
    if subject_type is None:
        subject_type = "worker" if "://" in subject else "prefix"
    return {
        "kind": kind,
        "severity": severity,
        "subject": subject,
        "subject_type": subject_type,
        "message": message
        if message is not None
        else template.format(subject=subject, p50="1.2ms", used="82%"),
        "evidence": dict(default_evidence if evidence is None else evidence),
        "advice": advice
        if advice is not None
        else default_advice.format(subject=subject),
        "link": default_link if link is None else link,
        "since": since,
    }


@functools.lru_cache(maxsize=4)
def _submitted(
    shape: tuple[int, int, int, int, int], started: float, spans: tuple[str, ...]
) -> tuple[Event, ...]:
    """The workers joining and the graph arriving at ``started`` (events are
    immutable: successive snapshots of one run share them)."""
    plan = _plan(*shape)
    threads = shape[4]
    out: list[Event] = [
        WorkerStatus(w, "added", started, threads) for w in plan.workers
    ]
    n_spans = len(spans)
    make = make_task_status  # the same TaskStatus, five times faster to build
    for task in plan.tasks:
        key, prefix, group = task.key, task.prefix, task.group
        span = f"span-{task.span % n_spans}" if n_spans else None
        out += [
            make(key, prefix, group, s0, f, started, None, None, None, None,
                 None, None, None, span)
            for s0, f in _SUBMITTED
        ]  # fmt: skip
    return tuple(out)


def _run_events(
    shape: tuple[int, int, int, int, int],
    started: float,
    scale: float,
    u_now: float,
    spans: tuple[str, ...],
    transfer: tuple[tuple[str, float], ...] = (),
) -> list[tuple[float, Event]]:
    """The run's events up to ``u_now`` (plan time), as (time, event), in order;
    ``transfer``: (prefix, seconds fetching per compute second) pairs."""
    plan = _plan(*shape)
    fetching = dict(transfer)
    out = [(started, e) for e in _submitted(shape, started, spans)]
    later: list[tuple[float, Event]] = []
    n_spans = len(spans)
    make = make_task_status
    for task in plan.tasks:
        if task.begin > u_now:
            continue
        key, prefix, group, worker = task.key, task.prefix, task.group, task.worker
        span = f"span-{task.span % n_spans}" if n_spans else None
        begin = started + scale * task.begin
        taken = make(
            key, prefix, group, "queued", "processing", begin, worker,
            None, None, None, None, None, None, span,
        )  # fmt: skip
        later.append((begin, taken))
        if task.end > u_now:
            continue
        end = started + scale * task.end
        if task.error is None:
            ratio = fetching.get(prefix)
            finish = make(
                key, prefix, group, "processing", "memory", end, worker,
                end - begin, begin, end, task.nbytes, None, None, span,
                None if ratio is None else ratio * (end - begin),
            )  # fmt: skip
        else:
            finish = make(
                key, prefix, group, "processing", "erred", end, worker,
                None, None, None, None, task.error,
                _TRACEBACK.format(error=task.error), span,
            )  # fmt: skip
        later.append((end, finish))
    later.sort(key=_time)
    return out + later


def _samples(
    plan: _Plan, started: float, scale: float, u_now: float, now: float
) -> list[tuple[float, Event]]:
    """Rounds of resource samples of the run's workers, about once a second
    (at most 120 rounds): managed memory is the sum of the results each
    worker holds, CPU and unmanaged memory follow the tasks it runs."""
    begins: dict[str, list[float]] = {w: [] for w in plan.workers}
    ends: dict[str, list[float]] = {w: [] for w in plan.workers}
    held: dict[str, list[tuple[float, int]]] = {w: [] for w in plan.workers}
    for task in plan.tasks:
        begins[task.worker].append(task.begin)
        ends[task.worker].append(task.end)
        if task.error is None:
            held[task.worker].append((task.end, task.nbytes))
    cumulative: dict[str, tuple[list[float], list[int]]] = {}
    for w in plan.workers:
        begins[w].sort()
        ends[w].sort()
        held[w].sort()
        sums = list(itertools.accumulate(n for _, n in held[w]))
        cumulative[w] = ([t for t, _ in held[w]], sums)
    step = max(1.0, (now - started) / 120)
    out: list[tuple[float, Event]] = []
    t = started + step
    while t <= now:
        u = min((t - started) / scale, u_now)
        for i, w in enumerate(plan.workers):
            running = bisect_right(begins[w], u) - bisect_right(ends[w], u)
            times, sums = cumulative[w]
            k = bisect_right(times, u)
            managed = sums[k - 1] if k else 0
            unmanaged = (90 + 15 * (i % 5) + 40 * running) * 2**20
            out.append(
                (
                    t,
                    WorkerResources(
                        w, t, managed + unmanaged, managed, unmanaged, 0, 2**30,
                        100.0 * running, 5e4 * running, 4e4 * running, False,
                    ),
                )
            )  # fmt: skip
        t += step
    return out


#: The events of a task when its graph arrives and the cluster is busy, as
#: the plugin reports them: Dask's ``new -> released -> waiting`` is folded
#: into one event (counted as ``merged``), then the task is queued.
_SUBMITTED = ((NEW, "waiting"), ("waiting", "queued"))


def _time(item: tuple[float, Event]) -> float:
    return item[0]


def _feed(
    pipeline: Pipeline,
    clock: FakeClock,
    events: list[tuple[float, Event]],
    started: float,
    now: float,
    interval: float,
) -> None:
    """Hand ``events`` to ``pipeline`` flush by flush, as the plugin does:
    the events of each interval in one batch, the clock at its end, then
    the flush's accounting and a tick."""
    times = [t for t, _ in events]
    n_flushes = max(1, math.ceil((now - started) / interval))
    lo = 0
    for k in range(1, n_flushes + 1):
        t = min(now, started + k * interval)
        # The last flush takes everything: an event computed at ``now`` may
        # land a rounding error after it.
        hi = len(times) if k == n_flushes else bisect_right(times, t, lo)
        clock.now = t
        if hi > lo:
            batch = [e for _, e in events[lo:hi]]
            pipeline.process(batch)
            # A flush's cost on the scheduler, modelled (1 us an event): the
            # health view shows it; nothing here measures a real one.
            created = sum(1 for e in batch if type(e) is TaskStatus and e.start == NEW)
            pipeline.account(
                events=sum(type(e) is not WorkerResources for e in batch),
                dropped=0,
                seconds=1e-6 * (hi - lo),
                merged=created,
            )
            lo = hi
        pipeline.tick(t)
