"""The history commands as users run them: subprocesses of the installed scripts."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dask_monitor.events import TaskStatus, WorkerStatus
from dask_monitor.sinks.eventlog import MAGIC, EventLogWriter

BIN = Path(sys.executable).parent
pd = pytest.importorskip("pandas")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dask-monitor"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small log written by the writer: one worker, 20 tasks, 2 errors."""
    path = tmp_path_factory.mktemp("cli") / "run.dmlog"
    writer = EventLogWriter(path, header={"started": 100.0})
    writer.update_batch([WorkerStatus("tcp://w:1", "added", 100.0, nthreads=2)])
    for i in range(20):
        key = f"inc-{i}"
        t = 100.0 + i
        finish = "erred" if i >= 18 else "memory"
        writer.update_batch(
            [
                TaskStatus(key, "inc", "inc-1", "new", "released", t),
                TaskStatus(
                    key, "inc", "inc-1", "released", "processing", t, worker="tcp://w:1"
                ),
                TaskStatus(
                    key,
                    "inc",
                    "inc-1",
                    "processing",
                    finish,
                    t + 0.5,
                    worker="tcp://w:1",
                    duration=0.4,
                    begin=t,
                    end=t + 0.4,
                    exception="ValueError('x')" if finish == "erred" else None,
                ),
            ]
        )
    writer.close()
    return path


def test_dask_monitor_and_dask_monitor_subcommand_help() -> None:
    """`dask-monitor --help` and `dask monitor --help` list the commands."""
    for cmd in ([str(BIN / "dask-monitor")], [str(BIN / "dask"), "monitor"]):
        out = subprocess.run(
            [*cmd, "--help"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        for name in ("replay", "report", "export"):
            assert name in out.stdout


def test_replay_prints_the_summary(log: Path) -> None:
    """`replay LOG` prints the final line and the summary: a finished run's
    tasks done and average rate, not a current pace."""
    out = run("replay", str(log))
    assert out.returncode == 0, out.stderr
    assert "20 tasks done" in out.stdout
    assert "average" in out.stdout
    assert "inc" in out.stdout
    assert "ValueError" in out.stdout


def test_report_writes_html(log: Path, tmp_path: Path) -> None:
    """`report LOG -o report.html`: a standalone Bokeh page."""
    html = tmp_path / "report.html"
    out = run("report", str(log), "-o", str(html))
    assert out.returncode == 0, out.stderr
    text = html.read_text()
    assert "Bokeh" in text and "dask-monitor" in text


def test_export_parquet_and_csv(log: Path, tmp_path: Path) -> None:
    """`export LOG -o events.parquet` / `.csv`: one row per task event."""
    out = run("export", str(log), "-o", str(tmp_path / "e.parquet"))
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "e.parquet")
    assert len(df) == 60
    assert (df.finish == "erred").sum() == 2
    out = run("export", str(log), "-o", str(tmp_path / "e.csv"))
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(tmp_path / "e.csv")) == 60


def test_bad_logs_fail_with_a_clear_message(log: Path, tmp_path: Path) -> None:
    """Another format version, or not a log: exit 1 with one clear line."""
    bad = tmp_path / "bad.dmlog"
    data = bytearray(log.read_bytes())
    data[len(MAGIC)] = 7
    bad.write_bytes(bytes(data))
    out = run("replay", str(bad))
    assert out.returncode == 1
    assert "format version 7" in out.stderr
    assert "Traceback" not in out.stderr
    bad.write_text("not a log")
    out = run("report", str(bad), "-o", str(tmp_path / "r.html"))
    assert out.returncode == 1 and "not a dask-monitor event log" in out.stderr


def test_replay_serve(log: Path) -> None:
    """`replay LOG --serve --port 0` serves the panel without a cluster."""
    proc = subprocess.Popen(
        [str(BIN / "dask-monitor"), "replay", str(log), "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        seen = []
        deadline = time.time() + 60
        assert proc.stdout is not None
        while time.time() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "".join(seen)
        with urllib.request.urlopen(url, timeout=30) as response:
            page = response.read().decode()
        assert response.status == 200
        assert "dask-monitor replay" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_watch_once_on_a_running_cluster() -> None:
    """`watch ADDRESS --once` prints the progress line and the prefixes; the
    work being done, the line says how many tasks finished, at what average."""
    from distributed import Client

    from .conftest import make_cluster

    with (
        make_cluster(n_workers=1, host="127.0.0.1", protocol="tcp://") as cluster,
        Client(cluster) as client,
    ):
        from dask_monitor import Monitor

        with Monitor.attach(client, interval="20ms"):
            futures = client.map(str, range(15))
            client.gather(futures)
            out = run("watch", cluster.scheduler_address, "--once", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "15 tasks done" in out.stdout
    assert "average" in out.stdout
    assert "str" in out.stdout
    assert "\x1b[" not in out.stdout  # not a terminal: plain frames


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of 1,500 tasks of 1 ms on one worker, 20 ms apart: tiny tasks."""
    path = tmp_path_factory.mktemp("cli-tiny") / "tiny.dmlog"
    writer = EventLogWriter(path, header={"started": 100.0})
    writer.update_batch([WorkerStatus("tcp://w:1", "added", 100.0, nthreads=2)])
    for second in range(30):
        batch = []
        for j in range(50):
            i = second * 50 + j
            key, t = f"inc-{i}", 100.0 + i * 0.02
            batch += [
                TaskStatus(key, "inc", "inc-1", "new", "processing", t),
                TaskStatus(
                    key,
                    "inc",
                    "inc-1",
                    "processing",
                    "memory",
                    t + 0.001,
                    worker="tcp://w:1",
                    duration=0.001,
                    begin=t,
                    end=t + 0.001,
                ),
            ]
        writer.update_batch(batch)
    writer.close()
    return path


def test_replay_and_report_list_the_insights(tiny_log: Path, tmp_path: Path) -> None:
    """`replay LOG` lists every insight of the replayed run under its head
    line, and `report LOG` opens with them. (Skipped by a monitor that
    computes no insights.)"""
    from dask_monitor.replay import replay_pipeline
    from dask_monitor.text import format_insight, insights_of

    insights = insights_of(replay_pipeline(tiny_log).snapshot())
    if insights is None:
        pytest.skip("this monitor computes no insights (the engine is missing)")
    out = run("replay", str(tiny_log))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    if not insights:
        assert any(line.startswith("Insights: none") for line in lines)
    for insight in insights[:15]:
        assert "  " + format_insight(insight, 160) in lines
    html = tmp_path / "report.html"
    assert run("report", str(tiny_log), "-o", str(html)).returncode == 0
    text = html.read_text()
    assert "dm-report-insights" in text
    for insight in insights:
        assert insight["kind"] in text
