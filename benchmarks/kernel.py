"""Lever 3 of issue 20, measured: what would compiling the flush's hot modules save?

The same source, compiled: the working tree's package is copied under another
name (``dask_monitor_kernel``, its imports renamed, as ``compare.py`` does for
revisions) into a temporary folder, and the chosen modules of the copy are
compiled there, by Cython in pure-Python mode (``cythonize`` of the ``.py``
files as they are, no ``.pxd``) or by mypyc. Nothing is built in the
repository. Both packages then take the batches of one recorded real run (each
from its own plugin's hook, off the loop, as ``scheduler_overhead.py
--sections costs`` does), and each part of the flush (the conversion, every
default observer and rule) and the whole ``flush()`` are timed with the
thread's CPU clock, the two variants interleaved round after round. Reported:
ns per event of each part, interpreted and compiled, and their ratio; and the
build's wall and CPU seconds.

Which modules: ``--modules batch,scheduler.buffer`` (the default: the batch's
columns and index, and the conversion), ``observers.progress`` next (the most
costly observer). Which tool: ``--tool cython`` or ``mypyc`` (default ``auto``:
Cython when it is installed, else mypyc); with neither, or no C compiler, the
script reports that and measures nothing.

``--build-only DIR`` builds the package under its own name into ``DIR`` and
stops: ``PYTHONPATH=DIR pytest tests/test_batch.py`` then runs the tests on
the compiled modules, and ``PYTHONPATH=DIR python benchmarks/compare.py HEAD
--sections flush`` compares the compiled working tree against the interpreted
revision in one interleaved run.

Run: ``python benchmarks/kernel.py [--quick] [--tool cython|mypyc]
[--modules batch,scheduler.buffer] [--workloads map,array,dataframe]
[--rounds 5] [--json FILE]``.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import re
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import scheduler_overhead as so
from common import Report, interleave, parse_args

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "dask_monitor"
COPY = "dask_monitor_kernel"
DEFAULT_MODULES = "batch,scheduler.buffer"

#: Cython's directives. ``annotation_typing=False``: Cython takes ``dict`` and
#: ``list`` annotations as exact types and raises ``TypeError`` for a
#: subclass (``ProgressObserver`` hands a ``defaultdict`` to a ``dict[str,
#: int]`` parameter); the interpreted package accepts it, so must the
#: compiled one.
CYTHON_DIRECTIVES = ("annotation_typing=False",)

#: mypy settings for mypyc in the build folder: the project's own (strict) are
#: for checking, not compiling. ``follow_imports = skip``: what the compiled
#: modules import (dask, distributed, the rest of the package) is taken as
#: ``Any`` instead of being analysed: without it mypyc had not finished two
#: modules after 20 minutes here (see docs/performance-history.md).
MYPY_INI = "[mypy]\nignore_missing_imports = True\nfollow_imports = skip\n"

#: Edits mypyc needs in the copy, by module: (text, replacement). mypyc
#: infers ``None`` for locals that mypy types ``str | None`` from a tuple
#: unpacked in a loop, and refuses to compile without annotations.
MYPYC_EDITS = {
    "scheduler.buffer": [
        (
            "        raw = batch.keys\n        for i in rows:\n",
            "        raw = batch.keys\n        exception: str | None\n"
            "        traceback: str | None\n        for i in rows:\n",
        )
    ]
}


def missing(tool: str) -> str | None:
    """Why ``tool`` cannot build here (``None``: it can)."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Python.h)"
    module = {"cython": "Cython", "mypyc": "mypyc"}[tool]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    return None


def choose(tool: str) -> tuple[str | None, str]:
    """The tool to build with, or ``None`` and why none can."""
    if tool != "auto":
        reason = missing(tool)
        return (None, reason) if reason else (tool, "")
    reasons = []
    for candidate in ("cython", "mypyc"):
        reason = missing(candidate)
        if reason is None:
            return candidate, ""
        reasons.append(f"{candidate}: {reason}")
    return None, "; ".join(reasons)


def copy_package(where: Path, name: str) -> Path:
    """The working tree's package copied to ``where/name``, imports renamed."""
    target = where / name
    shutil.copytree(
        SOURCE, target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c")
    )
    if name != "dask_monitor":
        word = re.compile(r"\bdask_monitor\b")
        for path in target.rglob("*.py"):
            path.write_text(word.sub(name, path.read_text()))
    return target


def build(
    tool: str,
    modules: list[str],
    where: Path,
    name: str,
    directives: tuple[str, ...] = (),
) -> dict[str, float]:
    """Copy the package to ``where/name`` and compile ``modules`` of it there
    (``directives``: Cython's, beyond :data:`CYTHON_DIRECTIVES`).

    Returns the build's wall seconds and its processes' CPU seconds. A failed
    build raises ``RuntimeError`` with the tool's output.
    """
    copy_package(where, name)
    files = [f"{name}/{m.replace('.', '/')}.py" for m in modules]
    if tool == "cython":
        cmd = [sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3"]
        cmd += [f"-X{d}" for d in (*CYTHON_DIRECTIVES, *directives)] + files
    else:
        (where / "mypy.ini").write_text(MYPY_INI)
        for module, file in zip(modules, files, strict=True):
            path = where / file
            text = path.read_text()
            for old, new in MYPYC_EDITS.get(module, ()):
                if old not in text:
                    raise RuntimeError(f"{module}: the mypyc edit no longer applies")
                text = text.replace(old, new)
            path.write_text(text)
        cmd = [sys.executable, "-m", "mypyc", "--config-file", "mypy.ini", *files]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=where, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} build failed:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def compiled(name: str, modules: list[str]) -> list[str]:
    """The modules of package ``name`` that did not load from an extension."""
    suffixes = (".so", ".pyd")
    return [
        m
        for m in modules
        if not str(importlib.import_module(f"{name}.{m}").__file__).endswith(suffixes)
    ]


