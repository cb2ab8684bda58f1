"""Profiles of the hot path, the flush and the observers (cProfile; pyinstrument too).

Not a benchmark: it shows where the time goes, for choosing optimizations.

- ``hook``: the ``transition`` hook over the realistic cycle of ``hot_path.py``;
- ``convert``: ``TransitionBuffer.convert`` on the records of ``flush.py``;
- ``observers``: ``Pipeline.process`` (subject and default observers) on the
  events of ``flush.py``, over 10 and over 10,000 prefixes.

Run: ``python benchmarks/profile_hot.py [hook|convert|observers ...] [--quick]``
(``--pyinstrument`` for a call tree, if pyinstrument is installed).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from collections.abc import Callable
from typing import Any

from common import fake_tasks, lifecycle_calls
from dask_monitor import MonitorPlugin, Pipeline
from dask_monitor.scheduler.buffer import TransitionBuffer
from flush import FakeClock, buffers, fresh, make_batches, make_items


def profile(
    title: str, fn: Callable[[], Any], use_pyinstrument: bool, top: int
) -> None:
    print(f"\n=== {title} ===", flush=True)
    if use_pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        fn()
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def hook(n_tasks: int) -> Callable[[], None]:
    tasks = fake_tasks(n_tasks, 100)
    calls = list(lifecycle_calls(tasks))
    plugin = MonitorPlugin()
    plugin.buffer.tasks = tasks

    def run() -> None:
        for _ in range(5):
            plugin.buffer.take()
            transition = plugin.transition
            for key, start, finish, kwargs in calls:
                transition(key, start, finish, stimulus_id="x", **kwargs)

    return run


def convert(n_events: int, n_prefixes: int) -> Callable[[], None]:
    items = buffers(make_items(n_events, n_prefixes), 1000)

    def run() -> None:
        buffer = TransitionBuffer(capacity=1)
        for i, pending in enumerate(items):
            buffer.convert(pending, 1.7e9 + i * 0.1)

    return run


def observers(n_events: int, n_prefixes: int) -> Callable[[], None]:
    batches = make_batches(make_items(n_events, n_prefixes), 1000)

    def run() -> None:
        clock = FakeClock()
        pipeline = Pipeline(clock=clock)
        for batch in fresh(batches):
            clock.now = batch.time
            pipeline.process(batch)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", default=["hook", "convert", "observers"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    n_events = 12_000 if args.quick else 300_000
    for what in args.what:
        if what == "hook":
            profile("hook", hook(n_events // 6), args.pyinstrument, args.top)
        elif what == "convert":
            for n in (10, 10_000):
                fn = convert(n_events, n)
                profile(f"convert, {n} prefixes", fn, args.pyinstrument, args.top)
        elif what == "observers":
            for n in (10, 10_000):
                fn = observers(n_events, n)
                profile(f"observers, {n} prefixes", fn, args.pyinstrument, args.top)
        else:
            parser.error(f"unknown profile {what!r}")


if __name__ == "__main__":
    main()
