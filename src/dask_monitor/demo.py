"""The demo: a real local cluster, a sample pipeline, live progress, a summary."""

from __future__ import annotations

import logging
import os
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


def submit_sample_pipeline(
    client: Any, *, scale: float = 1.0, seed: int = 0
) -> list[Any]:
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
    futures = client.map(
        _work, range(n), durations, key=[f"work-{i}" for i in range(n)]
    )
    chunks = max(int(250 / max(scale, 0.1) ** 0.5), 50)
    array = da.random.default_rng(seed).random((2_000, 2_000), chunks=(chunks, chunks))
    futures.append(client.compute((array - array.mean(axis=0)).std()))
    pdf = pd.DataFrame({"k": [i % 13 for i in range(40_000)], "x": range(40_000)})
    frame = dd.from_pandas(pdf, npartitions=max(int(40 * scale), 4))
    futures.append(client.compute(frame.groupby("k").x.mean()))
    futures += client.map(_flaky, range(max(int(30 * scale), 6)))
    return list(futures)


def run_demo(
    *,
    scale: float = 1.0,
    workers: int = 2,
    threads: int = 2,
    echo: Callable[[str], Any],
    linger: float = 10.0,
    report: str | os.PathLike[str] | None = "report.html",
) -> dict[str, Any]:
    """Run the sample pipeline on a new LocalCluster with the monitor attached.

    Prints the live panel's URL, one progress line per second and a summary at
    the end; keeps the cluster (and its panel) up ``linger`` seconds more
    (Ctrl-C ends that early), then writes a standalone HTML report to
    ``report`` (``None`` or ``""``: none). Returns the final snapshot.
    """
    from distributed import Client, LocalCluster

    from dask_monitor.client import Monitor
    from dask_monitor.links import panel_url
    from dask_monitor.text import format_line, format_summary

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            # The sample pipeline raises on purpose: keep workers' error logs
            # out of the progress lines (the monitor reports the errors).
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        monitor = Monitor.attach(client)
        echo(f"dask-monitor demo: {workers} workers x {threads} threads")
        url = panel_url(client.dashboard_link)
        echo(f"live panel: {url}")
        futures = submit_sample_pipeline(client, scale=scale)
        while not all(f.done() for f in futures):
            time.sleep(1.0)
            echo(format_line(monitor.snapshot()))
        snapshot = monitor.snapshot(flush=True)
        echo(format_line(snapshot))
        echo("")
        echo(format_summary(snapshot))
        if linger > 0:
            echo("")
            echo(f"The cluster stays up {linger:g} s more: {url} (Ctrl-C ends it)")
            try:
                time.sleep(linger)
            except KeyboardInterrupt:
                echo("")
        if report:
            path = monitor.report(report)
            echo(f"report: {path.resolve()}")
        monitor.detach()
        return dict(snapshot)
