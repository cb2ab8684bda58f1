"""Insights: what is wrong with a pipeline, the numbers that show it, what to do.

The engine reads what the observers keep anyway (the snapshot's prefixes,
workers, errors and, once sampled, resources; the durations' sketches for a
quantile the snapshot does not carry), never the events: it costs nothing per
event. The pipeline evaluates it on a timer, at most every
``monitor.insights.check-interval`` (about once a second), when it builds a
snapshot; a replay builds the same snapshot from the same events, so reports
have the same insights.

Each kind is one small function from :class:`Facts` to the
:class:`Finding` objects it sees now (:data:`CHECKS`). A finding's subject
that is already shown is judged by its kind's lower, "off" thresholds, so
that a figure hovering at a threshold does not make the insight flicker; the
engine adds time to that hysteresis: a live condition (low parallelism,
imbalance) is shown once it lasted ``hold`` seconds, and any insight goes
only once it stayed clear for ``release`` seconds.

Thresholds come from Dask's own guidance; each constant names its source.

This module does not import Dask.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dask_monitor.config import InsightsSettings

__all__ = [
    "CHECKS",
    "CRITICAL",
    "INFO",
    "KINDS",
    "WARNING",
    "Facts",
    "Finding",
    "InsightsEngine",
]

logger = logging.getLogger(__name__)

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
_RANK = {INFO: 0, WARNING: 1, CRITICAL: 2}

TINY_TASKS = "tiny-tasks"
IMBALANCE = "imbalance"
LOW_PARALLELISM = "low-parallelism"
MEMORY_PRESSURE = "memory-pressure"
TRANSFER_BOUND = "transfer-bound"
HOT_PREFIX = "hot-prefix"
SKEW = "skew"
ERRORING = "erroring"

# -- thresholds (the tunable ones are InsightsSettings) ------------------------

#: Scheduler overhead per task, seconds. Dask's best practices: "each task
#: comes with some overhead, ... somewhere between 200us and 1ms"; we take
#: the upper end (a monitored, busy scheduler).
#: https://docs.dask.org/en/stable/best-practices.html#avoid-very-large-graphs
TASK_OVERHEAD = 1e-3
#: Median task time Dask's best practices aim for ("~100 ms").
TASK_TARGET = 0.1
#: A tiny-tasks insight goes once the median is this factor above the setting.
TINY_OFF = 1.2

#: Worker memory thresholds, shares of the memory limit: Dask's defaults of
#: ``distributed.worker.memory.{target,spill,pause,terminate}``.
#: https://distributed.dask.org/en/stable/worker-memory.html#thresholds-configuration
MEMORY_TARGET = 0.60
MEMORY_SPILL = 0.70
MEMORY_PAUSE = 0.80
MEMORY_TERMINATE = 0.95

#: Skew: Spark's and Databricks' rule, the slowest task above 1.5x the p75
#: once 75% of the stage is done (``spark.speculation.multiplier`` 1.5,
#: ``spark.speculation.quantile`` 0.75); the factor is a setting.
SKEW_QUANTILE = 0.75
SKEW_DONE = 0.75
#: Tasks of a prefix finished before its skew is judged.
SKEW_MIN_TASKS = 20
#: A skew insight goes when the slowest task falls below this share of the
#: "on" margin (the p75 rose towards it).
SKEW_OFF = 0.8

#: Low parallelism: at most this share of the threads busy while tasks wait ...
BUSY_LOW = 0.5
#: ... and it goes once this share is busy again.
BUSY_OK = 0.75
#: Imbalance: the busiest worker at least this busy, and another at most ...
IMBALANCE_BUSY = 0.75
IMBALANCE_IDLE = 0.25
#: ... the insight goes when they are within these again.
IMBALANCE_BUSY_OFF = 0.5
IMBALANCE_IDLE_OFF = 0.5

#: Hot prefix (Amdahl's law: speed up the largest part first): one prefix with
#: at least this share of the run's compute time, of at least
#: HOT_MIN_SECONDS, among at least two prefixes; it goes below HOT_OFF.
HOT_SHARE = 0.5
HOT_OFF = 0.4
HOT_MIN_SECONDS = 1.0

#: Transfer bound: a prefix's tasks spent more time fetching their inputs
#: than computing (ratio), at least TRANSFER_MIN_SECONDS in all; it goes below
#: TRANSFER_OFF.
TRANSFER_RATIO = 1.0
TRANSFER_OFF = 0.8
TRANSFER_MIN_SECONDS = 1.0

#: Erroring turns critical when at least this share of a prefix's finished
#: tasks failed.
ERROR_SHARE = 0.5

#: Characters of an exception text quoted in an insight.
MAX_QUOTE = 200
#: Insights kept at most (most severe first); the rest are counted.
MAX_INSIGHTS = 100

_DOCS = "https://docs.dask.org/en/stable/"
_DISTRIBUTED = "https://distributed.dask.org/en/stable/"
LINKS = {
    TINY_TASKS: _DOCS + "best-practices.html#avoid-very-large-graphs",
    IMBALANCE: _DISTRIBUTED + "work-stealing.html",
    LOW_PARALLELISM: _DOCS + "best-practices.html#avoid-very-large-partitions",
    MEMORY_PRESSURE: _DISTRIBUTED + "worker-memory.html",
    TRANSFER_BOUND: _DOCS + "dataframe-best-practices.html#avoid-full-data-shuffling",
    HOT_PREFIX: _DISTRIBUTED + "diagnosing-performance.html",
    SKEW: _DOCS + "dataframe-best-practices.html#repartition-to-reduce-overhead",
    ERRORING: _DOCS + "how-to/debug.html",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """What one check sees about one subject now (an insight, before timing)."""

    kind: str
    severity: str
    subject: str
    subject_type: str  # "prefix" | "worker" | "span" | "cluster"
    message: str
    evidence: dict[str, Any]
    advice: str
    score: float = 0.0  # orders findings of one severity: larger first

    @property
    def link(self) -> str:
        """The Dask documentation page that explains it."""
        return LINKS.get(self.kind, _DOCS + "best-practices.html")


@dataclass(frozen=True, slots=True)
class Facts:
    """What a check reads: the snapshot (plain data) and a quantile source.

    ``active`` holds the ``(kind, subject)`` pairs shown now: a check judges
    them by its "off" thresholds (hysteresis).
    """

    snapshot: Mapping[str, Any]
    settings: InsightsSettings
    quantile: Callable[[str, float], float | None] = lambda prefix, q: None
    active: frozenset[tuple[str, str]] = frozenset()

    def shown(self, kind: str, subject: str) -> bool:
        """Whether ``(kind, subject)`` is shown now (its off thresholds apply)."""
        return (kind, subject) in self.active

    def prefixes(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """The snapshot's prefix rows, the folded ``other`` row left out."""
        folded = self.snapshot.get("prefixes_folded", 0)
        for name, row in (self.snapshot.get("prefixes") or {}).items():
            if folded and name == "other":
                continue
            yield name, row


