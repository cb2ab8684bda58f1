"""Alerts and the span selector on a real cluster's dashboard (Bokeh sessions,
Chromium)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client, LocalCluster, span, wait

from dask_monitor import Monitor
from dask_monitor.alerts import ERROR_BURST

from .conftest import make_cluster
from .test_panel_live import IMG, Page, get, wait_for

pytestmark = pytest.mark.slow


def boom(x: int) -> None:
    raise ValueError(f"boom {x} {IMG}")


def etl_task(x: int) -> int:
    time.sleep(0.005)
    return x


def ml_task(x: int) -> int:
    time.sleep(0.005)
    return x


@pytest.fixture(scope="module")
def live_cluster() -> Iterator[LocalCluster]:
    with make_cluster(protocol="tcp://", host="127.0.0.1") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def base(live_cluster: LocalCluster) -> str:
    return f"http://127.0.0.1:{live_cluster.scheduler.http_server.port}"


@pytest.fixture(scope="module")
def monitored(live_cluster: LocalCluster) -> Iterator[tuple[Client, Monitor]]:
    """A monitor whose error-burst rule fires after two erred tasks; a workload
    with raising tasks, then two computations in the spans ``etl`` and ``ml``."""
    alerts = {"error_burst": {"count": 2, "window": 60, "cooldown": 600}}
    with Client(live_cluster) as client:
        monitor = Monitor.attach(client, alerts=alerts, interval="50ms")
        wait(client.map(boom, range(4)))
        assert wait_for(
            lambda: (
                monitor.snapshot(flush=True)["alerts"]
                .get("counts", {})
                .get(ERROR_BURST)
            ),
            timeout=20,
        )
        with span("etl"):
            etl = client.map(etl_task, range(30))
        with span("ml"):
            ml = client.map(ml_task, range(20))
        wait(etl + ml)
        yield client, monitor
        monitor.detach()


class TestAlertsOnThePanel:
    def test_monitor_session_shows_the_alert(self, base: str, monitored: Any) -> None:
        from bokeh.client import pull_session

        _, monitor = monitored
        snapshot = monitor.snapshot(flush=True)
        alert = snapshot["alerts"]["recent"][-1]
        assert alert["kind"] == ERROR_BURST
        with pull_session(url=base + "/monitor") as session:
            doc = session.document
            source = doc.select_one({"name": "dm-alerts"}).data
            header = doc.select_one({"name": "dm-alerts-header"}).text
            summary = doc.select_one({"name": "dm-summary"}).text
        assert ERROR_BURST in list(source["kind"])
        assert alert["message"] in list(source["message"])
        assert source["severity"][0] == "error"
        assert f"{ERROR_BURST} 1" in header
        assert '<span class="dm-label">alerts</span>' in summary

    def test_individual_alerts_page(self, base: str, monitored: Any) -> None:
        from bokeh.client import pull_session

        status, body = get(base + "/individual-monitor-alerts")
        assert status == 200 and b"Bokeh" in body
        with pull_session(url=base + "/individual-monitor-alerts") as session:
            source = session.document.select_one({"name": "dm-alerts"}).data
        assert ERROR_BURST in list(source["kind"])


class TestSpanSelector:
    def test_a_session_set_to_one_span_shows_only_that_span(
        self, base: str, monitored: Any
    ) -> None:
        from bokeh.client import pull_session

        _, monitor = monitored
        whole = monitor.snapshot(flush=True)
        etl = monitor.snapshot(span="etl")
        assert etl["totals"]["done"] == 30
        with (
            pull_session(url=base + "/monitor") as one,
            pull_session(url=base + "/monitor") as other,
        ):
            select = one.document.select_one({"name": "dm-span-select"})
            values = [o if isinstance(o, str) else o[0] for o in select.options]
            assert {"", "etl", "ml"} <= set(values)
            assert select.value == ""
            select.value = "etl"  # sent to the server: this session's room

            def prefixes(session: Any) -> list[str]:
                return list(
                    session.document.select_one({"name": "dm-prefixes"}).data["name"]
                )

            def summary(session: Any) -> str:
                return str(session.document.select_one({"name": "dm-summary"}).text)

            one.force_roundtrip()  # the change reached the server's document
            # What this session's document holds now, on the server. (Bokeh's
            # Python client does not apply the patches the server makes in
            # reply to its own change; a browser does: see TestBrowser.)
            with pull_session(session_id=one.id, url=base + "/monitor") as now:
                assert prefixes(now) == ["etl_task"]
                assert 'class="dm-done">30<' in summary(now)
                assert 'class="dm-total">30<' in summary(now)
                note = now.document.select_one({"name": "dm-span-note"}).text
                assert "span etl only" in note
                assert now.document.select_one({"name": "dm-span-select"}).value == (
                    "etl"
                )
            # The other session still watches everything.
            other.force_roundtrip()
            assert {"etl_task", "ml_task", "boom"} <= set(prefixes(other))
            total = f'class="dm-total">{whole["totals"]["total"]:,}<'
            assert total in summary(other)
            with pull_session(session_id=other.id, url=base + "/monitor") as now:
                assert {"etl_task", "ml_task", "boom"} <= set(prefixes(now))
            # Back to everything.
            select.value = ""
            one.force_roundtrip()
            with pull_session(session_id=one.id, url=base + "/monitor") as now:
                assert {"etl_task", "ml_task"} <= set(prefixes(now))


class TestBrowser:
    """In Chromium, after the Bokeh client sessions (Playwright's sync API keeps
    an event loop running in this thread)."""

    def test_browser_shows_the_alert_as_text(
        self,
        base: str,
        monitored: Any,
        browser: Any,
    ) -> None:
        page = Page(browser)
        try:
            p = page.open(base + "/individual-monitor-alerts")
            cells = p.locator(".slick-cell")
            assert wait_for(lambda: ERROR_BURST in cells.all_inner_texts())
            p.wait_for_timeout(200)
            assert p.evaluate("typeof window.__pwned") == "undefined"
            assert p.locator("img[src=x]").count() == 0
            assert page.errors == []
        finally:
            page.close()

    def test_browser_selects_a_span(
        self,
        base: str,
        monitored: Any,
        browser: Any,
    ) -> None:
        page = Page(browser)
        try:
            p = page.open(base + "/monitor")
            select = p.locator("select").first
            options = select.locator("option")
            assert wait_for(lambda: "span ml" in options.all_inner_texts())
            select.select_option(label="span ml")
            assert wait_for(lambda: page.text(".dm-total") == "20"), page.text(
                ".dm-total"
            )
            assert page.errors == []
        finally:
            page.close()
