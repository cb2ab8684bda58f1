"""The benchmarks stay alive: each one's quick mode runs and reports numbers.

No timing is asserted: the quick sizes are far too small to mean anything.
The scripts run as subprocesses, all at once (the cluster benchmarks wait on
their clusters most of the time), so the whole module takes well under a
minute.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
NAMES = (
    "scheduler_overhead",
    "client_side",
    "memory",
    "scale",
    "flush",
    "flush_interval",
    "hot_path",
    "panel_update",
    "compare",
    "eta_accuracy",
    "insights",
    "details",
)
#: Arguments beyond ``--quick --json FILE``.
ARGS = {"compare": ["HEAD", "--workloads", "map"]}
TIMEOUT = 240


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Run every benchmark's quick mode concurrently; their JSON reports by name."""
    out = tmp_path_factory.mktemp("bench")
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                str(BENCHMARKS / f"{name}.py"),
                "--quick",
                "--json",
                str(out / f"{name}.json"),
                *ARGS.get(name, []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in NAMES
    }
    results: dict[str, Any] = {}
    deadline = time.monotonic() + TIMEOUT
    try:
        for name, proc in procs.items():
            left = max(1.0, deadline - time.monotonic())
            try:
                output, _ = proc.communicate(timeout=left)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
            path = out / f"{name}.json"
            results[name] = {
                "returncode": proc.returncode,
                "output": output,
                "report": json.loads(path.read_text()) if path.exists() else None,
            }
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("name", NAMES)
def test_quick_mode_reports_numbers(reports: dict[str, Any], name: str) -> None:
    """``python benchmarks/<name>.py --quick`` exits 0 with finite figures."""
    result = reports[name]
    assert result["returncode"] == 0, result["output"][-3000:]
    report = result["report"]
    assert report is not None, result["output"][-3000:]
    assert report["benchmark"] == name
    assert report["quick"] is True
    assert report["figures"], "no figures"
    for figure in report["figures"]:
        assert figure["values"], figure["name"]
        assert all(math.isfinite(v) for v in figure["values"]), figure["name"]
    assert "| figure | median |" in result["output"]


def test_flush_interval_times_every_interval_of_each_workload(
    reports: dict[str, Any],
) -> None:
    """One figure per workload and interval, in the order of the intervals."""
    report = reports["flush_interval"]["report"]
    assert report is not None
    names = [figure["name"] for figure in report["figures"]]
    assert names == [
        f"{workload}: flush every {ms} ms"
        for workload in ("map", "array", "dataframe")
        for ms in (50, 100, 250, 500)
    ]


def test_compare_replays_a_revision_beside_the_working_tree(
    reports: dict[str, Any],
) -> None:
    """``compare.py HEAD``: HEAD's package is one more variant of the replay,
    and of the flushes timed on one recorded run."""
    report = reports["compare"]["report"]
    assert report is not None, reports["compare"]["output"][-3000:]
    names = [figure["name"] for figure in report["figures"]]
    assert "map: replay dask-monitor" in names
    assert any(n.startswith("map: replay dask-monitor at HEAD (") for n in names)
    assert any(
        n.startswith("map: dask-monitor at HEAD (") and n.endswith("above harness only")
        for n in names
    )
    flushes = {
        f["name"]: f for f in report["figures"] if f["name"].startswith("map: flush ")
    }
    assert "map: flush dask-monitor" in flushes
    assert any(n.startswith("map: flush dask-monitor at HEAD (") for n in flushes)
    # Both versions' hooks took the same recorded run: the same events.
    notes = {f["note"].split(";")[0] for f in flushes.values()}
    assert len(notes) == 1 and " events for " in notes.pop()


def test_eta_accuracy_reports_every_scenario(reports: dict[str, Any]) -> None:
    """One ETA error per scenario, beside the naive ones, and a goal for each."""
    report = reports["eta_accuracy"]["report"]
    assert report is not None, reports["eta_accuracy"]["output"][-3000:]
    names = {figure["name"] for figure in report["figures"]}
    scenarios = (
        "burst after idle",
        "lognormal durations",
        "two prefixes, 0.02 s and 1 s",
        "multi-stage graph",
        "queued beyond threads",
    )
    for scenario in scenarios:
        for what in ("ETA error", "remaining / rate error", "duration"):
            assert f"{scenario}: {what}" in names
    assert len(report["goals"]) == len(scenarios)
    for goal in report["goals"]:
        assert goal["unit"] == "%" and goal["limit"] == 25.0
        assert math.isfinite(goal["value"]) and goal["value"] >= 0