Check = Callable[[Facts], Iterator[Finding]]


def _num(value: Any) -> float | None:
    """``value`` if a finite number, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _ms(seconds: float) -> str:
    if seconds < 1e-3:  # "30 µs", not "0.0301 ms"
        us = seconds * 1e6
        return f"{us:.0f} \u00b5s" if us >= 100 else f"{us:.3g} \u00b5s"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:,.1f} s"


def _size(n: float) -> str:
    # Binary units, as the panel's memory view and the evidence print them.
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# -- the kinds -----------------------------------------------------------------


def tiny_tasks(facts: Facts) -> Iterator[Finding]:
    """A prefix whose median compute time is so small that Dask's per-task
    overhead dominates: warning below ``tiny_task``, critical below the
    overhead itself."""
    s = facts.settings
    for name, row in facts.prefixes():
        durations = row.get("durations") or {}
        count = durations.get("count") or 0
        p50 = _num(durations.get("p50"))
        if p50 is None or count < s.tiny_count:
            continue
        limit = s.tiny_task * (TINY_OFF if facts.shown(TINY_TASKS, name) else 1.0)
        if not p50 < limit:
            continue
        share = TASK_OVERHEAD / (TASK_OVERHEAD + p50)
        severity = CRITICAL if p50 < TASK_OVERHEAD else WARNING
        yield Finding(
            TINY_TASKS,
            severity,
            name,
            "prefix",
            f"{name!r} ran {count:,} tasks of {_ms(p50)} (median): Dask's "
            f"~{_ms(TASK_OVERHEAD)} overhead per task is about {share:.0%} of "
            "their time.",
            {
                "count": count,
                "p50": p50,
                "overhead_seconds": TASK_OVERHEAD,
                "overhead_share": share,
                "threshold_seconds": s.tiny_task,
            },
            "Give each task more work: larger chunks or partitions (aim for "
            f"tasks of ~{_ms(TASK_TARGET)}), or batch many small calls into "
            "one task instead of a client.map over single items.",
            score=share * count,
        )


def imbalance(facts: Facts) -> Iterator[Finding]:
    """Work waits, one worker's threads are busy and another's idle (lately)."""
    totals = facts.snapshot.get("totals") or {}
    remaining = totals.get("remaining") or 0
    running = [
        (address, row)
        for address, row in (facts.snapshot.get("workers") or {}).items()
        if row.get("status") == "running" and row.get("nthreads")
    ]
    if len(running) < 2:
        return
    threads = sum(row["nthreads"] for _, row in running)
    if remaining < threads:  # the tail of a run: nothing to balance
        return
    load = {address: _load(row) for address, row in running}
    busiest, top = max(running, key=lambda r: (load[r[0]], r[0]))
    shown = facts.shown(IMBALANCE, busiest)
    busy_at = IMBALANCE_BUSY_OFF if shown else IMBALANCE_BUSY
    idle_at = IMBALANCE_IDLE_OFF if shown else IMBALANCE_IDLE
    high = load[busiest]
    idle = [a for a, _ in running if a != busiest and load[a] <= idle_at]
    if high < busy_at or not idle:
        return
    idle_util = sum(load[a] for a in idle) / len(idle)
    yield Finding(
        IMBALANCE,
        WARNING,
        busiest,
        "worker",
        f"Worker {busiest} is {high:.0%} busy while {len(idle)} of "
        f"{len(running)} workers are nearly idle ({idle_util:.0%}) with "
        f"{remaining:,} tasks left.",
        {
            "utilisation_share": high,
            "processing": top.get("processing", 0),
            "idle_workers": len(idle),
            "idle_utilisation_share": idle_util,
            "workers": len(running),
            "remaining": remaining,
        },
        "Work is pinned to few workers: look for worker/resource restrictions, "
        "one large input every task needs (scatter it with broadcast=True), "
        "or a hot key; rebalance or repartition so tasks can run anywhere.",
        score=high - idle_util,
    )


def _load(row: Mapping[str, Any]) -> float:
    """How busy a worker is: its threads busy now or lately, whichever is more
    (utilisation over a window lags a change by seconds; ``processing`` not)."""
    threads = row.get("nthreads") or 1
    now = float(min(row.get("processing", 0), threads) / threads)
    return max(now, float(row.get("utilisation", 0.0)))


def low_parallelism(facts: Facts) -> Iterator[Finding]:
    """Tasks wait while fewer than half of the cluster's threads are busy."""
    totals = facts.snapshot.get("totals") or {}
    remaining = totals.get("remaining") or 0
    threads = busy = 0
    held = 0.0
    for row in (facts.snapshot.get("workers") or {}).values():
        n = row.get("nthreads") or 0
        if row.get("status") != "running" or not n:
            continue
        threads += n
        busy += min(row.get("processing", 0), n)
        held += row.get("utilisation", 0.0) * n
    waiting = remaining - busy
    if threads < 2 or waiting <= 0:  # nothing waits: the tail of a run
        return
    share = max(busy / threads, held / threads)
    limit = BUSY_OK if facts.shown(LOW_PARALLELISM, "cluster") else BUSY_LOW
    if not share < limit:
        return
    yield Finding(
        LOW_PARALLELISM,
        WARNING,
        "cluster",
        "cluster",
        f"Only {busy} of {threads} threads are busy while {waiting:,} tasks "
        "wait for their inputs.",
        {
            "threads": threads,
            "busy_threads": busy,
            "busy_share": share,
            "waiting": waiting,
            "remaining": remaining,
        },
        "The graph is narrow here (a serial chain, a reduction into one task, "
        "or too few partitions): split the work into more independent pieces, "
        "use tree reductions (split_every), or repartition into more partitions.",
        score=1.0 - share,
    )


