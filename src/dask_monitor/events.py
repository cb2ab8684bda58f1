"""Events: what observers see.

Every event is an immutable, slotted dataclass made of plain values (``str``,
``int``, ``float``, ``None``, and a ``dict`` of plain values for alert details),
so that it can be logged, pickled, sent as msgpack or JSON, and replayed.

This module uses the standard library only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

__all__ = [
    "NEW",
    "Alert",
    "Event",
    "TaskStatus",
    "WorkerResources",
    "WorkerStatus",
    "exception_type",
]

#: Pseudo start state of a task the monitor sees for the first time.
#:
#: Dask creates tasks in ``released`` without a transition; the plugin reports
#: such a creation (and, when it attaches to a busy scheduler, every task that
#: already exists) as a transition ``NEW -> state``.
NEW = "new"


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """One task transition on the scheduler.

    Attributes
    ----------
    key
        The task key in ``str`` form (tuples become their ``str()``).
    prefix
        Task prefix name, e.g. ``"inc"`` (``TaskPrefix.name``).
    group
        Task group name, e.g. ``"inc-8a7bc0d1"`` (``TaskGroup.name``).
    start
        State before the transition, or :data:`NEW` for a task seen the first time.
    finish
        State actually reached (Dask may reach another state than it recommended).
    timestamp
        Wall-clock time (``time.time()`` on the scheduler) at which the
        transition was observed; precise to the plugin's flush interval.
    worker
        Address of the worker concerned: where the task ran (``-> memory``,
        ``-> erred``) or was running (``processing -> released``), else ``None``.
    duration
        Compute seconds from the worker's ``startstops``, where known.
    begin, end
        Wall-clock start and stop of the compute, where known.
    nbytes
        Size of the result in bytes, where known.
    exception
        Exception text (``repr`` of the exception), for ``-> erred``, and for
        ``processing -> released`` of an attempt that raised and that Dask
        retries (``""`` if its text was missed). A task that erred because a
        dependency did has the failing task's text.
    traceback
        Traceback text, likewise; for a task that erred because of another,
        it starts with a line naming that task
        (:func:`~dask_monitor.observers.errors.cause_line`).
    span
        Id of the Dask span the task belongs to, where known.
    transfer
        Seconds the worker spent fetching the task's dependencies from other
        workers (its ``startstops`` of action ``transfer``), where known.
    disk
        Seconds spent reading spilled inputs from disk and writing the
        result to it (``disk-read`` and ``disk-write``), where known.
    """

    key: str
    prefix: str
    group: str
    start: str
    finish: str
    timestamp: float
    worker: str | None = None
    duration: float | None = None
    begin: float | None = None
    end: float | None = None
    nbytes: int | None = None
    exception: str | None = None
    traceback: str | None = None
    span: str | None = None
    transfer: float | None = None
    disk: float | None = None

    @property
    def exception_type(self) -> str | None:
        """The exception's class name parsed from :attr:`exception`, or ``None``."""
        return exception_type(self.exception)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A worker joined or left the cluster.

    Attributes
    ----------
    address
        The worker's address.
    action
        ``"added"`` or ``"removed"``.
    timestamp
        Wall-clock time on the scheduler.
    nthreads
        Threads of the worker, where known.
    processing
        Tasks the worker was processing when it left (``"removed"`` only).
    expected
        Dask expected the removal (``"removed"`` only): a graceful
        ``retire_workers``, whose tasks are rescheduled by design, not a loss.
    """

    address: str
    action: Literal["added", "removed"]
    timestamp: float
    nthreads: int | None = None
    processing: int = 0
    expected: bool = False


#: Characters kept of an alert's text fields (message, key ...); see :func:`clip`.
MAX_ALERT_TEXT = 1_000


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with ``…`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "\u2026"


@dataclass(frozen=True, slots=True)
class Alert:
    """Something went wrong, or is about to: a stall, an error burst, ...

    Attributes
    ----------
    kind
        Short name of the rule that fired, e.g. ``"stall"`` or ``"straggler"``.
    severity
        ``"info"``, ``"warning"`` or ``"error"``.
    message
        One human-readable sentence.
    timestamp
        Wall-clock time at which the rule fired.
    prefix, key, worker
        What the alert is about, where it applies.
    details
        Plain data (JSON- and msgpack-safe) with the rule's figures.
    """

    kind: str
    severity: Literal["info", "warning", "error"]
    message: str
    timestamp: float
    prefix: str | None = None
    key: str | None = None
    worker: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Alerts quote task keys and exception text, which can be megabytes:
        # one such alert would hold up every sink (NATS, logs, terminals).
        for name in ("kind", "message", "prefix", "key", "worker"):
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > MAX_ALERT_TEXT:
                object.__setattr__(self, name, clip(value, MAX_ALERT_TEXT))

    def to_dict(self) -> dict[str, Any]:
        """The alert as a plain dict (JSON- and msgpack-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        """Build an alert from :meth:`to_dict` output, ignoring unknown fields.

        Raises
        ------
        ValueError
            If ``data`` is not a mapping with at least ``kind``, ``severity``,
            ``message`` and ``timestamp`` of the right types.
        """
        if not isinstance(data, dict):
            raise ValueError(f"an alert must be a mapping, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name, kind in (("kind", str), ("severity", str), ("message", str)):
            if not isinstance(values.get(name), kind):
                raise ValueError(f"an alert needs a str {name!r}")
        if not isinstance(values.get("timestamp"), int | float):
            raise ValueError("an alert needs a numeric 'timestamp'")
        if values["severity"] not in ("info", "warning", "error"):
            raise ValueError(f"unknown alert severity {values['severity']!r}")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class WorkerResources:
    """One sample of a worker's resources, as the scheduler knows them.

    Read off the worker's heartbeats (``WorkerState.memory``, ``.metrics``,
    ``.status``) by the plugin about once a second: every worker of one
    round of sampling has the same ``timestamp``.

    Attributes
    ----------
    address
        The worker's address.
    timestamp
        Wall-clock time of the round of sampling, on the scheduler.
    memory
        Process memory (RSS) in bytes.
    managed
        Bytes of task results held in memory (``sizeof``).
    unmanaged
        ``memory - managed``: the interpreter, running tasks, leaks ...
    spilled
        Bytes of task results spilled to disk.
    limit
        The worker's memory limit in bytes; ``None`` without one.
    cpu
        CPU use of the worker process in percent (100: one core busy).
    network_in, network_out
        Network bytes per second received and sent, as the worker's system
        monitor measures them (``host_net_io``); ``0.0`` where unknown.
    paused
        Whether the worker is paused (memory above its pause threshold).
    """

    address: str
    timestamp: float
    memory: int
    managed: int
    unmanaged: int
    spilled: int
    limit: int | None
    cpu: float
    network_in: float = 0.0
    network_out: float = 0.0
    paused: bool = False


Event = TaskStatus | WorkerStatus | Alert | WorkerResources


def exception_type(exception: str | None) -> str | None:
    """The exception's class name parsed from an exception text, or ``None``.

    ``"ValueError('odd')"`` and ``"ValueError: odd"`` give ``"ValueError"``.
    """
    if exception is None:
        return None
    text = exception.strip()
    cut = len(text)
    for sep in ("(", ":", " "):
        i = text.find(sep)
        if 0 < i < cut:
            cut = i
    return text[:cut] or None


# A frozen dataclass sets each field through ``object.__setattr__``, which makes
# it several times slower to build than a plain slotted one. Batches make their
# ``TaskStatus`` objects only for whoever asks (user observers, samples,
# errors), but then for many events at once, so they build a mutable twin with
# the same slots and give the object its real, frozen class. The result is
# indistinguishable from ``TaskStatus(...)`` (tests check that); users never
# see the twin.
_TaskStatusTwin = dataclasses.make_dataclass(
    "_TaskStatusTwin",
    [(f.name, f.type, f) for f in dataclasses.fields(TaskStatus)],
    slots=True,
)


def make_task_status(
    key: str,
    prefix: str,
    group: str,
    start: str,
    finish: str,
    timestamp: float,
    worker: str | None = None,
    duration: float | None = None,
    begin: float | None = None,
    end: float | None = None,
    nbytes: int | None = None,
    exception: str | None = None,
    traceback: str | None = None,
    span: str | None = None,
    transfer: float | None = None,
    disk: float | None = None,
) -> TaskStatus:
    """Build a :class:`TaskStatus` fast; same arguments and result as the class."""
    obj = _TaskStatusTwin(
        key,
        prefix,
        group,
        start,
        finish,
        timestamp,
        worker,
        duration,
        begin,
        end,
        nbytes,
        exception,
        traceback,
        span,
        transfer,
        disk,
    )
    obj.__class__ = TaskStatus
    return cast(TaskStatus, obj)


def make_task_statuses(
    keys: Sequence[str],
    prefixes: Sequence[str],
    groups: Sequence[str],
    starts: Sequence[str],
    finishes: Sequence[str],
    timestamps: Iterable[float],
    workers: Sequence[str | None],
    spans: Sequence[str | None],
    details: Mapping[int, tuple[Any, ...]],
) -> list[TaskStatus]:
    """Many :class:`TaskStatus` at once from columns (a batch's); ``details``
    maps an index to its ``(duration, begin, end, nbytes, exception,
    traceback, transfer, disk)``. The twins are made by ``map`` at C speed."""
    n = len(keys)
    rare: list[list[Any]] = [[None] * n for _ in range(8)]
    for i, values in details.items():
        for column, value in zip(rare, values, strict=True):
            column[i] = value
    objs = list(
        map(
            _TaskStatusTwin,
            keys,
            prefixes,
            groups,
            starts,
            finishes,
            timestamps,
            workers,
            *rare[:6],
            spans,
            *rare[6:],
        )
    )
    for obj in objs:
        obj.__class__ = TaskStatus
    return cast("list[TaskStatus]", objs)
