"""Event logs: the monitor's events on disk, to replay after the cluster is gone.

File format (version :data:`FORMAT_VERSION`)
--------------------------------------------
Each file (segment) is::

    MAGIC (7 bytes, b"DMONLOG") + format version (1 byte)
    record*            # record = length (4 bytes, big-endian) + msgpack payload

The first record of every segment is the header, a map: ``format``
(``"dask-monitor-eventlog"``), ``version``, ``library`` (dask-monitor's version),
``dask``, ``distributed``, ``python``, ``cluster`` (scheduler address, workers,
...), ``started`` (when monitoring started), ``created`` (when this segment was
opened), ``config`` (the live pipeline's settings), ``segment`` (0, 1, ...),
and from the live plugin ``workers`` (``{address: {"nthreads", "first_seen"}}``:
the workers running when the recording began, whose ``added`` events are not in
the log; a replay adds them first).
The next records are arrays whose first item says what they are:

* ``["b", [event, ...]]``: one batch of events, as the pipeline got it; an
  event is ``["t", <TaskStatus fields in order>]``,
  ``["w", address, action, timestamp, nthreads, processing]`` (with a
  seventh item, ``true``, for a removal Dask expected: ``expected``),
  ``["m", <WorkerResources fields in order>]`` or
  ``["a", <Alert.to_dict()>]``;
* ``["r", timestamp]``: the aggregates were reset (Dask's ``restart``);
* ``["s", {span id: span name}]``: names of Dask spans;
* ``["e", {summary}]``: the footer, the last record of the last segment,
  written when the writer closes: ``tasks`` (tasks done), ``erred``,
  ``events``, ``dropped``, ``first`` and ``last`` (times of the first and
  last event, ``None`` for none) and ``seconds`` (``last - first``):
  what the events say, nothing of the writer's clock. A log without one is still being
  written, or its writer died: :func:`read_footer` finds it from the end
  of the file without reading the rest.

The header may also hold ``run`` (a run's name) and ``tags`` (a map of
text to text): see :mod:`dask_monitor.runs`.

A batch the pipeline hands over as a :class:`~dask_monitor.batch.Batch` is
queued as it is (its columns are never changed once made) and encoded on the
writer thread straight from its columns: every task event's row is made by
``zip`` over the columns, its rarer fields (``duration`` ... ``traceback``)
filled in from the batch's sparse ``details``, and the other events put back
at their positions. The record is the same, byte for byte, as that of the
batch's events encoded one by one, and no event object is made.

Reading a batch record back as a :class:`~dask_monitor.batch.Batch`
(``EventLog.records(columns=True)``, what a replay uses) is the reverse: the
rows of a record of task events only are turned into columns by ``zip``, with
no event object made; a record holding other events (or rows in another
shape) has those decoded one by one.

Versions: version 2 added ``transfer`` and ``disk`` at the end of task
events and the ``"m"`` events (worker resources). Version 3 added the
footer (``"e"``). Logs of versions 1 and 2 are
read as they are (their task events lack the two fields: ``None``); a reader
of version 1 refuses a log of version 2 by its version, not as corrupt.

Rotation: when a segment reaches ``max_bytes`` the writer opens the next one,
``path.1``, ``path.2``, ...; nothing is deleted, and :func:`read_events` reads
``path`` then every following segment that exists, in order.

URLs: a ``path`` with a protocol (``s3://bucket/runs/a.dmlog``) is written
and read through fsspec (see :mod:`dask_monitor.storage`). The writer keeps
each segment in a local temporary file and uploads it whole when it rotates
and on close, and the open one every ``upload_interval``; the reader streams
the segments with the same checks as local files.

Error policy of the reader
--------------------------
* A file that does not start with the magic bytes, is empty, or whose header
  cannot be read raises :class:`EventLogError`; a file of another format
  version raises :class:`EventLogVersionError` (a subclass) naming both versions.
  A later segment that is empty (a crash right after rotation) is skipped with
  an :class:`EventLogWarning`.
* A torn last record (the writer died in the middle of it) is skipped with an
  :class:`EventLogWarning`; every complete record before it is read.
* A complete record that does not decode is corruption: :class:`EventLogError`
  with the file and offset.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import math
import os
import platform
import queue
import shutil
import struct
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from dask_monitor.batch import NO_DETAILS, Batch, Details, key_texts
from dask_monitor.events import (
    Alert,
    Event,
    TaskStatus,
    WorkerResources,
    WorkerStatus,
    make_task_status,
)
from dask_monitor.storage import check_url, filesystem, is_url, join_url, show, under

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "EventLog",
    "EventLogError",
    "EventLogVersionError",
    "EventLogWarning",
    "EventLogWriter",
    "Record",
    "decode_batch",
    "decode_event",
    "encode_batch",
    "encode_event",
    "footer_offset",
    "read_events",
    "read_footer",
    "read_header",
    "segments",
]

logger = logging.getLogger(__name__)

MAGIC = b"DMONLOG"
FORMAT_VERSION = 3
#: Format versions this reader reads (see the module docstring).
READ_VERSIONS = frozenset({1, 2, 3})
FORMAT_NAME = "dask-monitor-eventlog"

_LEN = struct.Struct(">I")
_PREAMBLE = len(MAGIC) + 1


class EventLogError(ValueError):
    """An event log that cannot be read: not a log, empty, or corrupt."""


class EventLogVersionError(EventLogError):
    """An event log written in another format version."""


class EventLogWarning(UserWarning):
    """Part of an event log was skipped (torn last record, empty segment)."""


# -- encoding ----------------------------------------------------------------------


def encode_event(event: Event) -> list[Any]:
    """An event as a msgpack-safe list (see the module docstring)."""
    if type(event) is TaskStatus:
        return [
            "t",
            event.key,
            event.prefix,
            event.group,
            event.start,
            event.finish,
            event.timestamp,
            event.worker,
            event.duration,
            event.begin,
            event.end,
            event.nbytes,
            event.exception,
            event.traceback,
            event.span,
            event.transfer,
            event.disk,
        ]
    if type(event) is WorkerResources:
        return [
            "m",
            event.address,
            event.timestamp,
            event.memory,
            event.managed,
            event.unmanaged,
            event.spilled,
            event.limit,
            event.cpu,
            event.network_in,
            event.network_out,
            event.paused,
        ]
    if type(event) is WorkerStatus:
        row = [
            "w",
            event.address,
            event.action,
            event.timestamp,
            event.nthreads,
            event.processing,
        ]
        if event.expected:  # left out when false: logs older readers can read
            row.append(True)
        return row
    if type(event) is Alert:
        return ["a", event.to_dict()]
    raise TypeError(f"not an event: {event!r}")


def decode_event(item: Sequence[Any]) -> Event:
    """The event :func:`encode_event` encoded; ``ValueError`` for anything else."""
    kind = item[0]
    if kind == "t":
        if not 7 <= len(item) <= _TASK_ROW:  # trailing defaults may be left out
            raise ValueError(f"a task event of {len(item)} fields")
        given: list[tuple[Any, ...]] = [(v,) for v in item[1:]]
        given += [()] * (_TASK_ROW - len(item))
        _check_columns(given[:7], given[7:])
        return make_task_status(*item[1:])
    if kind == "w":
        if not (
            5 <= len(item) <= 7
            and isinstance(item[1], str)
            and item[2] in ("added", "removed")
            and type(item[3]) in (int, float)
            and type(item[4]) in (int, type(None))
            and (len(item) == 5 or type(item[5]) is int)
            and (len(item) < 7 or type(item[6]) is bool)
        ):
            raise ValueError(f"a malformed worker event {str(item)[:200]}")
        return WorkerStatus(*item[1:])
    if kind == "m":
        if not (
            len(item) == 12
            and isinstance(item[1], str)
            and all(type(v) in (int, float) for v in (item[2], *item[8:11]))
            and all(type(v) is int for v in item[3:7])
            and type(item[7]) in (int, type(None))
            and type(item[11]) is bool
        ):
            raise ValueError(f"a malformed resources event {str(item)[:200]}")
        return WorkerResources(*item[1:])
    if kind == "a":
        return Alert.from_dict(_lists(item[1]))
    raise ValueError(f"unknown event kind {kind!r}")


def _lists(value: Any) -> Any:
    """``value`` with every tuple made a list, in dicts and lists too.

    Records are unpacked with arrays as tuples (faster, and tuples of plain
    values are no work for the garbage collector); the one place where lists
    can reach users is an alert's ``details``, which had lists when it was
    written.
    """
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


#: Length of a task event's row: ``"t"`` and the fields of ``TaskStatus``.
_TASK_ROW = 1 + len(dataclasses.fields(TaskStatus))
#: Length of a task event's row in a log of version 1 (no transfer, disk).
_V1_TASK_ROW = _TASK_ROW - 2


def encode_batch(batch: Batch) -> list[Sequence[Any]]:
    """The events of ``batch`` encoded, straight from its columns.

    The same rows as ``[encode_event(e) for e in batch]`` (they pack to the
    same bytes: msgpack packs tuples as arrays), without making an event
    object. Reads only the batch's columns, which never change once made: safe
    on another thread than the batch's observers (unlike iterating it).
    """
    n = len(batch.keys)
    times = batch.times
    keys = key_texts(batch.keys)
    rows: list[Sequence[Any]] = list(
        zip(
            repeat("t", n),
            keys,
            batch.prefixes,
            batch.groups,
            batch.starts,
            batch.finishes,
            repeat(batch.time, n) if times is None else times,
            batch.workers,
            repeat(None, n),
            repeat(None, n),
            repeat(None, n),
            repeat(None, n),
            repeat(None, n),
            repeat(None, n),
            batch.spans,
            repeat(None, n),
            repeat(None, n),
            strict=True,
        )
    )
    if batch.details:
        prefixes = batch.prefixes
        groups = batch.groups
        starts = batch.starts
        finishes = batch.finishes
        workers = batch.workers
        spans = batch.spans
        for i, d in batch.details.items():
            # Unpacked by name: cheaper than d[0]..d[7] or d.duration ...
            duration, begin, end, nbytes, exception, traceback, transfer, disk = d
            rows[i] = (
                "t",
                keys[i],
                prefixes[i],
                groups[i],
                starts[i],
                finishes[i],
                batch.time if times is None else times[i],
                workers[i],
                duration,
                begin,
                end,
                nbytes,
                exception,
                traceback,
                spans[i],
                transfer,
                disk,
            )
    if not batch.others:
        return rows
    out: list[Sequence[Any]] = []
    done = 0
    for pos, other in batch.others:
        out.extend(rows[done:pos])
        out.append(encode_event(other))
        done = pos
    out.extend(rows[done:])
    return out


_STR = frozenset({str})
_NUMBER = frozenset({int, float})
_STR_OR_NONE = frozenset({str, type(None)})
_NUMBER_OR_NONE = frozenset({int, float, type(None)})
_INT_OR_NONE = frozenset({int, type(None)})
#: Types allowed in each column of task rows after ``"t"``: key, prefix,
#: group, start, finish, timestamp, worker; then duration, begin, end,
#: nbytes, exception, traceback, span, transfer, disk.
_COLUMN_TYPES = (
    (_STR, _STR, _STR, _STR, _STR, _NUMBER, _STR_OR_NONE),
    (
        _NUMBER_OR_NONE,
        _NUMBER_OR_NONE,
        _NUMBER_OR_NONE,
        _INT_OR_NONE,
        _STR_OR_NONE,
        _STR_OR_NONE,
        _STR_OR_NONE,
        _NUMBER_OR_NONE,
        _NUMBER_OR_NONE,
    ),
)
_COLUMN_NAMES = (
    ("key", "prefix", "group", "start", "finish", "timestamp", "worker"),
    (
        "duration",
        "begin",
        "end",
        "nbytes",
        "exception",
        "traceback",
        "span",
        "transfer",
        "disk",
    ),
)


def _check_columns(
    first: Sequence[Sequence[Any]], second: Sequence[Sequence[Any]]
) -> None:
    """``ValueError`` naming the field if a column holds a value of a wrong type.

    A log is read from a file anyone may have written: a row of the wrong
    shape must be refused here, not raise deep inside an observer.
    """
    for columns, types, names in zip(
        (first, second), _COLUMN_TYPES, _COLUMN_NAMES, strict=True
    ):
        for column, allowed, name in zip(columns, types, names, strict=True):
            found = set(map(type, column))
            if not found <= allowed:
                bad = sorted(t.__name__ for t in found - allowed)
                raise ValueError(f"a task event's {name} is a {', '.join(bad)}")


def decode_batch(items: Sequence[Sequence[Any]]) -> Batch:
    """The :class:`~dask_monitor.batch.Batch` of a batch record's encoded events.

    Equal, column for column, to ``Batch.from_events([decode_event(i) for i in
    items])``; a record of task events only (the usual one) is turned into
    columns by ``zip`` without making an event object. Raises like
    :func:`decode_event` for an item that is not an event.
    """
    rows: Sequence[Sequence[Any]] = items
    others: list[tuple[int, Event]] = []
    columns: list[tuple[Any, ...]] = []
    if items:
        lengths = set(map(len, items))
        if (
            len(lengths) == 1
            and lengths <= {_TASK_ROW, _V1_TASK_ROW}
            and set(map(type, items)) <= {tuple, list}
        ):
            columns = list(zip(*items, strict=True))
            if len(columns) == _V1_TASK_ROW:  # a log of version 1
                columns += [(None,) * len(items)] * (_TASK_ROW - _V1_TASK_ROW)
        if not columns or columns[0].count("t") != len(items):
            rows = []
            for item in items:
                if len(item) == _TASK_ROW and item[0] == "t":
                    rows.append(item)
                    continue
                event = decode_event(item)
                if type(event) is TaskStatus:
                    rows.append(encode_event(event))
                else:
                    others.append((len(rows), event))
            columns = list(zip(*rows, strict=True))
    if not columns:
        columns = [()] * _TASK_ROW
    (
        _,
        keys,
        prefixes,
        groups,
        starts,
        finishes,
        stamps,
        workers,
        durations,
        begins,
        ends,
        nbytes,
        exceptions,
        tracebacks,
        spans,
        transfers,
        disks,
    ) = columns
    details: dict[int, Details] = {
        i: tuple.__new__(Details, d)
        for i, d in enumerate(
            zip(
                durations,
                begins,
                ends,
                nbytes,
                exceptions,
                tracebacks,
                transfers,
                disks,
                strict=True,
            )
        )
        if d != NO_DETAILS
    }
    _check_columns(
        (keys, prefixes, groups, starts, finishes, stamps, workers),
        (
            durations,
            begins,
            ends,
            nbytes,
            exceptions,
            tracebacks,
            spans,
            transfers,
            disks,
        ),
    )
    return Batch.from_columns(
        keys=list(keys),
        prefixes=list(prefixes),
        groups=list(groups),
        starts=list(starts),
        finishes=list(finishes),
        workers=list(workers),
        spans=list(spans),
        timestamps=list(stamps),
        details=details,
        others=others,
    )


# -- writing -------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name, dist in (
        ("library", "dask-monitor"),
        ("dask", "dask"),
        ("distributed", "distributed"),
    ):
        try:
            out[name] = version(dist)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def segment_path(path: Path, n: int) -> Path:
    """Path of segment ``n`` of the log at ``path`` (``path``, ``path.1``, ...)."""
    return path if n == 0 else path.with_name(f"{path.name}.{n}")


def segments(path: str | os.PathLike[str]) -> list[Path]:
    """The existing segments of the log at ``path``, in order."""
    base = Path(path)
    out = []
    for n in itertools.count():
        p = segment_path(base, n)
        if not p.exists():
            break
        out.append(p)
    return out


def is_event_log(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` is a dask-monitor event log (its magic
    bytes), or empty: a file the writer may replace without losing anything."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    return not head or head == MAGIC


def check_log_path(path: str | os.PathLike[str]) -> None:
    """Raise unless a log may be written at ``path``: ``IsADirectoryError``,
    or ``FileExistsError`` for a file there, or at a segment's path, that is
    not an event log (nothing is removed until all were checked).

    A URL is checked through fsspec: its protocol first (``ConfigError``
    naming ``monitor.record.path``), then what is stored at each segment's
    place."""
    if is_url(path):
        url = os.fspath(path)
        check_url(url)
        fs, root = filesystem(url)
        _remote_segments(fs, root, check=True)
        return
    base = Path(path)
    for seg in [base, *segments(base)]:
        _replaceable(seg)


def _remote_segments(fs: Any, root: str, *, check: bool = False) -> list[str]:
    """The segments stored at ``root`` (``root``, ``root.1`` ...) in ``fs``;
    with ``check``, ``FileExistsError`` for one that is not an event log."""
    out = []
    for n in itertools.count():
        p = root if n == 0 else f"{root}.{n}"
        if not fs.exists(p):
            break
        if check:
            if fs.isdir(p):
                raise IsADirectoryError(
                    f"{show(fs.unstrip_protocol(p))} is a directory, not an event log"
                )
            with fs.open(p, "rb") as f:
                head = f.read(len(MAGIC))
            if head and head != MAGIC:
                raise FileExistsError(
                    f"{show(fs.unstrip_protocol(p))} exists and is not a "
                    "dask-monitor event log: not overwritten"
                )
        out.append(p)
    return out


def _replaceable(path: Path) -> None:
    """``FileExistsError`` unless what is at ``path`` may be replaced by a log."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not an event log path")
    if path.exists() and not is_event_log(path):
        raise FileExistsError(
            f"{path} exists and is not a dask-monitor event log: not overwritten"
        )