def hot_prefix(facts: Facts) -> Iterator[Finding]:
    """One prefix takes most of the run's compute time: optimise it first."""
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, row in facts.prefixes():
        compute = _num((row.get("seconds") or {}).get("compute"))
        durations = row.get("durations") or {}
        count = durations.get("count") or 0
        if compute is None:
            mean = _num(durations.get("mean"))
            compute = 0.0 if mean is None else mean * count
        if compute > 0:
            seconds[name] = compute
            counts[name] = count
    total = sum(seconds.values())
    if len(seconds) < 2 or total < HOT_MIN_SECONDS:
        return
    name = max(seconds, key=lambda n: (seconds[n], n))
    share = seconds[name] / total
    if not share >= (HOT_OFF if facts.shown(HOT_PREFIX, name) else HOT_SHARE):
        return
    yield Finding(
        HOT_PREFIX,
        INFO,
        name,
        "prefix",
        f"{name!r} takes {share:.0%} of the run's compute time "
        f"({seconds[name]:,.1f} of {total:,.1f} s).",
        {
            "compute_seconds": seconds[name],
            "compute_share": share,
            "total_seconds": total,
            "count": counts[name],
            "prefixes": len(seconds),
        },
        f"Optimise {name!r} first: making everything else infinitely fast "
        f"would save at most {1 - share:.0%} (Amdahl's law). Profile it on "
        "the dashboard's Profile page.",
        score=share,
    )


