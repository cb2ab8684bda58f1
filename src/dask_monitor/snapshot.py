"""The snapshot: one plain-data picture of everything the monitor knows.

A snapshot is a ``dict`` made only of ``str``, ``int``, ``float``, ``bool``,
``None``, ``list`` and ``dict`` with ``str`` keys, so it is msgpack- and
JSON-safe. The panel, the CLI, Prometheus and reports read snapshots, never
observers. These ``TypedDict`` classes document its shape for type checkers
and for people; at run time a snapshot is an ordinary ``dict``.

Times are wall-clock seconds since the epoch (``time.time()``); durations and
rates are in seconds and tasks per second.
"""

from __future__ import annotations

import json
import math
from typing import Any, NotRequired, TypedDict

__all__ = [
    "ACTIVE_STATES",
    "DURATION_BUCKETS",
    "STATES",
    "Cause",
    "DurationStats",
    "ErrorRow",
    "EventRecord",
    "GroupRow",
    "Insight",
    "MonitorStats",
    "PrefixRow",
    "PrefixSeconds",
    "Resources",
    "Samples",
    "Snapshot",
    "Throughput",
    "Totals",
    "WorkerResourcesRow",
    "WorkerRow",
    "observer_report",
]

#: Scheduler task states, in the order the panel shows them.
STATES: tuple[str, ...] = (
    "released",
    "waiting",
    "queued",
    "no-worker",
    "processing",
    "memory",
    "erred",
)

#: States in which a task still has work ahead of it.
ACTIVE_STATES: tuple[str, ...] = ("waiting", "queued", "no-worker", "processing")

SNAPSHOT_VERSION = 1

#: Most bytes (as JSON) an observer's own ``snapshot()`` may put in a snapshot.
MAX_OBSERVER_REPORT = 64 * 1024
#: Deepest nesting accepted in an observer's ``snapshot()``.
_MAX_DEPTH = 32


#: Upper bounds (seconds) of the fixed duration buckets of
#: :attr:`DurationStats.buckets` (and of Prometheus'
#: ``dask_monitor_task_duration_seconds`` histogram): 1 ms to 1 h, about
#: half a decade apart. Fixed, so histograms of several schedulers and runs
#: add up bucket by bucket.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.003,
    0.01,
    0.03,
    0.1,
    0.3,
    1.0,
    3.0,
    10.0,
    30.0,
    100.0,
    300.0,
    1000.0,
    3600.0,
)


class DurationStats(TypedDict):
    """Streaming statistics of compute durations (seconds).

    Quantiles carry a relative error of at most ``relative_error`` (a value
    ``q`` reported for the true ``x`` satisfies ``|q - x| <= relative_error * x``).
    All fields but ``count`` are ``None`` until a duration was seen.
    """

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    relative_error: float
    #: Cumulative counts: ``buckets[i]`` durations were ``<= DURATION_BUCKETS[i]``
    #: (exact; the durations observer's own, absent from other producers).
    buckets: NotRequired[list[int]]


class Totals(TypedDict):
    """Whole-cluster progress."""

    states: dict[str, int]  # tasks in each scheduler state now (non-zero only)
    completed: int  # cumulative processing -> memory transitions
    erred: int  # cumulative transitions into erred
    recomputed: int  # completions of tasks that had completed before
    retried: int  # cumulative attempts that raised and that Dask retried
    done: int  # completed - recomputed + erred: distinct tasks finished
    remaining: int  # tasks in waiting, queued, no-worker or processing now
    total: int  # done + remaining
    rate: float  # tasks finished per second now (last seconds); 0 when idle
    eta: float | None  # seconds until remaining reaches 0 (see EtaEstimator)
    eta_low: float | None  # optimistic end of the ETA range
    eta_high: float | None  # pessimistic end of the ETA range
    # finishes / run_seconds: the whole run's pace (None before any finish)
    average_rate: NotRequired[float | None]
    # seconds from the first task event to the latest finish (None before one)
    run_seconds: NotRequired[float | None]


class PrefixSeconds(TypedDict):
    """Seconds the completions of a prefix spent, summed from ``startstops``."""

    compute: float  # action "compute"
    transfer: float  # action "transfer": fetching dependencies from other workers
    disk: float  # actions "disk-read" and "disk-write": spilled data


class PrefixRow(TypedDict):
    """Progress of one task prefix (``inc``, ``sum-aggregate`` ...)."""

    states: dict[str, int]
    completed: int
    erred: int  # cumulative: kept once Dask forgets the tasks (or restarts)
    recomputed: int
    retried: int  # attempts that raised and were retried (not in erred)
    done: int
    remaining: int
    total: int
    durations: DurationStats
    rate: float
    eta: float | None
    eta_low: float | None
    eta_high: float | None
    last_active: float  # timestamp of its latest event
    # Cumulative over its completions (absent from a span's view of it).
    seconds: NotRequired[PrefixSeconds]
    nbytes: NotRequired[int]  # sum of the sizes of its results (0 if unknown)


