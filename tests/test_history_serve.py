"""``dask-monitor history serve``: the list of recorded runs and each run's panel,
over HTTP and in headless Chromium, on runs recorded on a real LocalCluster."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from distributed import Client, wait

from dask_monitor import Monitor
from dask_monitor.panel.history import History, serve_history
from dask_monitor.sinks.eventlog import footer_offset
from tests.workloads import fail_if_odd, inc

from .conftest import make_cluster

BIN = Path(sys.executable).parent

#: Untrusted texts a log may carry: each sets a global if a page runs it.
HOSTILE_RUN = "<img src=x onerror=window.__x=1>"
HOSTILE_TAGS = {"<b>k</b>": "<script>window.__y=1</script>"}
HOSTILE_FILE = "b'\"><img src=x onerror=window.__z=1>.dmlog"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextmanager
def served(directory: str | Path, **kwargs: Any) -> Iterator[str]:
    """The history server of ``directory`` on a free port, its loop in a thread."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            box["server"] = serve_history(str(directory), **kwargs)
        finally:
            ready.set()
        box["server"].io_loop.start()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60) and "server" in box
    server = box["server"]
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:

        def stop() -> None:
            server.stop()
            server.io_loop.stop()

        server.io_loop.add_callback(stop)
        thread.join(30)


def rows(page: str) -> list[str]:
    """The run names (or file names) of a list page's rows, as shown."""
    return [
        html.unescape(m)
        for m in re.findall(r"<a class='dm-open' href='[^']*'>([^<]*)</a>", page)
    ]


def strip_footer(src: Path, dst: Path, cut: int = 0) -> Path:
    """A copy of the log ``src`` without its footer (and ``cut`` more bytes):
    what a log still being written looks like."""
    found = footer_offset(src)
    assert found is not None
    data = src.read_bytes()[: found[0] - cut]
    dst.write_bytes(data)
    return dst


# -- recorded runs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three runs recorded one after the other on a real cluster: "nightly-etl"
    (30 done, 4 erred), a run whose name, tags and file name are HTML/script
    payloads (20 done, 2 erred), and one without a name (10 done); each with
    the client's own counts, in the order they were recorded."""
    directory = tmp_path_factory.mktemp("history")
    plans = [
        ("nightly.dmlog", "nightly-etl", {"team": "data"}, 30, 4),
        (HOSTILE_FILE, HOSTILE_RUN, HOSTILE_TAGS, 20, 2),
        ("plain.dmlog", None, None, 10, 0),
    ]
    runs = []
    with make_cluster() as cluster, Client(cluster) as client:
        for file, run, tags, n_ok, n_bad in plans:
            with Monitor.attach(client, interval="20ms", run=run, tags=tags) as m:
                m.record(directory / file)
                ok = client.map(inc, range(n_ok), pure=False)
                bad = client.map(fail_if_odd, [1] * n_bad, pure=False)
                wait(ok + bad)
                m.snapshot(flush=True)
                m.stop_recording()
            runs.append(
                {
                    "file": file,
                    "run": run,
                    "done": sum(f.status == "finished" for f in ok),
                    "erred": sum(f.status == "error" for f in bad),
                }
            )
            time.sleep(0.05)  # distinct start times, whatever the clock's grain
    return {"dir": directory, "runs": runs}


@pytest.fixture(scope="module")
def base(recorded: dict[str, Any]) -> Iterator[str]:
    with served(recorded["dir"]) as url:
        yield url


# -- the list ------------------------------------------------------------------------