def skew(facts: Facts) -> Iterator[Finding]:
    """A prefix's slowest task far above its p75 once 75% of it is done."""
    s = facts.settings
    for name, row in facts.prefixes():
        durations = row.get("durations") or {}
        count = durations.get("count") or 0
        total = row.get("total") or 0
        slowest = _num(durations.get("max"))
        if count < SKEW_MIN_TASKS or slowest is None or not total:
            continue
        done = (row.get("done") or 0) / total
        if done < SKEW_DONE:
            continue
        p75 = _num(facts.quantile(name, SKEW_QUANTILE))
        if p75 is None or p75 <= 0:
            continue
        factor, margin = s.skew_factor, s.skew_seconds
        if facts.shown(SKEW, name):  # off only well below the "on" margin
            factor = 1.0 + (factor - 1.0) * SKEW_OFF
            margin *= SKEW_OFF
        if not (slowest > factor * p75 and slowest - p75 >= margin):
            continue
        stragglers = sum(
            1
            for a in (facts.snapshot.get("alerts") or {}).get("recent", ())
            if a.get("kind") == "straggler" and a.get("prefix") == name
        )
        yield Finding(
            SKEW,
            WARNING,
            name,
            "prefix",
            f"The slowest {name!r} task took {_ms(slowest)}, "
            f"{slowest / p75:.1f}x its p75 of {_ms(p75)}: a few tasks hold "
            "up the rest.",
            {
                "count": count,
                "p50": _num(durations.get("p50")),
                "p75": p75,
                "max": slowest,
                "ratio": slowest / p75,
                "done_share": done,
                "straggler_alerts": stragglers,
            },
            "Look at the slowest tasks' inputs (an oversized partition, a hot "
            "key): repartition to even sizes or split the hot key. Straggler "
            "alerts name the tasks running long now.",
            score=slowest / p75,
        )


