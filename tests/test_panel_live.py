"""The panel on a real cluster's dashboard: HTTP, a Bokeh session, Chromium.

One cluster and one browser serve the whole module. The workload includes
tasks whose keys, prefixes and exception texts carry HTML and script payloads;
the page must show them as text and never run them.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster, wait

from dask_monitor import Monitor, get_plugin
from dask_monitor.panel import PATHS, ensure_pages
from dask_monitor.panel._data import display_text, top_prefixes
from dask_monitor.snapshot import Snapshot
from tests.workloads import inc

from .conftest import make_cluster

pytestmark = pytest.mark.slow

IMG = "<img src=x onerror=window.__pwned=1>"
SCRIPT = "<script>window.__pwned=1</script>"


def slow_inc(x: int) -> int:
    time.sleep(0.01)
    return x + 1


def fail(text: str) -> None:
    raise ValueError(f"bad input {text}")


def ensure(dask_scheduler: Any) -> bool:
    """ensure_pages, run on the scheduler by ``client.run_on_scheduler``."""
    return ensure_pages(dask_scheduler)


def get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET (errors too), loopback only."""
    assert url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# -- fixtures: one cluster, one workload, one browser -------------------------------


@pytest.fixture(scope="module")
def live_cluster() -> Iterator[LocalCluster]:
    """The pages come with the monitor: the ``live`` fixture attaches it."""
    with make_cluster(protocol="tcp://", host="127.0.0.1") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def base(live_cluster: LocalCluster) -> str:
    return f"http://127.0.0.1:{live_cluster.scheduler.http_server.port}"


@pytest.fixture(scope="module")
def live(live_cluster: LocalCluster) -> Iterator[tuple[Client, Monitor, Snapshot]]:
    """A client, an attached monitor and the snapshot after a mixed workload.

    Keys whose prefix is itself an HTML/script payload (key_split keeps a first
    word that starts with a letter), one whose prefix is cut to ``img``, and a
    task that raises with both payloads in its message.
    """
    with Client(live_cluster) as client:
        monitor = Monitor.attach(client)
        futures = client.map(slow_inc, range(200))
        futures += [
            client.submit(inc, 1, key=f"{IMG}-1"),  # prefix "img"
            client.submit(inc, 2, key=f"x{IMG}-2"),  # prefix "x<img ...>"
            client.submit(inc, 3, key=f"s{SCRIPT}-3"),  # prefix "s<script>...</script"
            client.submit(fail, IMG + SCRIPT, key=f"e{IMG}{SCRIPT}-4"),
        ]
        wait(futures)
        snapshot = monitor.snapshot(flush=True)
        yield client, monitor, snapshot
        monitor.detach()


class Page:
    """A browser page that records console errors and outside requests."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1440, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_function(
            "window.Bokeh !== undefined && Bokeh.documents.length > 0"
            " && Bokeh.documents[0].roots().length > 0",
            timeout=20_000,
        )
        return self.page

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).first.inner_text())

    def outside_requests(self) -> list[str]:
        return [
            u
            for u in self.requests
            if not u.startswith(("http://127.0.0.1:", "file://", "data:", "blob:"))
        ]

    def close(self) -> None:
        self.page.close()


# -- HTTP ------------------------------------------------------------------------------


class TestPages:
    """The pages are served by the scheduler's dashboard."""

    def test_each_page_answers(self, base: str, live: Any) -> None:
        """/monitor and every individual page answer 200 with a Bokeh document."""
        for path in PATHS:
            status, body = get(base + path)
            assert status == 200, path
            assert b"Bokeh" in body
        status, body = get(base + "/monitor")
        assert b"navbar" in body  # Dask's template
        assert b'href="monitor"' in body  # our link among Dask's pages

    def test_individual_plots_json(self, base: str, live: Any) -> None:
        """dask-labextension's list holds the individual pages."""
        status, body = get(base + "/individual-plots.json")
        assert status == 200
        plots = set(json.loads(body).values())
        for path in PATHS:
            if path != "/monitor":
                assert path in plots

    def test_bokeh_session_matches_the_snapshot(
        self, base: str, live: Any, live_cluster: LocalCluster
    ) -> None:
        """A Bokeh client session of /monitor holds the snapshot's numbers."""
        from bokeh.client import pull_session

        plugin = get_plugin(live_cluster.scheduler)
        assert plugin is not None
        snapshot = plugin.snapshot()
        with pull_session(url=base + "/monitor") as session:
            doc = session.document
            prefixes = doc.select_one({"name": "dm-prefixes"}).data
            summary = doc.select_one({"name": "dm-summary"}).text
        assert f'class="dm-done">{snapshot["totals"]["done"]:,}<' in summary
        assert f'class="dm-total">{snapshot["totals"]["total"]:,}<' in summary
        expected = top_prefixes(snapshot, plugin.config.panel_prefixes)
        assert list(prefixes["name"]) == [display_text(n, 200) for n, _ in expected]
        assert list(prefixes["counts"]) == [
            f"{r['done']:,} / {r['total']:,}" for _, r in expected
        ]


# -- Chromium --------------------------------------------------------------------------