class EventLogWriter:
    """An observer that appends the events it is given to an event log.

    ``update_batch`` only puts the batch on a bounded queue (O(1), never
    blocks): a background thread encodes and writes it, flushing the file every
    ``flush_interval`` seconds and rotating it every ``max_bytes``. When the
    queue holds ``queue_size`` events already, the batch is dropped and its
    events counted in :attr:`dropped` (shown in the snapshot's
    ``monitor.sinks.eventlog`` section).

    Parameters
    ----------
    path
        The log's first segment; an existing log there (and its segments) is
        replaced. A file there that is not an event log is never touched:
        ``FileExistsError`` (``IsADirectoryError`` for a directory).
    header
        Extra header fields: ``cluster``, ``started``, ``config`` ...
    max_bytes
        Size after which the writer starts a new segment.
    queue_size
        Events waiting to be written, at most.
    flush_interval
        Seconds between flushes of the file (a crash loses at most that).
    checked
        The caller ran :func:`check_log_path` already (off the event loop):
        the constructor then touches no file. The directory, the removal of
        an old log and the file itself are made on the writer's thread.
    upload_interval
        For a URL: seconds between uploads of the open segment (a crash
        loses at most that much of it).

    Notes
    -----
    A ``path`` with a protocol (``s3://bucket/runs/a.dmlog``) is written
    through fsspec: each segment is written to a local temporary file, as a
    local log is, and uploaded (``path``, ``path.1`` ...) when it rotates and
    on close, the open one also every ``upload_interval``. A failed upload is
    logged (URL without credentials), counted in ``upload_errors`` and tried
    again at the next one; the recording goes on.

    Notes
    -----
    ``update_batch``, ``reset`` and ``name_spans`` may be called from any one
    thread (the scheduler's loop); :meth:`close` waits for the queue to drain.
    Write errors are logged once and counted in :attr:`errors`; the writer then
    drops what it is given.
    """

    name = "eventlog"
    is_sink = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        header: Mapping[str, Any] | None = None,
        max_bytes: int = 256 * 2**20,
        queue_size: int = 1_000_000,
        flush_interval: float = 1.0,
        checked: bool = False,
        upload_interval: float = 10.0,
    ) -> None:
        if (
            max_bytes <= 0
            or queue_size <= 0
            or flush_interval <= 0
            or upload_interval <= 0
        ):
            raise ValueError(
                "max_bytes, queue_size, flush_interval and upload_interval must be > 0"
            )
        #: The URL the log goes to, or ``None`` for a local log.
        self.url: str | None = os.fspath(path) if is_url(path) else None
        self.upload_interval = upload_interval
        self.uploads = 0  # segment uploads done
        self.upload_errors = 0
        self._pending: set[int] = set()  # closed segments not uploaded yet
        self._fs: Any = None
        self._root = ""
        self._tmp: str | None = None
        if self.url is not None:
            if not checked:
                check_log_path(self.url)
            # Written locally first: the upload is of whole segments.
            self._tmp = tempfile.mkdtemp(prefix="dask-monitor-log-")
            path = Path(self._tmp) / "log.dmlog"
            checked = True
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.header: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            **_versions(),
            "cluster": {},
            "started": time.time(),
            "config": {},
        }
        self.header.update(header or {})
        _redact_header(self.header)
        self.events = 0  # events written
        self.dropped = 0  # events dropped (queue full, or writer broken)
        self.errors = 0
        self.unencodable = 0  # events msgpack could not take (also in dropped)
        self.bytes = 0
        self.segment = 0
        # For the footer (writer thread only): tasks done and erred, and the
        # times of the first and last event written.
        self._done = 0
        self._erred = 0
        self._first: float | None = None
        self._last: float | None = None
        self._queued = 0  # events on the queue
        self._lock = threading.Lock()  # guards _queued, dropped and _names
        self._names: dict[str, str] = {}  # span names not written yet
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._closed = False
        self._broken = False
        if not checked:
            check_log_path(self.path)
        self._file: Any = None  # opened by the writer's thread
        self._thread = threading.Thread(
            target=self._run,
            name=f"dask-monitor-eventlog {self.path.name}",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<EventLogWriter {self.shown!r} events={self.events}>"

    @property
    def shown(self) -> str:
        """Where the log goes, as messages show it (a URL without credentials)."""
        return show(self.url) if self.url is not None else str(self.path)

    # -- observer side (scheduler loop) -------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Queue a batch to be written; drop it (counted) when the queue is full.

        A :class:`~dask_monitor.batch.Batch` is queued as it is (its columns
        never change) and encoded from its columns on the writer thread; any
        other sequence is copied.
        """
        n = len(events)
        with self._lock:
            if self._closed or self._broken or self._queued + n > self.queue_size:
                self.dropped += n
                return
            self._queued += n
        self._queue.put(("b", events if isinstance(events, Batch) else tuple(events)))

    def reset(self) -> None:
        """Record that the aggregates were reset (Dask's ``restart``)."""
        if not self._closed:
            self._queue.put(("r", time.time()))

    def name_spans(self, names: Mapping[str, str]) -> None:
        """Record the names of Dask spans.

        Names given while earlier ones wait to be written join them: at most
        one span-names record waits in the queue, however many calls come.
        """
        if self._closed or not names:
            return
        with self._lock:
            waiting = bool(self._names)
            self._names.update(names)
        if not waiting:
            self._queue.put(("s",))

    def stats(self) -> dict[str, Any]:
        """Counters for the snapshot's monitor section (plain data)."""
        out = {
            "path": self.shown,
            "events": self.events,
            "dropped": self.dropped,
            "queued": self._queued,
            "errors": self.errors,
            "unencodable": self.unencodable,
            "bytes": self.bytes,
            "segments": self.segment + 1,
        }
        if self.url is not None:
            out["uploads"] = self.uploads
            out["upload_errors"] = self.upload_errors
        return out

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, flush and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self.url is not None and timeout is not None:
            # The last upload (up to a whole segment) must finish: the
            # thread is a daemon, and what it has not uploaded is lost.
            timeout = max(timeout, 120.0)
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------

    def _open(self, n: int) -> Any:
        path = segment_path(self.path, n)
        if n and path.exists():  # a stray segment of an older log, past a gap
            _replaceable(path)
            path.unlink()
        # Exclusive: a file that appeared since the checks is not overwritten.
        f = open(path, "xb")  # noqa: SIM115 (closed by _run)
        head = dict(self.header, segment=n, created=time.time())
        payload = msgpack.packb(head, use_bin_type=True)
        f.write(MAGIC + bytes([FORMAT_VERSION]) + _LEN.pack(len(payload)) + payload)
        f.flush()
        self.segment = n
        self.bytes = _PREAMBLE + _LEN.size + len(payload)
        return f

    def _encode(self, item: tuple[Any, ...]) -> tuple[bytes | None, int]:
        """The record of ``item`` packed (``None`` if nothing of it can be),
        and how many events it holds.

        A value msgpack cannot take (a lone surrogate in a key, a numpy
        number in an alert's details) costs only the events that hold one:
        they are dropped and counted in ``unencodable``, the rest is written.
        """
        kind = item[0]
        if kind == "b":
            events = item[1]
            rows = (
                encode_batch(events)
                if isinstance(events, Batch)
                else [encode_event(e) for e in events]
            )
            record: list[Any] = ["b", rows]
        elif kind == "s":
            with self._lock:
                names, self._names = self._names, {}
            record = ["s", names]
        else:
            record = list(item)
        try:
            packed = bytes(msgpack.packb(record, use_bin_type=True))
            return packed, len(item[1]) if kind == "b" else 0
        except (TypeError, ValueError, OverflowError) as e:
            self._unencodable(e)
            if kind != "b":
                self.unencodable += 1
                return None, 0
        kept = []
        for row in rows:
            try:
                msgpack.packb(row, use_bin_type=True)
            except (TypeError, ValueError, OverflowError):
                continue
            kept.append(row)
        lost = len(rows) - len(kept)
        self.unencodable += lost
        with self._lock:
            self.dropped += lost
        if not kept:
            return None, 0
        return bytes(msgpack.packb(["b", kept], use_bin_type=True)), len(kept)

    def _unencodable(self, exc: Exception) -> None:
        if not self.unencodable:
            logger.warning(
                "dask-monitor: event log %s: events msgpack cannot encode are "
                "dropped and counted (%s: %s)",
                self.shown,
                type(exc).__name__,
                str(exc)[:200],
            )

    def _write(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        payload, n = self._encode(item)
        if payload is None:
            return
        if self.bytes >= self.max_bytes:
            self._file.close()
            if self.url is not None:
                self._pending.add(self.segment)
            self._file = self._open(self.segment + 1)
            if self.url is not None:
                self._upload(None)  # the closed one, as soon as it closes
        self._file.write(_LEN.pack(len(payload)))
        self._file.write(payload)
        self.bytes += _LEN.size + len(payload)
        if kind == "b":
            self.events += n
            self._count(item[1])

    def _count(self, events: Sequence[Event]) -> None:
        """Add a written batch to the footer's counts (writer thread)."""
        if not len(events):
            return
        if isinstance(events, Batch):
            finishes = events.finishes
            done, erred = finishes.count("memory"), finishes.count("erred")
            times = events.times if events.times is not None else [events.time]
            # min and max of the column: no per-event Python work.
            stamps = [min(times), max(times)] if times else []
            stamps += [e.timestamp for _, e in events.others]
        else:
            tasks = [e for e in events if type(e) is TaskStatus]
            done = sum(e.finish == "memory" for e in tasks)
            erred = sum(e.finish == "erred" for e in tasks)
            stamps = [e.timestamp for e in events]
        self._done += done
        self._erred += erred
        if stamps:
            low, high = min(stamps), max(stamps)
            self._first = low if self._first is None else min(self._first, low)
            self._last = high if self._last is None else max(self._last, high)

    def footer(self) -> dict[str, Any]:
        """The summary written as the last record when the writer closes."""
        first, last = self._first, self._last
        return {
            "tasks": self._done,
            "erred": self._erred,
            "events": self.events,
            "dropped": self.dropped,
            "first": first,
            "last": last,
            "seconds": None if first is None or last is None else last - first,
        }

    def _write_footer(self) -> None:
        """Append the footer to the open segment (not rotated: it is last)."""
        payload = bytes(msgpack.packb(["e", self.footer()], use_bin_type=True))
        self._file.write(_LEN.pack(len(payload)))
        self._file.write(payload)
        self.bytes += _LEN.size + len(payload)

    def _prepare(self) -> None:
        """Make the directory, remove the old log's segments, open the first.

        On the writer's thread: file-system calls can block (a network file
        system, a slow disk), and the scheduler's loop must not wait for them.
        """
        if self.url is not None:
            self._fs, self._root = filesystem(self.url)
            stale = _remote_segments(self._fs, self._root, check=True)
            for stale_seg in stale:
                self._fs.rm_file(stale_seg)
        old = segments(self.path)
        for seg in [self.path, *old]:
            _replaceable(seg)  # again: the file system may have changed since
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for seg in old:
            seg.unlink()
        self._file = self._open(0)

    def _upload(self, current: bool | None) -> bool:
        """Upload the closed segments not uploaded yet, and with ``current``
        the open one (flushed first); failures are counted, kept for later.

        Uploaded closed segments are removed locally: the disk holds at most
        the open segment and those whose upload failed.
        """
        if self._fs is None:
            return False
        ok = True
        todo = sorted(self._pending)
        if current:
            todo.append(self.segment)
        for n in todo:
            local = segment_path(self.path, n)
            remote = self._root if n == 0 else f"{self._root}.{n}"
            try:
                if n == self.segment and self._file is not None:
                    self._file.flush()
                self._fs.put_file(os.fspath(local), remote)
            except Exception as e:
                ok = False
                self.upload_errors += 1
                logger.warning(
                    "dask-monitor: uploading segment %d of the event log %s "
                    "failed (tried again later): %s",
                    n,
                    self.shown,
                    show(type(e).__name__ + ": " + str(e)[:200]),
                )
                continue
            self.uploads += 1
            if n in self._pending:
                self._pending.discard(n)
                local.unlink(missing_ok=True)
        return ok

    def _run(self) -> None:
        last_flush = last_upload = time.monotonic()
        get = self._queue.get
        try:
            self._prepare()
        except Exception:
            self._fail(())
        try:
            while True:
                try:
                    item = get(timeout=self.flush_interval)
                except queue.Empty:
                    item = ()
                if item is None:
                    break
                if item:
                    if item[0] == "b":
                        with self._lock:
                            self._queued -= len(item[1])
                    if not self._broken:
                        try:
                            self._write(item)
                        except Exception:
                            self._fail(item)
                    elif item[0] == "b":
                        with self._lock:
                            self.dropped += len(item[1])
                now = time.monotonic()
                if now - last_flush >= self.flush_interval and not self._broken:
                    last_flush = now
                    try:
                        self._file.flush()
                    except Exception:
                        self._fail(())
                if (
                    self.url is not None
                    and now - last_upload >= self.upload_interval
                    and not self._broken
                ):
                    last_upload = now
                    self._upload(True)
        finally:
            if self._file is not None:
                try:
                    if not self._broken:
                        self._write_footer()
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except Exception:
                    pass
                self._file.close()
                if self.url is not None:
                    self._file = None
                    if not self._upload(True):
                        self._pending.add(self.segment)
            if self._tmp is not None:
                if self._pending:  # kept: the only copy of what was not uploaded
                    logger.error(
                        "dask-monitor: segments %s of the event log %s were not "
                        "uploaded; they are kept in %s",
                        sorted(self._pending),
                        self.shown,
                        self._tmp,
                    )
                else:
                    shutil.rmtree(self._tmp, ignore_errors=True)

    def _fail(self, item: tuple[Any, ...]) -> None:
        self.errors += 1
        self._broken = True
        if item and item[0] == "b":
            with self._lock:
                self.dropped += len(item[1])
        logger.error(
            "dask-monitor: writing the event log %s failed; recording stopped",
            self.shown,
            exc_info=self.url is None,  # a URL's error text may hold secrets
        )


def _redact_header(header: dict[str, Any]) -> None:
    """Hide credentials of a URL in the header's recorded settings."""
    config = header.get("config")
    if not isinstance(config, dict):
        return
    record = config.get("record")
    if isinstance(record, dict) and isinstance(record.get("path"), str):
        shown = {**record, "path": show(record["path"])}
        header["config"] = {**config, "record": shown}


# -- reading -------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """One record of a log after the header: ``kind`` is ``"b"``, ``"r"`` or ``"s"``.

    A batch record has its events in ``events``, or, read with
    ``EventLog.records(columns=True)``, in ``batch`` as columns (``events``
    is then empty).
    """

    kind: str
    events: list[Event] = field(default_factory=list)
    timestamp: float | None = None
    names: dict[str, str] = field(default_factory=dict)
    batch: Batch | None = None
    summary: dict[str, Any] = field(default_factory=dict)


#: Largest record (or header) a reader accepts. The writer's records are a
#: flush's batch (about 100 bytes an event): far below it. A length prefix
#: above it is a corrupt or hostile file, not a reason to allocate.
MAX_RECORD_BYTES = 256 * 2**20


def _reason(exc: BaseException) -> str:
    """An exception as a reason: its text, or its type when it has none."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_preamble(path: Any, f: BinaryIO) -> dict[str, Any]:
    """The header of the segment ``f`` (at its start); leaves ``f`` after it."""
    head = f.read(_PREAMBLE)
    if not head:
        raise EventLogError(f"{path}: empty file, not a dask-monitor event log")
    if not head.startswith(MAGIC) or len(head) < _PREAMBLE:
        raise EventLogError(f"{path}: not a dask-monitor event log (bad magic bytes)")
    version = head[len(MAGIC)]
    if version not in READ_VERSIONS:
        raise EventLogVersionError(
            f"{path}: event log format version {version}; this dask-monitor reads "
            f"versions {_versions_text()} (use the dask-monitor release that wrote it)"
        )
    try:
        header = _next_record(f)
    except _Torn as e:
        raise EventLogError(f"{path}: truncated header") from e
    except Exception as e:
        raise EventLogError(f"{path}: unreadable header: {_reason(e)}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise EventLogError(f"{path}: not a dask-monitor event log (bad header)")
    if header.get("version") != version:
        raise EventLogVersionError(
            f"{path}: event log format version {header.get('version')!r} in a "
            f"file of version {version}; this dask-monitor reads versions "
            f"{_versions_text()}"
        )
    problem = _header_problem(header)
    if problem:
        raise EventLogError(f"{path}: bad header: {problem}")
    return header


def _versions_text() -> str:
    return ", ".join(map(str, sorted(READ_VERSIONS)))


def _header_problem(header: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a header that readers use, if anything."""
    for name, kinds in (
        ("started", (int, float)),
        ("created", (int, float)),
        ("config", (dict,)),
        ("cluster", (dict,)),
        ("versions", (dict,)),
        ("segment", (int,)),
    ):
        value = header.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, kinds)
        ):
            return f"{name!r} is a {type(value).__name__}"
    started = header.get("started")
    if started is not None and not math.isfinite(started):
        return f"'started' is {started!r}"
    return None


class _Torn(Exception):
    pass


def _next_record(f: BinaryIO, use_list: bool = True) -> Any:
    """The next length-prefixed record of ``f``; ``_Torn`` if it is cut short,
    ``EOFError`` at the end of the file."""
    prefix = f.read(_LEN.size)
    if not prefix:
        raise EOFError
    if len(prefix) < _LEN.size:
        raise _Torn
    (n,) = _LEN.unpack(prefix)
    if n > MAX_RECORD_BYTES:
        if n > _size(f) - f.tell():
            raise _Torn  # cannot be told from a record the writer did not finish
        raise ValueError(
            f"a record of {n:,} bytes, more than the {MAX_RECORD_BYTES:,} allowed"
        )
    data = f.read(n)
    if len(data) < n:
        raise _Torn
    return msgpack.unpackb(data, raw=False, use_list=use_list)


def _size(f: Any) -> int:
    """Size of the open file ``f``: local, or fsspec's (which has ``size``)."""
    size = getattr(f, "size", None)
    if isinstance(size, int):
        return size
    return os.fstat(f.fileno()).st_size


def _open_segment(path: Path | str, fs: Any) -> Any:
    """``path`` opened for reading: a local file, or streamed through ``fs``."""
    if fs is None:
        return open(path, "rb")
    return fs.open(path, "rb")


def _label(path: Path | str, fs: Any) -> Any:
    """How messages name a segment: a URL without credentials."""
    return path if fs is None else show(fs.unstrip_protocol(str(path)))


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of the log at ``path`` (see the module docstring for errors).

    Reads the first bytes only: what is not a log is refused before any more
    of it is read. ``path`` may be a URL (read through fsspec).
    """
    if is_url(path):
        url = os.fspath(path)
        check_url(url, setting="the log's URL")
        fs, root = filesystem(url)
        # The first segment's first bytes, one ranged read (no request for
        # its size first): a listing reads the header of every log there.
        # A header longer than them (thousands of workers) takes a second.
        head = fs.cat_file(root, start=0, end=_HEADER_BLOCK)
        if len(head) == _HEADER_BLOCK and head.startswith(MAGIC):
            (n,) = _LEN.unpack(head[_PREAMBLE : _PREAMBLE + _LEN.size])
            if n > MAX_RECORD_BYTES:  # refused: streamed, the reader says why
                with fs.open(root, "rb", block_size=_HEADER_BLOCK) as f:
                    return _read_preamble(_label(root, fs), f)
            end = _PREAMBLE + _LEN.size + n
            if end > len(head):
                head += fs.cat_file(root, start=len(head), end=end)
        return _read_preamble(_label(root, fs), _Head(head))
    p = Path(path)
    with open(p, "rb") as f:
        return _read_preamble(p, f)


#: Bytes read at first of a header at a URL (a header is a few KiB).
_HEADER_BLOCK = 64 * 1024


class _Head(io.BytesIO):
    """The first bytes of a segment, read whole: their ``size`` is what the
    reader's record checks take as the file's (``_size``)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.size = len(data)


def _read_segment(
    seg: Path | str, first: bool, columns: bool, fs: Any = None, start: int = 0
) -> Iterator[tuple[Record, int]]:
    """Each record of the segment ``seg`` with the byte where it ends; from
    byte ``start`` (where an earlier record ended) when given."""
    path = _label(seg, fs)
    with _open_segment(seg, fs) as f:
        if not first and not f.read(1):
            warnings.warn(
                f"{path}: empty event log segment skipped",
                EventLogWarning,
                stacklevel=3,
            )
            return
        f.seek(0)
        _read_preamble(path, f)
        if start:
            f.seek(start)
        while True:
            offset = f.tell()
            try:
                item = _next_record(f, use_list=False)
            except EOFError:
                return
            except _Torn:
                size = f.seek(0, os.SEEK_END)
                warnings.warn(
                    f"{path}: torn last record at byte {offset} skipped "
                    f"({size - offset} bytes); the writer did not finish it",
                    EventLogWarning,
                    stacklevel=3,
                )
                return
            except Exception as e:
                raise EventLogError(
                    f"{path}: corrupt record at byte {offset}: {_reason(e)}"
                ) from e
            try:
                record = _record(item, columns)
            except Exception as e:
                raise EventLogError(
                    f"{path}: bad record at byte {offset}: {_reason(e)}"
                ) from e
            yield record, f.tell()


def _record(item: Any, columns: bool) -> Record:
    kind = item[0]
    if kind == "b":
        if columns:
            return Record("b", batch=decode_batch(item[1]))
        return Record("b", events=[decode_event(e) for e in item[1]])
    if kind == "r":
        return Record("r", timestamp=item[1])
    if kind == "s":
        return Record("s", names={str(k): str(v) for k, v in item[1].items()})
    if kind == "e":
        return Record("e", summary=checked_footer(item[1]))
    raise ValueError(f"unknown record kind {kind!r}")


@dataclass(slots=True)
class EventLog:
    """An event log opened for reading: its header and its segments."""

    path: Path | str
    header: dict[str, Any]
    files: list[Path] | list[str]
    #: The fsspec file system of a log at a URL (``None``: a local log).
    fs: Any = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EventLog:
        """Read the header of the log at ``path``; ``FileNotFoundError`` if none.

        ``path`` may be a URL (``s3://bucket/runs/a.dmlog``): its segments are
        streamed through fsspec, with the same checks as local files.
        """
        if is_url(path):
            url = os.fspath(path)
            check_url(url, setting="the log's URL")
            fs, root = filesystem(url)
            fs.invalidate_cache()  # a log still being written grows
            if not fs.exists(root):
                raise FileNotFoundError(f"no event log at {show(url)}")
            with fs.open(root, "rb") as f:
                header = _read_preamble(_label(root, fs), f)
            return cls(url, header, _remote_segments(fs, root), fs)
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no event log at {p}")
        return cls(p, read_header(p), segments(p))

    def records(self, *, columns: bool = False) -> Iterator[Record]:
        """Every record of every segment, in order (torn tail skipped, warned).

        The footer is checked but not yielded: like the header, it is about
        the log (see :func:`read_footer`), not a record of the run.

        With ``columns``, each batch record comes as a
        :class:`~dask_monitor.batch.Batch` in :attr:`Record.batch` (no event
        object made), else as a list of events in :attr:`Record.events`.
        """
        for record, _, _ in self.records_from(columns=columns):
            yield record

    def records_from(
        self, segment: int = 0, offset: int = 0, *, columns: bool = False
    ) -> Iterator[tuple[Record, int, int]]:
        """The records from byte ``offset`` of segment ``segment`` on, as
        :meth:`records`, each with its segment and the byte where it ends:
        where to go on from once a log still being written has grown.

        ``offset`` must be where a record ended (or 0): anything else reads
        as corruption.
        """
        files: list[Path | str] = list(self.files)
        for i in range(segment, len(files)):
            start = offset if i == segment else 0
            for record, end in _read_segment(
                files[i], first=i == 0, columns=columns, fs=self.fs, start=start
            ):
                if record.kind != "e":
                    yield record, i, end

    def events(self) -> Iterator[Event]:
        """Every event, in order."""
        for record in self.records():
            yield from record.events


#: Fields of a footer and the types a reader accepts for each.
_FOOTER_FIELDS: dict[str, tuple[type, ...]] = {
    "tasks": (int,),
    "erred": (int,),
    "events": (int,),
    "dropped": (int,),
    "first": (int, float, type(None)),
    "last": (int, float, type(None)),
    "seconds": (int, float, type(None)),
}
#: The largest footer :func:`read_footer` looks for (the writer's is ~150 bytes).
MAX_FOOTER_BYTES = 4096


def checked_footer(value: Any) -> dict[str, Any]:
    """The known fields of a footer read from a file, type-checked.

    ``ValueError`` naming the field for a value of a wrong type (a number
    that is not finite counts as one): a file may hold anything.
    """
    if not isinstance(value, dict):
        raise ValueError(f"a footer that is a {type(value).__name__}")
    out: dict[str, Any] = {}
    for name, kinds in _FOOTER_FIELDS.items():
        v = value.get(name)
        if isinstance(v, bool) or not isinstance(v, kinds):
            if v is None and type(None) not in kinds:
                raise ValueError(f"a footer without {name!r}")
            raise ValueError(f"a footer whose {name!r} is a {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"a footer whose {name!r} is {v!r}")
        if isinstance(v, int) and v < 0:
            raise ValueError(f"a footer whose {name!r} is {v!r}")
        out[name] = v
    return out


def read_footer(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The footer of the log at ``path``, or ``None`` if it has none.

    Reads only the end of the last segment: the footer is a record that ends
    the file, found by its length prefix and its kind, so a listing of many
    logs reads a few KiB of each. A log still being written, or whose writer
    died, has none. A footer that does not check out (see
    :func:`checked_footer`) counts as none: it is a summary, never trusted
    over the log itself.
    """
    found = footer_offset(path)
    return None if found is None else found[1]


def footer_offset(
    path: str | os.PathLike[str],
) -> tuple[int, dict[str, Any]] | None:
    """Where the footer of the log at ``path`` starts in its last segment (the
    byte of its length prefix), and the footer; ``None`` for a log without one."""
    if is_url(path):
        url = os.fspath(path)
        check_url(url, setting="the log's URL")
        fs, root = filesystem(url)
        fs.invalidate_cache()  # a log still being written grows
        remote = _remote_segments(fs, root)
        if not remote:
            raise FileNotFoundError(f"no event log at {show(url)}")
        size = fs.size(remote[-1])
        start = max(0, size - MAX_FOOTER_BYTES)
        tail = fs.cat_file(remote[-1], start=start, end=size) if size else b""
    else:
        files = segments(path)
        if not files:
            raise FileNotFoundError(f"no event log at {path}")
        with open(files[-1], "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - MAX_FOOTER_BYTES)
            f.seek(start)
            tail = f.read()
    # ["e", {...}] packs as fixarray(2), fixstr "e": the payload's first bytes.
    mark = b"\x92\xa1e"
    at = tail.rfind(mark)
    while at >= _LEN.size:
        (n,) = _LEN.unpack(tail[at - _LEN.size : at])
        if at + n == len(tail):
            try:
                item = msgpack.unpackb(tail[at:], raw=False)
                return start + at - _LEN.size, checked_footer(item[1])
            except Exception:
                return None
        at = tail.rfind(mark, 0, at)
    return None


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Every event of the log at ``path`` (all segments), in order."""
    return EventLog.open(path).events()


# -- settings --------------------------------------------------------------------------


def record_settings(value: Any) -> dict[str, Any] | None:
    """Writer keyword arguments from Dask config ``monitor.record``, or ``None``.

    ``monitor.record`` is a path (record from the plugin's start), or a mapping
    with ``path`` and optionally ``directory`` (logs must lie in it; a
    relative ``path`` is taken inside it: see :func:`confine`), ``max-bytes``
    (a size: ``"256 MiB"``, at least 1 MiB), ``queue-size`` (an integer) and
    ``flush-interval`` (a duration, 10 ms to 1 h), ``upload-interval`` (for a
    URL: a duration, 1 s to 1 h); ``None`` or an empty
    ``path`` records nothing.

    Raises
    ------
    ConfigError
        For a value of another shape or an invalid setting, naming it.
    """
    from dask_monitor.config import ConfigError, RecordSettings

    if value is None or value == "" or value is False:
        return None
    if isinstance(value, str | os.PathLike):
        if is_url(value):
            check_url(os.fspath(value))
        return {"path": os.fspath(value)}
    if not isinstance(value, Mapping):
        raise ConfigError(f"monitor.record must be a path or a mapping, got {value!r}")
    options = {str(k).replace("-", "_"): v for k, v in value.items()}
    known = {
        "path",
        "directory",
        "max_bytes",
        "queue_size",
        "flush_interval",
        "upload_interval",
    }
    unknown = set(options) - known
    if unknown:
        raise ConfigError(
            f"unknown monitor.record settings: {sorted(unknown)}; known: "
            + ", ".join(sorted(k.replace("_", "-") for k in known))
        )
    path = options.get("path")
    if not path:
        return None
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"monitor.record.path must be a path, got {path!r}")
    if is_url(path):
        check_url(os.fspath(path))  # a bad protocol fails before any side effect
    directory = options.pop("directory", None)
    if directory is not None:
        path = confine(path, directory)
    options.pop("path")
    settings = RecordSettings.from_config(None, options)  # the other fields
    return {"path": os.fspath(path), **settings.writer_options()}


def confine(path: str | os.PathLike[str], directory: Any) -> Path | str:
    """``path`` inside ``directory`` (relative: joined to it), resolved.

    Symbolic links and ``..`` are resolved before the check, so none leads
    out. Raises :class:`~dask_monitor.config.ConfigError` for a path outside
    ``directory``.
    """
    from dask_monitor.config import ConfigError

    if not isinstance(directory, str | os.PathLike) or not os.fspath(directory):
        raise ConfigError(f"monitor.record.directory must be a path, got {directory!r}")
    if is_url(directory) or is_url(path):
        return _confine_url(os.fspath(path), os.fspath(directory))
    root = Path(directory).resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(
            f"monitor.record.path {os.fspath(path)!r} is outside "
            f"monitor.record.directory {os.fspath(directory)!r}"
        )
    return resolved


def _confine_url(path: str, directory: str) -> str:
    """``path`` (a URL, or relative: taken inside) inside the URL ``directory``.

    A URL is allowed only under a URL directory: a local directory confines
    to the scheduler's disk, and a URL would leave it.
    """
    from dask_monitor.config import ConfigError

    if not is_url(directory):
        raise ConfigError(
            f"monitor.record.path {show(path)!r} is a URL but "
            f"monitor.record.directory {directory!r} is a local directory"
        )
    check_url(directory, setting="monitor.record.directory")
    if not is_url(path) and (os.path.isabs(path) or ".." in Path(path).parts):
        raise ConfigError(
            f"monitor.record.path {path!r} is outside "
            f"monitor.record.directory {show(directory)!r}"
        )
    url = join_url(directory, path)
    check_url(url)
    if not under(url, directory):
        raise ConfigError(
            f"monitor.record.path {show(url)!r} is outside "
            f"monitor.record.directory {show(directory)!r}"
        )
    return url


def auto_log_path(
    directory: str | os.PathLike[str], cluster: str, when: float | None = None
) -> str:
    """A new log's place in ``directory`` (local or a URL), named
    ``<date>-<cluster>-<n>.dmlog``: the UTC date, the cluster (its scheduler's
    address, made safe for a file name) and the day's run number ``n``: the
    first above those of the logs of that date already there (any cluster's,
    so the day's runs count up even where each cluster's address differs).

    Lists the directory (a network call for a URL): call it off the event loop.
    """
    import re

    date = time.strftime("%Y-%m-%d", time.gmtime(time.time() if when is None else when))
    name = re.sub(r"[^A-Za-z0-9.]+", "-", cluster.split("://")[-1]).strip("-.")
    prefix = f"{date}-{name or 'cluster'}"
    pattern = re.compile(rf"^{re.escape(date)}-.*-(\d+)\.dmlog$")
    text = os.fspath(directory)
    if is_url(text):
        fs, root = filesystem(text)
        fs.invalidate_cache(root)
        try:
            found = fs.ls(root, detail=False)
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in found]
        except FileNotFoundError:
            names = []
    else:
        try:
            names = os.listdir(text)
        except FileNotFoundError:
            names = []
    taken = [int(m.group(1)) for m in map(pattern.match, names) if m]
    log = f"{prefix}-{max(taken, default=0) + 1}.dmlog"
    return join_url(text, log) if is_url(text) else os.fspath(Path(text) / log)
