"""Helpers shared by the benchmark scripts: arguments, rounds, statistics, output.

Every script builds a :class:`Report`: figures (a name, a unit and the values of
all rounds), goals (a figure against a limit from the benchmarks issue) and
notes. ``Report.finish()`` prints a markdown table and writes the report as
JSON: to ``--json PATH`` when given, else (full runs only) to a new file in
``benchmarks/results/`` named by :func:`result_path`. Result files are written
by the scripts, one per run, and never edited: ``benchmarks/run.py --combine``
reads the newest one of each benchmark.

Also here: fake scheduler task states (plain namespaces with the attributes the
plugins read) and the synthetic task life cycle the hot-path, flush and memory
benchmarks share, so that they measure the same realistic calls.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from distributed.diagnostics.plugin import SchedulerPlugin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Where full runs write their reports, one file per run.
RESULTS = HERE / "results"
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

T = TypeVar("T")

__all__ = [
    "EmptyPlugin",
    "Figure",
    "Goal",
    "NaiveMonitor",
    "Report",
    "fake_groups",
    "fake_tasks",
    "interleave",
    "lifecycle_calls",
    "machine",
    "parse_args",
    "result_path",
    "rss_bytes",
]


# -- figures and reports ---------------------------------------------------------------


@dataclass
class Figure:
    """One measured quantity: the values of every round, in one unit."""

    name: str
    unit: str
    values: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "n": len(self.values),
            "values": self.values,
            "note": self.note,
        }


@dataclass
class Goal:
    """A goal of the benchmarks issue and whether the measured figure meets it."""

    text: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = False

    @property
    def met(self) -> bool:
        if self.higher_is_better:
            return self.value >= self.limit
        return self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "value": self.value,
            "limit": self.limit,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "met": self.met,
        }


def fmt(value: float) -> str:
    """A number with three significant digits, thousands separated."""
    if value != value:  # nan
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


@dataclass
class Report:
    """What one benchmark script measured."""

    benchmark: str
    quick: bool
    figures: list[Figure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(
        self, name: str, values: Sequence[float], unit: str, note: str = ""
    ) -> Figure:
        """Record a figure (all rounds' values) and print it at once."""
        figure = Figure(name, unit, [float(v) for v in values], note)
        self.figures.append(figure)
        spread = f"{fmt(figure.low)}-{fmt(figure.high)}" if len(values) > 1 else ""
        print(
            f"  {name}: {fmt(figure.median)} {unit}"
            + (f" (min-max {spread}, n={len(values)})" if spread else "")
            + (f"  [{note}]" if note else ""),
            flush=True,
        )
        return figure

    def goal(
        self,
        text: str,
        value: float,
        limit: float,
        unit: str,
        *,
        higher_is_better: bool = False,
    ) -> Goal:
        """Record a goal with the measured value."""
        goal = Goal(text, value, limit, unit, higher_is_better)
        self.goals.append(goal)
        print(
            f"  goal: {text}: {fmt(value)} {unit} (limit {fmt(limit)}): "
            + ("met" if goal.met else "NOT met"),
            flush=True,
        )
        return goal

    def note(self, text: str) -> None:
        """Record a remark (a skipped variant, a caveat) and print it."""
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def markdown(self) -> str:
        """The figures and goals as markdown tables."""
        lines = [
            f"### {self.benchmark}" + (" (quick)" if self.quick else ""),
            "",
            "| figure | median | min-max | n | unit |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for f in self.figures:
            lines.append(
                f"| {f.name} | {fmt(f.median)} | {fmt(f.low)}-{fmt(f.high)} "
                f"| {len(f.values)} | {f.unit} |"
            )
        if self.goals:
            lines += [
                "",
                "| goal | measured | limit | met |",
                "| --- | ---: | ---: | --- |",
            ]
            for g in self.goals:
                lines.append(
                    f"| {g.text} | {fmt(g.value)} {g.unit} | {fmt(g.limit)} {g.unit} "
                    f"| {'yes' if g.met else '**no**'} |"
                )
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "quick": self.quick,
            "machine": machine(),
            "argv": sys.argv[1:],
            "started": self.started,
            "seconds": time.time() - self.started,
            "figures": [f.to_dict() for f in self.figures],
            "goals": [g.to_dict() for g in self.goals],
            "notes": self.notes,
        }

    def finish(self, args: argparse.Namespace) -> Report:
        """Print the tables and write the JSON report.

        To ``--json PATH`` when given; otherwise a full run writes a new file
        in ``benchmarks/results/`` (:func:`result_path`) and a quick run,
        whose figures mean nothing, writes none.
        """
        print()
        print(self.markdown(), flush=True)
        path = getattr(args, "json", None)
        if path is None and not self.quick:
            path = result_path(self.benchmark)
        if path is not None:
            Path(path).write_text(json.dumps(self.to_dict(), indent=1))
            print(f"report written to {path}", flush=True)
        return self


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The arguments every script takes: ``--quick``, ``--rounds``, ``--json``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: seconds, for smoke tests"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds (default: 5, quick: 2)"
    )
    parser.add_argument(
        "--json",
        default=None,
        help="write the report to this file (default: a new file in "
        "benchmarks/results/ for a full run, none for a quick one)",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    return args


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    try:
        import distributed

        dask_version = distributed.__version__
    except ImportError:  # pragma: no cover
        dask_version = "?"
    commit, dirty = git_revision()
    return {
        "src": src_digest(),
        "commit": commit,
        "dirty": dirty,
        "load": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "distributed": dask_version,
        "date": datetime.date.today().isoformat(),
    }


def src_digest() -> str:
    """A short digest of the package's source: which code the figures are of."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "src" / "dask_monitor").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def git_revision() -> tuple[str, bool]:
    """HEAD's short commit, and whether ``src/`` or ``benchmarks/`` differ from it.

    Only tracked files count as a difference: result files written by a run
    do not make the next run's tree dirty. Outside a git checkout the commit
    is ``"nogit"``.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "nogit", False
    status = git(
        "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks"
    )
    return head.stdout.strip(), bool(status.stdout.strip())


def result_path(
    benchmark: str,
    folder: Path = RESULTS,
    today: datetime.date | None = None,
    revision: tuple[str, bool] | None = None,
) -> Path:
    """A new file for one run's report: ``<date>-<commit>[-dirty]-<benchmark>.json``.

    The date is today's, the commit HEAD's short hash, and ``-dirty`` says
    the measured code (``src/`` or ``benchmarks/``) had uncommitted changes.
    A second run of the same day and commit gets ``-2`` (``-3``, ...) at the
    end rather than overwriting the first: every run keeps its file.
    """
    today = today or datetime.date.today()
    commit, dirty = revision or git_revision()
    stem = f"{today.isoformat()}-{commit}{'-dirty' if dirty else ''}-{benchmark}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}.json"
        n += 1
    return path


# -- timing ----------------------------------------------------------------------------


def interleave(variants: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Run every variant once per round, the order rotated each round.

    Each callable returns its own measurement; interleaving spreads the
    machine's drift (other load, frequency) over all variants alike.
    """
    names = list(variants)
    out: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(variants[name]())
    return out


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


# -- synthetic scheduler objects -------------------------------------------------------


def prefix_names(n: int) -> list[str]:
    """``n`` distinct, realistic task prefix names."""
    base = ("inc", "add", "getitem", "sum-chunk", "from_pandas", "groupby-agg")
    return [base[i % len(base)] + (f"-{i}" if i >= len(base) else "") for i in range(n)]


def worker_addresses(n: int) -> list[str]:
    return [f"tcp://127.0.0.1:{40000 + i}" for i in range(n)]


class FakeTaskPrefix:
    """What the plugins read of a ``TaskPrefix``: slotted, like Dask's."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class FakeTaskGroup:
    """What the plugins read of a ``TaskGroup``: slotted, like Dask's (whose
    objects hold far more, which would weigh on the memory benchmark)."""

    __slots__ = ("name", "prefix", "span_id")

    def __init__(self, name: str, prefix: FakeTaskPrefix, span_id: str) -> None:
        self.name = name
        self.prefix = prefix
        self.span_id = span_id


class FakeTaskState:
    """What the plugins read of a scheduler ``TaskState``, slotted like it,
    so that attribute reads cost what they cost on the scheduler."""

    __slots__ = (
        "exception_text",
        "group",
        "key",
        "nbytes",
        "prefix",
        "processing_on",
        "state",
        "traceback_text",
    )

    def __init__(self, key: str, group: FakeTaskGroup, processing_on: Any) -> None:
        self.key = key
        self.group = group
        self.prefix = group.prefix
        self.processing_on = processing_on
        self.state = "released"
        self.nbytes = 28
        self.exception_text: str | None = None
        self.traceback_text: str | None = None


class FakeWorkerState:
    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address


def fake_groups(n_prefixes: int, computation: int = 0) -> list[FakeTaskGroup]:
    """Fake ``TaskGroup`` objects, one per prefix, for one computation (span)."""
    span = f"span-{computation:08x}"
    return [
        FakeTaskGroup(f"{name}-{computation:08x}", FakeTaskPrefix(name), span)
        for name in prefix_names(n_prefixes)
    ]


def fake_tasks(
    n_tasks: int,
    n_prefixes: int,
    n_workers: int = 8,
    start: int = 0,
    computation: int = 0,
    groups: list[FakeTaskGroup] | None = None,
    prefix_run: int = 1,
) -> dict[str, FakeTaskState]:
    """Fake scheduler ``TaskState`` objects keyed by task key.

    They carry what the plugins read: ``group.prefix.name``, ``group.name``,
    ``group.span_id``, ``prefix.name``, ``processing_on.address``, ``state``,
    ``nbytes`` and the error texts. Task ``i`` belongs to prefix
    ``(i // prefix_run) % n_prefixes``: with ``prefix_run=1`` consecutive tasks
    cycle through all prefixes (the worst case for per-prefix tables), with
    larger runs they come in runs of the same prefix, as from real graphs.
    """
    if groups is None:
        groups = fake_groups(n_prefixes, computation)
    workers = [FakeWorkerState(a) for a in worker_addresses(n_workers)]
    tasks: dict[str, FakeTaskState] = {}
    for i in range(start, start + n_tasks):
        group = groups[(i // prefix_run) % n_prefixes]
        key = f"{group.name}-{i}"
        tasks[key] = FakeTaskState(key, group, workers[i % n_workers])
    return tasks


def memory_kwargs(worker: str, now: float, i: int) -> dict[str, Any]:
    """What the scheduler passes to ``transition`` for ``processing -> memory``."""
    return {
        "worker": worker,
        "nbytes": 28,
        "type": pickle.dumps(int),
        "typename": "int",
        "startstops": [{"action": "compute", "start": now, "stop": now + 0.0005}],
        "thread": 140000000000000 + i % 2,
        "metadata": {},
        "run_id": i,
    }


#: The transitions of a plain task after it was created in ``released``.
LIFECYCLE = (
    ("released", "waiting"),
    ("waiting", "processing"),
    ("processing", "memory"),
    ("memory", "released"),
    ("released", "forgotten"),
)


def lifecycle_calls(
    tasks: dict[str, FakeTaskState],
    now: float = 1.7e9,
    error_every: int = 0,
    block: int = 1000,
) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """``(key, start, finish, kwargs)`` for every task's life cycle, in stages.

    Stage by stage over blocks of ``block`` tasks, so that a run of calls mixes
    tasks in all states like a busy scheduler's does. With ``error_every``, one
    task in that many errs (``processing -> erred`` with the scheduler's kwargs,
    then ``erred -> released``) instead of reaching ``memory``.
    """
    keys = list(tasks)
    for b in range(0, len(keys), block):
        chunk = keys[b : b + block]
        for start, finish in LIFECYCLE:
            for i, key in enumerate(chunk):
                n = b + i
                erred = error_every and n % error_every == error_every - 1
                if finish == "memory":
                    worker = tasks[key].processing_on.address
                    if erred:
                        yield key, start, "erred", error_kwargs(worker, now, n)
                    else:
                        yield key, start, finish, memory_kwargs(worker, now, n)
                elif start == "memory" and erred:
                    yield key, "erred", finish, {}
                else:
                    yield key, start, finish, {}


def error_kwargs(worker: str, now: float, i: int) -> dict[str, Any]:
    """What the scheduler passes to ``transition`` for ``processing -> erred``."""
    text = f"ValueError('bad record {i % 7}')"
    return {
        "worker": worker,
        "exception": b"pickled-exception",
        "traceback": b"pickled-traceback",
        "exception_text": text,
        "traceback_text": '  File "job.py", line 12, in work\n    raise ' + text,
        "startstops": [{"action": "compute", "start": now, "stop": now + 0.001}],
        "run_id": i,
    }


def loop_thread_clock(thread_ident: int) -> Callable[[], float]:
    """A clock of the CPU seconds spent by another thread of this process."""
    clock_id = time.pthread_getcpuclockid(thread_ident)
    return lambda: time.clock_gettime(clock_id)


# -- reference plugins -----------------------------------------------------------------


class EmptyPlugin(SchedulerPlugin):
    """A plugin whose hooks do nothing: the cost of being called."""

    name = "benchmark-empty"

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        pass


@dataclass(frozen=True)
class NaiveEvent:
    """What a naive monitor builds in the hook for every transition."""

    key: str
    prefix: str
    group: str
    start: str
    finish: str
    timestamp: float
    worker: str | None = None
    duration: float | None = None
    nbytes: int | None = None


class NaiveMonitor(SchedulerPlugin):
    """A naive monitor: a frozen dataclass per transition in the hook, then counts."""

    name = "benchmark-naive"

    def __init__(self, tasks: dict[Any, Any]) -> None:
        self.tasks = tasks
        self.counts: Counter[tuple[str, str]] = Counter()
        self.durations: defaultdict[str, float] = defaultdict(float)
        self.events = 0

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        ts = self.tasks[key]
        tg = ts.group
        duration = None
        for ss in kwargs.get("startstops", ()):
            if ss["action"] == "compute":
                duration = ss["stop"] - ss["start"]
        event = NaiveEvent(
            str(key),
            tg.prefix.name,
            tg.name,
            start,
            finish,
            time.time(),
            kwargs.get("worker"),
            duration,
            kwargs.get("nbytes"),
        )
        self.counts[event.prefix, event.start] -= 1
        self.counts[event.prefix, event.finish] += 1
        if event.duration is not None:
            self.durations[event.prefix] += event.duration
        self.events += 1