class TestList:
    """``/`` lists the runs from the index, as escaped HTML."""

    def test_rows_newest_first_with_their_counts(
        self, base: str, recorded: dict[str, Any]
    ) -> None:
        """Every run has a row, newest first, with the tasks done and erred
        the client counted, and "complete"."""
        status, page = get(base + "/")
        assert status == 200
        newest_first = recorded["runs"][::-1]
        assert rows(page) == [r["run"] or r["file"] for r in newest_first]
        body = page.split("<table", 1)[1]
        cells = re.findall(r"<tr class='dm-row'>(.*?)</tr>", body)
        for r, row in zip(newest_first, cells, strict=True):
            nums = re.findall(r"<td class='dm-num[^']*'>([^<]*)</td>", row)
            assert nums[1:] == [str(r["done"]), str(r["erred"])]
            assert "complete" in row
        assert "team=data" in page

    def test_untrusted_texts_are_escaped(self, base: str) -> None:
        """A run name, tags and file name holding markup appear as text: the
        raw markup is nowhere in the page, and no script may run on it."""
        status, page = get(base + "/")
        assert status == 200
        for raw in ("<img", "<script", "<b>k"):
            assert raw not in page
        assert html.escape(HOSTILE_RUN) in page
        assert html.escape(HOSTILE_TAGS["<b>k</b>"]) in page
        assert "'><img" not in page and html.escape(HOSTILE_FILE) in page

    def test_the_list_runs_no_script(self, base: str) -> None:
        """The list is served with a policy that allows no script at all."""
        with urllib.request.urlopen(base + "/", timeout=60) as response:
            policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy

    def test_paging(self, base: str, recorded: dict[str, Any]) -> None:
        """``?size=2``: two runs a page, the older ones on page 2, links
        between the pages; a page past the end says so."""
        names = [r["run"] or r["file"] for r in recorded["runs"][::-1]]
        _, first = get(base + "/?size=2")
        _, second = get(base + "/?page=2&size=2")
        assert rows(first) == names[:2] and rows(second) == names[2:]
        assert "href='?page=2&amp;size=2'" in first
        assert "href='?page=1&amp;size=2'" in second
        assert "Runs 3&ndash;3 of 3" in second
        status, past = get(base + "/?page=9&size=2")
        assert status == 200 and rows(past) == [] and "No runs on page 9" in past
        status, junk = get(base + "/?page=x&size=-4")
        assert status == 200 and rows(junk) == names[:1]

    def test_a_new_log_shows_up_on_the_next_load(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """A log written after the server started is listed on the next load,
        first (newest); an empty directory says there are no runs yet."""
        with served(tmp_path) as url:
            status, page = get(url + "/")
            assert status == 200 and rows(page) == []
            assert "No runs recorded here yet" in page
            shutil.copy(recorded["dir"] / "nightly.dmlog", tmp_path / "a.dmlog")
            assert rows(get(url + "/")[1]) == ["nightly-etl"]
            newest = recorded["runs"][-1]["file"]
            shutil.copy(recorded["dir"] / newest, tmp_path / "b.dmlog")
            assert rows(get(url + "/")[1]) == ["b.dmlog", "nightly-etl"]

    def test_an_unreadable_log_is_listed_with_the_reason(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """A file that is not a log is a row saying why, without a link, and
        the other runs are still listed."""
        shutil.copy(recorded["dir"] / "nightly.dmlog", tmp_path / "good.dmlog")
        (tmp_path / "<i>bad<i>.dmlog").write_text("not a log <script>")
        with served(tmp_path) as url:
            status, page = get(url + "/")
        assert status == 200
        assert rows(page) == ["nightly-etl"]
        bad = re.findall(r"<tr class='dm-row dm-unreadable-row'>(.*?)</tr>", page)
        assert len(bad) == 1
        assert "unreadable" in bad[0] and "not a dask-monitor event log" in bad[0]
        assert "&lt;i&gt;bad&lt;i&gt;.dmlog" in bad[0] and "<i>" not in page

    def test_a_log_still_being_written_is_in_progress(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """A log without its footer is listed "in progress" with the tasks
        its records hold (all of them here: only the footer is missing); its
        page and its report say the run is in progress, not finished."""
        nightly = recorded["runs"][0]
        strip_footer(recorded["dir"] / "nightly.dmlog", tmp_path / "open.dmlog")
        with served(tmp_path) as url:
            _, page = get(url + "/")
            row = re.findall(r"<tr class='dm-row'>(.*?)</tr>", page)[0]
            assert "in progress" in row and "complete" not in row
            nums = re.findall(r"<td class='dm-num[^']*'>([^<]*)</td>", row)
            assert nums[1:] == [str(nightly["done"]), str(nightly["erred"])]
            status, run = get(url + "/run?log=open.dmlog")
            assert status == 200
            assert "nightly-etl (in progress)" in run and "<b>In progress</b>" in run
            status, report = get(url + "/report?log=open.dmlog")
        assert status == 200
        assert "run in progress started" in report and "finished run" not in report


# -- opening a run -------------------------------------------------------------------


class TestOpen:
    """``/run``, ``/report`` and ``/panel`` open only the runs listed."""

    @pytest.mark.parametrize(
        "name",
        [
            "../nightly.dmlog",
            "../../../../etc/passwd",
            "/etc/passwd",
            "nightly-etl",  # a run name, not a file name
            "nightly",
            "",
            "nightly.dmlog/../nightly.dmlog",
        ],
    )
    def test_names_not_listed_are_404(self, base: str, name: str) -> None:
        """Anything but a listed file name is refused with 404: paths, ``..``,
        run names, made-up names."""
        for page in ("/run", "/report"):
            status, body = get(f"{base}{page}?log={quote(name, safe='')}")
            assert status == 404, (page, name)
            assert "No run" in body

    def test_a_file_beside_the_logs_is_404(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """A readable log in the directory under another suffix, or outside it
        by absolute path, is not opened."""
        shutil.copy(recorded["dir"] / "nightly.dmlog", tmp_path / "a.dmlog")
        shutil.copy(recorded["dir"] / "nightly.dmlog", tmp_path / "other.log")
        outside = tmp_path.parent / "outside.dmlog"
        shutil.copy(recorded["dir"] / "nightly.dmlog", outside)
        with served(tmp_path) as url:
            assert get(url + "/run?log=a.dmlog")[0] == 200
            assert get(url + "/run?log=other.log")[0] == 404
            assert get(url + "/run?log=" + quote(str(outside), safe=""))[0] == 404
            assert get(url + "/run?log=..%2Foutside.dmlog")[0] == 404

    def test_a_run_named_like_another_log_hides_neither(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """A log whose run is named like another log's file does not make
        that file's name ambiguous: each opens by its own file name."""
        from tests.test_runs import hand_log

        shutil.copy(recorded["dir"] / "nightly.dmlog", tmp_path / "b.dmlog")
        hand_log(tmp_path / "a.dmlog", {"started": 1.0, "run": "b.dmlog"}, [], 3)
        with served(tmp_path) as url:
            status, b = get(url + "/run?log=b.dmlog")
            assert status == 200 and "<title>nightly-etl - " in b
            status, a = get(url + "/run?log=a.dmlog")
            assert status == 200 and "<title>b.dmlog (in progress) - " in a

    def test_the_panel_app_does_not_open_other_names(self, base: str) -> None:
        """The Bokeh application behind ``/run`` says a name is not listed
        instead of opening it."""
        from bokeh.client import pull_session

        url = base + "/panel"
        with pull_session(url=url, arguments={"log": "../nightly.dmlog"}) as session:
            texts = [getattr(r, "text", "") for r in session.document.roots]
        assert any("is not listed here" in t for t in texts)

    def test_the_report_is_the_standalone_html(
        self, base: str, recorded: dict[str, Any]
    ) -> None:
        """``/report`` serves the page ``dask-monitor report`` writes: BokehJS
        inlined, the run's name as its title, escaped."""
        status, page = get(base + "/report?log=" + quote(HOSTILE_FILE, safe=""))
        assert status == 200
        assert "<title>" + html.escape(HOSTILE_RUN) + "</title>" in page
        assert HOSTILE_RUN not in page
        assert "Bokeh" in page and "/static/js" not in page  # works offline

    def test_a_log_whose_values_break_the_report_says_why(self, tmp_path: Path) -> None:
        """A header starting past any date a clock can show: the list shows no
        start, ``/report`` says why it cannot be shown (422, no traceback),
        and the panel says so in the page instead of failing blank."""
        from bokeh.client import pull_session

        from tests.test_runs import hand_log, task

        hand_log(
            tmp_path / "far.dmlog",
            {"started": 1e300, "run": "far<b>"},
            [["b", [task("a-1", "memory", 1e300)]]],
            v=3,
        )
        with served(tmp_path) as url:
            status, listed = get(url + "/")
            assert status == 200 and rows(listed) == ["far<b>"]
            assert "<td class='dm-when'>-</td>" in listed
            status, report = get(url + "/report?log=far.dmlog")
            assert status == 422
            assert "far.dmlog could not be shown: OverflowError" in report
            assert get(url + "/run?log=far.dmlog")[0] == 200
            with pull_session(
                url=url + "/panel", arguments={"log": "far.dmlog"}
            ) as session:
                error = session.document.select_one({"name": "dm-history-error"})
            assert error is not None and "could not be shown" in error.text

    def test_replays_are_cached_per_log_identity(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """Reopening an unchanged log reuses its replay; once the log has grown
        it is replayed again and shows the new records."""
        src = recorded["dir"] / "nightly.dmlog"
        nightly = recorded["runs"][0]
        log = tmp_path / "growing.dmlog"
        offset = footer_offset(src)
        assert offset is not None
        strip_footer(src, log, cut=offset[0] // 2)  # torn half-way through
        history = History(tmp_path)
        first = history.replayed("growing.dmlog")
        assert first is not None and history.replayed("growing.dmlog") is first
        assert not first.summary.complete
        done = first.snapshot["totals"]["done"]
        assert done < nightly["done"] + nightly["erred"]
        shutil.copy(src, log)  # the writer finished: all records and the footer
        second = history.replayed("growing.dmlog")
        assert second is not None and second is not first
        assert second.summary.complete
        assert second.snapshot["totals"]["done"] == nightly["done"] + nightly["erred"]
        assert history.replayed("missing.dmlog") is None


def hostile_header_log(directory: Path) -> Path:
    """A log written by hand (a writer may be anyone), without footer, whose
    header holds markup in the cluster's address and in the versions, and a
    run that started after the year 9999: two tasks, one erred."""
    from tests.test_runs import hand_log, task

    return hand_log(
        directory / "hand.dmlog",
        {
            "started": 1e12,
            "run": "hand<svg onload=window.__x=1>",
            "cluster": {"scheduler": "tcp://<img src=x onerror=window.__y=1>:1"},
            "dask": "<script>window.__z=1</script>",
        },
        [["b", [task("a-1", "memory", 1e12 + 1), task("a-2", "erred", 1e12 + 4)]]],
        v=3,
    )


# -- Chromium ------------------------------------------------------------------------


class Page:
    """A browser page that records console errors and outside requests."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def wait_for_panel(self) -> None:
        self.page.wait_for_function(
            "window.Bokeh !== undefined && Bokeh.documents.length > 0"
            " && Bokeh.documents[0].roots().length > 0",
            timeout=60_000,
        )
        self.page.locator(".dm-done").first.wait_for(timeout=60_000)

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).first.inner_text())

    def ran(self) -> list[Any]:
        return list(self.page.evaluate("[window.__x, window.__y, window.__z]"))

    def outside_requests(self) -> list[str]:
        local = ("http://127.0.0.1:", "blob:http://127.0.0.1:", "data:")
        return [u for u in self.requests if not u.startswith(local)]


class TestBrowser:
    """The list and a run in headless Chromium."""

    def test_open_a_hostile_run_from_the_list(
        self, base: str, recorded: dict[str, Any], browser: Any
    ) -> None:
        """Clicking a run in the list opens its panel: its tasks done, its
        prefixes, its name shown as text; no console error, no script of the
        log's run, and a link back to the list."""
        hostile = recorded["runs"][1]
        page = Page(browser)
        try:
            page.page.goto(base + "/")
            assert page.page.locator("a.dm-open").count() == 3
            page.page.get_by_text(HOSTILE_RUN, exact=True).click()
            page.wait_for_panel()
            assert page.text(".dm-done") == str(hostile["done"] + hostile["erred"])
            assert page.page.title() == HOSTILE_RUN + " - dask-monitor history"
            heading = page.page.locator("h1").last.inner_text()
            assert heading == HOSTILE_RUN
            assert page.text(".dm-run").startswith("finished run started")
            assert page.ran() == [None, None, None]
            assert page.errors == []
            assert page.outside_requests() == []
            page.page.get_by_text("all runs").click()
            page.page.wait_for_url(base + "/")
            assert page.page.locator("a.dm-open").count() == 3
            assert page.ran() == [None, None, None]
        finally:
            page.page.close()

    def test_a_hand_written_header_cannot_script_the_pages(
        self, browser: Any, tmp_path: Path
    ) -> None:
        """Markup in a header's cluster address and versions, and a start time
        no date can show, leave the list and the run readable and inert."""
        hostile_header_log(tmp_path)
        page = Page(browser)
        try:
            with served(tmp_path) as url:
                status, listed = get(url + "/")
                assert status == 200
                assert "tcp://&lt;img src=x onerror=window.__y=1&gt;:1" in listed
                assert rows(listed) == ["hand<svg onload=window.__x=1>"]
                page.page.goto(url + "/")
                page.page.locator("a.dm-open").first.click()
                page.wait_for_panel()
                assert page.text(".dm-done") == "2"
                assert "<script>window.__z=1</script>" in page.text(".dm-run")
                assert page.ran() == [None, None, None]
                assert page.errors == []
        finally:
            page.page.close()

    def test_a_run_in_progress_shows_what_it_has(
        self, recorded: dict[str, Any], browser: Any, tmp_path: Path
    ) -> None:
        """A log without its footer opens: the page says the run is in
        progress and the panel shows the tasks recorded so far."""
        nightly = recorded["runs"][0]
        strip_footer(recorded["dir"] / "nightly.dmlog", tmp_path / "open.dmlog")
        page = Page(browser)
        try:
            with served(tmp_path) as url:
                page.page.goto(url + "/run?log=open.dmlog")
                page.wait_for_panel()
                assert page.text(".dm-done") == str(nightly["done"] + nightly["erred"])
                assert "In progress" in page.text(".dm-run-state")
                assert page.text(".dm-run").startswith("run in progress started")
                assert page.errors == []
        finally:
            page.page.close()


def test_websocket_origins() -> None:
    """On loopback only the server's own pages open its panels; on an address
    shared on purpose, pages reached by any name do (as Dask's dashboard)."""
    from dask_monitor.panel.history import websocket_origins

    assert websocket_origins("127.0.0.1", 8000) == [
        "127.0.0.1:8000",
        "localhost:8000",
    ]
    assert websocket_origins("0.0.0.0", 8000) == ["*"]


# -- the command ---------------------------------------------------------------------


def test_history_serve_command(recorded: dict[str, Any]) -> None:
    """``history serve DIR --port 0`` prints the URL of a free port and serves
    the list there until stopped."""
    proc = subprocess.Popen(
        [
            str(BIN / "dask-monitor"),
            "history",
            "serve",
            str(recorded["dir"]),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        url = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "".join(seen)
        status, page = get(url)
        assert status == 200 and "nightly-etl" in rows(page)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("/no/such/dir", "is not a directory"),
        ("nosuchproto://bucket/runs", "not available through fsspec"),
        ("s3://key:secret@bucket/runs", "credentials"),
    ],
)
def test_history_serve_refuses_a_bad_directory(argument: str, message: str) -> None:
    """A missing directory or an unusable URL is a usage error, without a
    traceback and without echoing credentials."""
    out = subprocess.run(
        [str(BIN / "dask-monitor"), "history", "serve", argument],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert "secret" not in out.stderr


# -- object storage ------------------------------------------------------------------


def test_runs_in_s3_are_listed_and_opened(
    recorded: dict[str, Any], s3_bucket: str, browser: Any
) -> None:
    """A directory in S3 (moto's server): its runs are listed, newest first,
    one whose key is markup opens, a key outside is refused, and a run opens
    with its panel in the browser."""
    import fsspec

    from dask_monitor.runs import RunIndex

    url = (
        s3_bucket + "/history-serve"
    )  # the bucket is the session's: a prefix of its own
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for r in recorded["runs"]:
        fs.put(str(recorded["dir"] / r["file"]), f"{url}/{r['file']}")
    assert RunIndex(url).count() == len(recorded["runs"])
    nightly = recorded["runs"][0]
    newest_first = [r["run"] or r["file"] for r in recorded["runs"][::-1]]
    with served(url) as base:
        status, page = get(base + "/")
        assert status == 200, page
        assert rows(page) == newest_first, page
        status, run = get(base + "/run?log=" + quote(HOSTILE_FILE, safe=""))
        assert status == 200 and html.escape(HOSTILE_RUN) in run
        assert get(base + "/run?log=..%2Fhistory%2Fnightly.dmlog")[0] == 404
        page_ = Page(browser)
        try:
            page_.page.goto(base + "/run?log=nightly.dmlog")
            page_.wait_for_panel()
            assert page_.text(".dm-done") == str(nightly["done"] + nightly["erred"])
            assert page_.errors == []
        finally:
            page_.page.close()
