"""Per-span views: progress and durations of each recent Dask span.

Dask puts every task in a span (``with distributed.span("etl"): ...``; tasks
submitted outside any span are in the ``default`` span), and every
:class:`~dask_monitor.events.TaskStatus` carries its span's id. This observer
keeps, for the ``max_spans`` most recently active spans, a
:class:`ProgressObserver` and a :class:`DurationsObserver` of their own, so that
the snapshot can be asked for one computation: ``Pipeline.snapshot(span=...)``.

Span names (``"etl"``, ``"etl/load"`` for nested spans) are not in the events:
the plugin looks them up on the scheduler and hands them to
:meth:`SpansObserver.name_spans` (the event log records them too).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dask_monitor.batch import Batch, as_batch
from dask_monitor.events import Event
from dask_monitor.observers.durations import DurationsObserver
from dask_monitor.observers.progress import (
    Keys,
    ProgressObserver,
    ProgressSnapshot,
    part_verdict,
)
from dask_monitor.observers.sketch import LogHistogram
from dask_monitor.snapshot import DurationStats, PrefixRow

__all__ = ["SpanRow", "SpansObserver"]

SpanRow = dict[str, Any]

_COUNTS = (
    "completed",
    "erred",
    "recomputed",
    "retried",
    "done",
    "remaining",
    "total",
)


class _Span:
    __slots__ = ("durations", "first", "last", "progress")

    def __init__(self, first: float, max_prefixes: int, relative_error: float) -> None:
        self.first = first
        self.last = first
        # Folded names bounded by the table's size: one span's tables must
        # not remember 10,000 names each (the main tables do that).
        self.progress = ProgressObserver(
            max_prefixes=max_prefixes, max_groups=100, max_folded=max_prefixes
        )
        self.durations = DurationsObserver(
            relative_error=relative_error, max_prefixes=max_prefixes
        )


class SpansObserver:
    """Progress and durations per Dask span, for the most recent spans.

    Parameters
    ----------
    max_spans
        Spans with aggregates of their own; the least recently active span is
        forgotten to make room (counted in :attr:`evicted`).
    max_prefixes
        Prefixes with a row of their own within one span.
    relative_error
        Of the per-span duration quantiles.
    keys
        The keys of live tasks, to share with the pipeline's
        :class:`ProgressObserver` (its ``keys``): the duplicate creations and
        recomputations of a batch are then found once for both. By default
        the observer keeps its own.

    Notes
    -----
    Memory: ``max_spans`` small progress tables and sketches, names of at
    most ``10 * max_spans`` spans, and (unless shared) the keys of the live
    tasks. Not thread-safe: fed and read by the pipeline.
    """

    name = "spans"

    def __init__(
        self,
        *,
        max_spans: int = 20,
        max_prefixes: int = 200,
        relative_error: float = 0.01,
        keys: Keys | None = None,
    ) -> None:
        if max_spans <= 0 or max_prefixes <= 0:
            raise ValueError("max_spans and max_prefixes must be positive")
        self.max_spans = max_spans
        self.max_prefixes = max_prefixes
        self.relative_error = relative_error
        self.names: OrderedDict[str, str] = OrderedDict()
        self._own_keys = keys is None
        self.keys = Keys() if keys is None else keys
        self.reset()

    def reset(self) -> None:
        """Forget the aggregates (span names are kept: spans outlive a restart)."""
        self._spans: OrderedDict[str, _Span] = OrderedDict()
        self.evicted = 0
        if self._own_keys:  # shared keys are the progress observer's to reset
            self.keys.clear()

    def restart(self) -> None:
        """Dask restarted: each span's live state goes, its history stays
        (see :meth:`ProgressObserver.restart`)."""
        for span in self._spans.values():
            span.progress.restart()
        if self._own_keys:
            self.keys.clear()

    # -- events ------------------------------------------------------------

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Hand each span its events, in order.

        The common batch is all in one span: it goes to that span's observers
        as it is. Otherwise each span gets the batch of its own events. The
        keys are taken once for the whole batch (see :class:`Keys`): the
        spans' progress observers keep none.
        """
        batch = as_batch(events)
        column = batch.spans
        if not column:
            return
        first = column[0]
        if column.count(first) == len(column):
            if first is not None:
                verdict = self.keys.verdict(batch)
                self._feed(first, batch, verdict, batch.timestamp(0), batch.time)
            return
        by_span: dict[str, list[int]] = {}
        for i, span_id in enumerate(column):
            if span_id is not None:
                rows = by_span.get(span_id)
                if rows is None:
                    by_span[span_id] = [i]
                else:
                    rows.append(i)
        if not by_span:
            return
        verdict = self.keys.verdict(batch)
        for span_id, rows in by_span.items():
            part = batch.take(rows)
            self._feed(
                span_id,
                part,
                part_verdict(verdict, rows),
                part.timestamp(0),
                max(part.timestamps()),
            )

    def _feed(
        self,
        span_id: str,
        batch: Batch,
        verdict: tuple[list[int], list[int]],
        first: float,
        last: float,
    ) -> None:
        spans = self._spans
        span = spans.get(span_id)
        if span is None:
            span = spans[span_id] = _Span(first, self.max_prefixes, self.relative_error)
            while len(spans) > self.max_spans:
                spans.popitem(last=False)
                self.evicted += 1
        else:
            spans.move_to_end(span_id)
        span.last = max(span.last, last)
        span.progress.take(batch, verdict)
        span.durations.update_batch(batch)

    def name_spans(self, names: Mapping[str, str]) -> None:
        """Learn the names of spans (``{id: "etl/load"}``)."""
        for span_id, name in names.items():
            self.names[span_id] = name
            self.names.move_to_end(span_id)
        while len(self.names) > 10 * self.max_spans:
            self.names.popitem(last=False)

    # -- reading -----------------------------------------------------------

    def ids(self, selector: str) -> list[str]:
        """Ids of the tracked spans that ``selector`` names.

        ``selector`` is a span id, or a span name: the spans of that name,
        nested in other spans or not, and the spans nested in them (``"etl"``
        selects ``"etl"``, ``"etl/load"`` and ``"main/etl"``; ``"etl/load"``
        selects only that nesting). Most recently active last.
        """
        if selector in self._spans:
            return [selector]
        needle = "/" + selector.strip("/") + "/"
        out = []
        for span_id in self._spans:
            name = self.names.get(span_id)
            if name is not None and needle in "/" + name + "/":
                out.append(span_id)
        return out

    def summary(self) -> dict[str, SpanRow]:
        """One row per tracked span, most recently active first: name and totals."""
        out: dict[str, SpanRow] = {}
        for span_id in reversed(self._spans):
            span = self._spans[span_id]
            totals = span.progress.snapshot(top_prefixes=0, top_groups=0)["totals"]
            out[span_id] = {
                "name": self.names.get(span_id, span_id),
                "first": span.first,
                "last": span.last,
                "done": totals["done"],
                "remaining": totals["remaining"],
                "total": totals["total"],
                "erred": totals["erred"],
                "retried": totals["retried"],
            }
        return out

    def snapshot(self) -> dict[str, SpanRow]:
        """Same as :meth:`summary`."""
        return self.summary()

    def view(
        self, ids: Iterable[str], top_prefixes: int = 200, top_groups: int = 50
    ) -> ProgressSnapshot:
        """Progress of the given spans together, with durations, as plain data."""
        spans = [self._spans[i] for i in ids if i in self._spans]
        parts = [s.progress.snapshot(top_prefixes, top_groups) for s in spans]
        if not parts:
            empty = ProgressObserver(max_prefixes=1, max_groups=1)
            return empty.snapshot(top_prefixes, top_groups)
        view = parts[0] if len(parts) == 1 else _merge(parts)
        for name, row in view["prefixes"].items():
            row["durations"] = _durations(
                [s.durations.sketch(name) for s in spans], self.relative_error
            )
        return view


