"""compare(a, b) and `dask-monitor diff` on runs recorded from a real LocalCluster.

Three runs of one small pipeline are recorded on one cluster: ``a`` and
``again`` are the same pipeline (tasks sleep 60-80 ms, so a loaded machine's
jitter is small beside them), ``b`` makes ``transform`` three times slower and
adds a prefix whose tasks raise, named with markup.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster, wait

from dask_monitor import Monitor, compare, replay

from .conftest import make_cluster

BIN = Path(sys.executable).parent
#: The prefix of the failing tasks of run b: markup a page must not obey.
HOSTILE = "x</td><img src=x onerror=alert(1)>"
TASKS = 12


def load(i: int) -> int:
    time.sleep(0.06)
    return i


def transform(x: int, slow: float = 1.0) -> int:
    time.sleep(0.08 * slow)
    return x + 1


def total(xs: list[int]) -> int:
    return sum(xs)


def explode(i: int) -> int:
    raise OSError(f"disk {i} gone")


def pipeline(client: Client, *, slow: float = 1.0, failing: bool = False) -> None:
    """The pipeline: load -> transform -> total (and, in run b, failures)."""
    loads = client.map(load, range(TASKS), pure=False)
    transforms = client.map(transform, loads, slow=slow, pure=False)
    futures = [*loads, *transforms, client.submit(total, transforms, pure=False)]
    if failing:
        futures += [
            client.submit(explode, i, key=f"{HOSTILE}-{i}") for i in range(TASKS)
        ]
    wait(futures)


def record(
    cluster: LocalCluster, client: Client, monitor: Monitor, path: Path, **kw: Any
) -> None:
    """Record one run of the pipeline at ``path``, until Dask forgot its tasks."""
    monitor.record(path, flush_interval="50ms", run=f"etl-{path.stem}")
    pipeline(client, **kw)
    deadline = time.time() + 10  # the futures are gone: let the tasks be forgotten
    while cluster.scheduler.tasks and time.time() < deadline:
        time.sleep(0.02)
    monitor.snapshot(flush=True)
    stats = monitor.stop_recording()
    assert stats is not None and stats["dropped"] == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Logs of runs ``a``, ``again`` (the same pipeline) and ``b`` (slower
    transform, a new failing prefix), in one directory, named ``etl-a``,
    ``etl-again`` and ``etl-b``."""
    directory = tmp_path_factory.mktemp("diff")
    paths = {name: directory / f"{name}.dmlog" for name in ("a", "again", "b")}
    with make_cluster() as cluster, Client(cluster) as client:
        monitor = Monitor.attach(client, interval="20ms")
        record(cluster, client, monitor, paths["a"])
        record(cluster, client, monitor, paths["again"])
        record(cluster, client, monitor, paths["b"], slow=3.0, failing=True)
        monitor.detach()
    return paths


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dask-monitor"), *args], capture_output=True, text=True, timeout=120
    )


def test_the_recorded_runs_are_what_the_test_says(runs: dict[str, Path]) -> None:
    """Each log holds one run: its own tasks, counted from the pipeline."""
    for name in ("a", "again"):
        prefixes = replay(runs[name])["prefixes"]
        assert {p: prefixes[p]["completed"] for p in prefixes} == {
            "load": TASKS,
            "transform": TASKS,
            "total": 1,
        }
    b = replay(runs["b"])["prefixes"]
    assert b[HOSTILE]["erred"] == TASKS and b["transform"]["completed"] == TASKS


def test_the_same_pipeline_twice_is_unchanged(runs: dict[str, Path]) -> None:
    """No false regression: every prefix of a rerun is unchanged."""
    result = compare(runs["a"], runs["again"])
    assert {r["prefix"]: r["verdict"] for r in result["prefixes"]} == {
        "load": "unchanged",
        "transform": "unchanged",
        "total": "unchanged",
    }
    assert result["new_errors"] == []
    # Sleep-bound tasks: medians within a loaded machine's jitter of each other.
    for row in result["prefixes"]:
        if row["prefix"] != "total":
            assert 0.66 < row["ratios"]["p50"] < 1.5