def erroring(facts: Facts) -> Iterator[Finding]:
    """A prefix failing repeatedly, with its root cause (the errors table)."""
    s = facts.settings
    own: dict[str, list[Mapping[str, Any]]] = {}
    caused: dict[str, int] = {}
    for row in facts.snapshot.get("errors") or ():
        cause = row.get("caused_by")
        if cause:  # failed because a dependency did: counted for the root
            root = cause.get("prefix", "")
            caused[root] = caused.get(root, 0) + (row.get("count") or 0)
        else:
            own.setdefault(row.get("prefix", ""), []).append(row)
    prefixes = facts.snapshot.get("prefixes") or {}
    for name, rows in own.items():
        failures = sum(r.get("count") or 0 for r in rows)
        if failures < s.min_errors:
            continue
        top = max(rows, key=lambda r: r.get("count") or 0)
        prow = prefixes.get(name) or {}
        erred = prow.get("erred", failures)
        done = prow.get("done") or 0
        share = erred / done if done else 1.0
        severity = (
            CRITICAL if erred >= s.min_errors and share >= ERROR_SHARE else WARNING
        )
        text = str(top.get("exception") or "").strip().splitlines()
        quote = text[-1][:MAX_QUOTE] if text else ""
        kind = str(top.get("type") or "an exception")
        yield Finding(
            ERRORING,
            severity,
            name,
            "prefix",
            f"{failures:,} attempts of {name!r} failed"
            + (f" ({share:.0%} of its finished tasks)" if done else "")
            + (
                f", mostly with {quote}"
                if quote.startswith(kind)
                else f", mostly with {kind}" + (f": {quote}" if quote else "")
            )
            + ".",
            {
                "failures": failures,
                "erred": erred,
                "retried": prow.get("retried", 0),
                "erred_share": share,
                "type": kind,
                "exception": quote,
                "key": str(top.get("key") or "")[:MAX_QUOTE],
                "dependents": caused.get(name, 0),
            },
            f"Fix the root cause ({kind} in {name!r})"
            + (
                f"; {caused[name]:,} tasks downstream failed because of it"
                if caused.get(name)
                else ""
            )
            + ". Reproduce one failure locally with "
            "client.recreate_error_locally(future), or read its traceback in "
            "the errors table.",
            score=failures,
        )


def memory_pressure(facts: Facts) -> Iterator[Finding]:
    """A worker near or over its spill or pause threshold, spilling, or paused.

    Reads ``snapshot["resources"]["workers"]``; nothing before it is sampled.
    """
    resources = facts.snapshot.get("resources") or {}
    for address, row in (resources.get("workers") or {}).items():
        memory = _num(row.get("memory")) or 0.0
        limit = _num(row.get("limit"))
        spilled = _num(row.get("spilled")) or 0.0
        paused = bool(row.get("paused"))
        share = memory / limit if limit else 0.0
        floor = MEMORY_TARGET if facts.shown(MEMORY_PRESSURE, address) else MEMORY_SPILL
        if not (paused or spilled > 0 or share >= floor):
            continue
        critical = paused or share >= MEMORY_PAUSE
        unmanaged = _num(row.get("unmanaged")) or 0.0
        managed = _num(row.get("managed")) or 0.0
        if paused:
            state = "is paused"
        elif share >= MEMORY_PAUSE:
            state = "is past the pause threshold"
        elif share >= MEMORY_SPILL:
            state = "is past the spill threshold"
        else:
            state = "has spilled to disk"
        used = (
            f"{_size(memory)} of {_size(limit)} ({share:.0%})"
            if limit
            else _size(memory)
        )
        message = (
            f"Worker {address} {state}: {used} in memory"
            + (f", {_size(spilled)} on disk" if spilled else "")
            + "."
        )
        # Spilled bytes are task results too, moved to disk: counted as
        # managed, or a worker that spilled its results reads as leaking.
        if unmanaged > managed + spilled:
            advice = (
                "Most of it is unmanaged memory (not task results): look for "
                "leaks or large temporaries in task code, and see "
                "'Memory not released back to the OS' on the linked page."
            )
        else:
            advice = (
                "Task results fill it: use smaller chunks or partitions, "
                "release futures and persisted collections you no longer "
                "need, or give workers more memory."
            )
        yield Finding(
            MEMORY_PRESSURE,
            CRITICAL if critical else WARNING,
            address,
            "worker",
            message,
            {
                "memory_bytes": memory,
                "limit_bytes": limit,
                "memory_share": share,
                "managed_bytes": managed,
                "unmanaged_bytes": unmanaged,
                "spilled_bytes": spilled,
                "paused": paused,
                "spill_threshold_share": MEMORY_SPILL,
                "pause_threshold_share": MEMORY_PAUSE,
            },
            advice,
            score=max(share, 1.0 if paused else 0.0),
        )


