"""Flush: events per second through the pipeline and all default observers.

A million synthetic events of realistic task life cycles (created, waiting,
processing, memory with durations and sizes, released, forgotten: six per
task; one task in a thousand errs) over 10 and over 10,000 prefixes, made by
the plugin's own hook from fake task states. With 10,000 prefixes twice:
consecutive tasks cycling through all prefixes (every event of a batch in
another prefix: the worst case) and in runs of 100 tasks of one prefix.
Three figures per case, each in batches of 1,000 and 10,000 events (what a
100 ms flush sees at 10,000 and 100,000 transitions/s):

- ``process``: ``Pipeline.process(batch)``: the subject and every default
  observer (the columnar batches made beforehand by the plugin's conversion);
- ``convert``: ``TransitionBuffer.convert(pending, now)``: the buffered
  records to one columnar :class:`~dask_monitor.batch.Batch` (and its
  finish-state index);
- ``flush``: ``MonitorPlugin.flush()``: both, as the periodic flush does.

Also the cost of each observer per event (their ``update_batch`` timed one by
one on the same batches) and of building the snapshot once all events are in.

Run: ``python benchmarks/flush.py [--quick]``.

Times are the CPU time of the benchmark's thread (``time.thread_time``), so
that time the thread spends descheduled by other load on a shared machine does
not count.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import Report, fake_tasks, interleave, lifecycle_calls, parse_args
from dask_monitor import MonitorPlugin, Pipeline
from dask_monitor.batch import Batch
from dask_monitor.scheduler.buffer import FIELDS, Pending, TransitionBuffer

T0 = 1.7e9
#: (prefixes, run): consecutive tasks cycle through the prefixes (run 1, the
#: worst case for per-prefix tables) or come in runs of one prefix.
CASES = ((10, 1), (10_000, 1), (10_000, 100))
#: Seconds of synthetic time between two blocks of 1,000 events.
STEP = 0.1


class FakeClock:
    """The pipeline's clock, set to the time of the batch being processed."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_items(
    n_events: int, n_prefixes: int, n_workers: int = 8, prefix_run: int = 1
) -> list[Any]:
    """The records the plugin's hook buffers for ``n_events`` transitions
    (flat: ``FIELDS`` entries per event)."""
    n_tasks = n_events // 6
    tasks = fake_tasks(n_tasks, n_prefixes, n_workers, prefix_run=prefix_run)
    plugin = MonitorPlugin()
    plugin.buffer.tasks = tasks
    plugin.buffer.capacity = 2**60
    keys = list(tasks)
    block = 1000
    calls = lifecycle_calls(tasks, now=T0, error_every=1000, block=block)
    per_block = block * 5
    for b in range(0, len(keys), block):
        plugin.update_graph(None, tasks=keys[b : b + block])  # type: ignore[arg-type]
        for _ in range(min(per_block, (len(keys) - b) * 5)):
            key, start, finish, kwargs = next(calls)
            plugin.transition(key, start, finish, stimulus_id="bench", **kwargs)
    return plugin.buffer.take().records


