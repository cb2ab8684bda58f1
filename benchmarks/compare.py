"""Compare versions of dask-monitor in one replay: the same recording, interleaved.

Did a change make the scheduler's cost lower? Two runs of the replay
(``scheduler_overhead.py``) differ by 5-10% on this machine, more than most
changes, so versions are compared in one run instead: the package as it is
at each git revision is copied under another name (``dask_monitor_<rev>``,
its imports renamed), and each becomes one more variant of the replay, beside
the working tree's package, the harness alone, an empty plugin and Dask's
``TaskStreamPlugin`` + ``AllProgress``. Every variant replays the same
recorded run, in interleaved rounds.

Why renamed copies: the variants must share one process, because they replay
one recording (Dask's own ``TaskState`` objects) on one scheduler loop, round
after round; a process per revision would compare runs, not variants of one
run. In one process each version needs its own top-level name, since the
package imports itself absolutely (``from dask_monitor.batch import ...``).

A second section, ``flush``, is steadier: each version's hook takes the
recorded calls of one real run (off the loop), and then only its flushes are
timed, on the buffers its own hook filled, in interleaved rounds in this
process (no cluster busy meanwhile): what a change did to the flush, per task
of the run, without the replay's noise.

Run: ``python benchmarks/compare.py REV [REV ...] [--workloads map,array]
[--sections replay,flush] [--rounds 5] [--quick] [--json FILE]``, e.g.
``python benchmarks/compare.py HEAD~3``. Figures: µs per task (above the
harness alone for the replay, as in ``scheduler_overhead.py``).
"""

from __future__ import annotations

import gc
import importlib
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import scheduler_overhead as so
from common import Report, interleave, parse_args
from dask_monitor.pipeline import Pipeline

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


def plugin_module(name: str) -> Any:
    """The plugin's module of the package copied as ``name``: it moved into
    ``scheduler/`` (older revisions have it at the top)."""
    try:
        return importlib.import_module(f"{name}.scheduler.plugin")
    except ModuleNotFoundError:
        return importlib.import_module(f"{name}.plugin")


def own_defaults(plugin: Any, package: Path) -> Any:
    """``plugin`` made under its own version's ``monitor.*`` defaults: Dask's
    config holds the working tree's, whose newer settings an older version
    refuses as unknown."""
    import dask.config
    import yaml

    defaults = yaml.safe_load((package / "monitor.yaml").read_text())["monitor"]

    class Versioned(plugin):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            with dask.config.set({"monitor": defaults}):
                super().__init__(*args, **kwargs)

    return Versioned


def _extra(parser: Any) -> None:
    parser.add_argument("revisions", nargs="+", help="git revisions to compare")
    parser.add_argument(
        "--workloads", default="map,array,dataframe", help="comma-separated workloads"
    )
    parser.add_argument(
        "--sections", default="replay,flush", help="replay, flush, or both"
    )


def flush_seconds(
    plugin_class: Any, pipeline_class: Any, buffers: Any
) -> tuple[float, int]:
    """Thread CPU time of a fresh plugin's flushes of ``buffers``, and the
    number of events they made."""
    plugin = plugin_class()
    plugin.pipeline = pipeline_class(plugin.config)
    t0 = time.thread_time()
    for buffered in buffers:
        so.put_buffered(plugin, buffered)
        plugin.flush()
    return time.thread_time() - t0, plugin.pipeline.events


def bench_flush(
    bench: Any,
    report: Report,
    workload: str,
    size: int,
    rounds: int,
    versions: dict[str, tuple[Any, Any]],
) -> None:
    """Each version's flushes of one recorded run, timed in interleaved rounds."""
    so.WORKLOADS[workload](bench.client, min(size, 100))  # warm up
    bench.drained()
    recording = bench.record(workload, size)
    n = recording.tasks
    buffers = {
        name: so.hook_buffers(bench, recording, v[0]) for name, v in versions.items()
    }
    gc.collect()
    gc.freeze()
    try:
        results = interleave(
            {
                name: (lambda name=name, v=v: flush_seconds(v[0], v[1], buffers[name]))
                for name, v in versions.items()
            },
            rounds,
        )
    finally:
        gc.unfreeze()
    base = statistics.median(t for t, _ in results["dask-monitor"])
    for name, runs in results.items():
        seconds = [t for t, _ in runs]
        events = runs[0][1]
        change = statistics.median(seconds) / base - 1 if base else 0.0
        report.add(
            f"{workload}: flush {name}",
            [t / n * 1e6 for t in seconds],
            "µs/task",
            note=f"{events} events for {n} tasks; {100 * change:+.0f}% "
            "against the working tree",
        )


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv, _extra)
    report = Report("compare", args.quick)
    sizes = so.QUICK_SIZES if args.quick else so.FULL_SIZES
    if args.quick:
        so.quick_interval()
    current = so.MonitorPlugin
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        versions: dict[str, Any] = {}
        pipelines: dict[str, Any] = {}
        for rev in args.revisions:
            name = materialise(rev, Path(tmp))
            plugin = own_defaults(plugin_module(name).MonitorPlugin, Path(tmp) / name)
            label = f"dask-monitor at {rev} ({name[13:]})"
            versions[label] = plugin
            pipelines[label] = importlib.import_module(f"{name}.pipeline").Pipeline
        sections = set(args.sections.split(","))
        so.REPLAY_VARIANTS = (
            "harness only",
            "empty plugin",
            "dask-monitor",
            *versions,
            "TaskStream+AllProgress",
        )
        replay = so.replay

        def replay_version(
            bench: Any, recording: Any, variant: str, profiler: Any = None
        ) -> Any:
            plugin = versions.get(variant)
            if plugin is None:
                return replay(bench, recording, variant, profiler)
            so.MonitorPlugin = plugin
            try:
                return replay(bench, recording, "dask-monitor", profiler)
            finally:
                so.MonitorPlugin = current

        so.replay = replay_version
        flushed = {"dask-monitor": (current, Pipeline)} | {
            label: (plugin, pipelines[label]) for label, plugin in versions.items()
        }
        bench = so.Bench()
        try:
            for workload in args.workloads.split(","):
                size = sizes[workload]
                if "replay" in sections:
                    so.bench_replay(bench, report, workload, size, args.rounds)
                if "flush" in sections:
                    bench_flush(bench, report, workload, size, args.rounds, flushed)
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
