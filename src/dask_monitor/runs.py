"""Runs: a recorded run's name and tags, and the list of runs in a directory.

A run's name and tags are given to :meth:`Monitor.attach
<dask_monitor.client.Monitor.attach>` or :meth:`Monitor.record
<dask_monitor.client.Monitor.record>` and written into the event log's
header (``run``, ``tags``). :func:`run_summary` tells what a log holds from
its header and footer alone (a log without a footer, still being written or
whose writer died, is read through), and :func:`list_runs` does so for every
log in a directory, newest first.

Names and tags read back are untrusted (anyone may write a log): they are
type-checked and cut to the lengths a writer may use; a terminal shows them
through :func:`dask_monitor.text.safe_text`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dask_monitor.config import ConfigError

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
    import warnings

    from dask_monitor.sinks.eventlog import (
        EventLog,
        EventLogError,
        EventLogWarning,
        read_footer,
    )

    name = os.fspath(path)
    try:
        log = EventLog.open(path)
        footer = read_footer(path)
    except (OSError, EventLogError) as e:
        return RunSummary(name, error=str(e)[:500])
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
        return replace(
            base,
            seconds=footer["seconds"],
            tasks=footer["tasks"],
            erred=footer["erred"],
            complete=True,
        )
    done = erred = 0
    first = last = None
    try:
        with warnings.catch_warnings():  # a torn tail is expected here
            warnings.simplefilter("ignore", EventLogWarning)
            for record in log.records(columns=True):
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
    except (OSError, EventLogError) as e:
        return replace(base, error=str(e)[:500])
    seconds = None if first is None or last is None else last - first
    return replace(base, seconds=seconds, tasks=done, erred=erred)


#: File names of logs' first segments (later segments end in ``.1``, ...).
LOG_SUFFIXES = (".dmlog",)


def list_runs(
    directory: str | os.PathLike[str], *, limit: int | None = None, offset: int = 0
) -> list[RunSummary]:
    """The runs recorded in ``directory`` (its ``*.dmlog`` files), newest first.

    Newest by the header's ``started`` (a log without one last); ``offset``
    and ``limit`` page through them. Only the page's logs without a footer
    are read through.
    """
    from dask_monitor.sinks.eventlog import EventLogError, read_header

    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    found: list[tuple[float, str, Path]] = []
    for p in root.iterdir():
        if not p.name.endswith(LOG_SUFFIXES) or not p.is_file():
            continue
        try:
            started = read_header(p).get("started")
        except (OSError, EventLogError):
            started = None
        found.append((started if started is not None else -math.inf, p.name, p))
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    page = found[offset:] if limit is None else found[offset : offset + limit]
    return [run_summary(p) for _, _, p in page]


class RunIndex:
    """The runs recorded in one directory, for listings that are asked again.

    Parameters
    ----------
    directory
        A local directory or a URL directory (``s3://bucket/runs``).

    Notes
    -----
    The contract other modules rely on: :meth:`runs` lists newest first as
    :func:`list_runs` does, :meth:`count` is how many logs there are, and
    :meth:`find` resolves a run name (or a log's file name) to the log's
    path or URL.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)

    def runs(self, *, limit: int | None = None, offset: int = 0) -> list[RunSummary]:
        """The page ``[offset, offset + limit)`` of the runs, newest first."""
        return list_runs(self.directory, limit=limit, offset=offset)

    def count(self) -> int:
        """How many logs the directory holds now."""
        return len(list_runs(self.directory))

    def find(self, name: str) -> str:
        """The path of the log whose run name or file name is ``name``.

        Raises ``LookupError`` naming the directory when there is none, or
        when several runs share the name (the newest is not guessed).
        """
        matches = [
            r.path
            for r in list_runs(self.directory)
            if r.run == name or os.path.basename(r.path) in (name, name + ".dmlog")
        ]
        if len(matches) != 1:
            what = "no run" if not matches else f"{len(matches)} runs"
            raise LookupError(f"{what} named {name!r} in {self.directory}")
        return matches[0]
