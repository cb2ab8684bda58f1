"""Replay: an event log through a fresh pipeline, after the cluster is gone.

The live plugin and a replay feed the same :class:`~dask_monitor.pipeline.Pipeline`
(same default observers, same settings, taken from the log's header) with the
same batches, so the snapshot at the end of a replay equals the live run's last
snapshot, except for fields relative to the wall clock (``timestamp``,
``elapsed``, rates and ETAs, the monitor's own flush timings).

Each batch record is read as a :class:`~dask_monitor.batch.Batch` built from
the record's columns (``EventLog.records(columns=True)``), as the live flush
makes them: no event object is made unless an observer asks for one. Recorded
alerts (in batches of their own) go to the replayed alert log instead.

Examples
--------
>>> from dask_monitor import replay
>>> snapshot = replay("run.dmlog")  # doctest: +SKIP
>>> snapshot["totals"]["done"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dask_monitor.batch import Batch
from dask_monitor.config import ConfigError, MonitorConfig
from dask_monitor.events import (
    Alert,
    Event,
    TaskStatus,
    WorkerResources,
    WorkerStatus,
)
from dask_monitor.pipeline import Pipeline
from dask_monitor.sinks.eventlog import EventLog, EventLogError
from dask_monitor.snapshot import Snapshot
from dask_monitor.storage import show

__all__ = [
    "config_from_header",
    "replay",
    "replay_pipeline",
    "replay_snapshots",
    "run_info",
]


def config_from_header(header: dict[str, Any]) -> MonitorConfig:
    """The live pipeline's settings recorded in a log header.

    Settings unknown to this version are ignored; missing ones take Dask
    config's values.

    Raises
    ------
    EventLogError
        If a recorded setting is invalid (a log is untrusted input).
    """
    recorded = header.get("config") or {}
    if not isinstance(recorded, dict):
        raise EventLogError(f"the log's settings are a {type(recorded).__name__}")
    names = {f.name for f in dataclasses.fields(MonitorConfig)}
    known = {k: v for k, v in recorded.items() if k in names}
    # Checked like live settings: a file may say throughput_bins: 10**12.
    try:
        return MonitorConfig.from_config(**known)
    except ConfigError as e:
        raise EventLogError(f"the log's settings are invalid: {e}") from e


def run_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Where the run recorded at ``path`` comes from, for a report's heading.

    ``source`` (the run's name and tags if it has them, the log's path and
    the scheduler that wrote it) and
    ``versions`` (of dask, distributed and dask-monitor of the run, as the
    log's header recorded them).
    """
    from dask_monitor.runs import header_run

    header = EventLog.open(path).header
    scheduler = (header.get("cluster") or {}).get("scheduler")
    source = show(path) + (f" (scheduler {scheduler})" if scheduler else "")
    run, tags = header_run(header)  # untrusted: cut here, escaped by the page
    if tags:
        source = ", ".join(f"{k}={v}" for k, v in sorted(tags.items())) + "; " + source
    if run:
        source = f"run {run}: {source}"
    versions = {
        label: str(header.get(field) or "unknown")
        for label, field in (
            ("dask", "dask"),
            ("distributed", "distributed"),
            ("dask-monitor", "library"),
        )
    }
    return {"source": source, "versions": versions}


def _discard(alert: Alert) -> None:
    """Where replayed alert rules send their alerts: nowhere."""