def _merge(parts: list[ProgressSnapshot]) -> ProgressSnapshot:
    out: Any = {
        "totals": dict(parts[0]["totals"]),
        "prefixes": {},
        "prefixes_folded": 0,
        "groups": {},
        "groups_folded": 0,
    }
    totals = out["totals"]
    totals["states"] = dict(totals["states"])
    for part in parts[1:]:
        for key in _COUNTS:
            totals[key] += part["totals"][key]  # type: ignore[literal-required]
        for state, n in part["totals"]["states"].items():
            totals["states"][state] = totals["states"].get(state, 0) + n
    for part in parts:
        out["prefixes_folded"] += part["prefixes_folded"]
        out["groups_folded"] += part["groups_folded"]
        out["groups"].update(part["groups"])
        for name, row in part["prefixes"].items():
            mine: PrefixRow | None = out["prefixes"].get(name)
            if mine is None:
                out["prefixes"][name] = dict(row, states=dict(row["states"]))
                continue
            for key in _COUNTS:
                mine[key] += row[key]  # type: ignore[literal-required]
            for state, n in row["states"].items():
                mine["states"][state] = mine["states"].get(state, 0) + n
            mine["last_active"] = max(mine["last_active"], row["last_active"])
    result: ProgressSnapshot = out
    return result


def _durations(
    sketches: list[LogHistogram | None], relative_error: float
) -> DurationStats:
    found = [s for s in sketches if s is not None and s.count]
    if not found:
        merged = None
    elif len(found) == 1:
        merged = found[0]
    else:
        merged = LogHistogram(relative_error)
        for sketch in found:
            merged.merge(sketch)
    if merged is None:
        return {
            "count": 0,
            "mean": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
            "relative_error": relative_error,
        }
    p50, p90, p99 = merged.quantiles((0.5, 0.9, 0.99))
    return {
        "count": merged.count,
        "mean": merged.mean,
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": merged.max,
        "relative_error": relative_error,
    }
