"""Hot path: nanoseconds per ``transition`` call of the plugin, against an empty one.

The scheduler calls ``plugin.transition(key, start, finish, stimulus_id=...,
**kwargs)`` for every transition of every task. This times a realistic cycle of
calls (``released->waiting``, ``waiting->processing``, ``processing->memory``
with the kwargs the scheduler passes, ``memory->released``,
``released->forgotten``) on fake task states, and the ``processing->memory``
call alone, timeit-style: one pass of 50,000 calls per variant and round, the
variants interleaved, the median of the rounds. The buffer is emptied every
1,000 calls (outside the timing), as a 100 ms flush at 10,000 transitions/s
would.

Variants: an empty plugin (the cost of being called), dask-monitor's
``MonitorPlugin``, and for reference Dask's ``TaskStreamPlugin``, ``AllProgress``
and a naive monitor that builds a dataclass per transition in the hook.

Run: ``python benchmarks/hot_path.py [--quick]``.

Times are the CPU time of the benchmark's thread (``time.thread_time``), so
that time the thread spends descheduled by other load on a shared machine does
not count.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from distributed.diagnostics.progress import AllProgress
from distributed.diagnostics.task_stream import TaskStreamPlugin

from common import (
    EmptyPlugin,
    NaiveMonitor,
    Report,
    fake_tasks,
    interleave,
    lifecycle_calls,
    parse_args,
)
from dask_monitor import MonitorPlugin

STIMULUS = "task-finished-1700000000.123"
#: Calls between two flushes: 100 ms at 10,000 transitions/s.
FLUSH_EVERY = 1_000


def make_variants(tasks: dict[str, Any]) -> dict[str, Any]:
    shim = SimpleNamespace(tasks={}, add_plugin=lambda plugin: None)
    monitor = MonitorPlugin()
    monitor.buffer.tasks = tasks
    variants = {
        "empty plugin": EmptyPlugin(),
        "dask-monitor": monitor,
        "TaskStreamPlugin": TaskStreamPlugin(shim),
        "AllProgress": AllProgress(shim),
        "naive monitor": NaiveMonitor(tasks),
    }
    shim.tasks = tasks  # AllProgress reads scheduler.tasks[key]
    return variants


def reset(plugin: Any) -> None:
    """Empty what a plugin accumulated (a flush, for the monitor)."""
    if isinstance(plugin, MonitorPlugin):
        plugin.buffer.take()
    elif isinstance(plugin, TaskStreamPlugin):
        plugin.buffer.clear()


def pass_timer(
    plugin: Any, calls: list[tuple[str, str, str, dict[str, Any]]], flush_every: int
) -> float:
    """Nanoseconds per call for one pass over ``calls``.

    The plugin's buffer is emptied every ``flush_every`` calls (outside the
    timing), as the periodic flush does: a buffer growing to the whole pass
    would make the cyclic garbage collector scan it again and again, a cost
    the scheduler does not see.
    """
    transition = plugin.transition
    reset(plugin)
    gc.collect()
    clock = time.thread_time_ns
    elapsed = 0
    for i in range(0, len(calls), flush_every):
        chunk = calls[i : i + flush_every]
        t0 = clock()
        for key, start, finish, kwargs in chunk:
            transition(key, start, finish, stimulus_id=STIMULUS, **kwargs)
        elapsed += clock() - t0
        if isinstance(plugin, MonitorPlugin):
            assert not plugin.buffer.dropped, "the buffer overflowed"
        reset(plugin)
    return elapsed / len(calls)


def loop_only(calls: list[tuple[str, str, str, dict[str, Any]]]) -> float:
    """The timing loop calling a plain function: the floor of any plugin."""

    def transition(
        key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        pass

    plugin = SimpleNamespace(transition=transition)
    return pass_timer(plugin, calls, FLUSH_EVERY)


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    rounds = 3 if args.quick else max(args.rounds, 21)
    n_tasks = 1_000 if args.quick else 10_000
    report = Report("hot_path", args.quick)
    tasks = fake_tasks(n_tasks, n_prefixes=100)
    cycle = list(lifecycle_calls(tasks))
    memory_only = [c for c in cycle if c[2] == "memory"]
    variants = make_variants(tasks)
    print(
        f"[hot path] {len(cycle)} calls per pass ({n_tasks} tasks x 5 transitions), "
        f"{rounds} rounds",
        flush=True,
    )
    timers: dict[str, Callable[[], float]] = {"loop only": lambda: loop_only(cycle)}
    for name, plugin in variants.items():
        timers[name] = lambda p=plugin: pass_timer(p, cycle, FLUSH_EVERY)
    results = interleave(timers, rounds)
    for name, values in results.items():
        report.add(f"cycle: {name}", values, "ns/call")
    empty = results["empty plugin"]
    for name in ("dask-monitor", "TaskStreamPlugin", "AllProgress", "naive monitor"):
        above = [a - b for a, b in zip(results[name], empty, strict=True)]
        fig = report.add(f"cycle: {name} above empty plugin", above, "ns/call")
        if name == "dask-monitor":
            report.goal(
                "hot path: dask-monitor above empty plugin (cycle)",
                fig.median,
                500,
                "ns/call",
            )

    mem = interleave(
        {
            name: (lambda p=variants[name]: pass_timer(p, memory_only, FLUSH_EVERY))
            for name in ("empty plugin", "dask-monitor")
        },
        rounds,
    )
    for name, values in mem.items():
        report.add(f"processing->memory: {name}", values, "ns/call")
    above = [
        a - b for a, b in zip(mem["dask-monitor"], mem["empty plugin"], strict=True)
    ]
    fig = report.add(
        "processing->memory: dask-monitor above empty plugin", above, "ns/call"
    )
    report.goal(
        "hot path: dask-monitor above empty plugin (processing->memory)",
        fig.median,
        500,
        "ns/call",
    )
    return report.finish(args)


if __name__ == "__main__":
    main()
