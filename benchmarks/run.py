"""Run every benchmark and print (and write) one markdown table of the results.

Each benchmark runs as its own process (``python benchmarks/<name>.py``), one
after the other, so that none disturbs another. The combined report goes to
stdout and to ``benchmarks/results/results.md`` (``--out`` to change), with
the JSON reports beside it.

Run: ``python benchmarks/run.py [--quick] [--only hot_path,flush] [--out DIR]``
(``make bench``); ``--combine`` makes the table of the JSON reports already in
the folder (e.g. of benchmarks run one by one with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: In the order they run: quick ones first.
BENCHMARKS = (
    "hot_path",
    "flush",
    "flush_interval",
    "panel_update",
    "memory",
    "client_side",
    "eta_accuracy",
    "scheduler_overhead",
)


def run_one(name: str, quick: bool, out: Path, extra: list[str]) -> dict[str, Any]:
    report = out / f"{name}.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(report), *extra]
    if quick:
        cmd.append("--quick")
    print(f"$ {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0 or not report.exists():
        return {
            "benchmark": name,
            "failed": proc.returncode,
            "seconds": time.perf_counter() - t0,
        }
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def markdown(reports: list[dict[str, Any]]) -> str:
    from common import Figure, Goal, Report, fmt

    lines: list[str] = []
    goals: list[tuple[str, Goal]] = []
    machine = next((r["machine"] for r in reports if "machine" in r), {})
    if machine:
        lines.append(
            f"Machine: {machine['cpus']} cores, Python {machine['python']}, "
            f"distributed {machine['distributed']}, {machine['date']}.\n"
        )
    for data in reports:
        if "machine" in data:
            m = data["machine"]
            lines.append(
                f"- {data['benchmark']}: source digest {m.get('src', '?')}, "
                f"load average at the start {m.get('load', float('nan')):.1f}"
            )
    lines.append("")
    for data in reports:
        if "failed" in data:
            lines.append(f"### {data['benchmark']}\n\nFAILED (exit {data['failed']})\n")
            continue
        report = Report(data["benchmark"], data["quick"])
        report.figures = [
            Figure(f["name"], f["unit"], f["values"], f["note"])
            for f in data["figures"]
        ]
        report.goals = [
            Goal(g["text"], g["value"], g["limit"], g["unit"], g["higher_is_better"])
            for g in data["goals"]
        ]
        report.notes = data["notes"]
        lines.append(report.markdown())
        goals += [(data["benchmark"], g) for g in report.goals]
    if goals:
        lines += ["### Goals", "", "| benchmark | goal | measured | limit | met |"]
        lines.append("| --- | --- | ---: | ---: | --- |")
        for name, g in goals:
            lines.append(
                f"| {name} | {g.text} | {fmt(g.value)} {g.unit} | {fmt(g.limit)} "
                f"{g.unit} | {'yes' if g.met else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default=str(HERE / "results"), help="output folder")
    parser.add_argument(
        "--combine",
        action="store_true",
        help="run nothing: combine the JSON reports already in the output folder",
    )
    args, extra = parser.parse_known_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        reports = [
            json.loads(path.read_text())
            for name in names
            for path in sorted(out.glob(f"{name}*.json"))
            # flush*.json is not flush_interval.json: that one is its own
            if path.stem == name or path.stem not in BENCHMARKS
        ]
    else:
        reports = [run_one(name, args.quick, out, extra) for name in names]
    text = markdown(reports)
    (out / "results.md").write_text(text)
    print()
    print(text)
    print(f"written to {out / 'results.md'}")
    return 1 if any("failed" in r for r in reports) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
