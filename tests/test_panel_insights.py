"""Insights on the panel: the strip atop /monitor, the insights page, the report.

Snapshots are real pipelines' (``make_snapshot``) with insights set as the
engine sets them (``snapshot["insights"]``, see ``make_insight``); in
Chromium, the views render offline (``file_html``) and from a Bokeh server.
Subjects and messages are untrusted: a hostile subject must show as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.resources import INLINE

from dask_monitor.panel import PATHS, report_html
from dask_monitor.panel._data import NO_INSIGHTS, display_text, insight_strip_html
from dask_monitor.panel._style import THEME
from dask_monitor.panel.components import (
    Component,
    Insights,
    InsightStrip,
    StaticFeed,
    measure_payload,
)
from dask_monitor.panel.report import report_root
from dask_monitor.panel.views import full_view, individual_view
from dask_monitor.snapshot import Snapshot
from dask_monitor.testing import make_insight, make_snapshot

from .test_panel_live import Page, wait_for

HOSTILE = "<img src=x onerror=window.__pwned=1>"
NOW = 1_700_000_000.0
DOCS = "https://docs.dask.org/en/stable/best-practices.html"


def insights() -> list[dict[str, Any]]:
    """Four insights, least severe first (the views order them)."""
    return [
        make_insight(
            "hot-prefix",
            "info",
            "slow",
            message="slow takes 78% of all compute time: optimise it first.",
            evidence={"compute_seconds": 120.0, "share": 0.78},
            advice="Profile slow first.",
            link=DOCS,
        ),
        make_insight(
            "skew",
            "warning",
            HOSTILE,
            message=f"Tasks of {HOSTILE} have stragglers far above their p75.",
            advice=f"Look at the slowest tasks of {HOSTILE}.",
            link="javascript:window.__pwned=1",  # not a link anyone follows
        ),
        make_insight("tiny-tasks", "warning", "inc"),
        make_insight("memory-pressure", "critical", "tcp://127.0.0.1:40123"),
    ]


def snap(items: list[dict[str, Any]] | None = None, seq: int = 1) -> Snapshot:
    return make_snapshot(
        n_prefixes=4,
        n_workers=2,
        seed=3,
        seq=seq,
        now=NOW + seq,
        elapsed=60.0 + seq,
        insights=insights() if items is None else items,
    )


def without_insights() -> Snapshot:
    """A snapshot of a monitor that computes no insights (no field)."""
    snapshot = dict(snap([]))
    del snapshot["insights"]
    return snapshot  # type: ignore[return-value]


def render(component: Component) -> Document:
    doc = Document()
    doc.add_root(component.root)
    component.update()
    return doc


def page_of(component: Component, tmp_path: Path, name: str) -> Path:
    """The component as a standalone HTML page (BokehJS inlined)."""
    path = tmp_path / f"{name}.html"
    path.write_text(file_html(component.root, INLINE, name, theme=THEME), "utf-8")
    return path


class TestStrip:
    """The strip: the top three, one line each; all of them behind a button."""

    def test_top_three_most_severe_first(self) -> None:
        """Critical, then warnings in the engine's order; the info one is left
        for the full list."""
        strip = InsightStrip(StaticFeed(snap()))
        render(strip)
        assert strip.root.visible
        assert list(strip.source.data["kind"]) == [
            "memory-pressure",
            "skew",
            "tiny-tasks",
        ]
        text = strip.text
        assert text.count('class="dm-ins-line"') == 3
        assert "memory-pressure" not in text  # messages, not kinds
        assert html.escape(insights()[3]["message"]) in text
        assert "optimise it first" not in text
        assert strip.toggle.visible
        assert "All 4 insights" in strip.toggle.label
        # closed until clicked, and then empty: nothing to send
        assert not strip.details.visible and strip.details.text == ""
        strip.toggle.active = True  # what a click does, through the session
        assert strip.details.visible
        assert "optimise it first" in strip.details.text
        assert strip.details.text.count('class="dm-ins-card') == 4
        strip.toggle.active = False
        assert not strip.details.visible and strip.details.text == ""

    def test_hostile_text_is_escaped_and_links_are_http_only(self) -> None:
        """Subjects, messages and advice are escaped; a javascript: link is
        dropped, a docs link opens in a new tab without an opener."""
        strip = InsightStrip(StaticFeed(snap()))
        render(strip)
        strip.toggle.active = True
        for text in (strip.text, strip.details.text):
            assert "<img" not in text
            assert "&lt;img src=x onerror=window.__pwned=1&gt;" in text
            assert "javascript:" not in text
        assert (
            f'<a href="{DOCS}" target="_blank" rel="noopener noreferrer">'
            in strip.details.text
        )

    def test_no_insights_is_one_quiet_line(self) -> None:
        """Evaluated and none found: one line says so, no button."""
        strip = InsightStrip(StaticFeed(snap([])))
        render(strip)
        assert strip.root.visible
        assert NO_INSIGHTS in strip.text
        assert strip.text.count("<div") == 1
        assert not strip.toggle.visible

    def test_a_monitor_without_insights_shows_no_strip(self) -> None:
        """No insights field (an older monitor) or no monitor: no strip at
        all, rather than a claim that nothing is wrong."""
        assert insight_strip_html(without_insights()) is None
        strip = InsightStrip(StaticFeed(without_insights()))
        render(strip)
        assert not strip.root.visible
        detached = InsightStrip(StaticFeed(None))
        render(detached)
        assert not detached.root.visible

    def test_follows_the_snapshot(self) -> None:
        """A new snapshot replaces the lines; an unchanged one sends nothing."""
        feed = StaticFeed(snap(seq=1))
        strip = InsightStrip(feed)
        doc = render(strip)
        feed.set(snap([make_insight("erroring", "critical", "load")], seq=2))
        strip.update()
        assert "Something about load" in strip.text
        assert strip.toggle.label == "Evidence and advice"
        feed.set(snap([make_insight("erroring", "critical", "load")], seq=3))
        messages, _ = measure_payload(doc, strip.update)
        assert messages == 0

    def test_first_in_the_full_view(self) -> None:
        """/monitor's view starts with the strip, above the summary."""
        view = full_view(StaticFeed(snap()))
        render(view)
        first = view.root.children[0]
        assert first.name == "dm-insights"
        assert first.visible
        assert view.root.children[1].children[0].name == "dm-summary"


