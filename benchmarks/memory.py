"""Memory: growth of the process after 1,000,000 tasks through the plugin.

Fake task states over 10,000 prefixes go through the plugin's hooks
(``update_graph`` creating them, then ``released->waiting->processing->memory
->released->forgotten``; one in a thousand errs) in blocks of 1,000 tasks, as a
scheduler would call them, and are forgotten (dropped from the task table) at
the end of their life cycle. The plugin is flushed every 10,000 transitions
(a 100 ms flush at 100,000 transitions/s). A new computation (new task groups
and span) starts every 100,000 tasks.

Two passes: one reads the resident set size (RSS, ``/proc/self/statm``), one
traces Python allocations (``tracemalloc``, which slows the run down). Growth
is reported after 100k, 500k and 1M tasks against the process right after the
plugin was set up. Bounded means: not proportional to tasks.

Run: ``python benchmarks/memory.py [--quick]``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable

from common import (
    Report,
    fake_groups,
    fake_tasks,
    lifecycle_calls,
    parse_args,
    rss_bytes,
)
from dask_monitor import MonitorPlugin, Pipeline

BLOCK = 1_000
FLUSH_EVERY = 10_000
COMPUTATION = 100_000


def run(
    n_tasks: int, n_prefixes: int, checkpoints: list[int], measure: Callable[[], int]
) -> tuple[list[int], int, MonitorPlugin]:
    """Push ``n_tasks`` through a plugin; ``measure()`` at each checkpoint."""
    plugin = MonitorPlugin()
    plugin.pipeline = Pipeline(plugin.config)
    # The scheduler's task table: tasks in it from creation until forgotten.
    table: dict[str, object] = {}
    plugin.buffer.tasks = table
    transition = plugin.transition
    update_graph = plugin.update_graph
    groups = fake_groups(n_prefixes, 0)  # the harness's own, replaced per computation
    gc.collect()
    base = measure()
    out: list[int] = []
    since_flush = 0
    done = 0
    while done < n_tasks:
        if done % COMPUTATION == 0:
            groups = fake_groups(n_prefixes, done // COMPUTATION)
        size = min(BLOCK, n_tasks - done)
        tasks = fake_tasks(size, n_prefixes, start=done, groups=groups)
        table.update(tasks)
        update_graph(None, tasks=list(tasks))  # type: ignore[arg-type]
        for key, start, finish, kwargs in lifecycle_calls(tasks, error_every=1000):
            transition(key, start, finish, stimulus_id="bench", **kwargs)
            if finish == "forgotten":
                del table[key]
        del tasks
        since_flush += size * 6
        if since_flush >= FLUSH_EVERY:
            plugin.flush()
            since_flush = 0
        done += size
        if checkpoints and done >= checkpoints[0]:
            checkpoints = checkpoints[1:]
            plugin.flush()
            gc.collect()
            out.append(measure() - base)
    plugin.flush()
    assert plugin.pipeline.dropped == 0
    return out, base, plugin


def traced() -> int:
    return tracemalloc.get_traced_memory()[0]


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_prefixes = 10_000
    quick = [2_000, 5_000, 10_000]
    checkpoints = quick if args.quick else [100_000, 500_000, 1_000_000]
    n_tasks = checkpoints[-1]
    report = Report("memory", args.quick)
    labels = [f"{c // 1000}k tasks" for c in checkpoints]

    print(f"[memory] {n_tasks} tasks over {n_prefixes} prefixes: RSS pass", flush=True)
    t0 = time.perf_counter()
    rss, base_rss, plugin = run(n_tasks, n_prefixes, list(checkpoints), rss_bytes)
    seconds = time.perf_counter() - t0
    events = plugin.pipeline.events if plugin.pipeline else 0
    del plugin
    for label, grown in zip(labels, rss, strict=True):
        report.add(f"RSS growth after {label}", [grown / 2**20], "MiB")
    report.note(
        f"RSS pass: {events:,} events in {seconds:.1f}s "
        f"({events / seconds:,.0f} events/s through hook and flush); "
        f"RSS at start {base_rss / 2**20:.0f} MiB"
    )
    gc.collect()

    print("[memory] tracemalloc pass", flush=True)
    tracemalloc.start()
    try:
        traced_growth, _, plugin = run(n_tasks, n_prefixes, list(checkpoints), traced)
        del plugin
    finally:
        tracemalloc.stop()
    for label, grown in zip(labels, traced_growth, strict=True):
        report.add(f"tracemalloc growth after {label}", [grown / 2**20], "MiB")
    worst = max(max(rss), max(traced_growth)) / 2**20
    report.goal(
        f"memory growth after {labels[-1]} over {n_prefixes:,} prefixes (max of RSS "
        "and tracemalloc)",
        worst,
        30,
        "MiB",
    )
    later = traced_growth[-1] - traced_growth[0]
    report.add(
        f"tracemalloc growth from {labels[0]} to {labels[-1]}", [later / 2**20], "MiB"
    )
    return report.finish(args)


if __name__ == "__main__":
    main()