def test_run_combines_the_reports(
    reports: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``benchmarks/run.py`` makes one markdown table with every benchmark's goals."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run

    data = [r["report"] for r in reports.values() if r["report"] is not None]
    text = run.markdown(data)
    for name in NAMES:
        assert f"### {name} (quick)" in text
    assert "### Goals" in text
    assert "cores" in text


def test_the_core_variant_keeps_only_the_core_aggregates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replay's ``dask-monitor, core`` variant: progress and the other core
    aggregates count; no alert rule, per-span view or sample sees an event."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import scheduler_overhead
    from dask_monitor import TaskStatus
    from dask_monitor.pipeline import Pipeline

    monitor = scheduler_overhead.core_monitor()
    monitor.pipeline = Pipeline(monitor.config)
    scheduler_overhead.core_only(monitor)
    w = "tcp://127.0.0.1:1"
    monitor.pipeline.process(
        [
            TaskStatus("inc-1", "inc", "inc-0", "new", "waiting", 1.0, span="s"),
            TaskStatus("inc-1", "inc", "inc-0", "waiting", "processing", 2.0, w),
            TaskStatus(
                "inc-1",
                "inc",
                "inc-0",
                "processing",
                "memory",
                3.0,
                w,
                duration=0.5,
                span="s",
            ),
        ]
    )
    snap = monitor.pipeline.snapshot()
    assert snap["totals"]["completed"] == 1
    assert snap["workers"] and snap["throughput"]["total"] == 1
    assert monitor.pipeline.rules == []
    assert snap["spans"] == {}
    assert snap["samples"]["recent"] == [] and snap["samples"]["reservoir"] == []
    full = Pipeline(scheduler_overhead.MonitorPlugin().config)
    assert full.rules, "the default monitor has alert rules"


def _report(name: str, started: float, *, quick: bool = False) -> dict[str, Any]:
    """A minimal report as ``Report.to_dict`` writes it."""
    return {
        "benchmark": name,
        "quick": quick,
        "started": started,
        "figures": [{"name": "x", "unit": "ns", "values": [started], "note": ""}],
        "goals": [
            {
                "text": f"{name} goal",
                "value": started,
                "limit": 10.0,
                "unit": "ns",
                "higher_is_better": False,
                "met": started <= 10.0,
            }
        ],
        "notes": [],
    }


def test_result_files_are_named_by_date_and_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's report goes to ``<date>-<commit>[-dirty]-<benchmark>.json``, and a
    second run of the same day and commit gets a new file, not the first's."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import datetime

    from common import result_path

    day = datetime.date(2026, 12, 3)
    first = result_path("hot_path", tmp_path, day, ("4ee4fbf", False))
    assert first.name == "2026-12-03-4ee4fbf-hot_path.json"
    first.write_text("{}")
    again = result_path("hot_path", tmp_path, day, ("4ee4fbf", False))
    assert again.name == "2026-12-03-4ee4fbf-hot_path-2.json"
    dirty = result_path("hot_path", tmp_path, day, ("4ee4fbf", True))
    assert dirty.name == "2026-12-03-4ee4fbf-dirty-hot_path.json"


def test_combine_takes_the_newest_full_report_of_each_benchmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run.py --combine`` reads the newest full run of each benchmark by the
    start time inside the report, whatever the files are called."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run

    files = {
        # The later name sorts first: the name must not decide.
        "2026-12-01-bbbbbbb-flush.json": _report("flush", 2.0),
        "2026-11-30-aaaaaaa-flush.json": _report("flush", 3.0),
        "2026-12-02-ccccccc-flush.json": _report("flush", 9.0, quick=True),
        # A name that a glob for "flush*" would take for the flush benchmark.
        "flush_interval.json": _report("flush_interval", 1.0),
    }
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    reports = run.latest_reports(tmp_path, ["flush", "flush_interval"])
    assert [(r["benchmark"], r["file"]) for r in reports] == [
        ("flush", "2026-11-30-aaaaaaa-flush.json"),
        ("flush_interval", "flush_interval.json"),
    ]
    table = run.goals_table(reports)
    assert "| flush goal | 3.00 ns | 10.0 ns | yes |" in table
    assert "(results/2026-11-30-aaaaaaa-flush.json)" in table


def test_the_readme_table_is_the_generated_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``benchmarks/README.md``'s table of current figures is what ``run.py
    --combine --readme`` makes of the newest result files: nobody edits it."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run

    readme = (BENCHMARKS / "README.md").read_text()
    assert run.BEGIN in readme and run.END in readme
    shown = readme.split(run.BEGIN + "\n", 1)[1].split(run.END, 1)[0]
    reports = run.latest_reports(BENCHMARKS / "results", list(run.BENCHMARKS))
    assert shown == run.goals_table(reports)
