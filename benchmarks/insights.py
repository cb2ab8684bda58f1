"""Insights: what evaluating them adds to the flush, interleaved on and off.

The plugin's loop, as ``MonitorPlugin.flush`` runs it: ``Pipeline.process``
of each batch (the columnar batches made beforehand), then ``Pipeline.tick``,
the pipeline's clock at the batch's time (a batch of 1,000 events every
0.1 s of synthetic time, so insights are due every tenth tick, as live).
Two variants of one pipeline, interleaved: ``monitor.insights.enabled`` true
and false. Ticks with insights on build a snapshot when they are due and
nobody has built one (no panel open): that build is part of their cost.

Also the cost of one evaluation alone (``InsightsEngine.evaluate`` on a
built snapshot), and the snapshot build it may need.

Run: ``python benchmarks/insights.py [--quick]``. Times are the CPU time of
the benchmark's thread (``time.thread_time``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from common import Report, interleave, parse_args
from dask_monitor import Pipeline
from dask_monitor.batch import Batch
from dask_monitor.config import MonitorConfig
from flush import STEP, FakeClock, fresh, make_batches, make_items

#: (prefixes, run), as in flush.py.
CASES = ((10, 1), (10_000, 100))


def time_loop(batches: list[Batch], enabled: bool) -> tuple[float, float, int]:
    """CPU seconds of the processes and of the ticks over ``batches``, and
    the evaluations made."""
    clock = FakeClock()
    config = MonitorConfig.from_config(insights={"enabled": enabled})
    pipeline = Pipeline(config, clock=clock)
    fresh(batches)
    gc.collect()
    process = tick = 0.0
    now = time.thread_time
    for batch in batches:
        clock.now = batch.time
        t0 = now()
        pipeline.process(batch)
        t1 = now()
        pipeline.tick()
        t2 = now()
        process += t1 - t0
        tick += t2 - t1
    return process, tick, pipeline.insights.evaluations


def variant(
    batches: list[Batch], enabled: bool, evaluations: dict[bool, int]
) -> Callable[[], tuple[float, float]]:
    """One timed run of :func:`time_loop`, noting its evaluations."""

    def run_once() -> tuple[float, float]:
        process, tick, evaluations[enabled] = time_loop(batches, enabled)
        return process, tick

    return run_once


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    n_events = 12_000 if args.quick else 300_000
    report = Report("insights", args.quick)
    for n_prefixes, run in CASES:
        items = make_items(n_events, n_prefixes, prefix_run=run)
        batches = make_batches(items, 1_000)
        n = sum(len(b) for b in batches)
        case = f"{n_prefixes:,} prefixes" + (f" in runs of {run}" if run > 1 else "")
        print(f"[insights] {n} events over {case}, {args.rounds} rounds", flush=True)
        evaluations: dict[bool, int] = {}
        results = interleave(
            {
                "insights on": variant(batches, True, evaluations),
                "insights off": variant(batches, False, evaluations),
            },
            args.rounds,
        )
        span = batches[-1].time - batches[0].time + STEP
        for name, pairs in results.items():
            report.add(
                f"{case}: flush (process), {name}",
                [p / n * 1e9 for p, _ in pairs],
                "ns/event",
            )
            report.add(
                f"{case}: ticks, {name}",
                [t / span * 1e3 for _, t in pairs],
                "ms per second of run",
                note=f"{evaluations.get(name == 'insights on', 0)} evaluations "
                f"over {span:.0f} s"
                if name == "insights on"
                else "",
            )
        on, off = results["insights on"], results["insights off"]
        added = [
            (a[0] + a[1] - b[0] - b[1]) / (b[0] + b[1]) * 100
            for a, b in zip(on, off, strict=True)
        ]
        flush_added = [(a[0] - b[0]) / b[0] * 100 for a, b in zip(on, off, strict=True)]
        report.add(f"{case}: flush (process) added by insights", flush_added, "%")
        report.add(
            f"{case}: process + tick added by insights (no reader builds snapshots)",
            added,
            "%",
            note="paired rounds",
        )
        # One evaluation alone, on the snapshot of the whole run.
        clock = FakeClock()
        pipeline = Pipeline(MonitorConfig.from_config(), clock=clock)
        fresh(batches)
        for batch in batches:
            clock.now = batch.time
            pipeline.process(batch)
        builds, evals = [], []
        for _ in range(20):
            pipeline._changed()
            t0 = time.thread_time()
            snap = pipeline.snapshot()
            builds.append((time.thread_time() - t0) * 1e3)
            t0 = time.thread_time()
            pipeline.insights.evaluate(snap, clock.now)
            evals.append((time.thread_time() - t0) * 1e3)
        report.add(f"{case}: one evaluation", evals, "ms")
        report.add(f"{case}: snapshot build (what a due tick may need)", builds, "ms")
        print(
            f"[insights] {case}: flush added {statistics.median(flush_added):+.1f}%, "
            f"process + tick added {statistics.median(added):+.1f}% "
            "(medians of paired rounds)",
            flush=True,
        )
        del items, batches, pipeline
        gc.collect()
    return report.finish(args)


if __name__ == "__main__":
    main()
