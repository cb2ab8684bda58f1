"""Take docs/history-list.png and docs/history-run.png: ``dask-monitor history
serve`` in headless Chromium, 1280 px wide.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python docs/screenshot_history.py [--dir /tmp/dm-history]

Records five runs of the demo pipeline on a local cluster on 127.0.0.1 into
``--dir`` (two nightly runs, two benchmarks, and a third nightly run cut
before its end to stand for one still being written), adds a file that is not
a log, serves the directory and takes the list and one opened run (its first
1,000 px). Needs Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from pathlib import Path

from distributed import Client, LocalCluster, wait

from dask_monitor import Monitor
from dask_monitor.demo import submit_sample_pipeline
from dask_monitor.panel.history import serve_history
from dask_monitor.sinks.eventlog import footer_offset

RUNS = [
    ("2026-12-01-nightly-etl.dmlog", "nightly-etl", {"team": "data", "env": "prod"}),
    ("2026-12-02-nightly-etl.dmlog", "nightly-etl", {"team": "data", "env": "prod"}),
    ("bench-chunks-250.dmlog", "benchmark chunks=250", {"branch": "main"}),
    ("bench-chunks-100.dmlog", "benchmark chunks=100", {"branch": "small-chunks"}),
    ("2026-12-03-nightly-etl.dmlog", "nightly-etl", {"team": "data", "env": "prod"}),
]


def record(directory: Path) -> None:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        for seed, (file, run, tags) in enumerate(RUNS):
            scale = 0.5 if file.startswith("bench") else 0.8
            with Monitor.attach(client, interval="100ms", run=run, tags=tags) as m:
                m.record(directory / file)
                futures = submit_sample_pipeline(client, scale=scale, seed=seed)
                wait(futures)
                m.snapshot(flush=True)
                m.stop_recording()
            client.cancel(futures)
            time.sleep(1)
    last = directory / RUNS[-1][0]
    found = footer_offset(last)
    assert found is not None
    last.write_bytes(last.read_bytes()[: found[0] * 2 // 3])  # still being written
    (directory / "notes.dmlog").write_text("scratch file, not a log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default="/tmp/dm-history")
    parser.add_argument("--list", default="docs/history-list.png")
    parser.add_argument("--run", default="docs/history-run.png")
    parser.add_argument("--open", default=RUNS[1][0], help="The run to open.")
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("*.dmlog")):
        record(directory)

    box = {}
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        box["server"] = serve_history(directory)
        ready.set()
        box["server"].io_loop.start()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait()
    base = f"http://127.0.0.1:{box['server'].port}"

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 480})
        page.goto(base + "/")
        page.screenshot(path=args.list, full_page=True)
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.goto(f"{base}/run?log={args.open}")
        page.locator(".dm-done").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=args.run)
        browser.close()
    print(f"Wrote {args.list} and {args.run}")


if __name__ == "__main__":
    main()
