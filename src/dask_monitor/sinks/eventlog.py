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
  ``["w", address, action, timestamp, nthreads, processing]`` or
  ``["a", <Alert.to_dict()>]``;
* ``["r", timestamp]``: the aggregates were reset (Dask's ``restart``);
* ``["s", {span id: span name}]``: names of Dask spans.

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

Rotation: when a segment reaches ``max_bytes`` the writer opens the next one,
``path.1``, ``path.2``, ...; nothing is deleted, and :func:`read_events` reads
``path`` then every following segment that exists, in order.

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
import itertools
import logging
import os
import platform
import queue
import struct
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import msgpack

from dask_monitor.batch import NO_DETAILS, Batch, Details, key_texts
from dask_monitor.events import (
    Alert,
    Event,
    TaskStatus,
    WorkerStatus,
    make_task_status,
)

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
    "read_events",
    "read_header",
    "segments",
]

logger = logging.getLogger(__name__)

MAGIC = b"DMONLOG"
FORMAT_VERSION = 1
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
        ]
    if type(event) is WorkerStatus:
        return [
            "w",
            event.address,
            event.action,
            event.timestamp,
            event.nthreads,
            event.processing,
        ]
    if type(event) is Alert:
        return ["a", event.to_dict()]
    raise TypeError(f"not an event: {event!r}")


