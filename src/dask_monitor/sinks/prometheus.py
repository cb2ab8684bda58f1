"""Prometheus metrics of the monitor, on the scheduler's existing ``/metrics``.

Distributed serves ``prometheus_client.REGISTRY`` at ``/metrics`` on the
scheduler's dashboard port; a collector registered in the scheduler's process
appears there. :func:`register_source` registers one collector per process (the
first time) and reads the snapshot of the most recently registered monitor;
the unregister function it returns removes the collector with the last source.

Metrics (all prefixed ``dask_monitor_``; none duplicates distributed's own
``dask_scheduler_*`` metrics such as per-prefix state totals):

* ``events_total``, ``events_dropped_total``: transitions seen by the hook,
  and dropped because the buffer was full;
* ``flushes_total``, ``flush_seconds_total``, ``flush_last_seconds``;
* ``tasks_completed_total{prefix}``, ``tasks_erred_total{prefix}``;
* ``task_duration_seconds{prefix}``: a histogram of compute durations
  (``_bucket{le}``, ``_sum``, ``_count``) with the fixed bounds of
  :data:`~dask_monitor.snapshot.DURATION_BUCKETS` (1 ms, 3 ms, 10 ms ... 1000 s,
  3600 s): exact counts, aggregatable across schedulers and over time
  (``histogram_quantile(0.9, sum by (le, prefix) (rate(..._bucket[5m])))``);
* ``task_duration_quantile_seconds{prefix,quantile}``: the 0.5, 0.9 and 0.99
  quantiles since the monitor started, from its sketch (within 1 %, where the
  histogram's interpolation between bounds half a decade apart is not; one
  scheduler's, not aggregatable; labelled prefixes only). It was the
  summary's ``quantile`` series before the summary became a histogram;
* ``throughput_tasks_per_second``, ``tasks_remaining``, ``eta_seconds``
  (absent while unknown);
* ``alerts_total{kind}``; ``sink_dropped_total{sink}`` (event log ...);
* ``insights{kind,severity}``: insights active now, per kind and severity.
  Every pair of a known kind (:data:`INSIGHT_KINDS`) and severity is there,
  0 when none is active (a series does not vanish when its problem does);
  other kinds and severities are counted under ``other``.

Label cardinality is bounded: at most ``top`` prefixes have their own label,
the rest (and a prefix really named ``other``) are summed under
``prefix="other"``. Counters and histogram buckets never go down between
scrapes of one monitor: a prefix keeps its label once given, and a prefix once
counted under ``other`` stays there; free labels go to the busiest prefixes
not counted yet. So the labels go to the first ``top`` prefixes that ran (a
long-lived cluster running new prefixes sees them under ``other``); a new or
reset monitor starts the labelling again (its counters start from 0 anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from dask_monitor.snapshot import DURATION_BUCKETS, Snapshot
from dask_monitor.text import INSIGHT_SEVERITIES, insights_of

__all__ = [
    "INSIGHT_KINDS",
    "MonitorCollector",
    "prometheus_settings",
    "register_source",
    "registered",
]

SnapshotSource = Callable[[], Snapshot | None]

OTHER = "other"
_QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))

#: Insight kinds with a ``kind`` label of their own (the engine's kinds:
#: ``observers.insights.KINDS``); any other kind is folded into ``other``, so
#: the label's values stay bounded.
INSIGHT_KINDS: tuple[str, ...] = (
    "tiny-tasks",
    "imbalance",
    "low-parallelism",
    "memory-pressure",
    "transfer-bound",
    "hot-prefix",
    "skew",
    "erroring",
)


def prometheus_settings(value: Any = None) -> dict[str, Any]:
    """Settings from Dask config ``monitor.prometheus`` (``enabled``, ``top-prefixes``).

    Raises :class:`~dask_monitor.config.ConfigError`, naming the setting, for
    an invalid value.
    """
    from dask_monitor.config import PrometheusSettings

    if value is None:
        import dask.config

        value = dask.config.get("monitor.prometheus", default=None)
    settings = PrometheusSettings.from_config(value).resolved()
    return {"enabled": settings.enabled, "top_prefixes": settings.top_prefixes}


class MonitorCollector:
    """A ``prometheus_client`` collector reading a monitor's snapshot.

    Parameters
    ----------
    source
        Returns the snapshot to export, or ``None`` (no metrics then).
    top
        Prefixes with a label of their own; the rest are ``other``.

    Notes
    -----
    ``collect`` runs where ``/metrics`` is served (the scheduler's event loop);
    it builds metrics from one snapshot and never raises for missing data.
    """

    def __init__(self, source: SnapshotSource, *, top: int = 20) -> None:
        self.source = source
        self.top = top
        self.forget()

    def forget(self) -> None:
        """Forget which prefixes have a label (a new monitor, or a reset one)."""
        self._labelled: list[str] = []
        self._folded: set[str] = set()  # counted under "other" once: stay there
        self._events = -1

    def _labels(self, snapshot: Snapshot) -> tuple[list[str], set[str]]:
        """The prefixes with a label of their own, and the rest (``other``).

        A prefix keeps its label once given, and one counted in ``other``
        stays there, so that no series goes down: free labels go to the
        busiest prefixes not yet counted anywhere. A real prefix named
        ``other`` is always among the rest (its own series would collide).
        """
        rows = snapshot["prefixes"]
        events = snapshot["monitor"]["events"]
        if events < self._events:  # the monitor was reset: counts start again
            self.forget()
        self._events = events
        labelled = self._labelled
        if len(labelled) < self.top:
            taken = set(labelled) | self._folded
            new = [n for n in rows if n not in taken and n != OTHER]
            new.sort(key=lambda n: (-(rows[n]["completed"] + rows[n]["erred"]), n))
            labelled += new[: self.top - len(labelled)]
        top = [n for n in labelled if n in rows]
        rest = set(rows) - set(top)
        self._folded.update(
            n
            for n in rest
            if rows[n]["completed"] or rows[n]["erred"] or rows[n]["durations"]["count"]
        )
        return top, rest

    def describe(self) -> list[Any]:
        # No up-front description: registration must not build a snapshot.
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snapshot = self.source()
        if snapshot is None:
            return
        m = snapshot["monitor"]
        t = snapshot["totals"]

        def counter(name: str, doc: str, value: float) -> Any:
            family = CounterMetricFamily(f"dask_monitor_{name}", doc)
            family.add_metric([], value)
            return family

        yield counter(
            "events", "Events made of task transitions (dropped too).", m["events"]
        )
        yield counter(
            "events_dropped", "Transitions dropped (buffer full).", m["dropped"]
        )
        yield counter(
            "events_merged",
            "Transitions folded into an event (a task's creation and first move).",
            m["merged"],
        )
        yield counter("flushes", "Flushes of the monitor's buffer.", m["flushes"])
        yield counter(
            "flush_seconds", "Seconds spent flushing the buffer.", m["flush_seconds"]
        )
        last = GaugeMetricFamily(
            "dask_monitor_flush_last_seconds", "Duration of the last flush."
        )
        last.add_metric([], m["flush_last"])
        yield last

        top, rest = self._labels(snapshot)
        rows = snapshot["prefixes"]
        for field, doc in (
            ("completed", "Tasks completed (processing -> memory), per prefix."),
            ("erred", "Tasks that erred, per prefix."),
        ):
            family = CounterMetricFamily(
                f"dask_monitor_tasks_{field}", doc, labels=["prefix"]
            )
            shown = 0
            for name in top:
                value = rows[name][field]  # type: ignore[literal-required]
                shown += value
                family.add_metric([name], value)
            other = t[field] - shown  # type: ignore[literal-required]
            if rest or other > 0:
                family.add_metric([OTHER], max(other, 0))
            yield family

        yield from _durations(rows, top, rest)

        for name, doc, value in (
            ("throughput_tasks_per_second", "Tasks finished per second.", t["rate"]),
            ("tasks_remaining", "Tasks waiting, queued or processing.", t["remaining"]),
            ("eta_seconds", "Seconds until the remaining tasks finish.", t["eta"]),
        ):
            if value is None:
                continue
            gauge = GaugeMetricFamily(f"dask_monitor_{name}", doc)
            gauge.add_metric([], value)
            yield gauge

        counts = (snapshot.get("alerts") or {}).get("counts") or {}
        alerts = CounterMetricFamily(
            "dask_monitor_alerts", "Alerts raised, per kind.", labels=["kind"]
        )
        for kind, n in sorted(counts.items()):
            alerts.add_metric([str(kind)], n)
        yield alerts

        insights = insights_of(snapshot)
        if insights is not None:
            yield _insights_gauge(insights)

        sinks = m.get("sinks") or {}
        dropped = CounterMetricFamily(
            "dask_monitor_sink_dropped",
            "Events a sink (event log ...) dropped.",
            labels=["sink"],
        )
        for name, stats in sorted(sinks.items()):
            if isinstance(stats.get("dropped"), int | float):
                dropped.add_metric([name], stats["dropped"])
        yield dropped


def _durations(rows: Any, top: list[str], rest: set[str]) -> Iterator[Any]:
    """The duration histogram, and the sketch's quantiles of labelled prefixes."""
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    bounds = [floatToGoString(b) for b in DURATION_BUCKETS]
    histogram = HistogramMetricFamily(
        "dask_monitor_task_duration_seconds",
        "Compute time of tasks, per prefix (fixed buckets, exact counts).",
        labels=["prefix"],
    )
    quantiles = GaugeMetricFamily(
        "dask_monitor_task_duration_quantile_seconds",
        "Quantiles of the compute time of tasks, per prefix, from the "
        "monitor's sketch (within its relative error; not aggregatable).",
        labels=["prefix", "quantile"],
    )

    def cumulative(d: Any) -> list[int]:
        # A snapshot from elsewhere (no buckets) still gets a valid +Inf.
        return list(d.get("buckets") or [0] * len(bounds))

    def add(name: str, counts: list[int], count: int, total: float) -> None:
        histogram.add_metric(
            [name],
            buckets=[*zip(bounds, counts, strict=True), ("+Inf", count)],
            sum_value=total,
        )

    for name in top:
        d = rows[name]["durations"]
        if not d["count"]:
            continue
        add(name, cumulative(d), d["count"], (d["mean"] or 0.0) * d["count"])
        for q, key in _QUANTILES:
            if d[key] is not None:
                quantiles.add_metric([name, q], d[key])
    other_counts = [0] * len(bounds)
    other_count, other_sum = 0, 0.0
    for name in rest:
        d = rows[name]["durations"]
        if not d["count"]:
            continue
        other_count += d["count"]
        other_sum += (d["mean"] or 0.0) * d["count"]
        other_counts = [a + b for a, b in zip(other_counts, cumulative(d), strict=True)]
    if other_count:
        add(OTHER, other_counts, other_count, other_sum)
    yield histogram
    yield quantiles


def _insights_gauge(insights: list[dict[str, Any]]) -> Any:
    """``dask_monitor_insights{kind,severity}``: active insights per pair."""
    from prometheus_client.core import GaugeMetricFamily

    counts = dict.fromkeys(
        ((k, s) for k in INSIGHT_KINDS for s in INSIGHT_SEVERITIES), 0
    )
    for insight in insights:
        kind = insight["kind"] if insight["kind"] in INSIGHT_KINDS else OTHER
        severity = insight["severity"]
        if severity not in INSIGHT_SEVERITIES:
            severity = OTHER
        counts[kind, severity] = counts.get((kind, severity), 0) + 1
    gauge = GaugeMetricFamily(
        "dask_monitor_insights",
        "Insights active now, per kind and severity (unknown ones: other).",
        labels=["kind", "severity"],
    )
    for (kind, severity), n in counts.items():
        gauge.add_metric([kind, severity], n)
    return gauge


# -- one collector per process ------------------------------------------------------

_lock = threading.Lock()
_sources: list[tuple[object, SnapshotSource, int]] = []
_collector: MonitorCollector | None = None


def _latest() -> Snapshot | None:
    with _lock:
        if not _sources:
            return None
        _, source, _ = _sources[-1]
    return source()


def registered() -> bool:
    """Whether the process-wide collector is registered."""
    return _collector is not None


def register_source(source: SnapshotSource, *, top: int = 20) -> Callable[[], None]:
    """Export the snapshots of ``source`` on ``/metrics``; returns the undo function.

    The first source registers the collector with ``prometheus_client.REGISTRY``;
    when several are registered (several schedulers in one process), the last
    one is exported. Undoing twice is harmless. Raises ``ImportError`` without
    ``prometheus_client``.
    """
    global _collector
    from prometheus_client import REGISTRY

    token = object()
    with _lock:
        _sources.append((token, source, top))
        if _collector is None:
            _collector = MonitorCollector(_latest, top=top)
            REGISTRY.register(_collector)
        else:
            _collector.top = top
            _collector.forget()  # another monitor's prefixes from now on

    def unregister() -> None:
        global _collector
        with _lock:
            for i, (tok, _, _) in enumerate(_sources):
                if tok is token:
                    del _sources[i]
                    break
            else:
                return
            if _sources:
                _collector.top = _sources[-1][2]  # type: ignore[union-attr]
                _collector.forget()  # type: ignore[union-attr]
            elif _collector is not None:
                REGISTRY.unregister(_collector)
                _collector = None

    return unregister
