"""Take docs/panel.png: /monitor in headless Chromium during the demo's workload.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python docs/screenshot.py [--out docs/panel.png] [--at 0.75]

Starts a local cluster on 127.0.0.1 (2 workers x 2 threads, like ``make
demo``), attaches the monitor, submits the demo pipeline, and takes the
screenshot once ``--at`` of the tasks are done (then once more at the end when
``--final`` names a second file). ``--warmup`` runs a smaller pipeline to the
end first, so the picture shows finished work and errors beside running work.
``--insights`` runs a pipeline that provokes insights instead: tiny tasks,
a worker holding results past its spill threshold (workers of 600 MB) and a
failing prefix. Needs Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import argparse
import time

from dask_monitor.demo import submit_sample_pipeline

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


MB = 10**6


def _tiny(x: int) -> int:
    return x + 1


def _hoard(nbytes: int) -> object:
    import numpy

    return numpy.ones(nbytes // 8)


def _parse(x: int) -> int:
    if x % 2:
        raise ValueError(f"bad record {x}")
    return x


def submit_insights_pipeline(client: object, worker: str) -> list[object]:
    """Tiny tasks, 450 MB of results held on ``worker``, a failing prefix."""
    futures: list[object] = client.map(_tiny, range(4_000))  # type: ignore[attr-defined]
    futures += client.map(  # type: ignore[attr-defined]
        _hoard, [50 * MB] * 9, workers=[worker], pure=False
    )
    futures += client.map(_parse, range(20))  # type: ignore[attr-defined]
    futures += submit_sample_pipeline(client, scale=0.5)
    return futures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/panel.png")
    parser.add_argument("--final", default=None, help="also shoot the end state")
    parser.add_argument("--at", type=float, default=0.75, help="share of tasks done")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=0.25, help="0: none")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1280)
    parser.add_argument(
        "--insights", action="store_true", help="tiny tasks, memory, errors"
    )
    args = parser.parse_args()

    from distributed import Client, LocalCluster, wait
    from playwright.sync_api import sync_playwright

    from dask_monitor import Monitor

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            **({"memory_limit": "600MB"} if args.insights else {}),
        ) as cluster,
        Client(cluster) as client,
        sync_playwright() as p,
    ):
        monitor = Monitor.attach(client)
        url = f"http://127.0.0.1:{cluster.scheduler.http_server.port}/monitor"
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(
            viewport={"width": args.width, "height": args.height},
            device_scale_factor=1,
        )
        page.goto(url)
        page.wait_for_function("window.Bokeh && Bokeh.documents.length > 0")
        if args.warmup and not args.insights:
            wait(submit_sample_pipeline(client, scale=args.warmup, seed=1))
            time.sleep(2.0)
        start = monitor.snapshot(flush=True)["totals"]
        if args.insights:
            worker = sorted(cluster.scheduler.workers)[0]
            futures = submit_insights_pipeline(client, worker)
        else:
            futures = submit_sample_pipeline(client, scale=args.scale)
        while True:
            totals = monitor.snapshot()["totals"]
            done = totals["done"] - start["done"]
            todo = totals["total"] - start["total"]
            if todo > 0 and done >= args.at * todo:
                break
            time.sleep(0.1)
        time.sleep(0.6)  # two panel updates
        page.screenshot(path=args.out, full_page=True)
        print(f"wrote {args.out} at {totals['done']:,}/{totals['total']:,} done")
        if args.final:
            wait(futures)
            monitor.snapshot(flush=True)
            time.sleep(1.0)
            page.screenshot(path=args.final, full_page=True)
            print(f"wrote {args.final}")
        browser.close()
        monitor.detach()


if __name__ == "__main__":
    main()
