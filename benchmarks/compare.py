"""Compare versions of dask-monitor in one replay: the same recording, interleaved.

Did a change make the scheduler's cost lower? Two runs of the replay
(``scheduler_overhead.py``) differ by 5-10% on this machine, more than most
changes, so versions are compared in one run instead: the package as it is
at each git revision is copied under another name (``dask_monitor_<rev>``,
its imports renamed), and each becomes one more variant of the replay, beside
the working tree's package, the harness alone, an empty plugin and Dask's
``TaskStreamPlugin`` + ``AllProgress``. Every variant replays the same
recorded run, in interleaved rounds.

Run: ``python benchmarks/compare.py REV [REV ...] [--workloads map,array]
[--rounds 5] [--quick] [--json FILE]``, e.g. ``python benchmarks/compare.py
HEAD~3``. Figures: µs per task above the harness alone, as in the replay.
"""

from __future__ import annotations

import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import scheduler_overhead as so
from common import Report, parse_args

ROOT = Path(__file__).resolve().parent.parent


def materialise(rev: str, where: Path) -> str:
    """The package at ``rev``, importable as ``dask_monitor_<sha>``; its name."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=10", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    name = f"dask_monitor_{sha}"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", sha, "src/dask_monitor"],
        check=True,
        capture_output=True,
    ).stdout
    word = re.compile(r"\bdask_monitor\b")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            path = where / name / Path(member.name).relative_to("src/dask_monitor")
            path.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if path.suffix == ".py":
                data = word.sub(name, data.decode()).encode()
            path.write_bytes(data)
    return name


def _extra(parser: Any) -> None:
    parser.add_argument("revisions", nargs="+", help="git revisions to compare")
    parser.add_argument(
        "--workloads", default="map,array,dataframe", help="comma-separated workloads"
    )


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv, _extra)
    report = Report("compare", args.quick)
    sizes = so.QUICK_SIZES if args.quick else so.FULL_SIZES
    current = so.MonitorPlugin
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        versions: dict[str, Any] = {}
        for rev in args.revisions:
            name = materialise(rev, Path(tmp))
            plugin = importlib.import_module(f"{name}.plugin").MonitorPlugin
            versions[f"dask-monitor at {rev} ({name[13:]})"] = plugin
        so.REPLAY_VARIANTS = (
            "harness only",
            "empty plugin",
            "dask-monitor",
            *versions,
            "TaskStream+AllProgress",
        )
        replay = so.replay

        def replay_version(
            bench: Any, recording: Any, variant: str, batch: int, profiler: Any = None
        ) -> Any:
            plugin = versions.get(variant)
            if plugin is None:
                return replay(bench, recording, variant, batch, profiler)
            so.MonitorPlugin = plugin
            try:
                return replay(bench, recording, "dask-monitor", batch, profiler)
            finally:
                so.MonitorPlugin = current

        so.replay = replay_version
        bench = so.Bench()
        try:
            for workload in args.workloads.split(","):
                so.bench_replay(bench, report, workload, sizes[workload], args.rounds)
        finally:
            bench.close()
            so.replay = replay
    report.note(
        "'dask-monitor' is the working tree; each revision's package is copied "
        "under another name and replayed as one more variant of the same run"
    )
    return report.finish(args)


if __name__ == "__main__":
    main()