class TestInsightsPage:
    """``/individual-monitor-insights``: every insight as a card."""

    def test_the_page_exists(self) -> None:
        """The page is among the panel's paths and its view fills the pane."""
        assert "/individual-monitor-insights" in PATHS
        view = individual_view("insights", StaticFeed(snap()))
        render(view)
        assert isinstance(view, Insights)
        assert view.root.sizing_mode == "stretch_both"

    def test_every_insight_with_evidence_advice_and_link(self) -> None:
        """Four cards, most severe first, each with evidence and advice; the
        header counts them per severity."""
        view = Insights(StaticFeed(snap()))
        render(view)
        cards = view.cards.text
        assert cards.count('class="dm-ins-card') == 4
        order = [cards.index(f"<b>{k}</b>") for k in ("memory-pressure", "hot-prefix")]
        assert order == sorted(order)
        assert "overhead share <b>45%</b>" in cards
        assert "p50 <b>1.2ms</b>" in cards
        assert "Profile slow first." in cards
        assert "<img" not in cards
        assert view.header.text == "Insights: 1 critical, 2 warning, 1 info"

    def test_without_insights(self) -> None:
        """None found, or not computed: the header says which."""
        view = Insights(StaticFeed(snap([])))
        render(view)
        assert view.header.text == "Insights: none"
        assert NO_INSIGHTS in view.cards.text
        view = Insights(StaticFeed(without_insights()))
        render(view)
        assert view.header.text == "Insights: not computed by this monitor"