def decode_event(item: Sequence[Any]) -> Event:
    """The event :func:`encode_event` encoded; ``ValueError`` for anything else."""
    kind = item[0]
    if kind == "t":
        return make_task_status(*item[1:])
    if kind == "w":
        return WorkerStatus(*item[1:])
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
            rows[i] = (
                "t",
                keys[i],
                prefixes[i],
                groups[i],
                starts[i],
                finishes[i],
                batch.time if times is None else times[i],
                workers[i],
                *d,
                spans[i],
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
        if set(map(len, items)) == {_TASK_ROW} and set(map(type, items)) <= {
            tuple,
            list,
        }:
            columns = list(zip(*items, strict=True))
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
    ) = columns
    details: dict[int, Details] = {
        i: d
        for i, d in enumerate(
            zip(durations, begins, ends, nbytes, exceptions, tracebacks, strict=True)
        )
        if d != NO_DETAILS
    }
    return Batch.from_columns(
        list(keys),
        list(prefixes),
        list(groups),
        list(starts),
        list(finishes),
        list(workers),
        list(spans),
        list(stamps),
        details,
        others,
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
        replaced.
    header
        Extra header fields: ``cluster``, ``started``, ``config`` ...
    max_bytes
        Size after which the writer starts a new segment.
    queue_size
        Events waiting to be written, at most.
    flush_interval
        Seconds between flushes of the file (a crash loses at most that).

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
    ) -> None:
        if max_bytes <= 0 or queue_size <= 0 or flush_interval <= 0:
            raise ValueError("max_bytes, queue_size and flush_interval must be > 0")
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
        self.events = 0  # events written
        self.dropped = 0  # events dropped (queue full, or writer broken)
        self.errors = 0
        self.bytes = 0
        self.segment = 0
        self._queued = 0  # events on the queue
        self._lock = threading.Lock()  # guards _queued and dropped
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._closed = False
        self._broken = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for old in segments(self.path):
            old.unlink()
        self._file = self._open(0)
        self._thread = threading.Thread(
            target=self._run,
            name=f"dask-monitor-eventlog {self.path.name}",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<EventLogWriter {str(self.path)!r} events={self.events}>"

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
        """Record the names of Dask spans."""
        if not self._closed and names:
            self._queue.put(("s", dict(names)))

    def stats(self) -> dict[str, Any]:
        """Counters for the snapshot's monitor section (plain data)."""
        return {
            "path": str(self.path),
            "events": self.events,
            "dropped": self.dropped,
            "queued": self._queued,
            "errors": self.errors,
            "bytes": self.bytes,
            "segments": self.segment + 1,
        }

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, flush and close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------

    def _open(self, n: int) -> Any:
        f = open(segment_path(self.path, n), "wb")  # noqa: SIM115 (closed by _run)
        head = dict(self.header, segment=n, created=time.time())
        payload = msgpack.packb(head, use_bin_type=True)
        f.write(MAGIC + bytes([FORMAT_VERSION]) + _LEN.pack(len(payload)) + payload)
        f.flush()
        self.segment = n
        self.bytes = _PREAMBLE + _LEN.size + len(payload)
        return f

    def _write(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "b":
            events = item[1]
            rows = (
                encode_batch(events)
                if isinstance(events, Batch)
                else [encode_event(e) for e in events]
            )
            record: list[Any] = ["b", rows]
        else:
            record = list(item)
        payload = msgpack.packb(record, use_bin_type=True)
        if self.bytes >= self.max_bytes:
            self._file.close()
            self._file = self._open(self.segment + 1)
        self._file.write(_LEN.pack(len(payload)))
        self._file.write(payload)
        self.bytes += _LEN.size + len(payload)
        if kind == "b":
            self.events += len(item[1])

    def _run(self) -> None:
        last_flush = time.monotonic()
        get = self._queue.get
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
        finally:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except Exception:
                pass
            self._file.close()

    def _fail(self, item: tuple[Any, ...]) -> None:
        self.errors += 1
        self._broken = True
        if item and item[0] == "b":
            with self._lock:
                self.dropped += len(item[1])
        logger.exception(
            "dask-monitor: writing the event log %s failed; recording stopped",
            self.path,
        )


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


def _read_preamble(path: Path, data: bytes) -> dict[str, Any]:
    if not data:
        raise EventLogError(f"{path}: empty file, not a dask-monitor event log")
    if not data.startswith(MAGIC) or len(data) < _PREAMBLE:
        raise EventLogError(f"{path}: not a dask-monitor event log (bad magic bytes)")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise EventLogVersionError(
            f"{path}: event log format version {version}; this dask-monitor reads "
            f"version {FORMAT_VERSION} (use the dask-monitor release that wrote it)"
        )
    try:
        header, _ = _record_at(data, _PREAMBLE)
    except _Torn as e:
        raise EventLogError(f"{path}: truncated header") from e
    except Exception as e:
        raise EventLogError(f"{path}: unreadable header: {e}") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise EventLogError(f"{path}: not a dask-monitor event log (bad header)")
    if header.get("version") != FORMAT_VERSION:
        raise EventLogVersionError(
            f"{path}: event log format version {header.get('version')!r}; this "
            f"dask-monitor reads version {FORMAT_VERSION}"
        )
    return header


class _Torn(Exception):
    pass


def _record_at(data: bytes, offset: int, use_list: bool = True) -> tuple[Any, int]:
    end = offset + _LEN.size
    if end > len(data):
        raise _Torn
    (n,) = _LEN.unpack_from(data, offset)
    if end + n > len(data):
        raise _Torn
    item = msgpack.unpackb(data[end : end + n], raw=False, use_list=use_list)
    return item, end + n


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of the log at ``path`` (see the module docstring for errors)."""
    p = Path(path)
    with open(p, "rb") as f:
        data = f.read(1 << 20)
    if len(data) == 1 << 20:  # a huge header: read the whole file
        data = p.read_bytes()
    return _read_preamble(p, data)


def _read_segment(path: Path, first: bool, columns: bool) -> Iterator[Record]:
    data = path.read_bytes()
    if not data and not first:
        warnings.warn(
            f"{path}: empty event log segment skipped", EventLogWarning, stacklevel=3
        )
        return
    _read_preamble(path, data)
    _, offset = _record_at(data, _PREAMBLE)
    while offset < len(data):
        try:
            item, end = _record_at(data, offset, use_list=False)
        except _Torn:
            warnings.warn(
                f"{path}: torn last record at byte {offset} skipped "
                f"({len(data) - offset} bytes); the writer did not finish it",
                EventLogWarning,
                stacklevel=3,
            )
            return
        except Exception as e:
            raise EventLogError(f"{path}: corrupt record at byte {offset}: {e}") from e
        try:
            yield _record(item, columns)
        except Exception as e:
            raise EventLogError(f"{path}: bad record at byte {offset}: {e}") from e
        offset = end


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
    raise ValueError(f"unknown record kind {kind!r}")


@dataclass(slots=True)
class EventLog:
    """An event log opened for reading: its header and its segments."""

    path: Path
    header: dict[str, Any]
    files: list[Path]

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> EventLog:
        """Read the header of the log at ``path``; ``FileNotFoundError`` if none."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no event log at {p}")
        return cls(p, read_header(p), segments(p))

    def records(self, *, columns: bool = False) -> Iterator[Record]:
        """Every record of every segment, in order (torn tail skipped, warned).

        With ``columns``, each batch record comes as a
        :class:`~dask_monitor.batch.Batch` in :attr:`Record.batch` (no event
        object made), else as a list of events in :attr:`Record.events`.
        """
        for i, seg in enumerate(self.files):
            yield from _read_segment(seg, first=i == 0, columns=columns)

    def events(self) -> Iterator[Event]:
        """Every event, in order."""
        for record in self.records():
            yield from record.events


def read_events(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Every event of the log at ``path`` (all segments), in order."""
    return EventLog.open(path).events()


# -- settings --------------------------------------------------------------------------


def record_settings(value: Any) -> dict[str, Any] | None:
    """Writer keyword arguments from Dask config ``monitor.record``, or ``None``.

    ``monitor.record`` is a path (record from the plugin's start), or a mapping
    with ``path`` and optionally ``max-bytes`` (a size: ``"256 MiB"``),
    ``queue-size`` and ``flush-interval`` (a duration); ``None`` or an empty
    ``path`` records nothing.

    Raises
    ------
    ValueError
        For a value of another shape or an invalid setting.
    """
    from dask.utils import parse_bytes, parse_timedelta

    if value is None or value == "" or value is False:
        return None
    if isinstance(value, str | os.PathLike):
        return {"path": os.fspath(value)}
    if not isinstance(value, Mapping):
        raise ValueError(f"monitor.record must be a path or a mapping, got {value!r}")
    options = {str(k).replace("-", "_"): v for k, v in value.items()}
    unknown = set(options) - {"path", "max_bytes", "queue_size", "flush_interval"}
    if unknown:
        raise ValueError(f"unknown monitor.record settings: {sorted(unknown)}")
    if not options.get("path"):
        return None
    out: dict[str, Any] = {"path": os.fspath(options["path"])}
    if options.get("max_bytes") is not None:
        out["max_bytes"] = int(parse_bytes(options["max_bytes"]))
    if options.get("queue_size") is not None:
        out["queue_size"] = int(options["queue_size"])
    if options.get("flush_interval") is not None:
        out["flush_interval"] = float(
            parse_timedelta(options["flush_interval"], default="seconds")
        )
    return out
