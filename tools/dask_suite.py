#!/usr/bin/env python3
"""Run part of distributed's own test suite plain and with dask-monitor preloaded.

Every test that passes plain and fails with ``dask_monitor`` preloaded on
every scheduler (``DASK_DISTRIBUTED__SCHEDULER__PRELOAD='["dask_monitor"]'``)
is either a defect of dask-monitor or a test that asserts an exact set of
plugins, handlers or periodic callbacks: see docs/reliability.md, "Dask's own
test suite".

Usage::

    python tools/dask_suite.py --src /work/distributed-src \\
        --python /work/dsuite-venv/bin/python [--out /tmp/dask-suite]

``--src`` is a distributed source tree of the installed version, with its
tests (the PyPI sdist leaves the tests out: see docs/reliability.md for how
the tree was made). ``--python`` is a venv's python with distributed, dask,
pytest, pytest-timeout, pytest-rerunfailures and dask-monitor's dependencies
(not dask-monitor itself: it is taken from ``--monitor-src``, this worktree's
``src`` by default, on ``PYTHONPATH`` of the preloaded run only).

Steps:

1. check that the preload is active: a LocalCluster started under the env var
   has the ``dask-monitor`` plugin (exits 2 if not);
2. run the tests plain, then preloaded (``--parallel``: both at once), each
   with a per-test timeout and a JUnit XML report;
3. run again, one after the other and each mode alone, the tests whose
   outcome differs (``--confirm``, on by default), to tell flakes from
   differences;
4. print the counts and the tests that pass plain and fail preloaded.

Nothing here talks to anything but 127.0.0.1 (distributed's tests listen on
loopback; ``DASK_DISTRIBUTED__SCHEDULER__...`` is the only setting changed).
This is not part of ``make test``: one run takes 10-20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

DEFAULT_TESTS = [
    "distributed/diagnostics/tests/",
    "distributed/tests/test_scheduler.py",
    "distributed/tests/test_worker.py::test_log_remove_worker",
]

#: ``--extended`` adds these: the rest of test_worker.py, the dashboard and
#: HTTP routes (the monitor adds pages and Prometheus metrics), LocalCluster,
#: the active memory manager, spans, preloads and work stealing.
EXTENDED = [
    "distributed/tests/test_worker.py",
    "distributed/dashboard/tests/",
    "distributed/http/",
    "distributed/deploy/tests/test_local.py",
    "distributed/tests/test_active_memory_manager.py",
    "distributed/tests/test_spans.py",
    "distributed/tests/test_preload.py",
    "distributed/tests/test_steal.py",
]

#: Tests left out always: they bind to every interface and connect to the
#: machine's own non-loopback address (no packet leaves the machine, but
#: these runs stay on 127.0.0.1).
DESELECT = [
    "distributed/deploy/tests/test_local.py::test_only_local_access",
    "distributed/deploy/tests/test_local.py::test_remote_access",
    "distributed/deploy/tests/test_local.py::test_local_tls",
    "distributed/deploy/tests/test_local.py::test_capture_security",
    "distributed/tests/test_worker.py::test_service_hosts_match_worker",
    "distributed/tests/test_scheduler.py::test_dashboard_host",
]

PRELOAD = {"DASK_DISTRIBUTED__SCHEDULER__PRELOAD": '["dask_monitor"]'}

CHECK = """
import distributed, dask_monitor
from distributed import LocalCluster
print("distributed", distributed.__version__, distributed.__file__)
print("dask_monitor", dask_monitor.__file__)
# processes=False: the inproc transport, no socket at all
with LocalCluster(n_workers=1, processes=False,
                  dashboard_address="127.0.0.1:0") as cluster:
    plugins = sorted(cluster.scheduler.plugins)
    print("plugins", plugins)
    assert "dask-monitor" in cluster.scheduler.plugins, plugins
