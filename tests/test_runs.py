"""Run names and tags, the log's summary footer, ``history list`` and export fixes."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from distributed import Client, span, wait

from dask_monitor import Monitor
from dask_monitor.config import ConfigError
from dask_monitor.events import TaskStatus, WorkerStatus
from dask_monitor.replay import export_events
from dask_monitor.runs import MAX_RUN_CHARS, check_run, list_runs, run_summary
from dask_monitor.sinks.eventlog import (
    FORMAT_NAME,
    MAGIC,
    EventLog,
    EventLogWriter,
    footer_offset,
    read_footer,
    read_header,
)
from tests.workloads import fail_if_odd, inc

from .conftest import make_cluster

BIN = Path(sys.executable).parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dask-monitor"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def hand_log(path: Path, header: dict[str, Any], records: list[Any], v: int) -> Path:
    """A log written by hand (no footer), in format version ``v``."""
    head = {"format": FORMAT_NAME, "version": v, **header}
    parts = [MAGIC, bytes([v])]
    for item in [head, *records]:
        payload = msgpack.packb(item, use_bin_type=True)
        parts += [struct.pack(">I", len(payload)), payload]
    path.write_bytes(b"".join(parts))
    return path


def task(key: str, finish: str, t: float, span_id: str | None = None) -> list[Any]:
    prefix = key.split("-")[0]
    row = ["t", key, prefix, prefix + "-g", "processing", finish, t, "tcp://w:1"]
    return [*row, None, None, None, None, None, None, span_id, None, None]


N_OK = 30
N_FAIL = 4


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real LocalCluster run recorded with a run name and tags: 30 tasks
    done in the span "load", 4 failing; the client's own counts and clock."""
    directory = tmp_path_factory.mktemp("runs")
    path = directory / "nightly.dmlog"
    with (
        make_cluster() as cluster,
        Client(cluster) as client,
        Monitor.attach(
            client, interval="20ms", run="nightly-etl", tags={"team": "data"}
        ) as monitor,
    ):
        monitor.record(path)
        t0 = time.time()
        with span("load"):
            ok = client.map(inc, range(N_OK), pure=False)
            wait(ok)
        bad = client.map(fail_if_odd, [1, 3, 5, 7], pure=False)
        wait(bad)
        t1 = time.time()
        monitor.snapshot(flush=True)
        monitor.stop_recording()
        done = sum(f.status == "finished" for f in ok)
        erred = sum(f.status == "error" for f in bad)
    return {
        "path": path,
        "dir": directory,
        "done": done,
        "erred": erred,
        "wall": t1 - t0,
    }


