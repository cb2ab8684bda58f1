"""Errors: erred tasks, deduplicated by task prefix and exception type.

A batch is read as columns (:class:`~dask_monitor.batch.Batch`): a C-speed
scan of the finish states skips batches without an error, and only the
erred rows are read (prefix, exception text, time), without making event
objects.

Two kinds of events besides a task's own failure are errors too:

* an attempt that raised and that Dask retried (``retries=``): Dask moves the
  task ``processing -> released`` (then back to ``waiting``) and keeps no
  trace of the exception; the plugin gives that event the attempt's
  exception text (:func:`retried_attempts` finds them). It counts in its
  error row (it really raised) and in the row's ``retried``, never in the
  erred tasks.
* a task that erred because a dependency erred: Dask gives it no exception of
  its own but blames the failing task (``TaskState.exception_blame``); the
  plugin gives the event that task's exception text and a first traceback
  line :func:`cause_line` naming it. Such errors are grouped under their root
  cause: type ``"caused by <root prefix>: <root type>"``, with ``caused_by``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypedDict

from dask_monitor.batch import Batch, as_batch, key_text
from dask_monitor.events import Event, exception_type
from dask_monitor.observers._common import (
    ERRED,
    PROCESSING,
    RELEASED,
    BatchObserver,
    check_count,
)
from dask_monitor.snapshot import Cause, ErrorRow

__all__ = [
    "ErrorsObserver",
    "ErrorsSnapshot",
    "cause_line",
    "parse_cause",
    "retried_attempts",
    "truncate",
]

UNKNOWN = "unknown"
#: First line of the traceback of a task that erred because of another one.
CAUSE_TAG = "[dask-monitor] caused by "


def cause_line(key: str, prefix: str, kind: str) -> str:
    """The traceback line that names the root cause of a dependent's failure.

    JSON after a fixed tag: keys may hold any character, and a replay must
    read the cause back from the event log as the live run did.
    """
    return CAUSE_TAG + json.dumps({"key": key, "prefix": prefix, "type": kind})


def parse_cause(traceback: str | None) -> Cause | None:
    """The root cause named by :func:`cause_line` at the head of ``traceback``."""
    if not traceback or not traceback.startswith(CAUSE_TAG):
        return None
    line = traceback[len(CAUSE_TAG) :].split("\n", 1)[0]
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    key, prefix, kind = data.get("key"), data.get("prefix"), data.get("type")
    if not (isinstance(key, str) and isinstance(prefix, str) and isinstance(kind, str)):
        return None
    return {"key": key, "prefix": prefix, "type": kind}


def retried_attempts(batch: Batch) -> list[int]:
    """Indices of the attempts of ``batch`` that raised and were retried.

    Those are the ``processing -> released`` events that carry an exception
    text (see the module docstring). Batches without such a move (the
    counted transitions say so when an observer counted them) cost a lookup.
    """
    details = batch.details
    if not details:
        return []
    counts = batch.counted()
    if counts is not None:
        if not any(s == PROCESSING and f == RELEASED for _, _, s, f in counts):
            return []
    elif not batch.has_finish(RELEASED):
        return []
    starts = batch.starts
    out = []
    for i in batch.where_finish(RELEASED):
        if starts[i] == PROCESSING:
            d = details.get(i)
            if d is not None and d.exception is not None:
                out.append(i)
    return out


class ErrorsSnapshot(TypedDict):
    """What :meth:`ErrorsObserver.snapshot` returns."""

    errors: list[ErrorRow]  # most frequent first
    errors_folded: int  # erred tasks whose (prefix, type) did not fit the table


def truncate(text: str, limit: int, *, keep: str = "head") -> str:
    """``text`` cut to at most ``limit`` characters, with a marker where it was cut.

    ``keep="head"`` keeps the beginning (an exception message), ``"tail"``
    the end (a traceback, whose last lines matter most).
    """
    if len(text) <= limit:
        return text
    marker = f"[... {len(text)} characters, truncated ...]"
    room = limit - len(marker) - 1
    if room <= 0:
        return text[:limit] if keep == "head" else text[len(text) - limit :]
    if keep == "head":
        return text[:room] + "\n" + marker
    return marker + "\n" + text[len(text) - room :]


class _Error:
    __slots__ = (
        "cause",
        "count",
        "exception",
        "first",
        "key",
        "last",
        "retried",
        "traceback",
        "worker",
    )

    def __init__(
        self,
        key: str,
        exception: str | None,
        traceback: str | None,
        worker: str | None,
        t: float,
        max_text: int,
    ) -> None:
        self.count = 0
        self.retried = 0
        self.cause: Cause | None = None
        self.key = key
        self.exception = truncate(exception or "", max_text)
        self.traceback = truncate(traceback or "", max_text, keep="tail")
        self.worker = worker
        self.first = t
        self.last = t


class ErrorsObserver(BatchObserver):
    """Erred tasks grouped by ``(prefix, exception type)``, with one example each.

    Every transition into ``erred`` counts, including ``new -> erred`` (a task
    that had failed before the monitor attached), and so does every attempt
    that raised and was retried (also counted in the row's ``retried``). The
    exception type is :attr:`TaskStatus.exception_type` (``"unknown"``
    without an exception text); a task that erred because a dependency did
    is grouped under its root cause, type ``"caused by <prefix>: <type>"``
    (see the module docstring). A row keeps the first erred task as its
    example (key, exception, traceback, worker, root cause) and the times of
    the first and last.

    Parameters
    ----------
    max_rows
        Rows kept; erred tasks of further ``(prefix, type)`` pairs are counted
        in ``errors_folded`` only.
    max_text
        Characters kept of the exception text (its beginning) and of the
        traceback (its end), with a marker where they were cut.

    Notes
    -----
    Not thread-safe: feed and read it from one thread.
    """

    name = "errors"

    def __init__(self, *, max_rows: int = 100, max_text: int = 2_000) -> None:
        self.max_rows = check_count("max_rows", max_rows)
        self.max_text = check_count("max_text", max_text)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self._rows: dict[tuple[str, str], _Error] = {}
        self.folded = 0

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; only transitions into ``erred`` count."""
        if not events:
            return
        batch = as_batch(events)
        retried = retried_attempts(batch)
        if retried:
            self._take(batch, retried, True)
        if batch.has_finish(ERRED):
            self._take(batch, batch.where_finish(ERRED), False)

    def _take(self, batch: Batch, indices: Sequence[int], retried: bool) -> None:
        """Count the errors at ``indices`` (retried attempts if ``retried``)."""
        prefixes = batch.prefixes
        details = batch.details
        times = batch.times
        t = batch.time
        rows = self._rows
        for i in indices:
            d = details.get(i)
            exception = traceback = None
            if d is not None:
                exception, traceback = d.exception, d.traceback
            kind = exception_type(exception) or UNKNOWN
            cause = None if retried else parse_cause(traceback)
            if cause is not None:
                kind = f"caused by {cause['prefix']}: {cause['type']}"
            pair = (prefixes[i], kind)
            if times is not None:
                t = times[i]
            row = rows.get(pair)
            if row is None:
                if len(rows) >= self.max_rows:
                    self.folded += 1
                    continue
                row = rows[pair] = _Error(
                    key_text(batch.keys[i]),
                    exception,
                    traceback,
                    batch.workers[i],
                    t,
                    self.max_text,
                )
                row.cause = cause
            row.count += 1
            if retried:
                row.retried += 1
            if t > row.last:
                row.last = t
            if t < row.first:
                row.first = t

    def snapshot(self) -> ErrorsSnapshot:
        """The rows, most frequent first (then oldest first), as plain data."""
        ordered = sorted(
            self._rows.items(), key=lambda kv: (-kv[1].count, kv[1].first, kv[0])
        )
        return {
            "errors": [
                {
                    "prefix": prefix,
                    "type": kind,
                    "count": row.count,
                    "key": row.key,
                    "exception": row.exception,
                    "traceback": row.traceback,
                    "worker": row.worker,
                    "first": row.first,
                    "last": row.last,
                    "retried": row.retried,
                    "caused_by": None if row.cause is None else row.cause.copy(),
                }
                for (prefix, kind), row in ordered
            ],
            "errors_folded": self.folded,
        }
