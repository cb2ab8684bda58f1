"""The resources view and report table against snapshots made by the pipeline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bokeh.document import Document
from distributed import Client, LocalCluster

from dask_monitor import Monitor, get_plugin
from dask_monitor.events import WorkerResources
from dask_monitor.panel import report_html
from dask_monitor.panel.components import StaticFeed
from dask_monitor.panel.resources import ResourcesView, resources_rows
from dask_monitor.panel.views import full_view, individual_view
from dask_monitor.pipeline import Pipeline
from dask_monitor.snapshot import Snapshot
from dask_monitor.testing import make_snapshot

from .conftest import make_cluster
from .test_report import texts

XSS = "tcp://<img src=x onerror=window.__pwned=1>:1"
MB = 2**20


def sampled(*rounds: list[WorkerResources]) -> Snapshot:
    """The snapshot of a pipeline fed these rounds of samples."""
    pipeline = Pipeline(raise_errors=True)
    for samples in rounds:
        pipeline.process(samples)
    return pipeline.snapshot()


def sample(
    address: str, t: float, memory: int, managed: int, spilled: int = 0,
    limit: int | None = 1000 * MB, cpu: float = 50.0, paused: bool = False,
) -> WorkerResources:  # fmt: skip
    return WorkerResources(
        address, t, memory, managed, memory - managed, spilled, limit, cpu,
        1e4 * t, 2e4 * t, paused,
    )  # fmt: skip


def attach(view: Any) -> Document:
    doc = Document()
    doc.add_root(view.root)
    view.update()
    return doc


class TestResourcesView:
    def test_a_thousand_workers_show_the_most_memory_in_rows_that_fit(self) -> None:
        """With more workers than legible rows, memory and CPU show the workers
        using the most memory, as many as the figure holds, and say how many
        are left out."""
        from dask_monitor.panel.components import rows_that_fit

        snap = sampled(
            [
                sample(f"tcp://w:{i:04d}", 1.0, (i + 10) * MB, 5 * MB)
                for i in range(1_000)
            ]
        )
        view = ResourcesView(StaticFeed(snap))
        attach(view)
        fits = rows_that_fit(view.memory_figure)
        bars = view.source.data
        assert 4 <= len(bars["y"]) == fits < 50
        assert min(bars["memory"]) == (1_010 - fits) * MB
        assert list(view.cpu.data["name"]) == list(bars["name"])
        assert f"({1_000 - fits:,} workers not shown)" in view.memory_figure.title.text

    def test_bars_marks_and_series_are_the_snapshots(self) -> None:
        """Stacked managed/unmanaged/spilled bytes per worker, the limit and the
        60/70/80/95% marks, CPU per worker, the cluster's network over time."""
        snap = sampled(
            [
                sample("tcp://a:1", 1.0, 500 * MB, 200 * MB),
                sample("tcp://b:1", 1.0, 300 * MB, 0),
            ],
            [
                sample(
                    "tcp://a:1", 2.0, 800 * MB, 600 * MB, spilled=50 * MB, cpu=180.0
                ),
                sample("tcp://b:1", 2.0, 100 * MB, 10 * MB, limit=None, paused=True),
            ],
        )
        view = ResourcesView(StaticFeed(snap))
        attach(view)
        bars = view.source.data
        assert list(bars["label"]) == ["a:1", "b:1"]
        assert list(bars["managed"]) == [600 * MB, 10 * MB]
        assert list(bars["unmanaged_end"]) == [800 * MB, 100 * MB]
        assert list(bars["spilled_end"]) == [850 * MB, 100 * MB]
        # Drawn as a strip of its own from zero: on disk, not in memory.
        assert list(bars["spilled"]) == [50 * MB, 0]
        under = zip(bars["spill_top"], bars["bottom"], strict=True)
        assert all(top < bottom for top, bottom in under)
        assert list(bars["status"]) == ["running", "paused"]
        marks = view.marks.data
        # Only worker a has a limit: its four thresholds and the limit itself.
        assert list(marks["x"]) == pytest.approx(
            [f * 1000 * MB for f in (0.6, 0.7, 0.8, 0.95, 1.0)]
        )
        assert list(view.cpu.data["cpu"]) == [180.0, 50.0]
        assert list(view.network.data["time"]) == [1000.0, 2000.0]
        assert list(view.network.data["network_in"]) == [2e4, 4e4]
        title = view.memory_figure.title.text
        assert title.startswith("Memory 900.00 MiB") and "1 paused" in title
        assert view.memory_figure.x_range.end >= 1000 * MB

    def test_network_rounds_are_streamed_and_a_grown_round_patched(self) -> None:
        """New rounds are appended, the latest round's sum corrected in place:
        the series equals the snapshot's after each render."""
        pipeline = Pipeline(raise_errors=True)
        feed = StaticFeed(None)
        view = ResourcesView(feed)
        attach(view)
        steps = [
            [sample("tcp://a:1", 1.0, 100 * MB, 0)],
            [sample("tcp://b:1", 1.0, 100 * MB, 0)],  # the same round, grown
            [
                sample("tcp://a:1", 2.0, 100 * MB, 0),
                sample("tcp://b:1", 2.0, 100 * MB, 0),
            ],
        ]
        for samples in steps:
            pipeline.process(samples)
            snap = pipeline.snapshot()
            feed.set(snap)
            view.update()
            history = snap["resources"]["cluster"]["history"]
            assert list(view.network.data["time"]) == [
                t * 1000 for t in history["time"]
            ]
            assert list(view.network.data["network_in"]) == history["network_in"]
        assert list(view.network.data["network_in"]) == [2e4, 4e4]

    def test_before_any_sample(self) -> None:
        """No sample yet: empty bars and a title that says so."""
        view = ResourcesView(StaticFeed(sampled()))
        attach(view)
        assert list(view.source.data["y"]) == []
        assert "no sample yet" in view.memory_figure.title.text

    def test_an_unchanged_snapshot_sends_nothing(self) -> None:
        """A second render of the same snapshot changes no source."""
        snap = make_snapshot(n_workers=3, seed=2)
        view = ResourcesView(StaticFeed(snap))
        attach(view)
        before = {k: list(v) for k, v in view.source.data.items()}
        view.render(snap)
        assert {k: list(v) for k, v in view.source.data.items()} == before

    def test_in_the_full_view_and_as_an_individual_page(self) -> None:
        """/monitor shows it; individual_view("resources") fills its pane."""
        snap = make_snapshot(n_workers=3, seed=2)
        full = full_view(StaticFeed(snap))
        attach(full)
        assert any(isinstance(c, ResourcesView) for c in full.components)
        view = individual_view("resources", StaticFeed(snap))
        attach(view)
        assert len(view.source.data["y"]) == 3


