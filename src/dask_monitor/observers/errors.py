"""Errors: erred tasks, deduplicated by task prefix and exception type.

A batch is read as columns (:class:`~dask_monitor.batch.Batch`): a C-speed
scan of the finish states skips batches without an error, and only the
erred rows are read (prefix, exception text, time), without making event
objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from dask_monitor.batch import as_batch, key_text
from dask_monitor.events import Event, exception_type
from dask_monitor.observers._common import ERRED, check_count
from dask_monitor.snapshot import ErrorRow

__all__ = ["ErrorsObserver", "ErrorsSnapshot", "truncate"]

UNKNOWN = "unknown"


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
    __slots__ = ("count", "exception", "first", "key", "last", "traceback", "worker")

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
        self.key = key
        self.exception = truncate(exception or "", max_text)
        self.traceback = truncate(traceback or "", max_text, keep="tail")
        self.worker = worker
        self.first = t
        self.last = t


class ErrorsObserver:
    """Erred tasks grouped by ``(prefix, exception type)``, with one example each.

    Every transition into ``erred`` counts, including ``new -> erred`` (a task
    that had failed before the monitor attached). The exception type is
    :attr:`TaskStatus.exception_type` (``"unknown"`` without an exception
    text). A row keeps the first erred task as its example (key, exception,
    traceback, worker) and the times of the first and last.

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

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events; only transitions into ``erred`` count."""
        if not events:
            return
        batch = as_batch(events)
        if not batch.has_finish(ERRED):
            return
        prefixes = batch.prefixes
        details = batch.details
        times = batch.times
        t = batch.time
        rows = self._rows
        for i in batch.where_finish(ERRED):
            d = details.get(i)
            exception = None if d is None else d[4]
            pair = (prefixes[i], exception_type(exception) or UNKNOWN)
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
                    None if d is None else d[5],
                    batch.workers[i],
                    t,
                    self.max_text,
                )
            row.count += 1
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
                }
                for (prefix, kind), row in ordered
            ],
            "errors_folded": self.folded,
        }
