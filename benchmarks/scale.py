"""Scale: 10 million task life cycles over 100,000 prefixes, 1,000 workers, 1,000 spans.

Synthetic task life cycles (created, waiting, processing, memory with
durations and sizes, released, forgotten: five events per task once the
creation is folded with the first move; one task in a thousand errs) go
through the real conversion (``TransitionBuffer.convert``) and a ``Pipeline``
with all default observers and alert rules, in batches of 10,000 events (a
100 ms flush at 100,000 transitions/s), each followed by the pipeline's
``tick`` as after a live flush. A synthetic clock advances 0.1 s per batch.

The run: 1,000 computations (spans), one after the other, each of 10,000
tasks over 100 prefixes of its own (runs of 100 tasks of one prefix, as from
real graphs): 100,000 prefixes in all, each task on one of 1,000 workers
(which joined at the start). The records are what the plugin's own hooks
buffer: one span's are made by the hooks from fake task states, and every span
gets copies with its own keys, task groups and completion times (strided
slice assignment, so that making 50 million events does not dominate the
run).

Measured:

- memory: the growth of the resident set size (RSS) at checkpoints against
  the process right after setup, and, in a second pass of the same run with
  ``tracemalloc`` on, the growth of traced Python allocations; bounded means
  it stops growing with tasks (the last checkpoints' growth is stated);
- flush throughput (events/s of CPU time for conversion, ``process`` and
  ``tick``) per span, beside the same run with 10 prefixes (the same workers
  and spans) fed to a second pipeline in the same process, interleaved: one
  span of it after every few spans of the large one;
- snapshot build at the end (median of several builds with nothing cached),
  and at every checkpoint.

Run: ``python benchmarks/scale.py [--quick] [--tasks N] [--traced N]``.
The tracemalloc pass (which slows Python down) runs the first 2 million
tasks of the same run. A full run takes about 6 minutes of CPU time (see
benchmarks/README.md for the wall time of the recorded run).

Times are the CPU time of the benchmark's thread (``time.thread_time``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from common import (
    FakeTaskGroup,
    FakeTaskPrefix,
    Report,
    fake_tasks,
    lifecycle_calls,
    memory_kwargs,
    parse_args,
    prefix_names,
    rss_bytes,
    worker_addresses,
)
from dask_monitor import MonitorPlugin, Pipeline
from dask_monitor.scheduler.buffer import (
    FIELDS,
    Pending,
    TransitionBuffer,
    WorkerRecord,
)

T0 = 1.7e9
#: Events per flush (a 100 ms flush at 100,000 transitions/s).
BATCH = 10_000
#: Synthetic seconds per batch.
STEP = 0.1
#: One span of the 10-prefix run after this many spans of the large one.
SMALL_EVERY = 5
#: Snapshot builds timed at the end (the median is the goal's figure).
BUILDS = 7


@dataclass
class Template:
    """One span's buffered records, with where its keys, groups and
    completions are, so that each span gets a copy of its own."""

    records: list[Any]
    #: For each record: the index of its task in the span.
    key_index: tuple[int, ...]
    #: For each record: the index of its group among the span's groups.
    group_index: tuple[int, ...]
    #: Records that are completions (``processing -> memory``): their
    #: position among the records, task index and worker.
    completions: list[tuple[int, int, str]]
    #: For each task of the span: the index of its prefix among the span's.
    task_prefix: list[int]
    tasks: int
    #: The kwargs of a completion (``memory_kwargs``), copied for each.
    completion: dict[str, Any]


def make_template(tasks: int, prefixes: int, workers: int) -> Template:
    """The records the plugin's hooks buffer for one span of ``tasks`` tasks
    over ``prefixes`` prefixes (in runs) on ``workers`` workers."""
    groups = [
        FakeTaskGroup(f"t{j}", FakeTaskPrefix(f"t{j}"), "span") for j in range(prefixes)
    ]
    run = max(1, tasks // prefixes)
    table = fake_tasks(tasks, prefixes, workers, groups=groups, prefix_run=run)
    plugin = MonitorPlugin()
    plugin.buffer.tasks = table
    plugin.buffer.capacity = 2**60
    keys = list(table)
    block = 1000
    calls = lifecycle_calls(table, now=T0, error_every=1000, block=block)
    for b in range(0, len(keys), block):
        plugin.update_graph(None, tasks=keys[b : b + block])  # type: ignore[arg-type]
        for _ in range(min(block, len(keys) - b) * 5):
            key, start, finish, kwargs = next(calls)
            plugin.transition(key, start, finish, stimulus_id="bench", **kwargs)
    records = plugin.buffer.take().records
    task_at = {key: i for i, key in enumerate(keys)}
    group_at = {id(g): j for j, g in enumerate(groups)}
    details = records[4::FIELDS]
    finishes = records[2::FIELDS]
    key_index = tuple(task_at[k] for k in records[0::FIELDS])
    completions = [
        (n * FIELDS + 4, key_index[n], detail["worker"])
        for n, (finish, detail) in enumerate(zip(finishes, details, strict=True))
        if finish == "memory" and isinstance(detail, dict) and "startstops" in detail
    ]
    return Template(
        records=records,
        key_index=key_index,
        group_index=tuple(group_at[id(g)] for g in records[3::FIELDS]),
        completions=completions,
        task_prefix=[(i // run) % prefixes for i in range(tasks)],
        tasks=tasks,
        completion=memory_kwargs("", T0, 0),
    )


def span_records(
    template: Template,
    span: int,
    prefixes: list[FakeTaskPrefix],
    first_task: int,
    now: float,
) -> list[Any]:
    """A copy of ``template``'s records for span number ``span``: its own task
    keys (from ``first_task`` on), task groups (of ``prefixes``) and
    completion times (from ``now``)."""
    span_id = f"span-{span:08x}"
    groups = [FakeTaskGroup(f"{p.name}-{span:08x}", p, span_id) for p in prefixes]
    names = [g.name for g in groups]
    keys = [f"{names[j]}-{first_task + i}" for i, j in enumerate(template.task_prefix)]
    records = template.records.copy()
    records[0::FIELDS] = itemgetter(*template.key_index)(keys)
    records[3::FIELDS] = itemgetter(*template.group_index)(groups)
    base = template.completion
    for position, task, worker in template.completions:
        # What memory_kwargs() makes, without pickling a type per task.
        kwargs = base.copy()
        kwargs["worker"] = worker
        kwargs["startstops"] = [
            {"action": "compute", "start": now, "stop": now + 0.0005}
        ]
        kwargs["run_id"] = first_task + task
        records[position] = kwargs
    return records


class Case:
    """One pipeline fed span after span, and what its flushes cost."""

    def __init__(
        self,
        template: Template,
        prefixes: list[FakeTaskPrefix],
        per_span: int,
        workers: list[str],
    ) -> None:
        self.template = template
        self.prefixes = prefixes
        self.per_span = per_span
        self.now = T0
        self.pipeline = Pipeline(clock=lambda: self.now)
        self.buffer = TransitionBuffer(capacity=BATCH)
        self.joins = [
            WorkerRecord(0, address, "added", nthreads=2) for address in workers
        ]
        self.spans = 0
        self.tasks = 0
        #: Events/s of each span's flushes (CPU time).
        self.rates: list[float] = []
        self.events = 0
        self.seconds = 0.0

    def feed_span(self) -> None:
        """Make the next span's records and flush them batch by batch."""
        span = self.spans
        start = (span * self.per_span) % len(self.prefixes)
        mine = self.prefixes[start : start + self.per_span]
        records = span_records(self.template, span, mine, self.tasks, self.now)
        step = BATCH * FIELDS
        convert = self.buffer.convert
        process = self.pipeline.process
        tick = self.pipeline.tick
        spent = 0.0
        events = 0
        for i in range(0, len(records), step):
            pending = Pending(records[i : i + step])
            if self.joins:
                pending.workers, self.joins = self.joins, []
            self.now += STEP
            t0 = time.thread_time()
            batch = convert(pending, self.now)
            process(batch)
            tick()
            spent += time.thread_time() - t0
            events += pending.events
        self.rates.append(events / spent)
        self.events += events
        self.seconds += spent
        self.spans += 1
        self.tasks += self.template.tasks

    def build_ms(self, times: int) -> list[float]:
        """Milliseconds of ``times`` snapshot builds, nothing cached."""
        out = []
        for _ in range(times):
            self.pipeline._changed()
            t0 = time.thread_time()
            self.pipeline.snapshot()
            out.append((time.thread_time() - t0) * 1e3)
        return out


