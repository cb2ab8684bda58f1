"""Panel: time to turn one snapshot into one Bokeh update, and bytes per update.

The full panel (``/monitor``: ``dask_monitor.panel.views.full_view``) in a Bokeh
``Document``. Two sources of snapshots:

- ``make_snapshot``: synthetic snapshots of a run with 10,000 prefixes (all in
  the snapshot, nothing folded: the worst case for the panel) and 100 workers,
  each one the next of the same run (more done, newer bins and samples);
- ``pipeline``: the live pipeline fed with synthetic events over 10,000
  prefixes and 100 workers; one update is a snapshot build plus the render, as
  on the dashboard (1,000 new events between updates).

Per update: the wall time of ``component.update()`` and what the Bokeh server
sends for it (the ``PATCH-DOC`` messages made of the document's change events:
JSON and binary buffers, ``dask_monitor.panel.components.measure_payload``).
Also each component's share, and the first render (the page load).

Run: ``python benchmarks/panel_update.py [--quick]``.

Times are the CPU time of the benchmark's thread (``time.thread_time``), so
that time the thread spends descheduled by other load on a shared machine does
not count.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from bokeh.document import Document
from bokeh.protocol import Protocol

from common import Report, parse_args
from dask_monitor import Pipeline
from dask_monitor.panel import _data
from dask_monitor.panel.components import StaticFeed, measure_payload
from dask_monitor.panel.views import full_view
from dask_monitor.testing import make_insight, make_snapshot
from flush import make_batches, make_items

T0 = 1.7e9


class PipelineFeed:
    """Snapshots of a pipeline in this process (what ``SchedulerFeed`` reads)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def version(self) -> Any:
        return self.pipeline.seq

    def snapshot(self) -> Any:
        return self.pipeline.snapshot()


def timed_update(doc: Document, view: Any) -> tuple[float, int, int]:
    """Milliseconds, messages and bytes of one ``view.update()``."""
    took: list[float] = []

    def action() -> None:
        t0 = time.thread_time()
        view.update()
        took.append(time.thread_time() - t0)

    messages, size = measure_payload(doc, action)
    return took[0] * 1e3, messages, size


def document_bytes(doc: Document) -> int:
    """Bytes of the whole document as the server sends it to a new page."""
    msg = Protocol().create("PULL-DOC-REPLY", "0", doc)
    size = len(msg.header_json) + len(msg.metadata_json) + len(msg.content_json)
    return size + sum(len(buffer.data) for buffer in msg.buffers)


INSIGHTS = [
    make_insight("memory-pressure", "critical", "tcp://10.0.0.1:40000"),
    make_insight("tiny-tasks", "warning", "prefix-0"),
    make_insight("erroring", "warning", "prefix-3"),
]


def bench_synthetic(
    report: Report, n_prefixes: int, n_workers: int, rounds: int
) -> None:
    snapshots = [
        make_snapshot(
            n_prefixes,
            n_workers,
            n_errors=20,
            seed=1,
            progress=min(1.0, 0.3 + 0.01 * k),
            now=T0 + 0.25 * k,
            elapsed=120 + 0.25 * k,
            seq=k + 1,
            # Three insights on the strip, as a run in trouble shows them;
            # given, so the pipeline does not evaluate its own each second.
            insights=INSIGHTS,
        )
        for k in range(rounds + 1)
    ]
    feed = StaticFeed(snapshots[0])
    view = full_view(feed)
    doc = Document()
    t0 = time.thread_time()
    view.update()
    doc.add_root(view.root)
    first = (time.thread_time() - t0) * 1e3
    label = f"{n_prefixes:,} prefixes, {n_workers} workers"
    report.add(f"make_snapshot {label}: first render", [first], "ms")
    report.add(
        f"make_snapshot {label}: page document", [document_bytes(doc) / 1e3], "KB"
    )
    ms, sizes, messages = [], [], []
    for snap in snapshots[1:]:
        feed.set(snap)
        gc.collect()
        m, n, size = timed_update(doc, view)
        ms.append(m)
        messages.append(n)
        sizes.append(size / 1e3)
    fig_ms = report.add(f"make_snapshot {label}: one update", ms, "ms")
    fig_kb = report.add(
        f"make_snapshot {label}: bytes sent per update",
        sizes,
        "KB",
        note=f"{statistics_median(messages):.0f} PATCH-DOC messages",
    )
    report.goal(f"panel: one update, {label}", fig_ms.median, 10, "ms")
    report.goal(f"panel: bytes per update, {label}", fig_kb.median, 100, "KB")
    # The ranking of the prefixes, shared by PrefixProgress and Durations (computed
    # once per snapshot), then each component's render of the same snapshots.
    n = view.config.panel_prefixes
    ranking = []
    for snap in snapshots:
        t0 = time.thread_time()
        _data.top_prefixes(snap, n)
        ranking.append((time.thread_time() - t0) * 1e3)
    report.add(f"make_snapshot {label}: ranking of the prefixes", ranking, "ms")
    for component in view.components:
        values = []
        for snap in snapshots[:-1]:  # each one differs from the one shown before
            _data.top_prefixes(snap, n)  # ranked already, as in an update
            t0 = time.thread_time()
            component.render(snap)
            values.append((time.thread_time() - t0) * 1e3)
        report.add(
            f"make_snapshot {label}: render {type(component).__name__}", values, "ms"
        )


def statistics_median(values: list[int]) -> float:
    values = sorted(values)
    return float(values[len(values) // 2]) if values else float("nan")


def bench_pipeline(
    report: Report, n_prefixes: int, n_workers: int, n_events: int, rounds: int
) -> None:
    batches = make_batches(make_items(n_events, n_prefixes, n_workers=n_workers), 1000)
    clock = [T0]
    pipeline = Pipeline(clock=lambda: clock[0])
    warm = len(batches) - rounds
    for batch in batches[:warm]:
        clock[0] = batch.time
        pipeline.process(batch)
    view = full_view(PipelineFeed(pipeline))
    doc = Document()
    view.update()
    doc.add_root(view.root)
    label = f"{n_prefixes:,} prefixes, {n_workers} workers"
    ms, sizes, builds = [], [], []
    for batch in batches[warm:]:
        clock[0] = batch.time
        pipeline.process(batch)
        gc.collect()
        m, _, size = timed_update(doc, view)
        ms.append(m)
        sizes.append(size / 1e3)
        pipeline._changed()
        t0 = time.thread_time()
        pipeline.snapshot()
        builds.append((time.thread_time() - t0) * 1e3)
    report.add(f"pipeline {label}: snapshot build", builds, "ms")
    fig = report.add(f"pipeline {label}: snapshot build + one update", ms, "ms")
    report.goal(
        f"panel: snapshot build + one update, live pipeline, {label}",
        fig.median,
        10,
        "ms",
    )
    report.add(f"pipeline {label}: bytes sent per update", sizes, "KB")


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    report = Report("panel_update", args.quick)
    rounds = args.rounds if args.quick else max(args.rounds, 20)
    n_prefixes = 200 if args.quick else 10_000
    # Each case's goals hold on their own: 100 workers, and 1,000 (a large
    # cluster, where per-worker views must stay bounded).
    for n_workers in (10, 100) if args.quick else (100, 1_000):
        print(f"[panel] {n_prefixes} prefixes, {n_workers} workers, {rounds} updates")
        bench_synthetic(report, n_prefixes, n_workers, rounds)
        n_events = 12_000 if args.quick else 300_000
        bench_pipeline(report, n_prefixes, n_workers, n_events, rounds)
    return report.finish(args)


if __name__ == "__main__":
    main()
