"""Reports of a finished run: a visible heading, and only figures that mean much."""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, wait

from dask_monitor import Monitor
from dask_monitor.panel import report_html
from dask_monitor.replay import replay_pipeline, run_info
from dask_monitor.sinks.eventlog import EventLog

from .conftest import make_cluster

XSS = "<img src=x onerror=window.__pwned=1>"


def nap(x: int) -> int:
    time.sleep(0.005)
    return x


def texts(page: str) -> str:
    """Every ``text`` property of the page's Bokeh models (what Divs show)."""
    found: list[str] = []
    for raw in re.findall(
        r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S
    ):

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "text" and isinstance(value, str):
                        found.append(value)
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(json.loads(html.unescape(raw)))
    return "\n".join(found)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An event log of a real run of 60 tasks, recorded to its end."""
    path = tmp_path_factory.mktemp("report") / "run.dmlog"
    with (
        make_cluster() as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as monitor,
    ):
        monitor.record(path, flush_interval="50ms")
        wait(client.map(nap, range(60)))
        monitor.snapshot(flush=True)
        monitor.stop_recording()
    return path


class TestReplayedReport:
    """The report of a replayed run."""

    def test_heading_has_title_date_source_and_versions(self, recorded: Path) -> None:
        """Title, the run's start date, the log and the run's versions, on top."""
        pipeline = replay_pipeline(recorded)
        snapshot = pipeline.snapshot()
        page = report_html(snapshot, title="Nightly ETL", **run_info(recorded))
        shown = texts(page)
        header = EventLog.open(recorded).header
        assert "<h1>Nightly ETL</h1>" in shown
        day = time.strftime("%Y-%m-%d", time.localtime(header["started"]))
        assert day in shown
        assert str(recorded) in shown
        assert header["cluster"]["scheduler"] in shown
        for field in ("dask", "distributed", "library"):
            assert f"<b>{header[field]}</b>" in shown
        assert "finished run" in shown

    def test_no_live_only_figures(self, recorded: Path) -> None:
        """No current pace, ETA, flush cost or overhead; the average rate instead."""
        snapshot = replay_pipeline(recorded).snapshot()
        assert snapshot["live"] is False
        shown = texts(report_html(snapshot, **run_info(recorded)))
        assert "tasks/s now" not in shown
        assert "overhead" not in shown
        assert "flush" not in shown
        assert ">eta<" not in shown
        assert "average tasks/s" in shown
        assert "Throughput: average" in shown
        assert "60" in shown

    def test_heading_escapes_user_text(self, recorded: Path) -> None:
        """A title or source with markup is shown as text."""
        snapshot = replay_pipeline(recorded).snapshot()
        shown = texts(report_html(snapshot, title=XSS, source=XSS))
        assert XSS not in shown
        assert html.escape(XSS) in shown


def test_live_report_names_the_scheduler_and_installed_versions(
    tmp_path: Path,
) -> None:
    """``Monitor.report`` of a live run: the scheduler and versions in the heading."""
    from importlib.metadata import version

    with (
        make_cluster() as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as monitor,
    ):
        wait(client.map(nap, range(10)))
        path = monitor.report(tmp_path / "live.html")
        address = cluster.scheduler.address
    shown = texts(path.read_text(encoding="utf-8"))
    assert address in shown
    assert f"<b>{version('distributed')}</b>" in shown
    assert "dask-monitor" in shown