class _LastEventClock:
    """The time of the last event replayed (the log's start time at first)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _last_time(events: Sequence[Event]) -> float | None:
    """Timestamp of the last task or worker event of ``events``."""
    for event in reversed(events):
        if isinstance(event, TaskStatus | WorkerStatus | WorkerResources):
            return event.timestamp
    return None


def _last_time_of(batch: Batch) -> float | None:
    """:func:`_last_time` of a batch, read from its columns.

    The events after the last task event are the others at its end.
    """
    n = len(batch.keys)
    for pos, event in reversed(batch.others):
        if pos < n:
            break
        if isinstance(event, TaskStatus | WorkerStatus | WorkerResources):
            return event.timestamp
    if n:
        return batch.timestamp(n - 1)
    return None


def _known_workers(header: dict[str, Any]) -> list[Event]:
    """``added`` events of the workers a recording found running when it began.

    Their own ``added`` events happened before the log started; without them
    a replay would not know their threads (nor their utilisation).
    """
    workers = header.get("workers")
    if not isinstance(workers, dict):
        return []
    events: list[Event] = []
    for address, info in sorted(workers.items()):
        if not isinstance(address, str) or not isinstance(info, dict):
            continue
        nthreads = info.get("nthreads")
        first_seen = info.get("first_seen")
        if not isinstance(first_seen, int | float):
            first_seen = float(header.get("started") or 0.0)
        events.append(
            WorkerStatus(
                address,
                "added",
                float(first_seen),
                nthreads if isinstance(nthreads, int) else None,
            )
        )
    return events


def _feed(
    path: str | os.PathLike[str],
    config: MonitorConfig | None,
    observers: Iterable[Any],
    on_batch: Callable[[Pipeline], None] | None = None,
) -> Pipeline:
    log = EventLog.open(path)
    config = config if config is not None else config_from_header(log.header)
    clock = _LastEventClock(float(log.header.get("started") or 0.0))
    pipeline = Pipeline(config, clock=clock, observers=observers, live=False)
    # The log has the alerts the live rules raised (some depended on the live
    # clock): replay those and keep the rules quiet, so nothing counts twice.
    for rule in getattr(pipeline, "rules", ()):
        rule.bind(_discard)
    alerts = getattr(pipeline, "alerts", None)
    known = _known_workers(log.header)
    if known:
        pipeline.process(known)
    for record in log.records(columns=True):
        if record.kind == "b" and record.batch is not None:
            batch = record.batch
            events: Sequence[Event] = batch
            if any(type(e) is Alert for _, e in batch.others):
                # Alerts come in batches of their own: no task events to make.
                events = [e for e in batch if type(e) is not Alert]
                for event in batch:
                    if type(event) is Alert and alerts is not None:
                        alerts.notify(event)
                if not events:
                    pipeline._changed()
                    continue
                last = _last_time(events)
            else:
                last = _last_time_of(batch)
            if last is not None:
                clock.now = max(clock.now, last)
            pipeline.process(events)
            # Resource samples are not transitions: the live plugin does not
            # count them among its events either.
            samples = sum(type(e) is WorkerResources for _, e in batch.others)
            pipeline.account(events=len(events) - samples, dropped=0, seconds=0.0)
            if on_batch is not None:
                on_batch(pipeline)
        elif record.kind == "r":
            pipeline.restart(record.timestamp)
        elif record.kind == "s":
            name_spans = getattr(pipeline, "name_spans", None)
            if name_spans is not None:
                name_spans(record.names)
    return pipeline


def replay_pipeline(
    path: str | os.PathLike[str],
    *,
    config: MonitorConfig | None = None,
    observers: Iterable[Any] = (),
) -> Pipeline:
    """Feed the log at ``path`` through a fresh pipeline and return the pipeline.

    Parameters
    ----------
    path
        The log's first segment; the following ones (``path.1``, ...) are read too.
    config
        Settings to replay with instead of the recorded ones.
    observers
        Extra observers, subscribed beside the default ones.

    Raises
    ------
    FileNotFoundError
        If there is no log at ``path``.
    EventLogError
        If it is not a log, or corrupt; ``EventLogVersionError`` for another
        format version. A torn last record only warns (``EventLogWarning``).
    """
    return _feed(path, config, observers)


def replay(
    path: str | os.PathLike[str],
    *,
    config: MonitorConfig | None = None,
    observers: Iterable[Any] = (),
) -> Snapshot:
    """The snapshot at the end of the run recorded in the log at ``path``.

    Its clock is the time of the last event, so ``timestamp`` is when the run's
    last event happened. See :func:`replay_pipeline` for parameters and errors.
    """
    return replay_pipeline(path, config=config, observers=observers).snapshot()


def replay_snapshots(
    path: str | os.PathLike[str], *, config: MonitorConfig | None = None
) -> Iterator[Snapshot]:
    """The snapshot after each recorded batch, in order (a run, step by step)."""
    out: list[Snapshot] = []
    _feed(path, config, (), lambda p: out.append(p.snapshot()))
    yield from out


# -- exports -------------------------------------------------------------------------

#: Columns of an export of task events (the fields of ``TaskStatus``).
TASK_COLUMNS = (
    "key",
    "prefix",
    "group",
    "start",
    "finish",
    "timestamp",
    "worker",
    "duration",
    "begin",
    "end",
    "nbytes",
    "exception",
    "traceback",
    "span",
    "transfer",
    "disk",
    # The span's name (``span`` is its id), from the log's span-names records.
    "span_name",
)
WORKER_COLUMNS = (
    "address",
    "action",
    "timestamp",
    "nthreads",
    "processing",
    "expected",
)
#: Columns of an export of resource samples (the fields of ``WorkerResources``).
RESOURCE_COLUMNS = tuple(f.name for f in dataclasses.fields(WorkerResources))
ALERT_COLUMNS = (
    "kind",
    "severity",
    "message",
    "timestamp",
    "prefix",
    "key",
    "worker",
    "details",
)


def _columns(path: str | os.PathLike[str], kind: str) -> dict[str, list[Any]]:
    import json

    cls, names = {
        "tasks": (TaskStatus, TASK_COLUMNS),
        "workers": (WorkerStatus, WORKER_COLUMNS),
        "alerts": (Alert, ALERT_COLUMNS),
        "resources": (WorkerResources, RESOURCE_COLUMNS),
    }[kind]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    fields = [n for n in names if n != "span_name"]
    span_names: dict[str, str] = {}
    for record in EventLog.open(path).records():
        if record.kind == "s":
            # Names may come after their spans' events: filled in at the end.
            span_names.update(record.names)
        for event in record.events:
            if type(event) is not cls:
                continue
            for name in fields:
                value = getattr(event, name)
                if name == "details":
                    value = json.dumps(value, default=str)
                columns[name].append(value)
    if "span_name" in columns:
        columns["span_name"] = [
            None if s is None else span_names.get(s) for s in columns["span"]
        ]
    return columns


#: Formats of an export by the file name's extension.
EXPORT_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def export_format(out: str | os.PathLike[str]) -> str:
    """The export format of a file name by its extension (see :data:`EXPORT_FORMATS`).

    Raises ``ValueError`` naming the extensions known and the ``--format``
    option for any other: a table is never written in a format its name
    does not say.
    """
    suffix = Path(os.fspath(out)).suffix.lower()
    if suffix in EXPORT_FORMATS:
        return EXPORT_FORMATS[suffix]
    known = ", ".join(EXPORT_FORMATS)
    raise ValueError(
        f"cannot tell the format of {os.fspath(out)!r} from its extension "
        f"{suffix or '(none)'!r}: name the file {known}, or give the format "
        "(--format / fmt=)"
    )


def export_events(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    kind: str = "tasks",
    fmt: str | None = None,
) -> tuple[os.PathLike[str] | str, str, int]:
    """Write the events of one kind of the log at ``path`` as a table to ``out``.

    Parameters
    ----------
    kind
        ``"tasks"`` (one row per ``TaskStatus``, its fields as columns),
        ``"workers"``, ``"alerts"`` or ``"resources"`` (the workers' samples).
    fmt
        ``"parquet"``, ``"csv"``, ``"json"`` (an array of objects) or
        ``"jsonl"`` (an object a line); by default from ``out``'s extension
        (:data:`EXPORT_FORMATS`): ``ValueError`` for another extension.

    Task events have a ``span_name`` column beside ``span`` (the span's id).

    Returns ``(out, format, rows)``. Read it back with ``pandas.read_parquet``,
    ``pandas.read_csv`` or ``pandas.read_json`` (``lines=True`` for jsonl).

    Raises
    ------
    ValueError
        For a format that cannot be told from the name, or an unknown one.
    ImportError
        For Parquet without pyarrow (naming the other formats).
    """
    import csv

    if kind not in ("tasks", "workers", "alerts", "resources"):
        raise ValueError(
            f"kind must be tasks, workers, alerts or resources, not {kind!r}"
        )
    if fmt is None:
        fmt = export_format(out)
    if fmt not in ("parquet", "csv", "json", "jsonl"):
        raise ValueError(f"fmt must be parquet, csv, json or jsonl, not {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "writing Parquet needs pyarrow: install it, or export to .csv, "
                ".json or .jsonl"
            ) from e
    columns = _columns(path, kind)
    rows = len(next(iter(columns.values())))
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(columns), out)
    elif fmt == "csv":
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(list(columns))
            for row in zip(*columns.values(), strict=True):
                writer.writerow([_csv_cell(v) for v in row])
    else:
        import json

        names = list(columns)
        records = (
            dict(zip(names, row, strict=True))
            for row in zip(*columns.values(), strict=True)
        )
        with open(out, "w", encoding="utf-8") as f:
            if fmt == "jsonl":
                for r in records:
                    f.write(json.dumps(r, default=str) + "\n")
            else:
                json.dump(list(records), f, default=str)
    return out, fmt, rows


#: First characters that make a spreadsheet read a cell as a formula.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A text cell made inert for spreadsheets (OWASP's CSV injection rule):
    keys and exception texts are untrusted, and ``=HYPERLINK(...)`` in one
    would run when the file is opened."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value