@dataclass
class Sizes:
    tasks: int
    prefixes: int
    workers: int
    spans: int

    @property
    def per_span(self) -> int:
        return self.tasks // self.spans

    #: Prefixes of each span: the pool of ``prefixes`` is gone through
    #: this many at a time (``--tasks`` shortens the run, not the spans).
    prefixes_per_span: int = 100


def checkpoints(spans: int, n: int = 10) -> list[int]:
    """After which spans (1-based counts) to measure: ``n`` evenly spaced."""
    return sorted({max(1, spans * k // n) for k in range(1, n + 1)})


def run(
    sizes: Sizes,
    measure: Callable[[], int],
    small: bool,
    on_checkpoint: Callable[[Case, Case | None, int], None],
) -> tuple[Case, Case | None, list[int]]:
    """Feed every span to the large case (and, interleaved, the 10-prefix
    case); ``measure()`` the memory growth at each checkpoint."""
    workers = worker_addresses(sizes.workers)
    pool = [FakeTaskPrefix(name) for name in prefix_names(sizes.prefixes)]
    large = Case(
        make_template(sizes.per_span, sizes.prefixes_per_span, sizes.workers),
        pool,
        sizes.prefixes_per_span,
        workers,
    )
    tiny: Case | None = None
    if small:
        tiny = Case(
            make_template(sizes.per_span, 10, sizes.workers),
            pool[:10],
            10,
            workers,
        )
    gc.collect()
    base = measure()
    marks = checkpoints(sizes.spans)
    grown: list[int] = []
    for span in range(1, sizes.spans + 1):
        large.feed_span()
        if tiny is not None and span % SMALL_EVERY == 1:
            tiny.feed_span()
        if span == marks[0]:
            marks.pop(0)
            gc.collect()
            grown.append(measure() - base)
            on_checkpoint(large, tiny, grown[-1])
    return large, tiny, grown


def extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=None, help="task life cycles")
    parser.add_argument(
        "--traced",
        type=int,
        default=None,
        help="tasks of the tracemalloc pass (default: 2,000,000 or --tasks if "
        "fewer; 0: none)",
    )


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv, extra)
    if args.quick:
        sizes = Sizes(
            tasks=40_000, prefixes=400, workers=50, spans=8, prefixes_per_span=50
        )
    else:
        sizes = Sizes(tasks=10_000_000, prefixes=100_000, workers=1_000, spans=1_000)
    if args.tasks is not None:
        per_span = sizes.per_span
        sizes.spans = max(1, args.tasks // per_span)
        sizes.tasks = sizes.spans * per_span
    if args.traced is not None:
        traced_tasks = args.traced
    else:  # tracemalloc slows the run down: its pass is shorter
        traced_tasks = sizes.tasks if args.quick else min(sizes.tasks, 2_000_000)
    report = Report("scale", args.quick)
    label = (
        f"{sizes.tasks:,} tasks over {sizes.prefixes:,} prefixes, "
        f"{sizes.workers:,} workers, {sizes.spans:,} spans"
    )
    print(f"[scale] {label}: RSS pass", flush=True)
    builds: list[tuple[int, float]] = []
    t0 = time.perf_counter()

    def checkpoint(large: Case, tiny: Case | None, grown: int) -> None:
        ms = statistics.median(large.build_ms(3))
        builds.append((large.tasks, ms))
        small = f", 10 prefixes {statistics.median(tiny.rates):,.0f}" if tiny else ""
        print(
            f"  {large.tasks:,} tasks ({time.perf_counter() - t0:.0f}s): RSS "
            f"+{grown / 2**20:.1f} MiB, build {ms:.1f} ms, events/s "
            f"{statistics.median(large.rates[-10:]):,.0f}{small}",
            flush=True,
        )

    large, tiny, rss = run(sizes, rss_bytes, True, checkpoint)
    seconds = time.perf_counter() - t0
    assert tiny is not None
    marks = [tasks for tasks, _ in builds]
    labels = [f"{tasks / 1e6:g}M tasks" for tasks in marks]
    for lab, grown in zip(labels, rss, strict=True):
        report.add(f"RSS growth after {lab}", [grown / 2**20], "MiB")
    report.note(
        f"RSS pass: {large.events:,} events (large) + {tiny.events:,} (10 "
        f"prefixes) in {seconds:.0f}s wall, {large.seconds + tiny.seconds:.0f}s of "
        "it in flushes; RSS growth includes both pipelines"
    )
    later = (rss[-1] - rss[len(rss) // 2 - 1]) / 2**20
    report.add(
        f"RSS growth from {labels[len(rss) // 2 - 1]} to {labels[-1]}", [later], "MiB"
    )
    big = report.add(
        f"flush: events/s, {label} (per span)",
        large.rates,
        "events/s",
        note=f"{1e9 / statistics.median(large.rates):.0f} ns/event",
    )
    small = report.add(
        f"flush: events/s, 10 prefixes, {sizes.workers:,} workers (per span, "
        "interleaved)",
        tiny.rates,
        "events/s",
        note=f"{1e9 / statistics.median(tiny.rates):.0f} ns/event",
    )
    tenth = max(1, len(large.rates) // 10)
    report.add(
        "flush: events/s, first tenth of the spans", large.rates[:tenth], "events/s"
    )
    report.add(
        "flush: events/s, last tenth of the spans", large.rates[-tenth:], "events/s"
    )
    report.goal(
        f"scale: flush slowdown, {sizes.prefixes:,} prefixes against 10",
        small.median / big.median,
        2.0,
        "x",
    )
    for lab, (_, ms) in zip(labels, builds, strict=True):
        report.add(f"snapshot build after {lab} (median of 3)", [ms], "ms")
    end = report.add(
        f"snapshot build at the end, {label}", large.build_ms(BUILDS), "ms"
    )
    report.goal(f"scale: snapshot build, {label}", end.median, 20, "ms")
    report.add("snapshot build at the end, 10 prefixes", tiny.build_ms(BUILDS), "ms")
    del large, tiny
    gc.collect()

    if traced_tasks:
        traced_sizes = Sizes(
            traced_tasks,
            sizes.prefixes,
            sizes.workers,
            max(1, traced_tasks // sizes.per_span),
            sizes.prefixes_per_span,
        )
        print(f"[scale] {traced_tasks:,} tasks: tracemalloc pass", flush=True)
        t1 = time.perf_counter()
        tracemalloc.start()
        try:
            _, _, traced = run(traced_sizes, traced_memory, False, no_checkpoint)
        finally:
            tracemalloc.stop()
        marks = [traced_sizes.per_span * s for s in checkpoints(traced_sizes.spans)]
        for tasks, grown in zip(marks, traced, strict=True):
            report.add(
                f"tracemalloc growth after {tasks / 1e6:g}M tasks",
                [grown / 2**20],
                "MiB",
            )
        half = len(traced) // 2 - 1
        report.add(
            f"tracemalloc growth from {marks[half] / 1e6:g}M to "
            f"{marks[-1] / 1e6:g}M tasks",
            [(traced[-1] - traced[half]) / 2**20],
            "MiB",
        )
        report.note(f"tracemalloc pass: {time.perf_counter() - t1:.0f}s wall")
        traced_later = (traced[-1] - traced[half]) / 2**20
    else:
        traced_later = 0.0
    # Bounded: the tables fill up (10,000 prefixes kept of 100,000; spans,
    # samples and errors capped) within the first tenth of the run, then
    # memory stops growing with tasks. The total is stated beside it.
    report.goal(
        f"scale: memory growth over the second half of the run, {label} "
        f"(max of RSS and tracemalloc; the total at the end is "
        f"{rss[-1] / 2**20:.0f} MiB RSS)",
        max(later, traced_later),
        5,
        "MiB",
    )
    report.note(f"whole run: {time.time() - report.started:.0f}s wall")
    return report.finish(args)


def traced_memory() -> int:
    return tracemalloc.get_traced_memory()[0]


def no_checkpoint(large: Case, tiny: Case | None, grown: int) -> None:
    print(f"  {large.tasks:,} tasks: traced +{grown / 2**20:.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