class GroupRow(TypedDict):
    """Progress of one task group (one prefix in one graph submission)."""

    prefix: str
    states: dict[str, int]
    completed: int
    erred: int
    retried: int
    done: int
    remaining: int
    total: int
    last_active: float


class Throughput(TypedDict):
    """Tasks finished per time bin, oldest bin first, in a ring (last minutes).

    Bin ``i`` covers ``[start + i * bin, start + (i + 1) * bin)``.
    """

    bin: float  # seconds per bin
    start: float  # start time of the first bin
    counts: list[int]  # all prefixes
    prefixes: dict[str, list[int]]  # the most active prefixes, same bins
    total: int  # tasks finished in the whole run
    late: int  # events older than the ring, not binned (counted only)


class WorkerRow(TypedDict):
    """Load of one worker."""

    status: str  # "running" or "removed"
    nthreads: int | None
    processing: int  # tasks processing there now
    completed: int
    erred: int
    busy: float  # compute seconds summed from startstops
    utilisation: float  # share of threads busy over the last seconds, 0..1
    utilisation_run: NotRequired[float]  # busy / (nthreads * its run), 0..1
    first_seen: float
    last_seen: float


class WorkerResourcesRow(TypedDict):
    """The latest resources sample of one worker, and its recent history.

    ``history`` holds the same figures (``time``, ``memory``, ``managed``,
    ``spilled``, ``cpu``, ``network_in``, ``network_out``) of the last samples,
    oldest first (a bounded ring); it is ``{}`` for all but the 100 workers
    using the most memory (``ResourcesObserver.history_workers``).
    """

    time: float  # of the latest sample
    memory: int  # process memory (RSS), bytes
    managed: int  # task results in memory (sizeof), bytes
    unmanaged: int  # memory - managed
    spilled: int  # task results spilled to disk, bytes
    limit: int | None  # memory limit, bytes; None without one
    cpu: float  # percent; 100 = one core busy
    network_in: float  # bytes/s received (the worker's host_net_io)
    network_out: float  # bytes/s sent
    paused: bool  # the worker is paused (memory over its pause threshold)
    history: dict[str, list[Any]]


class Resources(TypedDict):
    """Workers' resources, sampled from their heartbeats about once a second.

    ``cluster`` sums the workers of the latest round of samples (the keys of
    a :class:`WorkerResourcesRow` but ``paused``, which counts paused workers,
    plus ``workers``, the workers sampled; ``limit`` is ``None`` if any worker
    has none); it is ``{}`` before the first sample, and so is ``workers``.
    """

    interval: float  # seconds between samples
    workers: dict[str, WorkerResourcesRow]  # bounded: see folded
    cluster: dict[str, Any]
    folded: int  # workers sampled but not tracked (the table was full)


class Cause(TypedDict):
    """The task whose exception made others err (Dask's ``exception_blame``)."""

    key: str  # an example key of the failing task
    prefix: str
    type: str  # its exception type ("unknown" without an exception text)


class ErrorRow(TypedDict):
    """Erred tasks of one (prefix, exception type): deduplicated.

    Tasks that erred because a dependency erred have the type ``"caused by
    <prefix>: <type>"`` of their root cause, and ``caused_by`` names it.
    """

    prefix: str
    type: str
    count: int  # erred tasks, and attempts that raised and were retried
    key: str  # one example key
    exception: str  # exception text (truncated)
    traceback: str  # traceback text (truncated)
    worker: str | None
    first: float
    last: float
    retried: int  # of count: attempts that raised and that Dask retried
    caused_by: Cause | None  # the root cause, for failures of a dependency


class EventRecord(TypedDict):
    """A sampled event as plain data (the fields of ``TaskStatus``)."""

    key: str
    prefix: str
    group: str
    start: str
    finish: str
    timestamp: float
    worker: str | None
    duration: float | None
    begin: float | None
    end: float | None
    nbytes: int | None
    exception: str | None
    traceback: str | None
    span: str | None
    transfer: NotRequired[float | None]  # seconds fetching dependencies
    disk: NotRequired[float | None]  # seconds reading/writing spilled data


class Samples(TypedDict):
    """Recent events and a uniform reservoir sample over the whole run."""

    recent: list[EventRecord]
    reservoir: list[EventRecord]
    seen: int  # task events offered to the sampler


