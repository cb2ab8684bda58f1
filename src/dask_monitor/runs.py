"""Runs: a recorded run's name and tags, and the list of runs in a directory.

A run's name and tags are given to :meth:`Monitor.attach
<dask_monitor.client.Monitor.attach>` or :meth:`Monitor.record
<dask_monitor.client.Monitor.record>` and written into the event log's
header (``run``, ``tags``). :func:`run_summary` tells what a log holds from
its header and footer alone (a log without a footer, still being written or
whose writer died, is read through), and :func:`list_runs` does so for every
log in a directory (local, or a URL read through fsspec), newest first.
:class:`RunIndex` keeps what it read of each log for listings asked again
(the history server's, ``diff``'s run names), reading only what is new or
changed.

Names and tags read back are untrusted (anyone may write a log): they are
type-checked and cut to the lengths a writer may use; a terminal shows them
through :func:`dask_monitor.text.safe_text`.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dask_monitor.config import ConfigError
from dask_monitor.storage import check_url, filesystem, is_url, join_url, show

if TYPE_CHECKING:
    from dask_monitor.sinks.eventlog import EventLog

__all__ = [
    "MAX_RUN_CHARS",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "RunIndex",
    "RunSummary",
    "check_run",
    "header_run",
    "list_runs",
    "run_summary",
]

#: Longest run name.
MAX_RUN_CHARS = 200
#: Most tags a run may have.
MAX_TAGS = 32
#: Longest tag name, and longest tag value.
MAX_TAG_CHARS = 200


def check_run(run: Any, tags: Any) -> dict[str, Any]:
    """The header fields (``run``, ``tags``) of a run's name and tags, checked.

    ``None`` leaves a field out. Raises :class:`~dask_monitor.config.ConfigError`
    naming the setting for a name that is not a non-empty text of at most
    :data:`MAX_RUN_CHARS` characters, or tags that are not a mapping of at
    most :data:`MAX_TAGS` texts to texts of at most :data:`MAX_TAG_CHARS`.
    """
    out: dict[str, Any] = {}
    if run is not None:
        if not isinstance(run, str) or not run.strip():
            raise ConfigError(f"run must be a non-empty text, got {run!r:.100}")
        if len(run) > MAX_RUN_CHARS:
            raise ConfigError(
                f"run is {len(run)} characters long, more than the "
                f"{MAX_RUN_CHARS} allowed"
            )
        out["run"] = run
    if tags is not None:
        if not isinstance(tags, Mapping):
            raise ConfigError(
                f"tags must be a mapping of texts to texts, got {type(tags).__name__}"
            )
        if len(tags) > MAX_TAGS:
            raise ConfigError(f"tags has {len(tags)} entries, more than {MAX_TAGS}")
        for k, v in tags.items():
            if not isinstance(k, str) or not isinstance(v, str) or not k:
                raise ConfigError(
                    "tags must map non-empty texts to texts, "
                    f"got {k!r:.100}: {v!r:.100}"
                )
            if len(k) > MAX_TAG_CHARS or len(v) > MAX_TAG_CHARS:
                raise ConfigError(
                    f"tag {k[:50]!r} is longer than the {MAX_TAG_CHARS} "
                    "characters allowed"
                )
        out["tags"] = dict(tags)
    return out


def header_run(header: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The run's name and tags in a header read from a file, made safe to keep.

    Whatever is not text is left out and every text is cut to the writer's
    limits: a hostile header cannot make a listing huge. The texts are not
    escaped here (a terminal escapes them, a page too, each its own way).
    """
    raw = header.get("run")
    run = raw[:MAX_RUN_CHARS] if isinstance(raw, str) and raw else None
    tags: dict[str, str] = {}
    found = header.get("tags")
    if isinstance(found, Mapping):
        for k, v in found.items():
            if len(tags) >= MAX_TAGS:
                break
            if isinstance(k, str) and isinstance(v, str) and k:
                tags[k[:MAX_TAG_CHARS]] = v[:MAX_TAG_CHARS]
    return run, tags


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a listing shows of one recorded run (plain data, untrusted texts).

    Attributes
    ----------
    path
        The log's first segment.
    run
        The run's name from the header, or ``None``.
    tags
        The run's tags from the header.
    started
        When monitoring started (the header's ``started``), or ``None``.
    seconds
        From the first event to the last, or ``None`` for a log without events.
    tasks, erred
        Tasks done and tasks erred.
    cluster
        The scheduler's address from the header, or ``None``.
    complete
        Whether the log has a footer (its writer closed it); ``False``: the
        figures were counted from the records there are (still being
        written, or the writer died).
    error
        Why the log could not be read (the other fields are then empty).
    """

    path: str
    run: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    started: float | None = None
    seconds: float | None = None
    tasks: int = 0
    erred: int = 0
    cluster: str | None = None
    complete: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``--json``)."""
        return {
            "path": self.path,
            "run": self.run,
            "tags": dict(self.tags),
            "started": self.started,
            "seconds": self.seconds,
            "tasks": self.tasks,
            "erred": self.erred,
            "cluster": self.cluster,
            "complete": self.complete,
            "error": self.error,
        }


def run_summary(path: str | os.PathLike[str]) -> RunSummary:
    """The :class:`RunSummary` of the log at ``path``: header and footer only,
    or, for a log without a footer, from reading its records.

    A log that cannot be read gives a summary with ``error`` set, not an
    exception: one bad file must not hide the others from a listing.
    """
    return _summarise(path, None)[0]


@dataclass(frozen=True, slots=True)
class _Counted:
    """How far the records of a log without a footer were counted: the
    figures so far, and where to go on from once the log has grown."""

    #: The header's ``created``: a new recording at the same place has another
    #: (NaN for a header without one: equal to nothing, never gone on from).
    created: float
    #: The segment, and the byte in it, where the last record counted ends.
    segment: int = 0
    offset: int = 0
    done: int = 0
    erred: int = 0
    first: float | None = None
    last: float | None = None


def _summarise(
    path: str | os.PathLike[str], counted: _Counted | None
) -> tuple[RunSummary, _Counted | None, bool]:
    """The summary of the log at ``path``; for a log without a footer, how
    far its records were counted; and whether the summary holds while the
    log is unchanged (``False`` after a read that failed: the network, or
    the log went away since listed). With ``counted`` from an earlier call
    on the same recording, only the records written since are read."""
    from dask_monitor.sinks.eventlog import EventLog, EventLogError, read_footer

    name = os.fspath(path)
    try:
        log = EventLog.open(path)
        footer = read_footer(path)
    except (OSError, EventLogError) as e:
        final = isinstance(e, EventLogError)
        return RunSummary(name, error=str(e)[:500]), counted, final
    header = log.header
    run, tags = header_run(header)
    started = header.get("started")
    cluster = (header.get("cluster") or {}).get("scheduler")
    base = RunSummary(
        name,
        run=run,
        tags=tags,
        started=float(started) if started is not None else None,
        cluster=cluster[:200] if isinstance(cluster, str) else None,
    )
    if footer is not None:
        return (
            replace(
                base,
                seconds=footer["seconds"],
                tasks=footer["tasks"],
                erred=footer["erred"],
                complete=True,
            ),
            None,
            True,
        )
    created = header.get("created")  # checked by the reader: a number
    # NaN equals nothing: a log without ``created`` is counted afresh each time.
    fresh = _Counted(math.nan if created is None else float(created))
    if (
        counted is None
        or counted.created != fresh.created
        or counted.segment >= len(log.files)
    ):
        counted = fresh
    try:
        try:
            counted = _count(log, counted)
        except OSError:
            # An object store refuses a read across a replacement of the
            # object (a log still being written is uploaded again whole):
            # read on again, from the same place, once.
            counted = _count(log, counted)
    except (OSError, EventLogError) as e:
        final = isinstance(e, EventLogError)
        return replace(base, error=str(e)[:500]), counted, final
    seconds = None
    if counted.first is not None and counted.last is not None:
        seconds = counted.last - counted.first
    summary = replace(base, seconds=seconds, tasks=counted.done, erred=counted.erred)
    return summary, counted, True


def _count(log: EventLog, counted: _Counted) -> _Counted:
    """``counted`` taken on over the records of ``log`` after its place."""
    import warnings

    from dask_monitor.sinks.eventlog import EventLogWarning

    done, erred = counted.done, counted.erred
    first, last = counted.first, counted.last
    segment, offset = counted.segment, counted.offset
    with warnings.catch_warnings():  # a torn tail is expected here
        warnings.simplefilter("ignore", EventLogWarning)
        for record, seg, end in log.records_from(segment, offset, columns=True):
            segment, offset = seg, end
            batch = record.batch
            if batch is None:
                continue
            done += batch.finishes.count("memory")
            erred += batch.finishes.count("erred")
            times = batch.times if batch.times is not None else [batch.time]
            stamps = [t for t in times if t is not None and math.isfinite(t)]
            if stamps:
                first = min(stamps) if first is None else min(first, *stamps)
                last = max(stamps) if last is None else max(last, *stamps)
    return _Counted(counted.created, segment, offset, done, erred, first, last)


#: File names of logs' first segments (later segments end in ``.1``, ...).
LOG_SUFFIXES = (".dmlog",)
#: A later segment's file name: the first segment's, a dot and its number.
_LATER_SEGMENT = re.compile(r"^(.+\.dmlog)\.([1-9][0-9]*)$")
#: Fields of an fsspec listing entry that change when the file does (besides
#: its size), by file system: S3 and GCS, then local and in-memory ones.
_CHANGE_FIELDS = (
    "ETag",
    "etag",
    "generation",
    "md5Hash",
    "LastModified",
    "updated",
    "mtime",
    "created",
    "ino",
)
#: Headers read at once from a URL directory (a listing's first call reads
#: the header of every log there; one at a time, a round trip each).
_HEADER_THREADS = 8


@dataclass(frozen=True, slots=True)
class _Log:
    """One log as a directory listing shows it."""

    #: The first segment's file name.
    name: str
    #: Its path or URL, as a :class:`RunSummary` names it.
    path: str
    #: What changes when the first segment does (where the header is).
    head: tuple[Any, ...]
    #: What changes when any segment does, or one is added (a footer too).
    identity: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Header:
    """What the index keeps of a log's header: what orders and finds it."""

    head: tuple[Any, ...]
    started: float | None
    run: str | None


def _entry_identity(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """What changes in an fsspec listing entry when its file changes."""
    return (
        entry.get("size"),
        *((k, str(entry[k])) for k in _CHANGE_FIELDS if entry.get(k) is not None),
    )


def _listing(directory: str) -> dict[str, tuple[Any, ...]]:
    """File name -> identity of every file in ``directory`` (local or a URL).

    A local directory that is not one raises ``NotADirectoryError``; a URL
    directory with nothing there is empty (object stores have no
    directories: a prefix exists once a log is written under it).
    """
    if not is_url(directory):
        if not os.path.isdir(directory):
            raise NotADirectoryError(f"{directory} is not a directory")
        found: dict[str, tuple[Any, ...]] = {}
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:  # removed while listed
                    continue
                found[entry.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return found
    check_url(directory, setting="the directory")
    fs, root = filesystem(directory)
    fs.invalidate_cache(root)  # new logs, and logs that grew, since the last call
    try:
        listed = fs.ls(root, detail=True)
    except FileNotFoundError:
        return {}
    return {
        str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: _entry_identity(e)
        for e in listed
        if e.get("type") == "file"
    }


def _logs(directory: str, files: Mapping[str, tuple[Any, ...]]) -> list[_Log]:
    """The logs among ``files`` (their first segments), each with the
    identity of all its segments."""
    later: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}
    for name, identity in files.items():
        match = _LATER_SEGMENT.match(name)
        if match is not None:
            later.setdefault(match.group(1), []).append((int(match.group(2)), identity))
    url = is_url(directory)
    out = []
    for name, head in files.items():
        if not name.endswith(LOG_SUFFIXES):
            continue
        path = join_url(directory, name) if url else os.path.join(directory, name)
        identity = (head, *sorted(later.get(name, ())))
        out.append(_Log(name, path, head, identity))
    return out


def _read_header(path: str, head: tuple[Any, ...]) -> _Header | None:
    """The parts of the header of the log at ``path`` the index keeps.

    A header that is not one keeps nothing (the log lists last, as
    unreadable); a read that failed (the network, or the log went away since
    listed) is ``None``: nothing kept, read again next time.
    """
    from dask_monitor.sinks import eventlog

    try:
        header = eventlog.read_header(path)
    except eventlog.EventLogError:
        return _Header(head, None, None)
    except OSError:
        return None
    started = header.get("started")  # checked by the reader: a finite number
    run, _ = header_run(header)
    return _Header(head, float(started) if started is not None else None, run)


class RunIndex:
    """The runs recorded in one directory, for listings that are asked again.

    Each call (:meth:`runs`, :meth:`count`, :meth:`find`) lists the directory
    anew (one listing call for a URL), so logs that appeared since are there
    and logs that changed are read again. What was read of a log is kept,
    keyed by what the listing says of each of its segments (size, and
    modification time, inode, ETag or generation, whichever the file system
    gives): a log is read again only when one of those changes. Its header
    (which orders and finds it) is read once for every log; its summary
    (footer, or, without one, its records) only when a page shows it. A
    complete log (with a footer) is thus never read again while unchanged;
    of a log still being written, only the records written since the last
    read are read (its footer looked for first), and it turns complete when
    its writer closes it.

    Safe to use from several threads (nothing is read while the lock is
    held; two threads may read the same log once each).

    Parameters
    ----------
    directory
        A local directory or a URL directory (``s3://bucket/runs``), read
        through fsspec; credentials come from fsspec's usual sources.

    Raises
    ------
    ConfigError
        From any call, for a URL whose protocol fsspec does not know, or that
        holds credentials or a query string (see
        :func:`dask_monitor.storage.check_url`).
    NotADirectoryError
        From any call, for a local directory that is not one.
    OSError
        From any call, when a URL directory cannot be listed.

    Examples
    --------
    >>> index = RunIndex("s3://bucket/runs")  # doctest: +SKIP
    >>> [r.run for r in index.runs(limit=20)]  # doctest: +SKIP
    >>> compare(index.find("monday"), index.find("tuesday"))  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self._lock = threading.Lock()
        #: log path -> what the index keeps of its header.
        self._headers: dict[str, _Header] = {}
        #: log path -> (the log's identity when read, its summary, and for a
        #: log without a footer how far its records were counted).
        self._summaries: dict[
            str, tuple[tuple[Any, ...] | None, RunSummary, _Counted | None]
        ] = {}

    def __repr__(self) -> str:
        return f"RunIndex({show(self.directory)!r})"

    def refresh(self) -> list[str]:
        """List the directory now and read the headers of new or changed logs.

        Returns
        -------
        list of str
            The logs' paths (or URLs), newest first.
        """
        return [log.path for log in self._ordered()]

    def runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        """The page ``[offset, offset + limit)`` of the runs, newest first.

        Newest by the header's ``started`` (logs without one, or whose header
        cannot be read, last; ties by file name). Only the page's logs that
        are new or changed since this index last read them are read.

        Parameters
        ----------
        limit
            Most runs returned (``None``: all from ``offset``).
        offset
            Runs skipped first.

        Returns
        -------
        list of RunSummary
            One per log; a log that cannot be read has ``error`` set.
        """
        return self.page(limit=limit, offset=offset)[0]

    def page(
        self, *, limit: int | None = None, offset: int = 0
    ) -> tuple[list[RunSummary], int]:
        """``(runs(limit=limit, offset=offset), count())`` from one listing of
        the directory (a page of a list that says how many there are)."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError(f"offset and limit must be >= 0, got {offset}, {limit}")
        ordered = self._ordered()
        page = ordered[offset:] if limit is None else ordered[offset : offset + limit]
        out = []
        for log in page:
            with self._lock:
                cached = self._summaries.get(log.path)
            if cached is not None and cached[0] == log.identity:
                out.append(cached[1])
                continue
            previous = None if cached is None else cached[2]
            summary, counted, final = _summarise(log.path, previous)
            # A failed read is kept under no identity: read again next time.
            identity = log.identity if final else None
            with self._lock:
                self._summaries[log.path] = (identity, summary, counted)
            out.append(summary)
        return out, len(ordered)

    def count(self) -> int:
        """How many logs the directory holds now (lists it; reads no log)."""
        return len(_logs(self.directory, _listing(self.directory)))

    def find(self, name: str) -> str:
        """The path (or URL) of the log whose run name or file name is ``name``.

        ``name`` matches a log whose header names the run ``name``, or whose
        file name is ``name`` or ``name + ".dmlog"``.

        Raises
        ------
        LookupError
            Naming the directory and ``name`` when no log matches, or when
            several do (the newest is not guessed: give the file name). The
            message holds names read from files: escape it to show it.
        """
        ordered = self._ordered()
        with self._lock:
            headers = {log.path: self._headers.get(log.path) for log in ordered}
        matches = []
        for log in ordered:
            header = headers[log.path]
            if log.name in (name, name + ".dmlog") or (
                header is not None and header.run == name
            ):
                matches.append(log)
        if len(matches) == 1:
            return matches[0].path
        where = show(self.directory)
        if not matches:
            raise LookupError(f"no run named {name[:MAX_RUN_CHARS]!r} in {where}")
        shown = ", ".join(log.name for log in matches[:5])
        more = ", ..." if len(matches) > 5 else ""
        raise LookupError(
            f"{len(matches)} runs named {name[:MAX_RUN_CHARS]!r} in {where} "
            f"({shown}{more}): give the log's file name"
        )

    def _ordered(self) -> list[_Log]:
        """The logs listed now, newest first; headers of new or changed logs
        read (in parallel for a URL), and what was kept of removed ones let go."""
        logs = _logs(self.directory, _listing(self.directory))
        with self._lock:
            known = dict(self._headers)
        stale = [
            log
            for log in logs
            if (h := known.get(log.path)) is None or h.head != log.head
        ]
        for log, header in zip(stale, self._read_headers(stale), strict=True):
            if header is None:
                known.pop(log.path, None)
            else:
                known[log.path] = header
        present = {log.path for log in logs}
        with self._lock:
            self._headers = {p: h for p, h in known.items() if p in present}
            for path in [p for p in self._summaries if p not in present]:
                del self._summaries[path]

        def newest(log: _Log) -> tuple[float, str]:
            header = known.get(log.path)
            started = None if header is None else header.started
            return (-math.inf if started is None else started, log.name)

        return sorted(logs, key=newest, reverse=True)

    def _read_headers(self, logs: list[_Log]) -> list[_Header | None]:
        if len(logs) > 1 and is_url(self.directory):
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(_HEADER_THREADS, len(logs))) as pool:
                return list(
                    pool.map(lambda log: _read_header(log.path, log.head), logs)
                )
        return [_read_header(log.path, log.head) for log in logs]


def list_runs(
    directory: str | os.PathLike[str], *, limit: int | None = None, offset: int = 0
) -> list[RunSummary]:
    """The runs recorded in ``directory`` (its ``*.dmlog`` files), newest first.

    ``directory`` is local or a URL (``s3://bucket/runs``). Newest by the
    header's ``started`` (a log without one last); ``offset`` and ``limit``
    page through them. Only the page's logs without a footer are read
    through. A listing asked again is cheaper from a :class:`RunIndex`,
    which keeps what it read.
    """
    return RunIndex(directory).runs(limit=limit, offset=offset)