class TestReport:
    """The HTML report opens with an "Insights" section."""

    def test_section_comes_first_and_the_strip_is_not_repeated(self) -> None:
        """Heading, then the insights, then the panel (without its strip)."""
        root = report_root(snap(), title="run")
        names = [child.name for child in root.children]
        assert names[:2] == ["dm-report-heading", "dm-report-insights"]
        doc = Document()
        doc.add_root(root)
        assert doc.select_one({"name": "dm-insights-strip"}) is None
        header = doc.select_one({"name": "dm-insights-header"})
        assert header.text.startswith("Insights: ")
        text = report_html(snap())
        assert "<img src=x" not in text


@pytest.mark.slow
class TestBrowser:
    """The strip, the page and the report in headless Chromium."""

    def test_strip_shows_the_top_three_and_opens_all(
        self, browser: Any, served: Any
    ) -> None:
        """The messages show, the hostile subject is text that never runs,
        and the button opens the cards with their docs links."""
        _, url = served
        page = Page(browser)
        try:
            p = page.open(url)
            lines = p.locator(".dm-ins-line")
            assert wait_for(lambda: lines.count() == 3)
            shown = lines.all_inner_texts()
            assert "CRITICAL" in shown[0].upper()
            assert insights()[3]["message"] in shown[0]
            assert any(HOSTILE in line for line in shown)  # as text
            cards = p.locator(".dm-ins-card")
            assert cards.count() == 0
            p.locator("button", has_text="All 4 insights").click()
            assert wait_for(lambda: cards.count() == 4 and cards.first.is_visible())
            links = p.locator(".dm-ins-card a")
            assert links.count() == 3  # the javascript: one is not a link
            for i in range(links.count()):
                link = links.nth(i)
                assert link.get_attribute("target") == "_blank"
                assert "noopener" in (link.get_attribute("rel") or "")
                assert (link.get_attribute("href") or "").startswith("https://")
            # the strip sits above the summary
            strip_y = p.locator(".dm-ins").first.bounding_box()["y"]
            assert strip_y < p.locator(".dm-summary").bounding_box()["y"]
            p.wait_for_timeout(200)
            assert p.evaluate("typeof window.__pwned") == "undefined"
            assert p.locator("img[src=x]").count() == 0
            p.locator("button", has_text="All 4 insights").click()  # closes
            assert wait_for(lambda: cards.count() == 0)
            assert page.errors == []
            assert page.outside_requests() == []
        finally:
            page.close()

    def test_insights_page_and_report(self, browser: Any, tmp_path: Path) -> None:
        """The individual page lists every card; the report's section is
        above its summary; the hostile subject never runs in either."""
        view = individual_view("insights", StaticFeed(snap()))
        view.update()
        report = tmp_path / "report.html"
        report.write_text(report_html(snap()), "utf-8")
        page = Page(browser)
        try:
            for path in (page_of(view, tmp_path, "insights"), report):
                p = page.open(path.as_uri())
                cards = p.locator(".dm-ins-card")
                cards.nth(3).wait_for(timeout=20_000)
                assert cards.count() == 4, path
                assert "memory-pressure" in cards.first.inner_text()
                assert HOSTILE in " ".join(cards.all_inner_texts())
                assert p.evaluate("typeof window.__pwned") == "undefined"
                assert p.locator("img[src=x]").count() == 0
            top = p.locator(".dm-ins-card").first.bounding_box()["y"]
            assert top < p.locator(".dm-summary").bounding_box()["y"]
            assert page.errors == []
            assert page.outside_requests() == []
        finally:
            page.close()

    def test_a_served_strip_follows_new_insights(
        self, browser: Any, served: Any
    ) -> None:
        """From a Bokeh server, the strip changes when the insights do, and
        the opened list stays open across updates."""
        feed, url = served
        page = Page(browser)
        try:
            p = page.open(url)
            lines = p.locator(".dm-ins-line")
            assert wait_for(lambda: lines.count() == 3)
            p.locator("button", has_text="All 4 insights").click()
            assert wait_for(lambda: p.locator(".dm-ins-card").count() == 4)
            feed.set(
                snap(
                    [
                        make_insight(
                            "erroring",
                            "critical",
                            "load",
                            message="load failed 40 times: FileNotFoundError.",
                        ),
                        *insights(),
                    ],
                    seq=2,
                )
            )
            assert wait_for(lambda: "load failed 40 times" in lines.first.inner_text())
            cards = p.locator(".dm-ins-card")
            assert wait_for(lambda: cards.count() == 5)
            assert cards.first.is_visible()
            assert page.errors == []
        finally:
            page.close()