class TestReport:
    def test_report_has_a_table_of_the_workers_and_the_cluster(self) -> None:
        """One row per worker and the cluster's sum; addresses escaped."""
        snap = sampled(
            [
                sample(XSS, 1.0, 500 * MB, 200 * MB),
                sample("tcp://b:1", 1.0, 300 * MB, 0),
            ]
        )
        rows = resources_rows(snap)
        assert [r["worker"] for r in rows] == [XSS, "tcp://b:1", "cluster"]
        assert rows[-1]["memory"] == "800.00 MiB" and rows[-1]["share"] == "40%"
        shown = texts(report_html(snap))
        assert "<h2>Resources</h2>" in shown
        assert "<td>tcp://&lt;img src=x onerror=window.__pwned=1&gt;:1</td>" in shown
        assert "<img" not in shown.replace("<h2>", "")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, LocalCluster]]:
    """A cluster whose dashboard serves the pages, with the monitor attached."""
    with make_cluster() as cluster, Client(cluster) as client:
        monitor = Monitor.attach(client)
        deadline = time.monotonic() + 20
        while len(monitor.snapshot(flush=True)["resources"]["workers"]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield f"http://127.0.0.1:{cluster.scheduler.http_server.port}", cluster
        monitor.detach()


class TestPage:
    def test_the_page_shows_every_sampled_worker(
        self, served: tuple[str, LocalCluster], browser: Any, tmp_path: Path
    ) -> None:
        """/individual-monitor-resources renders the workers' bars in Chromium."""
        base, cluster = served
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/individual-monitor-resources")
        page.wait_for_function(
            "window.Bokeh && Bokeh.documents.length > 0"
            " && Bokeh.documents[0].get_model_by_name('dm-memory') !== null"
            " && Bokeh.documents[0].get_model_by_name('dm-memory').data.y.length == 2",
            timeout=20_000,
        )
        limits = page.evaluate(
            "Bokeh.documents[0].get_model_by_name('dm-memory').data.limit_text"
        )
        plugin = get_plugin(cluster.scheduler)
        assert plugin is not None
        workers = plugin.snapshot()["resources"]["workers"]
        assert len(limits) == len(workers) == 2
        page.screenshot(path=str(tmp_path / "resources.png"))
        assert not errors
        page.close()