class MonitorStats(TypedDict):
    """The monitor accounting for itself."""

    events: int  # events made by the hook (delivered + dropped)
    dropped: int  # transitions dropped because the buffer was full
    merged: int  # transitions folded into an event (a task's creation), not in events
    flushes: int  # flushes that handled at least one event
    flush_seconds: float  # CPU time (of the loop thread) spent flushing
    flush_last: float  # CPU time of the last flush
    flush_max: float  # longest flush
    overhead: float  # flush_seconds / seconds since start: share of the loop
    buffer_capacity: int
    interval: float  # flush interval in seconds
    observer_errors: dict[str, int]  # observer name -> exceptions raised
    observers: list[str]  # names of subscribed observers
    started: float  # when monitoring started
    sinks: NotRequired[dict[str, dict[str, Any]]]  # sink name -> its counters
    # user observer name -> its dispatcher's counters (received, delivered,
    # dropped, queued, capacity, batches, errors, max_call, busy)
    dispatch: NotRequired[dict[str, dict[str, Any]]]


class Insight(TypedDict):
    """A diagnosis with the numbers behind it and what to do (see
    :mod:`dask_monitor.observers.insights`)."""

    kind: str  # "tiny-tasks", "memory-pressure", ...
    severity: str  # "info" | "warning" | "critical"
    subject: str  # a prefix, a worker address, a span or "cluster"
    subject_type: str  # "prefix" | "worker" | "span" | "cluster"
    message: str  # one sentence (quotes task prefixes and exception text)
    evidence: dict[str, Any]  # flat: numbers and short strings
    advice: str  # what to do
    link: str  # the Dask documentation page that explains it
    since: float  # when it turned on


class Snapshot(TypedDict):
    """Everything the monitor knows, as plain data."""

    version: int
    timestamp: float  # when this snapshot was built
    started: float  # when monitoring started
    elapsed: float  # timestamp - started
    seq: int  # increases whenever the data changed; equal seq, equal data
    # True from the scheduler plugin (a run being watched), False from a
    # replay or report of a recorded run: live-only figures mean nothing there.
    live: bool
    totals: Totals
    prefixes: dict[str, PrefixRow]  # all prefixes seen (bounded, see folded)
    prefixes_folded: int  # prefixes merged into the "other" row
    groups: dict[str, GroupRow]  # the most active groups
    groups_folded: int  # groups merged into the "other" row
    workers: dict[str, WorkerRow]
    errors: list[ErrorRow]  # most frequent first
    errors_folded: int  # erred tasks whose (prefix, type) did not fit the table
    throughput: Throughput
    samples: Samples
    alerts: dict[str, Any]
    monitor: MonitorStats
    spans: NotRequired[dict[str, dict[str, Any]]]  # recent Dask spans: id -> row
    span: NotRequired[dict[str, Any]]  # with snapshot(span=...): the selection
    # What user observers with a ``snapshot()`` method report, by observer
    # name: their plain data, or {"error": reason} (see observer_report).
    observers: NotRequired[dict[str, Any]]
    # Times of Dask restarts (client.restart()), oldest first, the latest
    # MAX_RESTARTS: history before them is kept, live task states are not.
    restarts: NotRequired[list[float]]
    # Recent graph submissions, newest last: time, client, keys (count),
    # tasks (count), span (id: pass it to snapshot(span=...)), key (example).
    submissions: NotRequired[list[dict[str, Any]]]
    # Diagnoses, most severe first (then by score), evaluated at most every
    # monitor.insights.check-interval from the aggregates above.
    insights: NotRequired[list[Insight]]
    resources: NotRequired[Resources]


def observer_report(value: Any, max_bytes: int = MAX_OBSERVER_REPORT) -> Any:
    """What an observer's ``snapshot()`` returned, made fit for a snapshot.

    Plain data (``None``, ``bool``, ``int``, ``float``, ``str``, lists, and
    dicts with ``str`` keys; tuples become lists) of at most ``max_bytes``
    bytes as JSON is returned as such. Anything else is replaced by
    ``{"error": reason}``, so that one observer's report can neither break
    the snapshot's encoding nor bloat every copy of it sent to clients.
    """
    try:
        plain = _plain(value, 0)
    except (TypeError, ValueError) as e:
        return {"error": f"snapshot() returned no plain data: {e}"}
    size = len(json.dumps(plain, separators=(",", ":")))
    if size > max_bytes:
        return {
            "error": f"snapshot() returned {size:,} bytes as JSON, "
            f"more than the {max_bytes:,} allowed"
        }
    return plain


def _plain(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"a dict key is a {type(k).__name__}, not a str")
            out[k] = _plain(v, depth + 1)
        return out
    raise TypeError(f"a value is a {type(value).__name__}")