class TestRunNamesAndTags:
    """Names and tags reach the header, checked on the way in and out."""

    def test_attach_puts_the_run_name_and_tags_in_the_header(
        self, recorded: dict[str, Any]
    ) -> None:
        """Monitor.attach(run=, tags=) then record(): both are in the log's header."""
        header = read_header(recorded["path"])
        assert header["run"] == "nightly-etl"
        assert header["tags"] == {"team": "data"}

    def test_record_names_override_the_attached_ones(self, tmp_path: Path) -> None:
        """record(path, run=, tags=) writes its own name and tags."""
        path = tmp_path / "other.dmlog"
        with (
            make_cluster(n_workers=1) as cluster,
            Client(cluster) as client,
            Monitor.attach(client, run="a", tags={"x": "1"}) as monitor,
        ):
            monitor.record(path, run="b", tags={"y": "2"})
            client.submit(inc, 1).result()
            monitor.stop_recording()
        header = read_header(path)
        assert (header["run"], header["tags"]) == ("b", {"y": "2"})

    def test_a_recording_from_the_start_has_the_attached_name(
        self, tmp_path: Path
    ) -> None:
        """attach(record=path, run=...): the log opened at the plugin's start has it."""
        path = tmp_path / "start.dmlog"
        with (
            make_cluster(n_workers=1) as cluster,
            Client(cluster) as client,
            Monitor.attach(client, record=str(path), run="from-start") as monitor,
        ):
            client.submit(inc, 1).result()
            monitor.stop_recording()
        assert read_header(path)["run"] == "from-start"
        assert "tags" not in read_header(path)

    def test_a_with_block_records_one_named_run(self, tmp_path: Path) -> None:
        """with monitor.run(name, path, tags=...): the block's tasks, closed with
        a footer even when the block raises."""
        path = tmp_path / "block.dmlog"
        with (
            make_cluster(n_workers=1) as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="20ms") as monitor,
        ):
            with (
                pytest.raises(KeyError),
                monitor.run("block", path, tags={"kind": "test"}),
            ):
                wait(client.map(inc, range(5), pure=False))
                monitor.snapshot(flush=True)
                raise KeyError("the block fails")
            assert monitor.stop_recording() is None  # closed already
        summary = run_summary(path)
        assert (summary.run, summary.tags) == ("block", {"kind": "test"})
        assert (summary.tasks, summary.complete) == (5, True)

    @pytest.mark.parametrize(
        ("run", "tags", "named"),
        [
            ("x" * (MAX_RUN_CHARS + 1), None, "run"),
            ("", None, "run"),
            (3, None, "run"),
            (None, {"a": 1}, "tags"),
            (None, ["a"], "tags"),
            (None, {f"k{i}": "v" for i in range(33)}, "tags"),
            (None, {"k": "v" * 201}, "tag"),
        ],
    )
    def test_bad_names_and_tags_are_refused_naming_the_setting(
        self, run: Any, tags: Any, named: str
    ) -> None:
        """Too long, empty, not text, too many: a ConfigError naming the setting."""
        with pytest.raises(ConfigError, match=named):
            check_run(run, tags)

    def test_attach_refuses_bad_tags_before_anything_is_sent(self) -> None:
        """Monitor.attach(tags={"a": 1}) raises ConfigError; no plugin is installed."""
        with make_cluster(n_workers=1) as cluster, Client(cluster) as client:
            with pytest.raises(ConfigError, match="tags"):
                Monitor.attach(client, tags={"a": 1})  # type: ignore[dict-item]
            assert "dask-monitor" not in cluster.scheduler.plugins


class TestFooter:
    """The writer ends a log with a summary; a listing reads only that."""

    def test_footer_counts_what_the_cluster_did(self, recorded: dict[str, Any]) -> None:
        """Tasks done and erred equal the client's futures; the time span fits
        inside the client's clock around the work."""
        footer = read_footer(recorded["path"])
        assert footer is not None
        assert footer["tasks"] == recorded["done"] == N_OK
        assert footer["erred"] == recorded["erred"] == N_FAIL
        assert 0 < footer["seconds"] <= recorded["wall"] + 0.5

    def test_footer_agrees_with_the_replay(self, recorded: dict[str, Any]) -> None:
        """The footer's tasks and errors are the replay's completed and erred."""
        from dask_monitor import replay

        footer = read_footer(recorded["path"])
        totals = replay(recorded["path"])["totals"]
        assert footer is not None
        assert totals["recomputed"] == 0
        assert (footer["tasks"], footer["erred"]) == (
            totals["completed"],
            totals["erred"],
        )

    def test_the_footer_ends_the_last_segment(self, tmp_path: Path) -> None:
        """A rotated log has its footer in its last segment, counting every one."""
        path = tmp_path / "rot.dmlog"
        writer = EventLogWriter(path, max_bytes=300)
        for i in range(20):
            t = float(i)
            writer.update_batch(
                [TaskStatus(f"a-{i}", "a", "a-g", "processing", "memory", t)]
            )
        writer.close()
        assert writer.segment > 1
        footer = read_footer(path)
        assert footer is not None and (footer["tasks"], footer["seconds"]) == (20, 19.0)

    def test_a_hostile_footer_is_not_believed(self, tmp_path: Path) -> None:
        """A footer of wrong types: no summary from it, and a replay names the field."""
        from dask_monitor import replay
        from dask_monitor.sinks.eventlog import EventLogError

        bad = {"tasks": "lots", "erred": 0, "events": 0, "dropped": 0}
        path = hand_log(tmp_path / "h.dmlog", {"started": 1.0}, [["e", bad]], 3)
        assert read_footer(path) is None
        with pytest.raises(EventLogError, match="'tasks' is a str"):
            replay(path)
        assert run_summary(path).error is not None

    def test_a_log_without_footer_is_read_through(self, tmp_path: Path) -> None:
        """A version-2 log (no footer) lists with counts from its records,
        marked incomplete."""
        path = hand_log(
            tmp_path / "old.dmlog",
            {"started": 100.0, "run": "old"},
            [["b", [task("a-1", "memory", 101.0), task("a-2", "erred", 104.0)]]],
            v=2,
        )
        assert read_footer(path) is None
        s = run_summary(path)
        assert (s.run, s.tasks, s.erred, s.seconds, s.complete) == (
            "old",
            1,
            1,
            3.0,
            False,
        )

    def test_a_crashed_writer_leaves_a_readable_log(self, tmp_path: Path) -> None:
        """Cut inside the last batch (no footer): listed from what is there."""
        path = tmp_path / "crash.dmlog"
        writer = EventLogWriter(path, header={"started": 1.0})
        writer.update_batch(
            [TaskStatus("a-1", "a", "a-g", "processing", "memory", 2.0)]
        )
        writer.update_batch(
            [TaskStatus("a-2", "a", "a-g", "processing", "memory", 3.0)]
        )
        writer.close()
        end = footer_offset(path)
        assert end is not None
        path.write_bytes(path.read_bytes()[: end[0] - 2])
        s = run_summary(path)
        assert (s.tasks, s.complete, s.error) == (1, False, None)

    def test_the_footer_is_not_a_record(self, tmp_path: Path) -> None:
        """records() yields the run's records only; the footer is about the log."""
        path = tmp_path / "f.dmlog"
        writer = EventLogWriter(path)
        writer.update_batch([WorkerStatus("tcp://w:1", "added", 5.0, nthreads=1)])
        writer.close()
        assert [r.kind for r in EventLog.open(path).records()] == ["b"]
        assert read_footer(path) == {
            "tasks": 0,
            "erred": 0,
            "events": 1,
            "dropped": 0,
            "first": 5.0,
            "last": 5.0,
            "seconds": 0.0,
        }