class TestBrowser:
    """/monitor in headless Chromium."""

    def test_monitor_follows_a_computation(
        self, base: str, live: Any, browser: Any, tmp_path: Path
    ) -> None:
        """No console errors; done count and error counts follow the snapshot."""
        client, monitor, _ = live
        page = Page(browser)
        try:
            p = page.open(base + "/monitor")
            more = client.map(slow_inc, range(1000, 1100))
            bad = client.map(fail, [f"again {i}" for i in range(5)])
            wait(more + bad)
            snapshot = monitor.snapshot(flush=True)
            done = f"{snapshot['totals']['done']:,}"
            assert wait_for(lambda: page.text(".dm-done") == done), page.text(
                ".dm-done"
            )
            assert page.text(".dm-total") == f"{snapshot['totals']['total']:,}"
            counts = {str(e["count"]) for e in snapshot["errors"]}
            cells = p.locator(".slick-cell")
            assert wait_for(lambda: counts <= set(cells.all_inner_texts()))
            p.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)
            assert (tmp_path / "monitor.png").stat().st_size > 10_000
            assert page.errors == []
            assert page.outside_requests() == []
        finally:
            page.close()

    def test_payloads_are_shown_as_text(
        self, base: str, live: Any, browser: Any
    ) -> None:
        """Keys, prefixes and messages with HTML show as text and never run."""
        page = Page(browser)
        try:
            p = page.open(base + "/monitor")
            tooltips = p.locator("[class*=tooltip]")
            shown: list[str] = []
            for y in range(140, 900, 8):  # hover over bars, rows, rectangles
                p.mouse.move(400, y)
                shown += tooltips.all_inner_texts()
                p.mouse.move(900, y)
            assert any(IMG in text for text in shown)  # tooltips show it as text
            cells = p.locator(".slick-cell")
            assert wait_for(lambda: cells.count() > 0)
            texts = " ".join(cells.all_inner_texts())
            assert IMG in texts  # the raw text, not an element
            cells.filter(has_text=IMG).first.click()
            detail = page.text("pre")
            assert "bad input" in detail
            assert IMG in detail
            p.wait_for_timeout(200)
            assert p.evaluate("typeof window.__pwned") == "undefined"
            assert p.locator("img[src=x]").count() == 0
            assert page.errors == []
            for path in (
                "/individual-monitor-errors",
                "/individual-monitor-task-stream",
            ):
                page.open(base + path)
                p.wait_for_timeout(300)
                assert p.evaluate("typeof window.__pwned") == "undefined"
        finally:
            page.close()

    def test_report_shows_the_same_totals(
        self, live: Any, browser: Any, tmp_path: Path
    ) -> None:
        """The static report opens offline and shows the snapshot's totals."""
        _, monitor, _ = live
        path = monitor.report(tmp_path / "report.html")
        snapshot = monitor.snapshot()
        page = Page(browser)
        try:
            p = page.open(path.resolve().as_uri())
            assert page.text(".dm-done") == f"{snapshot['totals']['done']:,}"
            assert page.text(".dm-total") == f"{snapshot['totals']['total']:,}"
            p.locator(".slick-cell").first.click()
            assert p.evaluate("typeof window.__pwned") == "undefined"
            assert page.errors == []
            assert page.outside_requests() == []
        finally:
            page.close()


# -- late pages ------------------------------------------------------------------------


class TestEnsurePages:
    """Pages reach a scheduler that started without them."""

    def test_running_scheduler_with_a_prefix(self, monkeypatch: Any) -> None:
        """Missing at start; ensure_pages serves them under the prefix, once."""
        from distributed.dashboard.scheduler import applications

        for path in PATHS:
            monkeypatch.delitem(applications, path, raising=False)
        routes = [
            r
            for r in dask.config.get("distributed.scheduler.http.routes")
            if not r.startswith("dask_monitor")
        ]
        with (
            dask.config.set({"distributed.scheduler.http.routes": routes}),
            make_cluster(
                protocol="tcp://",
                host="127.0.0.1",
                n_workers=1,
                scheduler_kwargs={"http_prefix": "/dask"},
            ) as cluster,
            Client(cluster) as client,
        ):
            base = f"http://127.0.0.1:{cluster.scheduler.http_server.port}/dask"
            assert get(base + "/status")[0] == 200
            assert get(base + "/monitor")[0] == 404
            assert client.run_on_scheduler(ensure) is True
            apps = len(cluster.scheduler.http_application.applications)
            assert client.run_on_scheduler(ensure) is True  # idempotent
            assert len(cluster.scheduler.http_application.applications) == apps
            for path in PATHS:
                assert get(base + path)[0] == 200, path
            with Monitor.attach(client) as monitor:
                client.gather(client.map(inc, range(10)))
                frame = monitor.panel()
                assert frame.src == base + "/monitor"
                assert get(frame.src)[0] == 200
                assert re.search(
                    r"/dask/individual-monitor-errors$", monitor.panel("errors").src
                )

    def test_no_dashboard(self) -> None:
        """Without a dashboard ensure_pages returns False and changes nothing."""
        assert ensure_pages(SimpleNamespace()) is False
        assert ensure_pages(SimpleNamespace(http_application=None)) is False
        with (
            make_cluster(
                protocol="tcp://",
                host="127.0.0.1",
                n_workers=1,
                scheduler_kwargs={"dashboard": False},
            ) as cluster,
            Client(cluster) as client,
        ):
            assert client.run_on_scheduler(ensure) is False