def variant(name: str) -> tuple[Any, Any]:
    """The plugin and pipeline classes of package ``name``."""
    plugin = importlib.import_module(f"{name}.scheduler.plugin").MonitorPlugin
    pipeline = importlib.import_module(f"{name}.pipeline").Pipeline
    return plugin, pipeline


def bench_workload(
    bench: Any,
    report: Report,
    workload: str,
    size: int,
    rounds: int,
    versions: dict[str, tuple[Any, Any]],
) -> None:
    """Both variants' flush parts on one recorded run, interleaved."""
    so.WORKLOADS[workload](bench.client, min(size, 100))  # warm up
    bench.drained()
    recording = bench.record(workload, size)
    interval = so.MonitorPlugin().config.interval
    buffers = {
        label: so.hook_buffers(bench, recording, classes[0])
        for label, classes in versions.items()
    }
    events = sum(map(so.buffered_events, next(iter(buffers.values()))))
    print(f"[kernel {workload}] {events} events in {len(recording.cuts)} flushes")
    gc.collect()
    gc.freeze()
    try:
        results = interleave(
            {
                label: (
                    lambda label=label, c=classes: so.flush_costs(
                        c[0], c[1], buffers[label], interval
                    )
                )
                for label, classes in versions.items()
            },
            rounds,
        )
    finally:
        gc.unfreeze()
    interpreted, built = results
    for part in results[interpreted][0]:
        base = [r[part] / events * 1e9 for r in results[interpreted]]
        fast = [r[part] / events * 1e9 for r in results[built]]
        # Ratio per round (the two ran side by side), then the median.
        ratio = statistics.median(
            f / b if b else 1.0 for f, b in zip(fast, base, strict=True)
        )
        report.add(f"{workload}: {part} interpreted", base, "ns/event")
        saved = statistics.median(base) - statistics.median(fast)
        report.add(
            f"{workload}: {part} compiled",
            fast,
            "ns/event",
            note=f"x{ratio:.2f} of interpreted ({saved:+.0f} ns/event saved)",
        )


def _extra(parser: Any) -> None:
    parser.add_argument("--tool", default="auto", choices=("auto", "cython", "mypyc"))
    parser.add_argument(
        "--modules",
        default=DEFAULT_MODULES,
        help="modules of the package to compile, comma-separated "
        "(e.g. batch,scheduler.buffer,observers.progress)",
    )
    parser.add_argument(
        "--workloads", default="map,array,dataframe", help="comma-separated workloads"
    )
    parser.add_argument(
        "--directive",
        default="",
        help="more Cython directives, comma-separated (e.g. infer_types=True)",
    )
    parser.add_argument(
        "--build-only",
        default=None,
        metavar="DIR",
        help="build the package under its own name into DIR (for PYTHONPATH) and stop",
    )


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv, _extra)
    report = Report("kernel", args.quick)
    modules = [m for m in args.modules.split(",") if m]
    directives = tuple(d for d in args.directive.split(",") if d)
    tool, why = choose(args.tool)
    if tool is None:
        report.note(f"nothing measured: no build tool ({why})")
        return report.finish(args)
    if args.build_only:
        where = Path(args.build_only)
        where.mkdir(parents=True, exist_ok=True)
        seconds = build(tool, modules, where, "dask_monitor", directives)
        report.add(
            f"build ({tool}: {', '.join(modules)}), wall", [seconds["wall"]], "s"
        )
        report.add(f"build ({tool}), CPU", [seconds["cpu"]], "s")
        report.note(f"PYTHONPATH={where} imports the compiled package")
        return report.finish(args)
    sizes = so.QUICK_SIZES if args.quick else so.FULL_SIZES
    if args.quick:
        so.quick_interval()
    with tempfile.TemporaryDirectory(prefix="dask-monitor-kernel-") as tmp:
        seconds = build(tool, modules, Path(tmp), COPY, directives)
        report.add(
            f"build ({tool}: {', '.join(modules)}), wall", [seconds["wall"]], "s"
        )
        report.add(f"build ({tool}), CPU", [seconds["cpu"]], "s")
        sys.path.insert(0, tmp)
        try:
            not_built = compiled(COPY, modules)
            if not_built:
                raise RuntimeError(f"not loaded compiled: {not_built}")
            versions = {
                "interpreted": (
                    so.MonitorPlugin,
                    importlib.import_module("dask_monitor.pipeline").Pipeline,
                ),
                f"compiled ({tool})": variant(COPY),
            }
            bench = so.Bench()
            try:
                for workload in args.workloads.split(","):
                    bench_workload(
                        bench, report, workload, sizes[workload], args.rounds, versions
                    )
            finally:
                bench.close()
        finally:
            sys.path.remove(tmp)
    report.note(
        f"the same source, {tool} compiled ({', '.join(modules)}) against "
        "interpreted, on the same recorded run, interleaved rounds; thread CPU "
        "per event of the recorded run's batches"
    )
    return report.finish(args)


if __name__ == "__main__":
    main()
