"""Client side, for reference: an ``as_completed`` loop with an observer per future.

The alternative to a scheduler plugin: watch futures from the client. This
compares ``client.gather(futures)`` with a loop over
``distributed.as_completed(futures)`` that calls an observer for every finished
future (it counts per prefix and keeps the durations, as a client-side monitor
would), on ``client.map`` of trivial tasks, interleaved. Figures: tasks per
second, the scheduler loop's CPU per task, and the client's CPU per task (the
thread running the loop plus the client's event-loop thread).

Run: ``python benchmarks/client_side.py [--quick]``.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from typing import Any

from dask.utils import key_split
from distributed import Client, LocalCluster, as_completed
from distributed.utils import sync

from common import Report, interleave, loop_thread_clock, parse_args


def inc(x: int) -> int:
    return x + 1


class CountingObserver:
    """A client-side monitor: counts and times per prefix, once per future."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last: dict[str, float] = {}

    def __call__(self, future: Any) -> None:
        prefix = key_split(future.key)
        self.counts[prefix, future.status] += 1
        self.last[prefix] = time.time()


def run(
    client: Client, clocks: dict[str, Any], n: int, variant: str
) -> dict[str, float]:
    gc.collect()
    cpu0 = {name: clock() for name, clock in clocks.items()}
    t0 = time.perf_counter()
    futures = client.map(inc, range(n), pure=False)
    if variant == "gather":
        client.gather(futures)
    else:
        observer = CountingObserver()
        for future in as_completed(futures):
            observer(future)
        assert sum(observer.counts.values()) == n
    seconds = time.perf_counter() - t0
    del futures
    cpu = {name: clock() - cpu0[name] for name, clock in clocks.items()}
    return {
        "tps": n / seconds,
        "scheduler": cpu["scheduler"] / n * 1e6,
        "client": (cpu["client loop"] + cpu["main"]) / n * 1e6,
    }


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    n = 300 if args.quick else 5_000
    report = Report("client_side", args.quick)
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        host="127.0.0.1",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster.scheduler_address)  # its own loop thread

    async def ident() -> int:
        return threading.get_ident()

    clocks = {
        "scheduler": loop_thread_clock(sync(cluster.loop, ident)),
        "client loop": loop_thread_clock(sync(client.loop, ident)),
        "main": loop_thread_clock(threading.get_ident()),
    }
    try:
        run(client, clocks, min(n, 200), "gather")  # warm up
        print(f"[client side] {n} tasks, {args.rounds} rounds", flush=True)
        results = interleave(
            {
                v: (lambda v=v: run(client, clocks, n, v))
                for v in ("gather", "as_completed + observer")
            },
            args.rounds,
        )
    finally:
        client.close()
        cluster.close()
    for variant, rows in results.items():
        report.add(f"{variant}: throughput", [r["tps"] for r in rows], "tasks/s")
        report.add(f"{variant}: client CPU", [r["client"] for r in rows], "µs/task")
        report.add(
            f"{variant}: scheduler loop CPU", [r["scheduler"] for r in rows], "µs/task"
        )
    return report.finish(args)


if __name__ == "__main__":
    main()
