"""Per-span views: progress and durations of each recent Dask span.

Dask puts every task in a span (``with distributed.span("etl"): ...``; tasks
submitted outside any span are in the ``default`` span), and every
:class:`~dask_monitor.events.TaskStatus` carries its span's id. This observer
keeps, for the ``max_spans`` most recently active spans, a
:class:`ProgressObserver`, a :class:`DurationsObserver` and a
:class:`ThroughputObserver` (with the ETA read from them) of their own, so that
the snapshot can be asked for one computation: ``Pipeline.snapshot(span=...)``,
its rates being the span's own pace.

Span names (``"etl"``, ``"etl/load"`` for nested spans) are not in the events:
the plugin looks them up on the scheduler and hands them to
:meth:`SpansObserver.name_spans` (the event log records them too).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dask_monitor.batch import Batch, as_batch
from dask_monitor.events import Event
from dask_monitor.observers._common import BatchObserver, Clock
from dask_monitor.observers.durations import DurationsObserver
from dask_monitor.observers.eta import EtaEstimator
from dask_monitor.observers.progress import (
    Keys,
    ProgressObserver,
    ProgressSnapshot,
    Repeats,
)
from dask_monitor.observers.sketch import LogHistogram
from dask_monitor.observers.throughput import ThroughputObserver
from dask_monitor.snapshot import DurationStats, PrefixRow, Throughput

if TYPE_CHECKING:
    from dask_monitor.observers.workers import WorkersObserver

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
    __slots__ = ("durations", "eta", "first", "last", "progress", "throughput")

    def __init__(self, first: float, max_prefixes: int, owner: SpansObserver) -> None:
        self.first = first
        self.last = first
        # Folded names bounded by the table's size: one span's tables must
        # not remember 10,000 names each (the main tables do that).
        self.progress = ProgressObserver(
            max_prefixes=max_prefixes, max_groups=100, max_folded=max_prefixes
        )
        self.durations = DurationsObserver(
            relative_error=owner.relative_error, max_prefixes=max_prefixes
        )
        # The span's own pace: no per-prefix series (the chart shows the
        # span's total), rates per prefix as the pipeline's.
        self.throughput = ThroughputObserver(
            bin_seconds=owner.bin_seconds,
            bins=owner.bins,
            top_prefixes=0,
            clock=owner.clock,
            max_prefixes=max_prefixes,
        )
        self.eta = EtaEstimator(
            self.progress,
            self.throughput,
            durations=self.durations,
            workers=owner.workers,
            clock=owner.clock,
            cluster_wide=False,
        )


class SpansObserver(BatchObserver):
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
    clock
        Returns the current time, at which the spans' rates are read.
    workers
        The pipeline's workers observer: the threads a span's ETA may use.
    bin_seconds, bins
        Time bins of a span's throughput series (as the pipeline's).

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
        clock: Clock = time.time,
        workers: WorkersObserver | None = None,
        bin_seconds: float = 1.0,
        bins: int = 300,
    ) -> None:
        if max_spans <= 0 or max_prefixes <= 0:
            raise ValueError("max_spans and max_prefixes must be positive")
        self.clock = clock
        self.workers = workers
        self.bin_seconds = bin_seconds
        self.bins = bins
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
                repeats = self.keys.take(batch)
                last = batch.time if batch.times is None else max(batch.times)
                self._feed(first, batch, repeats, batch.timestamp(0), last)
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
        repeats = self.keys.take(batch)
        for span_id, rows in by_span.items():
            part = batch.take(rows)
            self._feed(
                span_id,
                part,
                repeats.within(rows),
                part.timestamp(0),
                max(part.timestamps()),
            )

    def _feed(
        self,
        span_id: str,
        batch: Batch,
        repeats: Repeats,
        first: float,
        last: float,
    ) -> None:
        spans = self._spans
        span = spans.get(span_id)
        if span is None:
            span = spans[span_id] = _Span(first, self.max_prefixes, self)
            while len(spans) > self.max_spans:
                spans.popitem(last=False)
                self.evicted += 1
        else:
            spans.move_to_end(span_id)
        span.last = max(span.last, last)
        span.progress.take(batch, repeats)
        span.durations.update_batch(batch)
        span.throughput.update_batch(batch)

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
        self,
        ids: Iterable[str],
        top_prefixes: int = 200,
        top_groups: int = 50,
        *,
        now: float | None = None,
    ) -> ProgressSnapshot:
        """Progress of the given spans together, with durations, as plain data.

        Rates are the spans' own pace at ``now`` (``clock()`` by default),
        summed over the spans; ETAs the latest of the spans' (they run side
        by side); ``average_rate`` and ``run_seconds`` cover the spans from
        the first task event of any to the latest finish of any.
        """
        spans = [self._spans[i] for i in ids if i in self._spans]
        parts = [s.progress.snapshot(top_prefixes, top_groups) for s in spans]
        if not parts:
            empty = ProgressObserver(max_prefixes=1, max_groups=1)
            return empty.snapshot(top_prefixes, top_groups)
        view = parts[0] if len(parts) == 1 else _merge(parts)
        now = self.clock() if now is None else now
        for name, row in view["prefixes"].items():
            row["durations"] = _durations(
                [s.durations.sketch(name) for s in spans], self.relative_error
            )
            row["rate"] = sum(s.throughput.rate(name, now=now) for s in spans)
            row["eta"], row["eta_low"], row["eta_high"] = _latest(
                [s.eta.estimate(name, now=now) for s in spans]
            )
        totals = view["totals"]
        totals["rate"] = sum(s.throughput.rate(now=now) for s in spans)
        totals["eta"], totals["eta_low"], totals["eta_high"] = _latest(
            [s.eta.estimate(now=now) for s in spans]
        )
        firsts = [t for s in spans if (t := s.throughput.first_event) is not None]
        latest = [t for s in spans if (t := s.throughput.latest_finish) is not None]
        finished = sum(s.throughput.total for s in spans)
        run = max(0.0, max(latest) - min(firsts)) if firsts and latest else None
        totals["run_seconds"] = run
        totals["average_rate"] = finished / run if run and finished else None
        return view

    def throughput(self, ids: Iterable[str]) -> Throughput | None:
        """The given spans' finishes per time bin, summed.

        ``None`` when none of them is tracked.
        """
        series = [self._spans[i].throughput.snapshot() for i in ids if i in self._spans]
        if not series:
            return None
        if len(series) == 1:
            return series[0]
        width = series[0]["bin"]
        counts: dict[int, int] = {}
        for s in series:
            first = round(s["start"] / width)
            for i, c in enumerate(s["counts"]):
                counts[first + i] = counts.get(first + i, 0) + c
        lo, hi = min(counts), max(counts)
        return {
            "bin": width,
            "start": lo * width,
            "counts": [counts.get(b, 0) for b in range(lo, hi + 1)],
            "prefixes": {},
            "total": sum(s["total"] for s in series),
            "late": sum(s["late"] for s in series),
        }


def _latest(
    estimates: list[tuple[float | None, float | None, float | None]],
) -> tuple[float | None, float | None, float | None]:
    """The estimate of spans running side by side: the one ending last.

    ``None`` (unknown) wins over any number; ``(0.0, 0.0, 0.0)`` when none
    has anything left.
    """
    out: tuple[float | None, float | None, float | None] = (0.0, 0.0, 0.0)
    worst = 0.0
    for estimate in estimates:
        eta = estimate[0]
        if eta is None:
            return None, None, None
        if eta > worst:
            worst = eta
            out = estimate
    return out


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