def test_a_slower_prefix_and_a_new_failing_one_are_named(
    runs: dict[str, Path],
) -> None:
    """transform x3 is slower, the failing prefix is new with its error type
    listed first; load and total are unchanged."""
    result = compare(runs["a"], runs["b"])
    assert {r["prefix"]: r["verdict"] for r in result["prefixes"]} == {
        HOSTILE: "new",
        "transform": "slower",
        "load": "unchanged",
        "total": "unchanged",
    }
    first = result["prefixes"][0]
    assert first["prefix"] == HOSTILE and first["new_error_types"] == ["OSError"]
    assert [(e["prefix"], e["type"], e["count"]) for e in result["new_errors"]] == [
        (HOSTILE, "OSError", TASKS)
    ]
    transform = next(r for r in result["prefixes"] if r["prefix"] == "transform")
    # Measured from outside compare: the tasks slept 3x as long.
    assert 2.0 < transform["ratios"]["p50"] < 4.0
    assert transform["b"]["p50"] >= 0.24 * 0.98
    assert result["runs"]["b"]["erred"] == TASKS


def test_diff_fail_on_slower_exit_codes(runs: dict[str, Path], tmp_path: Path) -> None:
    """`diff --fail-on slower` exits 1 on a regression, 0 on a rerun; the
    table names the regression, the HTML escapes the hostile prefix."""
    same = run_cli("diff", str(runs["a"]), str(runs["again"]), "--fail-on", "slower")
    assert same.returncode == 0, same.stderr
    assert "3 unchanged" in same.stdout
    page = tmp_path / "diff.html"
    worse = run_cli(
        "diff", str(runs["a"]), str(runs["b"]), "--fail-on", "slower", "-o", str(page)
    )
    assert worse.returncode == 1, worse.stderr
    assert "slower" in worse.stdout and "transform" in worse.stdout
    assert worse.stdout.index("OSError") < worse.stdout.index("transform")
    text = page.read_text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "transform" in text