@pytest.fixture
def served() -> Iterator[tuple[StaticFeed, str]]:
    """A Bokeh server of the full view over a feed the test changes."""
    import asyncio
    import socket
    import threading

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server
    from tornado.ioloop import IOLoop

    feed = StaticFeed(snap())

    def make_doc(doc: Document) -> None:
        view = full_view(feed)
        view.update()
        doc.add_root(view.root)
        doc.add_periodic_callback(view.update, 100)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = IOLoop.current()
        server = Server(
            {"/": Application(FunctionHandler(make_doc))},
            io_loop=loop,
            port=port,
            address="127.0.0.1",
            allow_websocket_origin=[f"127.0.0.1:{port}"],
        )
        server.start()
        holder["server"], holder["loop"] = server, loop
        started.set()
        loop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield feed, f"http://127.0.0.1:{port}/"
    finally:
        loop = holder["loop"]

        def stop() -> None:
            holder["server"].stop()
            loop.stop()

        loop.add_callback(stop)
        thread.join(30)


def inc(x: int) -> int:
    return x + 1


@pytest.mark.slow
def test_live_monitor_shows_a_real_insight(browser: Any) -> None:
    """Thousands of tiny tasks on a real cluster: the monitor names
    ``tiny-tasks`` for ``inc``, and /monitor's strip and the insights page
    show its message. (Skipped by a monitor that computes no insights.)"""
    from distributed import Client

    from dask_monitor import Monitor

    from .conftest import make_cluster

    with (
        make_cluster(protocol="tcp://", host="127.0.0.1") as cluster,
        Client(cluster) as client,
        Monitor.attach(client) as monitor,
    ):
        client.gather(client.map(inc, range(3_000)))
        snapshot = monitor.snapshot(flush=True)
        if "insights" not in snapshot:
            pytest.skip("this monitor computes no insights (the engine is missing)")

        def tiny() -> list[dict[str, Any]]:
            found = monitor.snapshot(flush=True).get("insights") or []
            return [i for i in found if i["kind"] == "tiny-tasks"]

        found = wait_for(tiny, timeout=30.0)
        assert found and found[0]["subject"] == "inc", monitor.snapshot()["insights"]
        base = f"http://127.0.0.1:{cluster.scheduler.http_server.port}"
        page = Page(browser)
        try:
            p = page.open(base + "/monitor")
            strip = p.locator(".dm-ins-line")
            assert wait_for(lambda: strip.count() >= 1, timeout=20.0)

            def shown() -> bool:  # the most severe insight now, on the first line
                first = monitor.snapshot(flush=True)["insights"][0]  # type: ignore[typeddict-item]
                return display_text(first["message"], 240) in strip.first.inner_text()

            assert wait_for(shown)
            p = page.open(base + "/individual-monitor-insights")
            cards = p.locator(".dm-ins-card")
            assert wait_for(lambda: cards.count() >= 1, timeout=20.0)
            assert "tiny-tasks" in " ".join(cards.all_inner_texts())
            assert page.errors == []
            assert page.outside_requests() == []
        finally:
            page.close()


def test_the_strip_opens_at_most_twenty() -> None:
    """Many insights: the strip's list stops at twenty and points to the page,
    which lists them all."""
    many = [make_insight("tiny-tasks", "warning", f"p{i}") for i in range(30)]
    strip = InsightStrip(StaticFeed(snap(many)))
    render(strip)
    strip.toggle.active = True
    assert strip.details.text.count('class="dm-ins-card') == 20
    assert "10 more on the insights page" in strip.details.text
    page = Insights(StaticFeed(snap(many)))
    render(page)
    assert page.cards.text.count('class="dm-ins-card') == 30
