"""The pipeline: a subject, the default observers, and the snapshot.

The live scheduler plugin and an offline replay both feed batches of events to
a :class:`Pipeline`; the default observers are assembled here and nowhere else,
so a live run and its replay compute the same snapshot by construction.

This module does not import Dask.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from dask_monitor.alerts.rules import AlertLog, AlertRule, default_rules
from dask_monitor.alerts.rules.insight import InsightRule
from dask_monitor.batch import as_batch
from dask_monitor.config import MonitorConfig
from dask_monitor.dispatch import Dispatched, dispatch_stats, wait_idle
from dask_monitor.events import Alert, Event
from dask_monitor.observers import (
    DurationsObserver,
    ErrorsObserver,
    EtaEstimator,
    ProgressObserver,
    SamplingObserver,
    ThroughputObserver,
    WorkersObserver,
)
from dask_monitor.observers._common import CHUNK
from dask_monitor.observers.insights import InsightsEngine
from dask_monitor.observers.resources import ResourcesObserver
from dask_monitor.observers.spans import SpansObserver
from dask_monitor.observers.timing import PrefixTimesObserver
from dask_monitor.snapshot import (
    SNAPSHOT_VERSION,
    Insight,
    MonitorStats,
    Samples,
    Snapshot,
    observer_report,
)
from dask_monitor.subject import Subject

__all__ = ["Pipeline", "UnknownSpanError"]

logger = logging.getLogger(__name__)

#: Graph submissions (``update_graph`` calls) kept in the snapshot.
MAX_SUBMISSIONS = 100
#: Times of Dask restarts kept in the snapshot (the latest).
MAX_RESTARTS = 100


class UnknownSpanError(ValueError):
    """``snapshot(span=...)`` named no span the monitor has seen.

    Its message lists a few span names that are known. A span the monitor saw
    but no longer tracks (only the most recent are) is not unknown: its
    snapshot is empty.
    """


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[Pipeline, _P], _R],
) -> Callable[Concatenate[Pipeline, _P], _R]:
    """Run ``method`` holding the pipeline's lock (see :class:`Pipeline`)."""

    @functools.wraps(method)
    def locked(self: Pipeline, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class Pipeline:
    """Default observers behind one subject, and the snapshot they make.

    Parameters
    ----------
    config
        Validated settings; ``MonitorConfig.from_config()`` when omitted.
    clock
        Returns wall-clock seconds; replays pass the time of the last event.
    observers
        Extra observers subscribed after the built-in ones.
    raise_errors
        Re-raise observer exceptions instead of isolating them (for tests).
    dispatch
        Run each extra observer (not alert rules, not sinks) on a thread of
        its own behind a bounded queue (:mod:`dask_monitor.dispatch`), so a
        slow or blocking one cannot hold up the caller. The live plugin sets
        it; a replay calls observers inline.
    live
        Whether the events come from a running cluster (the plugin) or from
        a recorded run (a replay): the snapshot's ``live``, which tells views
        to leave out live-only figures (current pace, ETA, flush cost).

    Notes
    -----
    Thread-safe: every method that feeds or changes the pipeline, and the
    building of a snapshot, hold one reentrant lock, so a reader on another
    thread waits for the batch in progress rather than seeing observers
    half-way (reading a snapshot updates some of them: the durations
    observer merges its buffered samples). Under the lock only our own
    observers run, and the O(1) queues of user observers and sinks: no user
    code. A snapshot is a plain dict shared by its readers: do not mutate it.
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        observers: Iterable[Any] = (),
        raise_errors: bool = False,
        dispatch: bool = False,
        live: bool = True,
    ) -> None:
        self.live = live
        self._lock = threading.RLock()
        self.config = config if config is not None else MonitorConfig.from_config()
        self._dispatch = dispatch
        self._dispatched: dict[int, Dispatched] = {}
        self._dispatch_version = 0
        self.clock = clock
        self.subject = Subject(name="dask-monitor", raise_errors=raise_errors)
        cfg = self.config
        self.progress = ProgressObserver(
            max_prefixes=cfg.max_prefixes, max_groups=cfg.max_groups
        )
        self.throughput = ThroughputObserver(
            bin_seconds=cfg.throughput_bin,
            bins=cfg.throughput_bins,
            top_prefixes=cfg.throughput_prefixes,
            clock=clock,
        )
        self.durations = DurationsObserver(
            relative_error=cfg.relative_error, max_prefixes=cfg.max_prefixes
        )
        self.workers = WorkersObserver(max_workers=cfg.max_workers, clock=clock)
        self.errors = ErrorsObserver(
            max_rows=cfg.max_errors, max_text=cfg.max_error_text
        )
        self.sampling = SamplingObserver(
            recent=cfg.recent_events, reservoir=cfg.reservoir_size
        )
        self.prefix_times = PrefixTimesObserver(max_prefixes=cfg.max_prefixes)
        self.resources = ResourcesObserver(max_workers=min(cfg.max_workers, 1_000))
        self.eta = EtaEstimator(
            self.progress,
            self.throughput,
            durations=self.durations,
            workers=self.workers,
            clock=clock,
        )
        self.spans = SpansObserver(
            relative_error=cfg.relative_error,
            keys=self.progress.keys,
            clock=clock,
            workers=self.workers,
            bin_seconds=cfg.throughput_bin,
            bins=cfg.throughput_bins,
        )
        # Alerts: rules are observers; what they emit goes to its own subject.
        self.alerts = Subject(name="dask-monitor-alerts", raise_errors=raise_errors)
        self.alert_log = AlertLog(recent=cfg.alerts.recent)
        self.alerts.subscribe(self.alert_log)
        self.rules: list[AlertRule] = default_rules(cfg.alerts, self.durations)
        # Insights: evaluated on a timer from the snapshot's aggregates (see
        # _build), not per event; critical ones become insight.<kind> alerts.
        self.insights = InsightsEngine(cfg.insights, quantile=self.durations.quantile)
        if cfg.insights.enabled and cfg.alerts.enabled:
            self.rules.append(
                InsightRule.from_settings(
                    cfg.insights, self.insights, lambda: self.alert_log.recent
                )
            )
        self._rules: tuple[int, list[AlertRule]] = (-1, [])
        self._alerted = 0
        self._sink_changes = 0
        self.builtin: tuple[Any, ...] = (
            self.progress,
            self.throughput,
            self.durations,
            self.workers,
            self.errors,
            self.sampling,
            self.eta,
            self.spans,
            self.prefix_times,
            self.resources,
            *self.rules,
        )
        for observer in self.builtin:
            self.subject.subscribe(observer)
        for observer in observers:
            self.add_observer(observer)

        self.started = clock()
        self.events = 0
        self.dropped = 0
        self.merged = 0
        self.flushes = 0
        self.flush_seconds = 0.0
        self.flush_last = 0.0
        self.flush_max = 0.0
        self._seq = 0
        self.submissions: deque[dict[str, Any]] = deque(maxlen=MAX_SUBMISSIONS)
        #: Times of Dask restarts, oldest first (see :meth:`restart`).
        self.restarts: deque[float] = deque(maxlen=MAX_RESTARTS)
        self._cache: Snapshot | None = None
        self.rule_errors: dict[str, int] = {}
        self._raise_errors = raise_errors
        # Rates, ETAs and utilisation move with the clock, not only with
        # events: until this time (the last activity plus their windows) a
        # tick rebuilds the snapshot now and then (see ``tick``).
        self._moving_until = -float("inf")
        self._refreshed = -float("inf")
        self._insights_seq = -1  # the seq of the snapshot insights last saw

    # -- feeding -----------------------------------------------------------

    @_locked
    def process(self, events: Sequence[Event]) -> None:
        """Hand one batch of events to every observer.

        ``events`` is a :class:`~dask_monitor.batch.Batch` (what the plugin's
        flush makes) or any sequence of events, turned into one here so that
        the built-in observers share its columns. A batch of more than
        ``CHUNK`` task events is handed over in chunks of that size.
        """
        if not events:
            return
        self._bind_rules()
        batch = as_batch(events)
        for chunk in batch.chunks(CHUNK):
            self.subject.notify_batch(chunk)
        self._moving_until = (
            self.clock() + max(self.throughput.window, self.workers.window) + 1.0
        )
        self._changed()
        if not self.live:
            # A replay has no tick: evaluate insights about once a second of
            # the run's own time, as the live run did (holds, releases).
            self._tick_insights(self.clock())

    @_locked
    def tick(self, now: float | None = None) -> None:
        """Let time-based alert rules (stall, straggler) look at the clock.

        The plugin calls it after every flush, with or without events; cheap
        unless a rule has work to do. Never raises: a failing rule is logged
        once and counted, like a failing observer.
        """
        now = self.clock() if now is None else now
        alerted = self._alerted
        if (
            now <= self._moving_until or self.progress.remaining() > 0
        ) and now - self._refreshed >= _REFRESH:
            # The figures read against the clock changed (a rate decaying,
            # an ETA counting down): let readers see them.
            self._changed()
        self._tick_insights(now)  # before the rules: the insight rule reads it
        for rule in self._bind_rules():
            try:
                rule.tick(now)
            except Exception as exc:
                self._rule_failed(rule, exc)
        self._refresh_dispatch()
        changes = sum(getattr(s, "changes", 0) for s in self.alert_log.sinks.values())
        if self._alerted != alerted or changes != self._sink_changes:
            self._sink_changes = changes
            self._changed()

    def _tick_insights(self, now: float) -> None:
        """Evaluate the insights when due, even if no reader builds snapshots
        (alerts, holds and releases must not wait for one).

        From a light snapshot (no samples, ETAs, user observers' reports or
        alert records: the costly parts, which no check reads), not cached;
        readers see the new insights (a new ``seq``) only if they changed.
        """
        insights = self.insights
        if not insights.due(now):
            return
        if self._insights_seq == self._seq and not insights.waiting:
            return  # nothing changed since the last evaluation
        version = insights.version
        cache = self._cache
        if cache is not None and cache["seq"] == self._seq:
            # A reader built the snapshot of this data: no need for another.
            insights.evaluate(cache, now)
            self._insights_seq = self._seq
        else:
            self._build(light=True)
        if insights.version != version:
            self._changed()

    @_locked
    def reconcile(self, processing: Collection[Any], active: int) -> None:
        """Transitions were dropped: let the alert rules take the scheduler's
        task state (``processing``: keys processing now; ``active``: tasks
        waiting, queued, no-worker or processing)."""
        for rule in self._bind_rules():
            try:
                rule.reconcile(processing, active)
            except Exception as exc:
                self._rule_failed(rule, exc)

    @_locked
    def add_observer(self, observer: Any) -> None:
        """Subscribe an extra (user) observer; on its own thread if dispatching."""
        if (
            not self._dispatch
            or isinstance(observer, AlertRule)
            or getattr(observer, "is_sink", False)
        ):
            self.subject.subscribe(observer)
            return
        if id(observer) in self._dispatched:
            return
        proxy = Dispatched(observer, capacity=self.config.buffer_size)
        self._dispatched[id(observer)] = proxy
        self.subject.subscribe(proxy)

    @_locked
    def remove_observer(self, observer: Any) -> bool:
        """Unsubscribe an observer added by :meth:`add_observer`."""
        proxy = self._dispatched.pop(id(observer), None)
        if proxy is None:
            return self.subject.unsubscribe(observer)
        proxy.close()
        self._changed()
        return self.subject.unsubscribe(proxy)

    def close(self) -> None:
        """Stop the dispatcher threads of user observers (the data stays readable)."""
        for proxy in self._dispatched.values():
            proxy.close()

    async def settle(self, timeout: float) -> bool:
        """Wait (without blocking the loop) for user observers to take what was
        flushed; whether they did within ``timeout`` seconds."""
        done = await wait_idle(self._dispatched.values(), timeout)
        self._refresh_dispatch()
        return done

    def _refresh_dispatch(self) -> None:
        """Invalidate the cached snapshot if a dispatcher's counters moved."""
        if self._dispatched:
            version = sum(p.version for p in self._dispatched.values())
            if version != self._dispatch_version:
                self._dispatch_version = version
                self._changed()

    def add_alert_sink(self, sink: Any) -> None:
        """Send every alert to ``sink`` (an observer with ``stats()``), shown in
        the snapshot's ``alerts.sinks`` under ``sink.name``."""
        self.alerts.subscribe(sink)
        self.alert_log.sinks[_name(sink)] = sink

    def _bind_rules(self) -> list[AlertRule]:
        """The subscribed alert rules, each bound to the alert subject.

        Cached until the subscriptions change (called twice per flush).
        """
        generation = self.subject.generation
        if self._rules[0] == generation:
            return self._rules[1]
        rules = [o for o in self.subject.observers if isinstance(o, AlertRule)]
        for rule in rules:
            if not rule.bound:
                rule.bind(self._emit_alert)
        self._rules = (generation, rules)
        return rules

    def _emit_alert(self, alert: Alert) -> None:
        self._alerted += 1
        self.alerts.notify(alert)

    def _rule_failed(self, rule: AlertRule, exc: Exception) -> None:
        if self._raise_errors:
            raise exc
        count = self.rule_errors.get(rule.name, 0) + 1
        self.rule_errors[rule.name] = count
        self._changed()  # the snapshot shows tick_errors
        if count == 1:
            logger.error(
                "alert rule %s raised %s in tick; later failures are only counted",
                rule.name,
                type(exc).__name__,
                exc_info=exc,
            )

    @_locked
    def account(
        self, *, events: int, dropped: int, seconds: float, merged: int = 0
    ) -> None:
        """Record the cost of one flush (called by the plugin after each flush).

        Parameters
        ----------
        events
            Events taken out of the buffer by this flush.
        dropped
            Transitions dropped since the previous flush (buffer full).
        seconds
            Time the flush took, conversion and observers included.
        merged
            Transitions folded into an event already buffered (a task's first
            move into its creation, see ``MonitorPlugin.transition``): they
            are in no count of ``events``.
        """
        self.events += events + dropped
        self.dropped += dropped
        self.merged += merged
        self.flushes += 1
        self.flush_seconds += seconds
        self.flush_last = seconds
        self.flush_max = max(self.flush_max, seconds)
        self._changed()

    @_locked
    def restart(self, when: float | None = None) -> None:
        """Dask restarted (at ``when``, by default now): a boundary, not an eraser.

        Dask forgot every task without transitions and replaces its workers.
        What it forgot goes: live state counts and the keys of live tasks
        (progress and span views), in-flight task state of the alert rules
        (stall, stragglers), workers that left (and those running now, once
        they leave: see ``WorkersObserver.restart``). What happened stays:
        completed, erred, retried, recomputed and done counts, errors,
        alerts, durations, throughput and samples. The time is recorded
        (``snapshot["restarts"]``). Other observers are told by their
        ``restart()``, or else their ``reset()`` (the event log records it;
        user observers on dispatcher threads get a queued ``reset()``).
        """
        when = self.clock() if when is None else when
        self.restarts.append(when)
        self.progress.restart()
        self.spans.restart()
        self.workers.restart()
        for observer in self.subject.observers:
            if observer in self.builtin and not isinstance(observer, AlertRule):
                continue
            # A user observer on a dispatcher thread gets a queued reset():
            # the proxy would call restart() on this thread.
            restart = (
                None
                if isinstance(observer, Dispatched)
                else getattr(observer, "restart", None)
            )
            if not callable(restart):
                restart = getattr(observer, "reset", None)
            if not callable(restart):
                continue
            try:
                restart()
            except Exception:  # user code: isolate it, as the subject does
                if self._raise_errors:
                    raise
                logger.exception(
                    "dask-monitor: observer %r failed to restart", observer
                )
        self._changed()

    @_locked
    def reset(self) -> None:
        """Forget all aggregates (see :meth:`restart` for Dask's restart).

        The monitor's own accounting (events, drops, flush cost) is kept.
        """
        for observer in self.builtin:
            observer.reset()
        for observer in self.subject.observers:
            reset = getattr(observer, "reset", None)
            if observer not in self.builtin and callable(reset):
                try:
                    reset()
                except Exception:  # user code: isolate it, as the subject does
                    logger.exception(
                        "dask-monitor: observer %r failed to reset", observer
                    )
        self.restarts.clear()
        self.insights.reset()
        self._changed()

    @_locked
    def submit(self, submission: dict[str, Any]) -> None:
        """Record one graph submission (plain data: client, keys, time, span).

        The most recent ``MAX_SUBMISSIONS`` are kept, newest last.
        """
        self.submissions.append(submission)
        self._changed()

    @_locked
    def name_spans(self, names: dict[str, str]) -> None:
        """Learn the names of Dask spans (``{id: "etl"}``), for span views.

        Observers with a ``name_spans`` method (the event log) are told too.
        """
        if not names:
            return
        for observer in self.subject.observers:
            name_spans = getattr(observer, "name_spans", None)
            if callable(name_spans):
                try:
                    name_spans(names)
                except Exception:  # isolate like the subject does
                    if self._raise_errors:
                        raise
        self._changed()

    def _changed(self) -> None:
        self._seq += 1
        self._cache = None
        self._refreshed = self.clock()

    # -- reading -----------------------------------------------------------

    @property
    def seq(self) -> int:
        """Increases whenever the data behind the snapshot changed."""
        return self._seq

    def snapshot(
        self, span: str | None = None, *, missing_ok: bool = False
    ) -> Snapshot:
        """Everything the observers know, as plain data.

        Built lazily and cached until the next batch, so readers polling
        faster than the flush interval cost nothing.

        With ``span`` (a span id, or a name such as ``"etl"``: the spans of that
        name and those nested in them), ``totals``, ``prefixes``, ``groups`` and
        ``errors`` cover that span's tasks only (rates and ETAs are left out:
        zero and ``None``), and ``span`` describes the selection; the other
        sections are the whole cluster's. Only the most recent spans are
        tracked (see :class:`~dask_monitor.observers.spans.SpansObserver`).

        Raises
        ------
        UnknownSpanError
            If ``span`` is neither the id nor the name of a span seen so far
            (a typo would otherwise read as a span with no tasks), unless
            ``missing_ok``: then its snapshot is empty, like that of a span
            whose tasks have not reached the monitor yet.
        """
        if span is not None:
            if not missing_ok:
                _check_span(self, span)
            return self._span_snapshot(span)
        cache = self._cache
        if cache is not None:
            return cache
        with self._lock:
            if self._cache is None or self._cache["seq"] != self._seq:
                self._cache = self._build()
            return self._cache

    @_locked
    def _span_snapshot(self, selector: str) -> Snapshot:
        return _span_view(self, selector)

    def _build(self, *, light: bool = False) -> Snapshot:
        cfg = self.config
        now = self.clock()
        seq = self._seq
        progress = self.progress.snapshot(
            top_prefixes=cfg.snapshot_prefixes,
            top_groups=1 if light else cfg.snapshot_groups,
        )
        prefixes = progress["prefixes"]
        durations = self.durations.snapshot(prefixes)
        times = self.prefix_times.snapshot(prefixes)
        for name, row in prefixes.items():
            row["durations"] = durations[name]
            row["seconds"], row["nbytes"] = times[name]
            row["rate"] = 0.0 if light else self.throughput.rate(name, now=now)
            estimate = _NO_ETA if light else self.eta.estimate(name, now=now)
            row["eta"], row["eta_low"], row["eta_high"] = estimate
        totals = progress["totals"]
        totals["rate"] = self.throughput.rate(now=now)
        totals["eta"], totals["eta_low"], totals["eta_high"] = (
            _NO_ETA if light else self.eta.estimate(now=now)
        )
        totals["average_rate"] = self.throughput.average_rate()
        totals["run_seconds"] = self.throughput.run_seconds()
        errors = self.errors.snapshot()
        dispatch = dispatch_stats(self._dispatched.values())
        observer_errors = self.subject.errors
        for name, stats in dispatch.items():  # raised on a dispatcher thread
            observer_errors[name] = observer_errors.get(name, 0) + stats["errors"]
        monitor: MonitorStats = {
            "events": self.events,
            "dropped": self.dropped,
            "merged": self.merged,
            "flushes": self.flushes,
            "flush_seconds": self.flush_seconds,
            "flush_last": self.flush_last,
            "flush_max": self.flush_max,
            "overhead": self.flush_seconds / max(now - self.started, 1e-9),
            "buffer_capacity": cfg.buffer_size,
            "interval": cfg.interval,
            "observer_errors": observer_errors,
            "observers": [_name(o) for o in self.subject.observers],
            "started": self.started,
            "sinks": _sink_stats(self.subject.observers),
            "dispatch": dispatch,
        }
        snapshot = cast(
            Snapshot,
            {
                "version": SNAPSHOT_VERSION,
                "timestamp": now,
                "started": self.started,
                "elapsed": now - self.started,
                "seq": seq,
                "live": self.live,
                "totals": totals,
                "prefixes": prefixes,
                "prefixes_folded": progress["prefixes_folded"],
                "groups": progress["groups"],
                "groups_folded": progress["groups_folded"],
                "workers": self.workers.snapshot(),
                "errors": errors["errors"],
                "errors_folded": errors["errors_folded"],
                "throughput": self.throughput.snapshot(),
                "samples": _NO_SAMPLES if light else self.sampling.snapshot(),
                "spans": self.spans.summary(),
                "submissions": list(self.submissions),
                "restarts": list(self.restarts),
                "resources": self.resources.snapshot(),
                "alerts": {
                    # light: what the insights read (the kinds and prefixes)
                    **(
                        {"recent": [_alert_subject(a) for a in self.alert_log.recent]}
                        if light
                        else self.alert_log.snapshot(self._bind_rules())
                    ),
                    "tick_errors": dict(self.rule_errors),
                    "subscriber_errors": self.alerts.errors,
                },
                "monitor": monitor,
                "observers": {} if light else self._observer_reports(),
            },
        )
        insights = self.insights
        if insights.due(now) or (not self.live and insights.evaluated < now):
            insights.evaluate(snapshot, now)
            self._insights_seq = seq
        snapshot["insights"] = cast(list[Insight], insights.snapshot())
        return snapshot

    def _observer_reports(self) -> dict[str, Any]:
        """What the extra observers with a ``snapshot()`` method report, by name.

        A dispatched observer is asked on its own thread (see
        :mod:`dask_monitor.dispatch`); one called inline (a replay), here.
        """
        reports: dict[str, Any] = {}
        builtin = {id(o) for o in self.builtin}
        for observer in self.subject.observers:
            if id(observer) in builtin or isinstance(observer, AlertRule):
                continue
            if isinstance(observer, Dispatched):
                if observer.report is not None:
                    reports[observer.name] = observer.report
                continue
            snapshot = getattr(observer, "snapshot", None)
            if getattr(observer, "is_sink", False) or not callable(snapshot):
                continue
            try:
                report = observer_report(snapshot())
            except Exception as e:  # user code: isolate it, as the subject does
                if self._raise_errors:
                    raise
                report = {"error": f"snapshot() raised {type(e).__name__}"}
            reports[_name(observer)] = report
        return reports


def _span_view(pipeline: Pipeline, selector: str) -> Snapshot:
    """The snapshot narrowed to the spans ``selector`` names.

    Rates, ETAs, the average rate and the throughput series are the spans'
    own (their pace now, not the cluster's, and not left at zero).
    """
    cfg = pipeline.config
    base = pipeline.snapshot()
    ids = pipeline.spans.ids(selector)
    view = pipeline.spans.view(
        ids, cfg.snapshot_prefixes, cfg.snapshot_groups, now=pipeline.clock()
    )
    prefixes = set(view["prefixes"])
    out: dict[str, Any] = dict(base)
    throughput = pipeline.spans.throughput(ids)
    if throughput is not None:  # the span's own finishes per bin
        out["throughput"] = throughput
    out.update(
        totals=view["totals"],
        prefixes=view["prefixes"],
        prefixes_folded=view["prefixes_folded"],
        groups=view["groups"],
        groups_folded=view["groups_folded"],
        errors=[row for row in base["errors"] if row["prefix"] in prefixes],
        span={
            "selector": selector,
            "ids": ids,
            "names": [pipeline.spans.names.get(i, i) for i in ids],
        },
    )
    return cast(Snapshot, out)


def _check_span(pipeline: Pipeline, selector: str) -> None:
    """Raise :class:`UnknownSpanError` unless ``selector`` names a span seen:
    tracked, named by the scheduler, or the span of a recorded submission."""
    spans = pipeline.spans
    if spans.ids(selector):
        return
    names = spans.names
    if selector in names or any(
        s.get("span") == selector for s in pipeline.submissions
    ):
        return
    needle = "/" + selector.strip("/") + "/"
    if any(needle in "/" + name + "/" for name in names.values()):
        return
    known = sorted(set(names.values()))
    listed = ", ".join(repr(n) for n in known[:8])
    if len(known) > 8:
        listed += f" and {len(known) - 8:,} more"
    raise UnknownSpanError(
        f"no span named {selector!r} (nor with that id); "
        + (f"known spans: {listed}" if known else "no span has been seen yet")
    )


def _sink_stats(observers: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """``stats()`` of the observers that are sinks (event logs ...), by name."""
    out: dict[str, dict[str, Any]] = {}
    for observer in observers:
        stats = getattr(observer, "stats", None)
        if getattr(observer, "is_sink", False) and callable(stats):
            try:
                out[_name(observer)] = stats()
            except Exception as e:  # a sink's counters must not break the snapshot
                out[_name(observer)] = {"error": repr(e)}
    return out


def _name(observer: Any) -> str:
    name = getattr(observer, "name", None)
    if isinstance(name, str):
        return name
    return getattr(observer, "__qualname__", type(observer).__name__)


#: The samples and ETAs of a light snapshot (made for the insights alone).
_NO_SAMPLES: Samples = {"recent": [], "reservoir": [], "seen": 0}
_NO_ETA: tuple[None, None, None] = (None, None, None)


def _alert_subject(alert: Alert) -> dict[str, Any]:
    """What a light snapshot keeps of an alert: its kind and subjects."""
    return {"kind": alert.kind, "prefix": alert.prefix, "worker": alert.worker}


#: Seconds between two rebuilds of the snapshot for the clock's sake alone
#: (rates decaying, ETAs counting down; see ``Pipeline.tick``).
_REFRESH = 1.0