def transfer_bound(facts: Facts) -> Iterator[Finding]:
    """A prefix whose tasks spend more time fetching inputs than computing.

    Reads ``prefixes[p]["seconds"]``; nothing without it.
    """
    for name, row in facts.prefixes():
        seconds = row.get("seconds")
        if not seconds:
            continue
        compute = _num(seconds.get("compute")) or 0.0
        transfer = _num(seconds.get("transfer")) or 0.0
        if transfer < TRANSFER_MIN_SECONDS:
            continue
        ratio = transfer / compute if compute > 0 else math.inf
        limit = TRANSFER_OFF if facts.shown(TRANSFER_BOUND, name) else TRANSFER_RATIO
        if not ratio > limit:
            continue
        shown_ratio = ratio if math.isfinite(ratio) else None
        yield Finding(
            TRANSFER_BOUND,
            WARNING,
            name,
            "prefix",
            f"{name!r} tasks spent {transfer:,.1f} s fetching their inputs and "
            f"{compute:,.1f} s computing.",
            {
                "transfer_seconds": transfer,
                "compute_seconds": compute,
                "ratio": shown_ratio,
                "output_bytes": row.get("nbytes", 0),
                "count": (row.get("durations") or {}).get("count", 0),
            },
            "Move less data between workers: avoid full shuffles (set_index, "
            "merge on unsorted columns) or do them once and persist, filter "
            "early, and scatter large constants once instead of passing them.",
            score=ratio if math.isfinite(ratio) else 1e9,
        )


#: Every kind and its check, in the order they are evaluated.
CHECKS: dict[str, Check] = {
    TINY_TASKS: tiny_tasks,
    IMBALANCE: imbalance,
    LOW_PARALLELISM: low_parallelism,
    MEMORY_PRESSURE: memory_pressure,
    TRANSFER_BOUND: transfer_bound,
    HOT_PREFIX: hot_prefix,
    SKEW: skew,
    ERRORING: erroring,
}
KINDS: tuple[str, ...] = tuple(CHECKS)
#: Kinds about a state of the cluster now, shown once it lasted ``hold``.
SUSTAINED = frozenset({IMBALANCE, LOW_PARALLELISM})


# -- the engine ----------------------------------------------------------------


@dataclass(slots=True)
class _Shown:
    """An insight on show: its latest finding, since when, clear since when."""

    finding: Finding
    since: float
    clear: float | None = None
    item: dict[str, Any] = field(default_factory=dict)