def test_diff_json_and_fail_on_errors(runs: dict[str, Path]) -> None:
    """`diff --json` prints compare()'s dict; `--fail-on errors` fails on a
    new error type only."""
    import json

    out = run_cli("diff", str(runs["a"]), str(runs["b"]), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["verdicts"]["slower"] == ["transform"]
    assert (
        run_cli(
            "diff", str(runs["b"]), str(runs["a"]), "--fail-on", "errors"
        ).returncode
        == 0
    )
    assert (
        run_cli(
            "diff", str(runs["a"]), str(runs["b"]), "--fail-on", "errors"
        ).returncode
        == 1
    )


def test_the_html_diff_in_a_browser(
    runs: dict[str, Path], tmp_path: Path, browser: Any
) -> None:
    """In Chromium the hostile prefix is text in the table, no element, no
    script run; both runs' figures are on the page."""
    page_path = tmp_path / "diff.html"
    out = run_cli("diff", str(runs["a"]), str(runs["b"]), "-o", str(page_path))
    assert out.returncode == 0, out.stderr
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(page_path.as_uri())
        assert page.locator("img").count() == 0
        cells = page.locator("td").all_inner_texts()
        assert HOSTILE in cells
        assert "slower" in cells and "new" in cells
        assert str(runs["a"]) in page.inner_text("body")
        assert dialogs == []
    finally:
        page.close()


def test_diff_thresholds_from_the_command_line(runs: dict[str, Path]) -> None:
    """`--min-ratio 5`: a 3x slower prefix is no longer called slower (exit 0)."""
    out = run_cli(
        "diff",
        str(runs["a"]),
        str(runs["b"]),
        "--fail-on",
        "slower",
        "--min-ratio",
        "5",
    )
    assert out.returncode == 0, out.stderr
    assert "slower" not in out.stdout.split("Prefixes:")[-1]


class TestRunNames:
    """A and B may be run names in a history directory (local or a URL)."""

    def test_compare_resolves_run_and_file_names(self, runs: dict[str, Path]) -> None:
        """compare("etl-a", "etl-b", directory=...) judges the same as the
        logs' paths; file names (with or without .dmlog) work too."""
        directory = runs["a"].parent
        by_path = compare(runs["a"], runs["b"])
        by_name = compare("etl-a", "etl-b", directory=directory)
        assert by_name["verdicts"] == by_path["verdicts"]
        assert by_name["verdicts"]["slower"] == ["transform"]
        assert (
            compare("a", "b.dmlog", directory=directory)["verdicts"]
            == (by_path["verdicts"])
        )

    def test_diff_resolves_run_names_in_dir(self, runs: dict[str, Path]) -> None:
        """`diff --dir DIR etl-a etl-b --fail-on slower` exits 1 naming
        transform; a rerun by name exits 0."""
        directory = str(runs["a"].parent)
        worse = run_cli(
            "diff", "--dir", directory, "etl-a", "etl-b", "--fail-on", "slower"
        )
        assert worse.returncode == 1, worse.stderr
        assert "transform" in worse.stdout and "slower" in worse.stdout
        same = run_cli("diff", "--dir", directory, "etl-a", "etl-again")
        assert same.returncode == 0, same.stderr
        assert "3 unchanged" in same.stdout

    def test_an_absent_or_shared_name_is_a_usage_error(
        self, runs: dict[str, Path], tmp_path: Path
    ) -> None:
        """A name no log has, or two logs share: exit 2 with the name and the
        directory, file names read from the directory escaped; compare()
        raises LookupError."""
        import shutil

        evil = "\x1b]0;pwned\x07x.dmlog"
        shutil.copy(runs["a"], tmp_path / "a.dmlog")
        shutil.copy(runs["a"], tmp_path / evil)
        shutil.copy(runs["b"], tmp_path / "b.dmlog")
        shared = run_cli("diff", "--dir", str(tmp_path), "etl-a", "etl-b")
        assert shared.returncode == 2, shared.stderr
        assert "2 runs named 'etl-a'" in shared.stderr
        assert str(tmp_path) in shared.stderr and "a.dmlog" in shared.stderr
        assert "\x1b" not in shared.stderr and "\\x1b]0;pwned" in shared.stderr
        assert "Traceback" not in shared.stderr
        absent = run_cli("diff", "--dir", str(tmp_path), "b", "etl-none")
        assert absent.returncode == 2, absent.stderr
        assert "no run named 'etl-none'" in absent.stderr
        assert str(tmp_path) in absent.stderr
        with pytest.raises(LookupError, match="2 runs named 'etl-a'"):
            compare("etl-a", "b", directory=tmp_path)
        # The file name tells the copies apart.
        assert compare("a", "b", directory=tmp_path)["verdicts"]["slower"] == [
            "transform"
        ]

    def test_the_record_directory_is_the_default(self, runs: dict[str, Path]) -> None:
        """Without --dir, names are looked up in Dask config
        monitor.record.directory (where runs are recorded)."""
        import os

        out = subprocess.run(
            [str(BIN / "dask-monitor"), "diff", "etl-a", "etl-again"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "DASK_MONITOR__RECORD__DIRECTORY": str(runs["a"].parent),
            },
        )
        assert out.returncode == 0, out.stderr
        assert "3 unchanged" in out.stdout
        absent = subprocess.run(
            [str(BIN / "dask-monitor"), "diff", "etl-a", "etl-none"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "DASK_MONITOR__RECORD__DIRECTORY": str(runs["a"].parent),
            },
        )
        assert absent.returncode == 2
        assert "monitor.record.directory" in absent.stderr

    def test_run_names_in_a_url_directory(
        self, runs: dict[str, Path], s3_bucket: str
    ) -> None:
        """The recorded logs put in S3: compare(directory=url) and
        `diff --dir s3://...` resolve the names there."""
        import json

        import fsspec
        from click.testing import CliRunner

        from dask_monitor.cli import main

        directory = f"{s3_bucket}/diff-runs"
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        for name in ("a", "b"):
            fs.put(str(runs[name]), f"{directory}/{name}.dmlog")
        result = compare("etl-a", "etl-b", directory=directory)
        assert result["verdicts"]["slower"] == ["transform"]
        out = CliRunner().invoke(
            main, ["diff", "--dir", directory, "etl-a", "etl-b", "--json"]
        )
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["verdicts"]["slower"] == ["transform"]
        out = CliRunner().invoke(main, ["diff", "--dir", directory, "etl-a", "x"])
        assert out.exit_code == 2 and f"no run named 'x' in {directory}" in out.output
