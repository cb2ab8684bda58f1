"""What the flush interval costs: one recording, flushed every 50 to 500 ms.

Each flush has a fixed cost (a dozen observers and rules, a few microseconds
each) beside its cost per event, so flushing less often costs the scheduler
less, up to a point. One real run is recorded with a mark every 50 ms (where
a flush every 50 ms would have run: a periodic callback on the scheduler's
loop, between two of its ticks); flushing every 100, 250 or 500 ms is every
2nd, 5th or 10th mark. The hook takes the recorded calls (off the loop), each
interval's buffers are filled by it, and then only the flushes are timed
(thread CPU time), in interleaved rounds, as ``compare.py --sections flush``
does for two versions.

Run: ``python benchmarks/flush_interval.py [--workloads map,array,dataframe]
[--rounds 5] [--quick] [--json FILE]``. Figures: µs of flush per task of the
run.
"""

from __future__ import annotations

import gc
import statistics
from typing import Any

import dask

import scheduler_overhead as so
from common import Report, interleave, parse_args
from compare import flush_seconds
from dask_monitor.pipeline import Pipeline

#: Milliseconds between the recording's marks, and the intervals compared.
BASE_MS = 50
INTERVALS_MS = (50, 100, 250, 500)


def bench_intervals(
    bench: Any, report: Report, workload: str, size: int, rounds: int
) -> None:
    """Flushes of one recorded run of ``workload`` at each interval, interleaved."""
    so.WORKLOADS[workload](bench.client, min(size, 100))  # warm up
    bench.drained()
    with dask.config.set({"monitor.interval": f"{BASE_MS}ms"}):
        recording = bench.record(workload, size)
    n = recording.tasks
    filled = {
        ms: so.hook_buffers(
            bench, recording, cuts=recording.cuts[ms // BASE_MS - 1 :: ms // BASE_MS]
        )
        for ms in INTERVALS_MS
    }
    gc.collect()
    gc.freeze()
    try:
        results = interleave(
            {
                str(ms): (lambda b=b: flush_seconds(so.MonitorPlugin, Pipeline, b)[0])
                for ms, b in filled.items()
            },
            rounds,
        )
    finally:
        gc.unfreeze()
    base = statistics.median(results["250"])
    for ms in INTERVALS_MS:
        seconds = results[str(ms)]
        change = statistics.median(seconds) / base - 1 if base else 0.0
        report.add(
            f"{workload}: flush every {ms} ms",
            [t / n * 1e6 for t in seconds],
            "µs/task",
            note=f"{len(filled[ms])} flushes for {n} tasks; {100 * change:+.0f}% "
            "against 250 ms",
        )


def _extra(parser: Any) -> None:
    parser.add_argument(
        "--workloads", default="map,array,dataframe", help="comma-separated workloads"
    )


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv, _extra)
    report = Report("flush_interval", args.quick)
    sizes = so.QUICK_SIZES if args.quick else so.FULL_SIZES
    bench = so.Bench()
    try:
        for workload in args.workloads.split(","):
            bench_intervals(bench, report, workload, sizes[workload], args.rounds)
    finally:
        bench.close()
    report.note(
        "one recording per workload, marked every 50 ms; the flushes of each "
        "interval's buffers timed in interleaved rounds (thread CPU time)"
    )
    return report.finish(args)


if __name__ == "__main__":
    main()
