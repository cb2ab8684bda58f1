"""The panel's pages are served where the monitor runs, and only there.

Importing ``dask_monitor`` changes nothing in the process: a scheduler serves
the pages once the monitor runs on it (preloaded or attached), lists them in
``/individual-plots.json`` and links them from the navbar, and they say so
plainly once the monitor is gone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster

from dask_monitor import Monitor
from dask_monitor.panel import PATHS
from tests.workloads import inc

from .conftest import make_cluster

pytestmark = pytest.mark.slow

INDIVIDUAL = {p for p in PATHS if p != "/monitor"}


def get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET (errors too), loopback only."""
    assert url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def base(cluster: LocalCluster) -> str:
    return f"http://127.0.0.1:{cluster.scheduler.http_server.port}"


def listed(url: str) -> set[str]:
    """The page paths of ``/individual-plots.json`` (dask-labextension's list)."""
    status, body = get(url + "/individual-plots.json")
    assert status == 200
    return set(json.loads(body).values())


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (fails on an error)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def preloaded() -> Iterator[LocalCluster]:
    """A cluster whose scheduler preloads ``dask_monitor``."""
    with make_cluster(
        n_workers=1, scheduler_kwargs={"preload": ["dask_monitor"]}
    ) as cluster:
        yield cluster


class TestImport:
    """``import dask_monitor`` has no process-wide effect."""

    def test_import_leaves_dask_config_and_dashboard_unchanged(self) -> None:
        """The Dask settings and Dask's page table are the same after the import."""
        out = run_python(
            """
            import json
            import dask.config
            import distributed.dashboard.scheduler as dashboard

            def state():
                return {
                    "routes": dask.config.get("distributed.scheduler.http.routes"),
                    "config": dask.config.get("distributed"),
                    "pages": sorted(dashboard.applications),
                }

            before = json.dumps(state(), sort_keys=True, default=repr)
            import dask_monitor  # noqa: F401
            after = json.dumps(state(), sort_keys=True, default=repr)
            print(before == after)
            """
        )
        assert out.strip() == "True"

    def test_a_scheduler_without_the_monitor_serves_no_pages(self) -> None:
        """A scheduler started after the import, without the plugin: no
        ``/monitor``, nothing of ours in ``/individual-plots.json``."""
        with make_cluster(n_workers=1) as cluster:
            url = base(cluster)
            assert get(url + "/status")[0] == 200
            assert get(url + "/monitor")[0] == 404
            for path in INDIVIDUAL:
                assert get(url + path)[0] == 404, path
            assert not listed(url) & INDIVIDUAL


class TestWhereTheMonitorRuns:
    """A preloaded or attached monitor brings its pages, listed and linked."""

    def test_a_preloaded_scheduler_serves_lists_and_links_the_pages(
        self, preloaded: LocalCluster
    ) -> None:
        """``preload=["dask_monitor"]``: every page answers, the individual
        ones are listed, the navbar links ``monitor``."""
        url = base(preloaded)
        for path in PATHS:
            assert get(url + path)[0] == 200, path
        assert listed(url) >= INDIVIDUAL
        status, body = get(url + "/status")
        assert status == 200
        assert b'href="monitor"' in body  # the navbar of Dask's own pages
        assert b"individual-monitor-errors" in body  # its "More..." menu

    def test_an_attached_monitor_serves_lists_and_links_the_pages(self) -> None:
        """Attached to a running scheduler: the same pages, listed and linked;
        ``/individual-plots.json`` keeps Dask's own pages too."""
        with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
            url = base(cluster)
            assert get(url + "/monitor")[0] == 404
            with Monitor.attach(client):
                for path in PATHS:
                    assert get(url + path)[0] == 200, path
                plots = listed(url)
                assert plots >= INDIVIDUAL
                assert "/individual-task-stream" in plots  # Dask's
                body = get(url + "/status")[1]
                assert b'href="monitor"' in body
                assert b"individual-monitor-errors" in body

    def test_a_scheduler_started_before_the_import_lists_the_pages(self) -> None:
        """In a process that imported dask_monitor after its scheduler started,
        attaching lists the pages in ``/individual-plots.json``."""
        out = run_python(
            """
            import json, urllib.request
            from distributed import Client, LocalCluster

            with LocalCluster(
                n_workers=1, processes=False, dashboard_address="127.0.0.1:0"
            ) as cluster, Client(cluster) as client:
                from dask_monitor import Monitor

                url = f"http://127.0.0.1:{cluster.scheduler.http_server.port}"
                with Monitor.attach(client):
                    with urllib.request.urlopen(url + "/individual-plots.json") as r:
                        print(json.dumps(sorted(json.load(r).values())))
            """
        )
        assert set(json.loads(out.splitlines()[-1])) >= INDIVIDUAL


class TestAfterTheMonitor:
    """Pages of a scheduler whose monitor is gone answer plainly."""

    def test_each_page_says_no_monitor_runs(self) -> None:
        """After detach each page answers 200 and its document says, in one
        line, that no monitor runs on this scheduler."""
        from bokeh.client import pull_session

        with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
            with Monitor.attach(client):
                client.gather(client.map(inc, range(5)))
            for path in sorted(PATHS):
                url = base(cluster) + path
                assert get(url)[0] == 200, path
                with pull_session(url=url) as session:
                    doc = session.document
                    texts = [m.text for m in doc.select({"name": "dm-not-running"})]
                    summary = doc.select_one({"name": "dm-summary"})
                if summary is not None:
                    texts.append(summary.text)
                assert any("not running on this scheduler" in t for t in texts), (
                    path,
                    texts,
                )


class TestListingGuard:
    """The listing relies on a private Bokeh attribute, guarded."""

    def test_a_bokeh_without_the_attribute_loses_only_the_listing(self) -> None:
        """Servers without ``_applications`` dicts: nothing listed, no error,
        nothing changed."""
        from types import SimpleNamespace

        from dask_monitor.panel._pages import _list

        first, added = SimpleNamespace(), SimpleNamespace(_applications={"/x": 1})
        assert _list(first, added) is False
        assert added._applications == {"/x": 1}
        assert _list(SimpleNamespace(_applications=()), added) is False