class TestHistoryList:
    """`dask-monitor history list DIR`: the runs there, newest first."""

    def test_lists_the_recorded_run_with_name_tags_and_counts(
        self, recorded: dict[str, Any]
    ) -> None:
        """The table and --json show the run's name, tags, tasks and errors."""
        out = cli("history", "list", str(recorded["dir"]))
        assert out.returncode == 0, out.stderr
        assert "nightly-etl" in out.stdout and "team=data" in out.stdout
        assert f"{N_OK}" in out.stdout
        out = cli("history", "list", str(recorded["dir"]), "--json")
        (run,) = json.loads(out.stdout)
        assert run["run"] == "nightly-etl" and run["tags"] == {"team": "data"}
        assert (run["tasks"], run["erred"], run["complete"]) == (N_OK, N_FAIL, True)
        assert run["cluster"].startswith("inproc://")

    def test_newest_first_with_paging(self, tmp_path: Path) -> None:
        """Sorted by start, newest first; --limit and --offset page through."""
        for i, started in enumerate([300.0, 100.0, 200.0]):
            hand_log(
                tmp_path / f"r{i}.dmlog", {"started": started, "run": f"r{i}"}, [], 3
            )
        (tmp_path / "notes.txt").write_text("not a log")
        assert [r.run for r in list_runs(tmp_path)] == ["r0", "r2", "r1"]
        out = cli(
            "history", "list", str(tmp_path), "--json", "--limit", "1", "--offset", "1"
        )
        assert [r["run"] for r in json.loads(out.stdout)] == ["r2"]

    def test_old_and_unreadable_logs_still_list(self, tmp_path: Path) -> None:
        """A log without footer shows as in progress/unknown; a broken one as
        unreadable; neither hides the others."""
        hand_log(tmp_path / "old.dmlog", {"started": 1.0, "run": "old"}, [], 2)
        (tmp_path / "broken.dmlog").write_bytes(b"garbage")
        out = cli("history", "list", str(tmp_path))
        assert out.returncode == 0, out.stderr
        assert "in progress/unknown" in out.stdout
        assert "unreadable" in out.stdout and "broken.dmlog" in out.stdout

    def test_hostile_names_and_tags_are_neutralised(self, tmp_path: Path) -> None:
        """Terminal escapes are shown escaped, long texts cut, non-text tags dropped."""
        hand_log(
            tmp_path / "evil.dmlog",
            {
                "started": 1.0,
                "run": "\x1b[2J\x1b]0;pwned\x07" + "A" * 10_000,
                "tags": {"t": "\u202eevil\n", "n": 5, "z" * 500: "v"},
            },
            [],
            3,
        )
        (s,) = list_runs(tmp_path)
        assert s.run is not None and len(s.run) == MAX_RUN_CHARS
        assert "n" not in s.tags and all(len(k) <= 200 for k in s.tags)
        out = cli("history", "list", str(tmp_path))
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout
        assert "\u202e" not in out.stdout
        assert "\\x1b[2J" in out.stdout and "\\u202e" in out.stdout
        assert max(map(len, out.stdout.splitlines())) < 400


