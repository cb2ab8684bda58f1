"""The demo: a real local cluster, a sample pipeline, live progress, a summary."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

__all__ = ["run_demo", "submit_sample_pipeline"]


def _work(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * 2


def _flaky(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad record {x}")
    time.sleep(0.02)
    return x


def submit_sample_pipeline(client: Any, *, scale: float = 1.0, seed: int = 0) -> list[Any]:
    """Submit the demo's mixed workload; return its futures without waiting.

    ``client.map`` of tasks with lognormal durations, a ``dask.array``
    reduction, a ``dask.dataframe`` groupby and a few tasks that raise.
    """
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    rng = random.Random(seed)
    n = max(int(400 * scale), 10)
    durations = [min(rng.lognormvariate(-3.5, 0.8), 0.5) for _ in range(n)]
    futures = client.map(_work, range(n), durations, key=[f"work-{i}" for i in range(n)])
    chunks = max(int(250 / max(scale, 0.1) ** 0.5), 50)
    array = da.random.default_rng(seed).random((2_000, 2_000), chunks=(chunks, chunks))
    futures.append(client.compute((array - array.mean(axis=0)).std()))
    pdf = pd.DataFrame({"k": [i % 13 for i in range(40_000)], "x": range(40_000)})
    frame = dd.from_pandas(pdf, npartitions=max(int(40 * scale), 4))
    futures.append(client.compute(frame.groupby("k").x.mean()))
    futures += client.map(_flaky, range(max(int(30 * scale), 6)))
    return futures


def run_demo(
    *,
    scale: float = 1.0,
    workers: int = 2,
    threads: int = 2,
    echo: Callable[[str], Any],
) -> dict[str, Any]:
    """Run the sample pipeline on a new LocalCluster with the monitor attached.

    Prints one progress line per second and a summary at the end; returns the
    final snapshot.
    """
    from distributed import Client, LocalCluster, wait

    from dask_monitor.client import Monitor
    from dask_monitor.text import format_line, format_summary

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        monitor = Monitor.attach(client)
        echo(f"dask-monitor demo: {workers} workers x {threads} threads")
        futures = submit_sample_pipeline(client, scale=scale)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when="ALL_COMPLETED")
            echo(format_line(monitor.snapshot()))
        snapshot = monitor.snapshot(flush=True)
        echo(format_line(snapshot))
        echo("")
        echo(format_summary(snapshot))
        monitor.detach()
        return dict(snapshot)