def make_batches(items: list[Any], size: int) -> list[Batch]:
    """The batches the flush makes of ``items``, ``size`` events at a time.

    Timestamps advance by ``STEP`` every 1,000 events, as for a flush every
    100 ms at 10,000 transitions/s.
    """
    buffer = TransitionBuffer(capacity=size)
    return [
        buffer.convert(part, T0 + STEP * (i * size // 1000))
        for i, part in enumerate(buffers(items, size))
    ]


def fresh(batches: list[Batch]) -> list[Batch]:
    """Forget what observers cached on the batches (counts, selectors, event
    objects); the finish-state index stays: the conversion makes it."""
    for batch in batches:
        batch._events = None
        batch._transitions = None
        batch._same = None  # the batch's selectors (same_start, moved ...)
        batch._moves = {}
        batch._pairs = None
        batch._timed = None
    return batches


def buffers(items: list[Any], size: int) -> list[Pending]:
    """``items`` (flat records) cut into what a buffer of ``size`` events holds."""
    step = size * FIELDS
    return [Pending(items[i : i + step]) for i in range(0, len(items), step)]


def time_process(batches: list[Batch]) -> float:
    clock = FakeClock()
    pipeline = Pipeline(clock=clock)
    fresh(batches)
    gc.collect()
    t0 = time.thread_time()
    for batch in batches:
        clock.now = batch.time
        pipeline.process(batch)
    return time.thread_time() - t0


def time_convert(pending: list[Pending]) -> float:
    convert = TransitionBuffer(capacity=1).convert
    gc.collect()
    t0 = time.thread_time()
    for i, part in enumerate(pending):
        convert(part, T0 + STEP * i)
    return time.thread_time() - t0


def time_flush(pending: list[Pending]) -> float:
    plugin = MonitorPlugin()
    plugin.pipeline = Pipeline(plugin.config)
    put_back = plugin.buffer.put_back
    gc.collect()
    t0 = time.thread_time()
    for part in pending:
        put_back(part)
        plugin.flush()
    elapsed = time.thread_time() - t0
    assert plugin.pipeline.events == sum(p.events for p in pending)
    return elapsed


def observer_costs(batches: list[Batch]) -> tuple[dict[str, float], Pipeline]:
    """Seconds each default observer spent on ``batches`` (called one by one)."""
    clock = FakeClock()
    pipeline = Pipeline(clock=clock)
    pipeline._bind_rules()  # alert rules emit to the pipeline, as when subscribed
    spent: dict[str, float] = {type(o).__name__: 0.0 for o in pipeline.builtin}
    calls = [(type(o).__name__, o.update_batch) for o in pipeline.builtin]
    fresh(batches)
    gc.collect()
    for batch in batches:
        clock.now = batch.time
        for name, update_batch in calls:
            t0 = time.thread_time()
            update_batch(batch)
            spent[name] += time.thread_time() - t0
        pipeline._changed()
    return spent, pipeline


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_events = 12_000 if args.quick else 1_000_000
    report = Report("flush", args.quick)
    for n_prefixes, run in CASES:
        t = time.thread_time()
        items = make_items(n_events, n_prefixes, prefix_run=run)
        n = len(items) // FIELDS
        case = f"{n_prefixes:,} prefixes" + (f" in runs of {run}" if run > 1 else "")
        print(
            f"[flush] {n} events over {case} "
            f"(made in {time.thread_time() - t:.1f}s), {args.rounds} rounds",
            flush=True,
        )
        timers: dict[str, Callable[[], float]] = {}
        for size in (1_000, 10_000):
            ev = make_batches(items, size)
            it = buffers(items, size)
            timers[f"process, batches of {size:,}"] = lambda ev=ev: time_process(ev)
            timers[f"convert, batches of {size:,}"] = lambda it=it: time_convert(it)
            timers[f"flush, batches of {size:,}"] = lambda it=it: time_flush(it)
        results = interleave(timers, args.rounds)
        for name, seconds in results.items():
            fig = report.add(
                f"{case}: {name}",
                [n / s for s in seconds],
                "events/s",
                note=f"{statistics.median(seconds) / n * 1e9:.0f} ns/event",
            )
            if name == "process, batches of 1,000":
                report.goal(
                    f"flush: pipeline events/s, {case}, batches of 1,000",
                    fig.median,
                    1_000_000,
                    "events/s",
                    higher_is_better=True,
                )
            if name == "flush, batches of 1,000":
                report.goal(
                    f"flush incl. conversion: events/s, {case}, batches of 1,000",
                    fig.median,
                    1_000_000,
                    "events/s",
                    higher_is_better=True,
                )
        spent, pipeline = observer_costs(make_batches(items, 1_000))
        for name, seconds in spent.items():
            report.add(
                f"{case}: {name}.update_batch",
                [seconds / n * 1e9],
                "ns/event",
            )
        builds = []
        for _ in range(5):
            pipeline._changed()
            t0 = time.thread_time()
            pipeline.snapshot()
            builds.append((time.thread_time() - t0) * 1e3)
        report.add(f"{case}: snapshot build", builds, "ms")
        del items, pipeline, results, timers
        gc.collect()
    return report.finish(args)


if __name__ == "__main__":
    main()