class InsightsEngine:
    """Evaluates the checks on a timer, with hysteresis, and keeps the result.

    Parameters
    ----------
    settings
        ``monitor.insights``.
    quantile
        ``quantile(prefix, q)`` of a prefix's compute durations (the
        durations observer's), for the quantiles a snapshot leaves out.
    checks
        The kinds to evaluate (all of :data:`CHECKS` by default).

    Notes
    -----
    Not thread-safe: the pipeline calls it holding its lock. A check that
    raises is logged once and counted in :attr:`errors`; the others go on.
    """

    name = "insights"

    def __init__(
        self,
        settings: InsightsSettings | None = None,
        *,
        quantile: Callable[[str, float], float | None] = lambda prefix, q: None,
        checks: Mapping[str, Check] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else InsightsSettings()
        self.quantile = quantile
        self.checks = dict(CHECKS if checks is None else checks)
        self.errors: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every insight (alerts already raised stay raised)."""
        self._shown: dict[tuple[str, str], _Shown] = {}
        self._pending: dict[tuple[str, str], float] = {}
        self._items: list[dict[str, Any]] = []
        self._critical: deque[dict[str, Any]] = deque(maxlen=MAX_INSIGHTS)
        self.evaluated = -math.inf
        self.evaluations = 0
        # (prefix, q) -> (count of durations, quantile): a quantile is read
        # again only when its prefix has new durations.
        self._quantiles: dict[tuple[str, float], tuple[int, float | None]] = {}
        #: Increases whenever the insights shown changed.
        self.version = getattr(self, "version", 0) + 1
        self.folded = 0

    def due(self, now: float) -> bool:
        """Whether ``check_interval`` passed since the last evaluation."""
        return self.settings.enabled and now - self.evaluated >= (
            self.settings.check_interval
        )

    @property
    def waiting(self) -> bool:
        """Whether time alone can change the insights (a hold or a release)."""
        return bool(self._pending) or any(
            s.clear is not None for s in self._shown.values()
        )

    def evaluate(self, snapshot: Mapping[str, Any], now: float) -> None:
        """Run every check on ``snapshot`` (built at ``now``) and update the
        insights shown: on (after ``hold`` for a sustained kind), updated,
        or off once clear for ``release`` seconds."""
        self.evaluated = now
        self.evaluations += 1
        s = self.settings
        facts = Facts(snapshot, s, self._cached(snapshot), frozenset(self._shown))
        found: dict[tuple[str, str], Finding] = {}
        for kind, check in self.checks.items():
            try:
                for finding in check(facts):
                    found[finding.kind, finding.subject] = finding
            except Exception as exc:  # one broken check must not hide the others
                count = self.errors[kind] = self.errors.get(kind, 0) + 1
                if count == 1:
                    logger.error(
                        "insight check %s raised %s; later failures are only counted",
                        kind,
                        type(exc).__name__,
                        exc_info=exc,
                    )
        shown = self._shown
        pending = self._pending
        for key in [k for k in pending if k not in found]:
            del pending[key]
        for key, finding in found.items():
            entry = shown.get(key)
            if entry is None:
                first = pending.setdefault(key, now)
                hold = s.hold if finding.kind in SUSTAINED else 0.0
                if now - first < hold:
                    continue
                del pending[key]
                entry = shown[key] = _Shown(finding, first)
                was = None
            else:
                was = entry.finding.severity
                entry.finding = finding
                entry.clear = None
            entry.item = _item(finding, entry.since)
            if finding.severity == CRITICAL and was != CRITICAL:
                self._critical.append(entry.item)
        for key, entry in list(shown.items()):
            if key in found:
                continue
            if entry.clear is None:
                entry.clear = now
            if now - entry.clear >= s.release:
                del shown[key]
        items = sorted(
            (e.item for e in shown.values()),
            key=lambda i: (-_RANK[i["severity"]], -i["score"], i["kind"], i["subject"]),
        )
        self.folded = max(0, len(items) - MAX_INSIGHTS)
        items = items[:MAX_INSIGHTS]
        if items != self._items:
            self.version += 1
        self._items = items

    def _cached(
        self, snapshot: Mapping[str, Any]
    ) -> Callable[[str, float], float | None]:
        """:attr:`quantile`, remembered while a prefix's count of durations
        (in ``snapshot``) stays the same; only this evaluation's are kept."""
        prefixes = snapshot.get("prefixes") or {}
        old = self._quantiles
        new: dict[tuple[str, float], tuple[int, float | None]] = {}
        self._quantiles = new

        def quantile(prefix: str, q: float) -> float | None:
            count = ((prefixes.get(prefix) or {}).get("durations") or {}).get("count")
            hit = old.get((prefix, q))
            if hit is None or hit[0] != count or count is None:
                hit = (count or 0, self.quantile(prefix, q))
            new[prefix, q] = hit
            return hit[1]

        return quantile

    def snapshot(self) -> list[dict[str, Any]]:
        """The insights shown, most severe first (then by score), as plain data."""
        return [
            {
                k: (dict(v) if k == "evidence" else v)
                for k, v in i.items()
                if k != "score"
            }
            for i in self._items
        ]

    def take_critical(self) -> list[dict[str, Any]]:
        """Insights that turned critical since the last call (for alerts)."""
        out = list(self._critical)
        self._critical.clear()
        return out


def _item(finding: Finding, since: float) -> dict[str, Any]:
    return {
        "kind": finding.kind,
        "severity": finding.severity,
        "subject": finding.subject,
        "subject_type": finding.subject_type,
        "message": finding.message,
        "evidence": finding.evidence,
        "advice": finding.advice,
        "link": finding.link,
        "since": since,
        "score": finding.score,
    }