print("preload active")
"""

Outcome = str  # "passed", "failed", "error", "skipped"


def _env(args: argparse.Namespace, preload: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DASK_") and k != "PYTHONPATH"
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(args.src)  # the source tree, consistently
    if preload:
        env.update(PRELOAD)
        env["PYTHONPATH"] += os.pathsep + str(args.monitor_src)
    return env


def check_preload(args: argparse.Namespace) -> None:
    """Fail unless a scheduler started under the env var runs the plugin."""
    proc = subprocess.run(
        [args.python, "-c", CHECK],
        env=_env(args, preload=True),
        cwd=args.src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(proc.stdout, end="")
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        sys.exit("the preload is not active: no comparison possible")
    expected = str(Path(args.src) / "distributed")
    if expected not in proc.stdout:
        sys.exit(f"distributed is not imported from {expected}")


def pytest_cmd(args: argparse.Namespace, tests: list[str], xml: Path) -> list[str]:
    return [
        args.python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "timeout_method=signal",  # 'thread' (their default) ends the whole run
        f"--timeout={args.timeout}",
        "-q",
        "-rA",
        "--color=no",
        "--durations=0" if args.durations else "--durations=5",
        f"--junitxml={xml}",
        *(f"--deselect={t}" for t in DESELECT),
        *args.pytest_args,
        *tests,
    ]


def start(args: argparse.Namespace, name: str, tests: list[str], preload: bool):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xml = out / f"{name}.xml"
    log = open(out / f"{name}.log", "w")  # noqa: SIM115 - closed by the caller
    cmd = pytest_cmd(args, tests, xml)
    log.write(("PRELOAD " if preload else "PLAIN ") + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(
        cmd,
        env=_env(args, preload),
        cwd=args.src,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, log, xml


def run(args: argparse.Namespace, jobs: list[tuple[str, list[str], bool]]):
    """Run the jobs (name, tests, preload), in parallel or one after the other;
    their outcomes by name."""
    results: dict[str, dict[str, Outcome]] = {}
    pending = list(jobs)
    running = []
    while pending or running:
        while pending and (args.parallel or not running):
            name, tests, preload = pending.pop(0)
            t0 = time.monotonic()
            running.append((name, t0, *start(args, name, tests, preload)))
        name, t0, proc, log, xml = running.pop(0)
        proc.wait()
        log.close()
        print(f"{name}: exit {proc.returncode} in {time.monotonic() - t0:.0f} s")
        results[name] = read_junit(xml)
    return results


def read_junit(xml: Path) -> dict[str, Outcome]:
    """Outcome per test id (``path::name``) from a JUnit XML report."""
    if not xml.exists():
        return {}
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        classname = case.get("classname", "")
        parts = classname.split(".")
        # distributed.tests.test_scheduler[.Class] -> path (and class)
        path_parts = []
        for i, part in enumerate(parts):
            path_parts.append(part)
            if part.startswith("test_"):
                rest = parts[i + 1 :]
                break
        else:
            rest = []
        tid = "/".join(path_parts) + ".py::" + "::".join([*rest, case.get("name", "")])
        tags = {child.tag for child in case}
        if "failure" in tags:
            outcome = "failed"
        elif "error" in tags:
            outcome = "error"
        elif "skipped" in tags:
            outcome = "skipped"
        else:
            outcome = "passed"
        # An error in teardown after a pass is reported as a second testcase.
        if tid in outcomes and outcomes[tid] != "passed":
            continue
        outcomes[tid] = outcome
    return outcomes


def counts(outcomes: dict[str, Outcome]) -> dict[str, int]:
    c: dict[str, int] = {}
    for o in outcomes.values():
        c[o] = c.get(o, 0) + 1
    return dict(sorted(c.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, type=Path, help="distributed source tree")
    p.add_argument("--python", required=True, help="the venv's python")
    p.add_argument(
        "--monitor-src",
        type=Path,
        default=HERE / "src",
        help="where dask_monitor is imported from (default: this checkout's src)",
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/dask-suite"))
    p.add_argument("--timeout", type=int, default=120, help="per test, seconds")
    p.add_argument("--parallel", action="store_true", help="both runs at once")
    p.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        help="do not rerun the differing tests",
    )
    p.add_argument("--durations", action="store_true")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="read the reports of an earlier run in --out instead of running",
    )
    p.add_argument(
        "--extended", action="store_true", help="add the EXTENDED test files"
    )
    p.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    p.add_argument("--pytest-args", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args()
    args.src = args.src.resolve()
    args.monitor_src = args.monitor_src.resolve()
    if args.extended:
        args.tests = [
            *args.tests,
            *(t for t in EXTENDED if t not in args.tests),
        ]

    check_preload(args)
    if args.reuse:
        results = {
            name: read_junit(args.out / f"{name}.xml") for name in ("plain", "preload")
        }
    else:
        results = run(
            args,
            [("plain", args.tests, False), ("preload", args.tests, True)],
        )
    plain, pre = results["plain"], results["preload"]
    print("ran:", " ".join(args.tests))
    print("plain:  ", counts(plain))
    print("preload:", counts(pre))
    bad = {"failed", "error"}
    differ = sorted(
        t
        for t in set(plain) | set(pre)
        if plain.get(t) == "passed" and pre.get(t) in bad
    )
    better = sorted(
        t
        for t in set(plain) | set(pre)
        if plain.get(t) in bad and pre.get(t) == "passed"
    )
    print(f"pass plain, fail preloaded (first runs): {len(differ)}")
    for t in differ:
        print("  ", t)
    if better:
        print(f"fail plain, pass preloaded (first runs; flakes?): {len(better)}")
        for t in better:
            print("  ", t)
    confirmed = differ
    if args.confirm and differ:
        again = run(
            argparse.Namespace(**{**vars(args), "parallel": False}),
            [("plain-again", differ, False), ("preload-again", differ, True)],
        )
        confirmed = [
            t
            for t in differ
            if again["plain-again"].get(t) == "passed"
            and again["preload-again"].get(t) in bad
        ]
        print(f"confirmed on a second run, one mode at a time: {len(confirmed)}")
        for t in confirmed:
            print("  ", t)
        for t in sorted(set(differ) - set(confirmed)):
            print(
                "   not confirmed:",
                t,
                again["plain-again"].get(t),
                again["preload-again"].get(t),
            )
    summary = {
        "tests": args.tests,
        "plain": counts(plain),
        "preload": counts(pre),
        "differ": differ,
        "confirmed": confirmed,
        "better": better,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"reports and logs: {args.out}")


if __name__ == "__main__":
    main()