class TestExport:
    """export infers its format from the name, and names spans."""

    def test_an_unknown_extension_is_refused_naming_the_option(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """-o events.txt: exit 2, a message naming --format, no file written."""
        out = cli("export", str(recorded["path"]), "-o", str(tmp_path / "events.txt"))
        assert out.returncode == 2
        assert "--format" in out.stderr and ".txt" in out.stderr
        assert not (tmp_path / "events.txt").exists()
        with pytest.raises(ValueError, match="--format"):
            export_events(recorded["path"], tmp_path / "e.txt")

    @pytest.mark.parametrize("name", ["e.json", "e.jsonl", "e.csv", "e.parquet"])
    def test_the_extension_chooses_the_format(
        self, recorded: dict[str, Any], tmp_path: Path, name: str
    ) -> None:
        """.json, .jsonl, .csv, .parquet: each written as what its name says."""
        pd = pytest.importorskip("pandas")
        out = tmp_path / name
        _, fmt, rows = export_events(recorded["path"], out)
        read = {
            "json": lambda p: pd.read_json(p),
            "jsonl": lambda p: pd.read_json(p, lines=True),
            "csv": pd.read_csv,
            "parquet": pd.read_parquet,
        }[fmt]
        assert fmt == name.split(".")[1]
        assert len(read(out)) == rows > 0

    def test_an_explicit_format_writes_any_name(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """--format csv -o events.txt writes CSV there."""
        out = cli(
            "export",
            str(recorded["path"]),
            "-o",
            str(tmp_path / "e.txt"),
            "--format",
            "csv",
        )
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "e.txt").read_text().startswith("key,prefix,")

    def test_span_names_are_exported_beside_their_ids(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """The tasks run in span "load" have span_name "load" (the ids stay)."""
        pd = pytest.importorskip("pandas")
        export_events(recorded["path"], tmp_path / "e.parquet")
        df = pd.read_parquet(tmp_path / "e.parquet")
        done = df[(df.prefix == "inc") & (df.finish == "memory")]
        assert len(done) == N_OK
        assert set(done.span_name) == {"load"}
        assert done.span.notna().all() and not (done.span == "load").any()


class TestReportHeading:
    """A report names the run it shows."""

    def test_the_report_heading_names_the_run_and_its_tags(
        self, recorded: dict[str, Any], tmp_path: Path
    ) -> None:
        """`dask-monitor report`: the run's name and tags are in the heading."""
        out = cli("report", str(recorded["path"]), "-o", str(tmp_path / "r.html"))
        assert out.returncode == 0, out.stderr
        page = (tmp_path / "r.html").read_text()
        assert "run nightly-etl: team=data;" in page

    def test_a_hostile_run_name_is_escaped_in_the_report(self, tmp_path: Path) -> None:
        """A run named <script>...: shown as text, never as markup."""
        from dask_monitor.panel.report import report_html
        from dask_monitor.replay import replay_pipeline, run_info
        from tests.test_report import texts

        path = hand_log(
            tmp_path / "x.dmlog",
            {"started": 1.0, "run": "<script>alert(1)</script>", "tags": {"<b>": "x"}},
            [["b", [task("a-1", "memory", 2.0)]]],
            3,
        )
        page = report_html(replay_pipeline(path).snapshot(), **run_info(path))
        shown = texts(page)  # what the page's Divs show, as HTML
        assert "<script>alert(1)" not in shown and "<b>=x" not in shown
        assert "run &lt;script&gt;alert(1)&lt;/script&gt;: &lt;b&gt;=x" in shown


def written_log(path: Path | str, started: float, run: str, n: int = 3) -> str:
    """A complete log (with footer) of ``n`` tasks done, written by the writer."""
    writer = EventLogWriter(path, header={"started": started, "run": run})
    writer.update_batch(
        [
            TaskStatus(f"a-{i}", "a", "a-g", "processing", "memory", started + i)
            for i in range(n)
        ]
    )
    writer.close()
    return str(path)


class Reads:
    """The index's reads of logs, by path: headers (a summary reads its log's
    header too) and summaries."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from dask_monitor import runs
        from dask_monitor.sinks import eventlog

        self.headers: list[str] = []
        self.summaries: list[str] = []
        read_header, summarise = eventlog.read_header, runs._summarise

        def counted_header(path: Any) -> dict[str, Any]:
            self.headers.append(str(path))
            return read_header(path)

        def counted_summary(path: Any, counted: Any) -> Any:  # the index's seam
            self.summaries.append(str(path))
            return summarise(path, counted)

        monkeypatch.setattr(eventlog, "read_header", counted_header)
        monkeypatch.setattr(runs, "_summarise", counted_summary)

    def clear(self) -> None:
        self.headers.clear()
        self.summaries.clear()


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` (no timing claim)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture(params=["local", "s3"])
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty history directory: a local one, or a place in the S3 bucket."""
    if request.param == "local":
        return str(tmp_path)
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/index-{tmp_path.name}"


def join(directory: str, name: str) -> str:
    return f"{directory}/{name}"


class TestRunIndex:
    """RunIndex: listings asked again read only what is new or changed."""

    def test_a_second_listing_reads_nothing_unchanged(
        self, directory: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Three complete logs: the first runs() reads each header and summary
        once, the second reads nothing and returns the same runs."""
        from dask_monitor.runs import RunIndex

        for i, started in enumerate([100.0, 300.0, 200.0]):
            written_log(join(directory, f"r{i}.dmlog"), started, f"r{i}")
        reads = Reads(monkeypatch)
        index = RunIndex(directory)
        first = index.runs()
        assert [r.run for r in first] == ["r1", "r2", "r0"]
        assert all(r.complete and r.tasks == 3 for r in first)
        assert set(reads.headers) == {r.path for r in first}
        assert sorted(reads.summaries) == sorted(r.path for r in first)
        reads.clear()
        assert index.runs() == first
        assert index.count() == 3
        assert (reads.headers, reads.summaries) == ([], [])

    def test_only_the_pages_logs_are_summarised(
        self, directory: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """runs(limit=1, offset=1) reads every header (the order) but the
        summary of the second newest log only."""
        from dask_monitor.runs import RunIndex

        for i in range(4):
            written_log(join(directory, f"r{i}.dmlog"), 100.0 + i, f"r{i}")
        reads = Reads(monkeypatch)
        (page,) = RunIndex(directory).runs(limit=1, offset=1)
        assert page.run == "r2"
        assert len(set(reads.headers)) == 4
        assert reads.summaries == [page.path]

    def test_a_new_log_appears_and_only_it_is_read(
        self, directory: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A log written after the first listing is in the next one, first
        (newest), and is the only log read."""
        from dask_monitor.runs import RunIndex

        written_log(join(directory, "old.dmlog"), 100.0, "old")
        index = RunIndex(directory)
        assert [r.run for r in index.runs()] == ["old"]
        reads = Reads(monkeypatch)
        new = written_log(join(directory, "new.dmlog"), 200.0, "new")
        assert [r.run for r in index.runs()] == ["new", "old"]
        assert index.count() == 2
        assert (set(reads.headers), reads.summaries) == ({new}, [new])

    def test_an_in_progress_log_updates_then_turns_complete(
        self, directory: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A log being written lists what it has, more as it grows, and
        complete (from its footer) once closed; then it is not read again."""
        from dask_monitor.runs import RunIndex

        path = join(directory, "live.dmlog")
        writer = EventLogWriter(
            path,
            header={"started": 50.0, "run": "live"},
            flush_interval=0.02,
            upload_interval=0.05,
        )
        index = RunIndex(directory)

        def tasks() -> tuple[int, bool] | None:
            found = index.runs()
            return (found[0].tasks, found[0].complete) if found else None

        try:
            writer.update_batch(_tasks(0, 5))
            wait_for(lambda: tasks() == (5, False), "5 tasks, in progress")
            writer.update_batch(_tasks(5, 12))
            wait_for(lambda: tasks() == (12, False), "12 tasks, in progress")
        finally:
            writer.close()
        (run,) = index.runs()
        assert (run.tasks, run.complete, run.seconds) == (12, True, 11.0)
        reads = Reads(monkeypatch)
        assert index.runs() == [run]
        assert (reads.headers, reads.summaries) == ([], [])

    def test_a_growing_log_is_read_on_from_where_it_was(
        self, directory: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Of a log being written (and rotating), each batch record is decoded
        once over all the listings, however often they come."""
        from dask_monitor.runs import RunIndex
        from dask_monitor.sinks import eventlog

        writer = EventLogWriter(
            join(directory, "grow.dmlog"),
            header={"started": 1.0},
            max_bytes=600,
            flush_interval=0.02,
            upload_interval=0.05,
        )
        index = RunIndex(directory)

        def tasks() -> int:
            found = index.runs()
            return found[0].tasks if found else -1

        try:
            for i in range(5):
                writer.update_batch(_tasks(i, i + 1))
            wait_for(lambda: tasks() == 5, "5 tasks")
            decoded: list[int] = []
            decode = eventlog.decode_batch

            def counted(items: Any) -> Any:
                decoded.append(len(items))
                return decode(items)

            monkeypatch.setattr(eventlog, "decode_batch", counted)
            for i in range(5, 20):
                writer.update_batch(_tasks(i, i + 1))
            wait_for(lambda: tasks() == 20, "20 tasks")
            assert writer.segment >= 2  # it rotated while being listed
            assert decoded == [1] * 15
        finally:
            writer.close()
        (run,) = index.runs()
        assert (run.tasks, run.complete) == (20, True)

    def test_a_read_refused_once_is_tried_again_from_the_same_place(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An object store refuses a read when the object is replaced under it
        (a log in progress uploaded again): read once more, no error shown,
        nothing counted twice; refused twice, the error is shown and the
        next listing goes on from where the last good one stopped."""
        from dask_monitor.runs import RunIndex
        from dask_monitor.sinks.eventlog import EventLog

        rows = [["b", [task(f"a-{i}", "memory", 10.0 + i)]] for i in range(3)]
        path = hand_log(tmp_path / "x.dmlog", {"created": 1.0}, rows, 3)
        index = RunIndex(tmp_path)
        assert index.runs()[0].tasks == 3
        with path.open("ab") as f:  # the writer appends a record
            payload = msgpack.packb(["b", [task("a-3", "memory", 13.0)]])
            f.write(struct.pack(">I", len(payload)) + payload)
        refusals = [
            OSError("At least one of the pre-conditions you specified did not hold")
        ]
        records_from = EventLog.records_from

        def refusing(self: EventLog, *args: Any, **kwargs: Any) -> Any:
            if refusals:
                raise refusals.pop()
            return records_from(self, *args, **kwargs)

        monkeypatch.setattr(EventLog, "records_from", refusing)
        (run,) = index.runs()
        assert (run.tasks, run.error) == (4, None)
        with path.open("ab") as f:
            payload = msgpack.packb(["b", [task("a-4", "memory", 14.0)]])
            f.write(struct.pack(">I", len(payload)) + payload)
        refusals += [OSError("refused"), OSError("refused")]
        (run,) = index.runs()
        assert run.error is not None and "refused" in run.error
        with path.open("ab") as f:
            payload = msgpack.packb(["b", [task("a-5", "memory", 15.0)]])
            f.write(struct.pack(">I", len(payload)) + payload)
        (run,) = index.runs()
        assert (run.tasks, run.error, run.seconds) == (6, None, 5.0)

    def test_a_failed_read_is_tried_again_a_broken_log_is_not(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A read that failed (the network) shows its error once and is read
        again at the next listing; a file that is no log is not read again
        while unchanged."""
        from dask_monitor.runs import RunIndex
        from dask_monitor.sinks import eventlog

        good = written_log(tmp_path / "good.dmlog", 2.0, "good")
        (tmp_path / "broken.dmlog").write_bytes(b"garbage")
        failures = [ConnectionError("connection reset")]
        read_footer = eventlog.read_footer

        def flaky(path: Any) -> Any:
            if failures:
                raise failures.pop()
            return read_footer(path)

        monkeypatch.setattr(eventlog, "read_footer", flaky)
        index = RunIndex(tmp_path)
        first, broken = index.runs()
        assert first.error is not None and "connection reset" in first.error
        assert (
            broken.error is not None and "not a dask-monitor event log" in broken.error
        )
        reads = Reads(monkeypatch)
        first, again = index.runs()
        assert (first.run, first.tasks, first.error) == ("good", 3, None)
        assert again == broken
        assert reads.summaries == [good]

    def test_a_log_recorded_again_is_counted_afresh(self, tmp_path: Path) -> None:
        """A new recording at a listed log's place (another ``created``) is
        counted from its start, not from where the old one ended."""
        from dask_monitor.runs import RunIndex

        def log(created: float, n: int) -> None:
            rows = [task(f"a-{i}", "memory", 10.0 + i) for i in range(n)]
            batches = [["b", [row]] for row in rows]
            hand_log(tmp_path / "x.dmlog", {"created": created}, batches, 3)

        log(1.0, 3)
        index = RunIndex(tmp_path)
        assert index.runs()[0].tasks == 3
        log(2.0, 5)
        (run,) = index.runs()
        assert (run.tasks, run.error, run.seconds) == (5, None, 4.0)

    def test_a_removed_log_leaves_the_listing(self, tmp_path: Path) -> None:
        """A log deleted since the last call is no longer listed nor found."""
        from dask_monitor.runs import RunIndex

        gone = Path(written_log(tmp_path / "gone.dmlog", 1.0, "gone"))
        written_log(tmp_path / "kept.dmlog", 2.0, "kept")
        index = RunIndex(tmp_path)
        assert index.count() == 2 and len(index.runs()) == 2
        gone.unlink()
        assert [r.run for r in index.runs()] == ["kept"]
        with pytest.raises(LookupError):
            index.find("gone")

    def test_a_rotated_log_is_one_run(self, tmp_path: Path) -> None:
        """Segments .1, .2 ... belong to their log: one run, counting all."""
        from dask_monitor.runs import RunIndex

        writer = EventLogWriter(
            tmp_path / "rot.dmlog", header={"started": 1.0}, max_bytes=300
        )
        for i in range(20):
            writer.update_batch(_tasks(i, i + 1))
        writer.close()
        assert writer.segment > 1
        index = RunIndex(tmp_path)
        assert index.count() == 1
        (run,) = index.runs()
        assert (run.tasks, run.complete) == (20, True)


def _tasks(start: int, stop: int) -> list[TaskStatus]:
    return [
        TaskStatus(f"a-{i}", "a", "a-g", "processing", "memory", 100.0 + i)
        for i in range(start, stop)
    ]


class TestFind:
    """RunIndex.find: a run name or file name to its log, never a guess."""

    def test_finds_by_run_name_and_by_file_name(self, directory: str) -> None:
        """The run's header name, the file name, or the file name without
        .dmlog: each gives the log's path (or URL)."""
        from dask_monitor.runs import RunIndex

        path = written_log(join(directory, "2026-01-01-x-1.dmlog"), 1.0, "nightly")
        written_log(join(directory, "other.dmlog"), 2.0, "other")
        index = RunIndex(directory)
        for name in ("nightly", "2026-01-01-x-1.dmlog", "2026-01-01-x-1"):
            assert index.find(name) == path

    def test_an_absent_or_shared_name_names_the_directory(self, directory: str) -> None:
        """No match, or two logs of one run name: LookupError naming the
        directory, the name and, when shared, the logs; the file name still
        tells them apart."""
        from dask_monitor.runs import RunIndex

        written_log(join(directory, "mon.dmlog"), 1.0, "nightly")
        tue = written_log(join(directory, "tue.dmlog"), 2.0, "nightly")
        index = RunIndex(directory)
        with pytest.raises(LookupError, match="no run named 'weekly'") as info:
            index.find("weekly")
        assert directory in str(info.value)
        with pytest.raises(LookupError, match="2 runs named 'nightly'") as info:
            index.find("nightly")
        assert directory in str(info.value)
        assert "mon.dmlog" in str(info.value) and "tue.dmlog" in str(info.value)
        assert index.find("tue") == tue


@pytest.fixture(scope="module")
def s3_runs(s3_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real LocalCluster run recorded to S3 under a run name, beside a
    hand-written log without a footer (a writer that died)."""
    import dask
    import fsspec

    directory = f"{s3_bucket}/history"
    url = f"{directory}/nightly.dmlog"
    with make_cluster() as cluster, Client(cluster) as client:
        with dask.config.set({"monitor.record": url}):
            monitor = Monitor.attach(
                client, interval="20ms", run="nightly-s3", tags={"where": "s3"}
            )
        ok = client.map(inc, range(N_OK), pure=False)
        bad = client.map(fail_if_odd, [1, 3, 5, 7], pure=False)
        wait(ok + bad)
        monitor.snapshot(flush=True)
        stats = monitor.stop_recording()
        assert stats is not None and stats["upload_errors"] == 0
        monitor.detach()
        done = sum(f.status == "finished" for f in ok)
        erred = sum(f.status == "error" for f in bad)
    died = hand_log(
        tmp_path_factory.mktemp("died") / "died.dmlog",
        {"started": 1.0, "run": "died"},
        [["b", [task("a-1", "memory", 2.0), task("a-2", "erred", 5.0)]]],
        3,
    )
    fsspec.filesystem("s3", skip_instance_cache=True).put(
        str(died), f"{directory}/died.dmlog"
    )
    return {"dir": directory, "url": url, "done": done, "erred": erred}


class TestUrlDirectories:
    """History directories in object storage (moto's S3 server on 127.0.0.1)."""

    def test_list_runs_reads_a_url_directory(self, s3_runs: dict[str, Any]) -> None:
        """The recorded run lists with its name, tags and the cluster's
        counts (from its footer); the dead writer's log from its records."""
        recorded, died = list_runs(s3_runs["dir"])
        assert (recorded.run, recorded.tags) == ("nightly-s3", {"where": "s3"})
        assert recorded.path == s3_runs["url"]
        assert (recorded.tasks, recorded.erred) == (s3_runs["done"], s3_runs["erred"])
        assert (recorded.tasks, recorded.erred) == (N_OK, N_FAIL)
        assert recorded.complete and recorded.error is None
        assert (died.run, died.tasks, died.erred, died.complete) == (
            "died",
            1,
            1,
            False,
        )

    def test_long_headers_and_non_logs_at_a_url(self, s3_bucket: str) -> None:
        """A header longer than the first bytes read (3,000 workers) is read
        whole; a large object that is not a log lists as unreadable."""
        import fsspec

        directory = f"{s3_bucket}/long-headers"
        workers = {
            f"tcp://10.0.{i // 250}.{i % 250}:40000": {"nthreads": 2, "first_seen": 1.0}
            for i in range(3000)
        }
        url = f"{directory}/big.dmlog"
        writer = EventLogWriter(
            url, header={"started": 2.0, "run": "big", "workers": workers}
        )
        writer.update_batch(_tasks(0, 3))
        writer.close()
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        assert fs.size(url) > 100_000
        fs.pipe(f"{directory}/junk.dmlog", b"NOTALOG!" * 20_000)
        assert read_header(url)["workers"] == workers
        big, junk = list_runs(directory)
        assert (big.run, big.tasks, big.complete) == ("big", 3, True)
        assert junk.error is not None and "bad magic bytes" in junk.error

    def test_history_list_takes_a_url(self, s3_runs: dict[str, Any]) -> None:
        """`history list s3://...` prints the table and --json the runs."""
        from click.testing import CliRunner

        from dask_monitor.cli import main

        out = CliRunner().invoke(main, ["history", "list", s3_runs["dir"]])
        assert out.exit_code == 0, out.output
        assert "nightly-s3" in out.output and "where=s3" in out.output
        out = CliRunner().invoke(main, ["history", "list", s3_runs["dir"], "--json"])
        assert out.exit_code == 0, out.output
        assert [r["run"] for r in json.loads(out.output)] == ["nightly-s3", "died"]

    def test_a_bad_url_directory_is_a_usage_error(self, s3_bucket: str) -> None:
        """An unknown protocol, credentials in the URL, or no place: exit 2, a
        message naming the argument, no traceback, no secret echoed; an empty
        place lists no runs."""
        from click.testing import CliRunner

        from dask_monitor.cli import main

        bucket = s3_bucket.removeprefix("s3://")
        for bad, said in (
            ("nosuch://bucket/runs", "nosuch"),
            (f"s3://key:S3CR3T@{bucket}/runs", "credentials"),
            ("s3://", "names no"),
        ):
            out = CliRunner().invoke(main, ["history", "list", bad])
            assert out.exit_code == 2, out.output
            assert "DIRECTORY" in out.output and said in out.output
            assert "Traceback" not in out.output and "S3CR3T" not in out.output
        out = CliRunner().invoke(main, ["history", "list", f"{s3_bucket}/empty"])
        assert out.exit_code == 0, out.output
        assert "No runs in" in out.output
