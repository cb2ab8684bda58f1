"""The scheduler plugin: a thin adapter from Dask's scheduler to the pipeline.

The ``transition`` hook runs on the scheduler's event loop for every task
transition, so it does O(1) work: one dict lookup and five fields appended to
a bounded flat buffer (``key, start, finish, task group, kwargs``: no object
per transition). A periodic callback on the same loop (the flush) cuts the
buffer into columns (strided slices: C speed), makes them one
:class:`~dask_monitor.batch.Batch` (lists of keys, prefixes, states ...; no
event object per transition) and hands it to
the :class:`~dask_monitor.pipeline.Pipeline`, whose observers read the
columns. :class:`~dask_monitor.events.TaskStatus` objects are made from the
batch only for whoever asks for them (user observers, samples, errors).

This is the only module that touches scheduler objects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from time import thread_time
from typing import TYPE_CHECKING, Any, ClassVar

import dask.config
from dask.utils import key_split
from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from dask_monitor.alerts.rules import topics as alert_topics
from dask_monitor.batch import Batch, Details, pick
from dask_monitor.config import PLUGIN_NAME, ConfigError, MonitorConfig
from dask_monitor.events import NEW, Alert, Event, WorkerStatus, exception_type
from dask_monitor.observers.errors import cause_line
from dask_monitor.pipeline import Pipeline
from dask_monitor.resources import ResourceSampler
from dask_monitor.sinks.eventlog import (
    EventLogWriter,
    check_log_path,
    record_settings,
)
from dask_monitor.sinks.prometheus import prometheus_settings, register_source
from dask_monitor.snapshot import Snapshot

if TYPE_CHECKING:
    from distributed import Scheduler

__all__ = ["PLUGIN_NAME", "MonitorPlugin", "get_plugin"]

logger = logging.getLogger(__name__)


#: Names of the RPC handlers the plugin adds to the scheduler.
HANDLERS = (
    "dask_monitor_snapshot",
    "dask_monitor_detach",
    "dask_monitor_record",
    "dask_monitor_stop_recording",
)

_FLUSH = "dask-monitor-flush"

#: Seconds a client that left has to come back before its attachments end.
ORPHAN_GRACE = 60.0

#: How long ``snapshot(flush=True)`` waits, off the loop, for user observers
#: (on their dispatcher threads) to take the flushed batch.
SETTLE_SECONDS = 2.0

# Marks a worker event in the buffer: (address, _WORKER, action, None, info).
_WORKER = object()

#: Fields of one buffered event: key, start, finish, task group, and what the
#: flush needs of the transition's kwargs (see ``MonitorPlugin.transition``).
FIELDS = 5

_PROCESSING = "processing"
_MEMORY = "memory"
_ERRED = "erred"
_RELEASED = "released"
_WAITING = "waiting"

_LEAVE_PROCESSING_FOR_LOSS = frozenset({"released", "no-worker", "waiting"})

#: Dask's stimulus for a worker's report that a task raised: a move
#: ``processing -> released`` under it is a retry (``retries=``).
_TASK_ERRED = "task-erred"
#: Exception texts of attempts that raised and will be retried, kept until
#: the flush takes them (at most this many).
MAX_RAISED = 10_000


def get_plugin(scheduler: Scheduler) -> MonitorPlugin | None:
    """The monitor plugin running on ``scheduler``, or ``None``."""
    plugin = scheduler.plugins.get(PLUGIN_NAME)
    return plugin if isinstance(plugin, MonitorPlugin) else None


class MonitorPlugin(SchedulerPlugin):
    """Turn scheduler transitions into events for the monitor's observers.

    Parameters
    ----------
    config
        Validated settings; read from Dask config (``monitor.*``) when omitted.
    observers
        Extra observers (objects with ``update``/``update_batch``, or
        callables) subscribed to the pipeline's subject on the scheduler.
    preloaded
        Installed by a preload or by the scheduler's own configuration rather
        than by :meth:`Monitor.attach`; such a plugin stays when the last
        client detaches.
    **options
        Settings by name, overriding Dask config (``interval="50ms"``).

    Notes
    -----
    All hooks, handlers and the flush run on the scheduler's event loop thread.
    Registering the plugin a second time is a no-op (``idempotent = True``);
    a plugin that replaces another one (by ``Scheduler.add_plugin`` or
    ``register_plugin(..., idempotent=False)``) stops the old one's flush and
    handlers first, as Dask does not call ``close`` on a replaced plugin.
    """

    name: ClassVar[str] = PLUGIN_NAME
    idempotent: ClassVar[bool] = True  # type: ignore[misc]

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        observers: tuple[Any, ...] | list[Any] = (),
        preloaded: bool = False,
        **options: Any,
    ) -> None:
        if config is None:
            config = MonitorConfig.from_config(**options)
        elif options:
            raise TypeError("pass either config or keyword options, not both")
        self.config = config
        self.preloaded = preloaded
        self._initial_observers = tuple(observers)
        self.scheduler: Scheduler | None = None
        self.pipeline: Pipeline | None = None
        #: Handles attached (see :meth:`attach`): token -> (client id, observers).
        self.attachments: dict[str, tuple[str | None, list[Any]]] = {}
        #: Attachments whose client left: token -> when (``time.monotonic``).
        self._orphans: dict[str, float] = {}
        #: Buffered events, flat: ``FIELDS`` entries each (see ``transition``).
        self._buffer: list[Any] = []
        self._capacity = config.buffer_size
        self._limit = FIELDS * config.buffer_size
        self._dropped = 0
        self._merged = 0  # calls folded into a buffered creation
        #: Buffered creations (``new -> released``) by key: the position of
        #: their finish in the buffer (see ``transition``).
        self._created: dict[Any, int] = {}
        self._marks = 0  # worker events in the buffer
        #: Workers Dask is removing: address -> (stimulus id, expected), from
        #: its ``remove-worker`` event (see ``log_event``).
        self._leaving: dict[str, tuple[Any, bool]] = {}
        self._tasks: dict[Any, Any] = {}
        self._where: dict[Any, str | None] = {}
        #: Attempts that raised and will be retried: key -> (exception,
        #: traceback) texts, from the worker's report (see ``_watch_errors``).
        self._raised: dict[Any, tuple[str | None, str | None]] = {}
        #: Our wrapper of the scheduler's ``task-erred`` handler, and the handler.
        self._task_erred: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self._pc: PeriodicCallback | None = None
        self._closed = False
        self.recorder: EventLogWriter | None = None
        self._span_names: dict[str, str] = {}
        self._unregister_metrics: Callable[[], None] | None = None
        self.nats: Any = None  # the NATS alert publisher, when monitor.nats.url is set
        self._resources = ResourceSampler()  # workers' memory, CPU ... once a second

    def __getstate__(self) -> dict[str, Any]:
        # Only the configuration travels: a plugin is pickled before it starts.
        return {
            "config": self.config,
            "preloaded": self.preloaded,
            "observers": self._initial_observers,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["config"],
            observers=state["observers"],
            preloaded=state["preloaded"],
        )

    # -- life cycle ----------------------------------------------------------

    async def start(self, scheduler: Scheduler) -> None:
        """Set up the pipeline, the flush, the RPC handlers; seed existing state."""
        previous = get_plugin(scheduler)
        if previous is not None and previous is not self:
            previous._stop()
        # Every setting is checked before anything is set up, and what was
        # set up is undone if a later step fails: a failed start leaves no
        # handler, thread or collector behind.
        record = record_settings(dask.config.get("monitor.record", None))
        metrics = prometheus_settings()
        self.scheduler = scheduler
        self._tasks = scheduler.tasks
        self._closed = False
        if record is not None:  # off the loop: file systems can block
            await asyncio.get_running_loop().run_in_executor(
                None, check_log_path, record["path"]
            )
        try:
            self._start(scheduler, metrics, record)
        except BaseException:
            self._stop()
            raise

    def _start(
        self,
        scheduler: Scheduler,
        metrics: dict[str, Any],
        record: dict[str, Any] | None,
    ) -> None:
        self.pipeline = Pipeline(
            self.config, observers=self._initial_observers, dispatch=True
        )
        self._start_alerts(scheduler)
        self._seed(scheduler)
        self._watch_errors(scheduler)
        scheduler.handlers["dask_monitor_snapshot"] = self._rpc_snapshot
        scheduler.handlers["dask_monitor_detach"] = self._rpc_detach
        scheduler.handlers["dask_monitor_record"] = self._rpc_record
        scheduler.handlers["dask_monitor_stop_recording"] = self._rpc_stop_recording
        if record is not None:  # before the first flush: the seeded state too
            self._open_recorder(record)
        self._start_metrics(metrics)
        pc = PeriodicCallback(self.flush, self.config.interval * 1000)
        self._pc = pc
        scheduler.periodic_callbacks[_FLUSH] = pc
        # A callback added after the scheduler started is not started by Dask.
        pc.start()
        self._add_pages(scheduler)
        logger.info(
            "dask-monitor started: flush every %.0f ms, buffer %d transitions",
            self.config.interval * 1000,
            self.config.buffer_size,
        )

    @staticmethod
    def _add_pages(scheduler: Scheduler) -> None:
        """Serve the panel's pages on a running dashboard that lacks them."""
        from dask_monitor.dashboard import add_pages

        add_pages(scheduler)

    async def close(self) -> None:
        """Flush what is buffered, then stop the flush and remove the handlers."""
        if self.pipeline is not None and not self._closed:
            self.flush()
        self._stop()

    def _stop(self) -> None:
        self._closed = True
        writer = self._end_recording()
        if writer is not None:
            writer.close(timeout=0)  # its thread writes the rest, then ends
        if self.pipeline is not None:
            self.pipeline.close()  # user observers' dispatcher threads
        unregister, self._unregister_metrics = self._unregister_metrics, None
        if unregister is not None:
            unregister()
        nats, self.nats = self.nats, None
        if nats is not None:
            nats.close()  # does not wait: the publisher's thread ends by itself
        pc, self._pc = self._pc, None
        if pc is not None:
            pc.stop()
        scheduler = self.scheduler
        if scheduler is None:
            return
        self._unwatch_errors(scheduler)
        if pc is not None and scheduler.periodic_callbacks.get(_FLUSH) is pc:
            del scheduler.periodic_callbacks[_FLUSH]
        for name in HANDLERS:
            handler = scheduler.handlers.get(name)
            if getattr(handler, "__self__", None) is self:
                del scheduler.handlers[name]

    def _seed(self, scheduler: Scheduler) -> None:
        """Report workers and tasks that exist already as first-seen events."""
        buf = self._buffer
        for ws in scheduler.workers.values():
            buf += (ws.address, _WORKER, "added", None, {"nthreads": ws.nthreads})
            self._marks += 1
        for key, ts in scheduler.tasks.items():
            state = ts.state
            if state == "forgotten":
                continue
            info = None  # a task processing: its worker (see ``transition``)
            if state == "processing" and ts.processing_on is not None:
                info = ts.processing_on.address
            buf += (key, NEW, state, ts.group, info)

    def _watch_errors(self, scheduler: Scheduler) -> None:
        """Keep the exception text of attempts that raised and will be retried.

        Dask retries such a task (``processing -> released -> waiting``)
        without passing the worker's exception to the transitions, so the
        plugin reads it off the worker's ``task-erred`` message: a wrapper
        around the scheduler's stream handler, called only for errors.
        """
        handlers = scheduler.stream_handlers
        original = handlers.get(_TASK_ERRED)
        if original is None or self._task_erred is not None:
            return
        raised = self._raised
        tasks = scheduler.tasks

        def handle_task_erred(key: Any, stimulus_id: str, **msg: Any) -> Any:
            ts = tasks.get(key)
            if (
                ts is not None
                and ts.retries > 0
                and ts.state == _PROCESSING
                and ts.run_id == msg.get("run_id")
                and len(raised) < MAX_RAISED
            ):
                raised[key] = (msg.get("exception_text"), msg.get("traceback_text"))
            return original(key=key, stimulus_id=stimulus_id, **msg)

        handlers[_TASK_ERRED] = handle_task_erred
        self._task_erred = (handle_task_erred, original)

    def _unwatch_errors(self, scheduler: Scheduler) -> None:
        """Give the scheduler its own ``task-erred`` handler back."""
        wrapped, self._task_erred = self._task_erred, None
        handlers = scheduler.stream_handlers
        if wrapped is not None and handlers.get(_TASK_ERRED) is wrapped[0]:
            handlers[_TASK_ERRED] = wrapped[1]
        self._raised.clear()

    # -- hooks (scheduler event loop; keep them O(1)) ------------------------

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        """Buffer one transition; count it as dropped when the buffer is full.

        A task entering ``processing`` is buffered with its worker's address
        (read off the task state); other transitions with their kwargs.

        A call that leaves the task where it was is no event: Dask reports
        ``waiting -> waiting`` for every task it queues instead of sending it
        to a worker (then ``waiting -> queued``). ``erred -> erred`` is kept
        (the task erred again).

        A task's first move, ``released -> waiting``, right after its creation
        was buffered (``update_graph``; in the same tick of the loop, so
        nearly always before the next flush) is folded into it: one event
        ``new -> waiting`` instead of two.
        """
        if start == finish and finish != _ERRED:
            return
        if start == _RELEASED and self._created:
            at = self._created.pop(key, None)
            if at is not None and finish == _WAITING:
                self._buffer[at] = _WAITING
                self._merged += 1
                return
        buf = self._buffer
        if len(buf) < self._limit:
            ts = self._tasks.get(key)
            if finish == "processing":
                ws = None if ts is None else ts.processing_on
                info: Any = kwargs.get("worker") if ws is None else ws.address
            else:
                info = kwargs
            buf += (key, start, finish, None if ts is None else ts.group, info)
        else:
            self._dropped += 1

    def update_graph(
        self, scheduler: Scheduler, *, tasks: Any = (), **kwargs: Any
    ) -> None:
        """Report tasks created in ``released`` (Dask makes no transition for it).

        Each call is also recorded as a submission (client, keys, time, span)
        so that one computation can be looked at on its own:
        ``monitor.snapshot(span=submission["span"])``.
        """
        buf = self._buffer
        get = self._tasks.get
        if self.pipeline is not None:
            keys = kwargs.get("keys") or ()
            span = example = None
            for key in keys:
                ts = get(key)
                if ts is not None:
                    span = ts.group.span_id
                    example = str(key)[:200]
                    break
            self.pipeline.submit(
                {
                    "time": time.time(),
                    "client": str(kwargs.get("client")),
                    "keys": len(keys),
                    "tasks": len(tasks),
                    "span": span,
                    "key": example,
                }
            )
        room = self._capacity - len(buf) // FIELDS
        created = self._created
        for key in tasks:
            ts = get(key)
            if ts is not None and ts.state == _RELEASED:
                if room <= 0:
                    self._dropped += 1
                    continue
                room -= 1
                created[key] = len(buf) + 2  # its finish (see ``transition``)
                buf += (key, NEW, _RELEASED, ts.group, None)

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        """Report a worker that joined."""
        ws = scheduler.workers.get(worker)
        nthreads = ws.nthreads if ws is not None else None
        self._buffer += (worker, _WORKER, "added", None, {"nthreads": nthreads})
        self._marks += 1

    def log_event(self, topic: str, msg: Any) -> None:
        """Note whether Dask expected a worker's removal (see ``remove_worker``).

        Called by Dask for every event logged on the scheduler (also when not
        overridden): two comparisons for all but ``remove-worker`` events.
        """
        if (
            topic == "all"
            and type(msg) is dict
            and msg.get("action") == "remove-worker"
            and "worker" in msg
        ):
            leaving = self._leaving
            if len(leaving) > 10_000:  # bounded: a removal Dask never reported
                leaving.clear()
            leaving[msg["worker"]] = (msg.get("stimulus_id"), bool(msg.get("expected")))

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """Report a worker that left, and whether Dask expected it to.

        Dask passes no ``expected`` to this hook; it logs it in its own
        ``remove-worker`` event just before calling it (``Scheduler.remove_worker``),
        which :meth:`log_event` noted: a graceful ``retire_workers`` is expected,
        a worker that died or was removed without retirement is not.
        """
        noted = self._leaving.pop(worker, None)
        expected = noted is not None and noted == (stimulus_id, True)
        info = {"expected": True} if expected else {}
        self._buffer += (worker, _WORKER, "removed", None, info)
        self._marks += 1

    def restart(self, scheduler: Scheduler) -> None:
        """Dask forgot every task without transitions: a boundary in the history.

        What is buffered happened before the restart (the releases Dask made
        for it among them): it is flushed first, so that completions and
        errors of the last moments count. Then the pipeline forgets what
        Dask forgot and keeps the rest (:meth:`Pipeline.restart`).
        """
        if self.pipeline is not None and not self._closed:
            self.flush()
        self._created.clear()
        self._where.clear()
        self._raised.clear()
        if self.pipeline is not None:
            self.pipeline.restart(time.time())

    # -- flush (scheduler event loop, every ``interval``) ------------------------

    def flush(self) -> None:
        """Turn the buffered transitions into events and notify the observers."""
        if self._orphans:
            self._end_orphans()
            if self._closed:  # that was the last attachment
                return
        if self.pipeline is not None and self.scheduler is not None:
            self._resources.feed(self.scheduler, self.pipeline, time.time())
        items = self._buffer
        dropped = self._dropped
        pipeline = self.pipeline
        if (not items and not dropped) or pipeline is None:
            if pipeline is not None:
                pipeline.tick()  # time-based alert rules (stall, straggler)
            return
        t0 = thread_time()  # CPU time: time the loop was descheduled is no cost
        marks = self._marks
        merged = self._merged
        self._buffer = []
        self._created.clear()  # positions in the buffer just taken
        self._dropped = 0
        self._merged = 0
        self._marks = 0
        if dropped:
            self._prune_where()
        try:
            batch = self._convert(items, time.time(), has_workers=marks > 0)
            self._name_spans(batch)
            pipeline.process(batch)
        except Exception:  # never raise into Dask's loop
            logger.exception(
                "dask-monitor: flush failed; %d events lost", len(items) // FIELDS
            )
        if dropped:
            # After the batch: the scheduler's state now is what the buffered
            # transitions led to, and they must not be applied on top of it.
            self._reconcile(pipeline)
        pipeline.account(
            events=len(items) // FIELDS,
            dropped=dropped,
            seconds=thread_time() - t0,
            merged=merged,
        )
        pipeline.tick()

    def _name_spans(self, batch: Batch) -> None:
        """Tell the pipeline the names of spans it has not seen yet."""
        known = self._span_names
        new: dict[str, str] = {
            span: span
            for span in set(batch.spans)
            if span is not None and span not in known
        }
        if not new or self.scheduler is None or self.pipeline is None:
            return
        ext = self.scheduler.extensions.get("spans")
        spans = getattr(ext, "spans", {})
        for span_id in new:
            sp = spans.get(span_id)
            if sp is not None:
                new[span_id] = "/".join(str(part) for part in sp.name)
        if len(known) > 100_000:  # bounded: names are asked again if needed
            known.clear()
        known.update(new)
        self.pipeline.name_spans(new)

    # -- alerts (scheduler event loop) ---------------------------------------------

    def _start_alerts(self, scheduler: Scheduler) -> None:
        """Log the pipeline's alerts as Dask events and, if configured, on NATS."""
        assert self.pipeline is not None
        self.pipeline.alerts.subscribe(self._log_alert)
        nats = self.config.nats
        if not nats.url or not self.config.alerts.enabled:
            return
        try:
            from dask_monitor.sinks.nats import NatsPublisher

            publisher = NatsPublisher(
                nats.url,
                cluster=nats.cluster or scheduler.id,
                backlog=nats.backlog,
                connect_timeout=nats.connect_timeout,
            )
            publisher.start()
        except Exception:  # nats-py missing, bad URL ...: monitoring goes on
            logger.exception("dask-monitor: cannot start the NATS alert publisher")
            return
        self.nats = publisher
        self.pipeline.add_alert_sink(publisher)

    def _log_alert(self, alert: Event) -> None:
        """Dask pub/sub: topics ``dask-monitor-alerts`` and ``...-<kind>``."""
        if self.scheduler is not None and isinstance(alert, Alert):
            self.scheduler.log_event(alert_topics(alert.kind), alert.to_dict())

    def _convert(
        self, items: list[Any], now: float, has_workers: bool | None = None
    ) -> Batch:
        """The buffer (flat, see ``transition``) as one :class:`.Batch`.

        The buffer is cut into columns by strided slices (C speed); prefix,
        group and span names are read off the task groups by comprehensions;
        the batch's index by finish state (shared by the observers) drives
        the rest: only the events that enter or leave ``processing``,
        err or are forgotten are looked at one by one. No event object is
        made here: observers read the columns.

        ``has_workers`` says whether worker events are among ``items`` (the
        flush counts them); ``None``: look.
        """
        others: list[tuple[int, Event]] = []
        # Keys stay as Dask gives them (tuples too): their text is made only
        # where one is shown or kept (str() of a tuple costs ~1 us).
        raw = items[0::FIELDS]
        starts = items[1::FIELDS]
        finishes = items[2::FIELDS]
        tgs = items[3::FIELDS]
        kws = items[4::FIELDS]
        if has_workers is None:
            has_workers = any(s is _WORKER for s in starts)
        if has_workers:  # rare: take them out
            tasks, marks = _split_workers(
                list(zip(raw, starts, finishes, tgs, kws, strict=True))
            )
            others = self._worker_events(tasks, marks, now)
            if not tasks:
                return Batch.empty(now, others)
            raw, starts, finishes, tgs, kws = map(list, zip(*tasks, strict=True))
        if not raw:
            return Batch.empty(now, others)
        n = len(raw)
        tg = tgs[0]
        if tg is not None and tgs[-1] is tg and tgs.count(tg) == n:
            # One task group (a client.map): its names, n times (C speed).
            prefixes = [tg.prefix.name] * n
            groups = [tg.name] * n
            spans = [tg.span_id] * n
        else:
            try:
                prefixes = [tg.prefix.name for tg in tgs]
                groups = [tg.name for tg in tgs]
                spans = [tg.span_id for tg in tgs]
            except AttributeError:  # a task the scheduler did not know
                prefixes, groups, spans = _names(raw, tgs)
        workers: list[str | None] = [None] * len(raw)
        details: dict[int, Details] = {}
        batch = Batch(
            keys=raw,
            prefixes=prefixes,
            groups=groups,
            starts=starts,
            finishes=finishes,
            workers=workers,
            spans=spans,
            time=now,
            details=details,
            others=others,
        )
        index = batch.finish_index()
        enter = index.get(_PROCESSING, ())
        if enter:
            keys = pick(raw, enter)
            if not self._where.keys().isdisjoint(keys) or len(set(keys)) < len(keys):
                # A task entering twice, or again without having left: the
                # order matters, follow the batch event by event.
                self._follow(batch, kws, index)
                return batch
        # Every task entering ``processing`` here was not there before and
        # enters once: whatever leaves ``processing`` leaves after it entered,
        # so the tasks entering are taken first, then those leaving.
        where = self._where
        # The buffer holds the worker of a task entering processing (see
        # ``transition``), the kwargs of other transitions.
        for i in enter:
            where[raw[i]] = workers[i] = kws[i]
        memory = index.get(_MEMORY, ())
        for i in memory:
            if starts[i] == _PROCESSING:
                kw = kws[i]
                worker = where.pop(raw[i], None)
                workers[i] = kw.get("worker", worker)
                details[i] = _completion(kw)
        leaving = batch.where_start(_PROCESSING)
        if len(leaving) != len(memory):  # not only completions
            for i in leaving:
                finish = finishes[i]
                if finish == _ERRED:
                    kw = kws[i]
                    worker = where.pop(raw[i], None)
                    workers[i] = (kw.get("worker") if kw else None) or worker
                elif finish != _MEMORY and finish != _PROCESSING:
                    workers[i] = where.pop(raw[i], None)
                    if finish == _RELEASED:
                        self._retry_details(batch, kws, i)
        if _ERRED in index:
            self._error_details(batch, kws, index[_ERRED])
        return batch

    def _follow(
        self, batch: Batch, kws: list[Any], index: dict[str, list[int]]
    ) -> None:
        """Workers and details of the batch's events, taken in order."""
        where = self._where
        raw = batch.keys
        workers = batch.workers
        details = batch.details
        for i, (start, finish) in enumerate(
            zip(batch.starts, batch.finishes, strict=True)
        ):
            if finish == _PROCESSING:
                where[raw[i]] = workers[i] = kws[i]
            elif start == _PROCESSING:
                worker = where.pop(raw[i], None)
                kw = kws[i]
                if finish == _MEMORY:
                    worker = kw.get("worker", worker)
                    details[i] = _completion(kw)
                elif finish == _ERRED:
                    worker = (kw.get("worker") if kw else None) or worker
                elif finish == _RELEASED:
                    self._retry_details(batch, kws, i)
                workers[i] = worker
        if _ERRED in index:
            self._error_details(batch, kws, index[_ERRED])

    def _error_details(self, batch: Batch, kws: list[Any], rows: list[int]) -> None:
        """The error texts of the events at ``rows`` (into ``erred``): from
        the transition's kwargs, else from the task if the scheduler has it.

        A task that erred because a dependency did has no text of its own:
        the task Dask blames (``exception_blame``) gives its texts, and the
        traceback starts with a line naming it (see
        :func:`~dask_monitor.observers.errors.cause_line`). Read here, in
        the flush, for erred events only (never in the hook): a task that
        Dask forgot before the flush (its future released within one
        interval) has no root cause left to read, and keeps type "unknown".
        """
        details = batch.details
        get = self._tasks.get
        raw = batch.keys
        for i in rows:
            ts = get(raw[i])
            exception, traceback = _error_texts(kws[i], ts)
            if exception is None and ts is not None:
                exception, traceback = _blamed_texts(ts, exception, traceback)
            if exception is not None or traceback is not None:
                details[i] = Details(exception=exception, traceback=traceback)

    def _retry_details(self, batch: Batch, kws: list[Any], i: int) -> None:
        """Mark event ``i`` (``processing -> released``) as a retried attempt,
        with its exception, if Dask moved it so because the task raised."""
        kw = kws[i]
        stimulus = kw.get("stimulus_id") if kw else None
        if not isinstance(stimulus, str) or not stimulus.startswith(_TASK_ERRED):
            return
        exception, traceback = self._raised.pop(batch.keys[i], (None, None))
        # An empty text still marks the retry when the message was missed.
        batch.details[i] = Details(exception=exception or "", traceback=traceback)

    def _reconcile(self, pipeline: Pipeline) -> None:
        """After drops, hand the rules the scheduler's own task state (rare:
        only when the buffer overflowed; O(tasks processing + prefixes))."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        processing = {
            ts.key for ws in scheduler.workers.values() for ts in ws.processing
        }
        active = sum(
            tp.states.get(state, 0)
            for tp in scheduler.task_prefixes.values()
            for state in ("waiting", "queued", "no-worker", "processing")
        )
        pipeline.reconcile(processing, active)

    def _prune_where(self) -> None:
        """Forget tasks no longer processing (their departure may have been dropped)."""
        tasks = self._tasks
        self._where = {
            key: worker
            for key, worker in self._where.items()
            if (ts := tasks.get(key)) is not None and ts.state == _PROCESSING
        }

    def _worker_events(
        self, tasks: list[tuple[Any, ...]], marks: list[tuple[int, Any]], now: float
    ) -> list[tuple[int, Event]]:
        """Worker events at their positions among the task events.

        A worker that left counts the tasks taken from it (that left
        ``processing`` for ``released``, ``waiting`` or ``no-worker``) in this
        batch before it left: the batch is followed in order up to there.
        """
        where = self._where
        running: dict[Any, str | None] = {}  # keys that moved in this batch
        lost: Counter[str] = Counter()
        others: list[tuple[int, Event]] = []
        done = 0
        for pos, (address, _, action, _, info) in marks:
            for key, start, finish, _, kw in tasks[done:pos]:
                if finish == "processing":
                    running[key] = kw  # the worker (see ``transition``)
                elif start == "processing":
                    worker = running[key] if key in running else where.get(key)
                    running[key] = None
                    if worker is not None and finish in _LEAVE_PROCESSING_FOR_LOSS:
                        lost[worker] += 1
            done = pos
            processing = lost.pop(address, 0) if action == "removed" else 0
            status = WorkerStatus(
                address,
                action,
                now,
                info.get("nthreads"),
                processing,
                info.get("expected", False),
            )
            others.append((pos, status))
        return others

    # -- Prometheus ----------------------------------------------------------------

    def _start_metrics(self, settings: dict[str, Any]) -> None:
        """Export ``dask_monitor_*`` metrics on the scheduler's ``/metrics``."""
        if not settings["enabled"] or self._unregister_metrics is not None:
            return
        try:
            self._unregister_metrics = register_source(
                self._metrics_snapshot, top=settings["top_prefixes"]
            )
        except ImportError:
            logger.debug("dask-monitor: prometheus_client missing; no metrics")

    def _metrics_snapshot(self) -> Snapshot | None:
        return None if self.pipeline is None else self.pipeline.snapshot()

    # -- recording -----------------------------------------------------------------

    async def start_recording(self, path: str, **options: Any) -> dict[str, Any]:
        """Append every event from now on to an event log at ``path`` (scheduler side).

        A recording in progress is stopped first. ``options`` go to
        :class:`~dask_monitor.sinks.eventlog.EventLogWriter`. Returns its stats.
        The path is checked, and the old recording closed, off the event
        loop: file systems can block.

        Raises
        ------
        FileExistsError, IsADirectoryError
            Where a file that is not an event log would be replaced.
        """
        if self.pipeline is None:
            raise RuntimeError("the dask-monitor plugin has not started")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, check_log_path, path)
        await self.stop_recording()
        if self.pipeline is None or self._closed:
            raise RuntimeError("the dask-monitor plugin stopped meanwhile")
        # From here to the subscription nothing awaits: no flush falls between.
        self.flush()  # what is buffered happened before the call
        return self._open_recorder({"path": path, **options})

    def _open_recorder(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Subscribe a writer for ``settings`` (whose path was checked)."""
        assert self.pipeline is not None
        writer = EventLogWriter(header=self._record_header(), checked=True, **settings)
        self.recorder = writer
        self.pipeline.subject.subscribe(writer)
        self.pipeline.alerts.subscribe(writer)  # alerts are recorded too
        writer.name_spans(dict(self.pipeline.spans.names))
        return writer.stats()

    def _record_header(self) -> dict[str, Any]:
        assert self.pipeline is not None
        scheduler = self.scheduler
        cluster: dict[str, Any] = {}
        if scheduler is not None:
            cluster = {
                "scheduler": scheduler.address,
                "id": scheduler.id,
                "workers": len(scheduler.workers),
                "nthreads": sum(ws.nthreads for ws in scheduler.workers.values()),
            }
        return {
            "cluster": cluster,
            "started": self.pipeline.started,
            "config": self.config.to_dict(),
            # Workers that joined before the recording: their "added" events
            # are not in the log, their threads are needed for utilisation.
            "workers": self.pipeline.workers.roster(),
        }

    async def stop_recording(self) -> dict[str, Any] | None:
        """Write what is buffered and close the event log; its stats, or ``None``.

        Waits, off the event loop, for the writer to write what it has.
        """
        writer = self._end_recording()
        if writer is None:
            return None
        await asyncio.get_running_loop().run_in_executor(None, writer.close)
        return writer.stats()

    def _end_recording(self) -> EventLogWriter | None:
        """Hand the last events to the recorder and unsubscribe it (not closed)."""
        writer, self.recorder = self.recorder, None
        if writer is None:
            return None
        if self.pipeline is not None and not self._closed:
            self.flush()
        if self.pipeline is not None:
            self.pipeline.subject.unsubscribe(writer)
            self.pipeline.alerts.unsubscribe(writer)
        return writer

    async def _rpc_record(
        self, path: str, options: dict[str, Any] | None = None
    ) -> Any:
        # Validated before the recording in progress is stopped: a bad call
        # must not end a good recording. Where logs may go is the scheduler's
        # own setting (monitor.record.directory), never a caller's.
        options = dict(options or {})
        if "directory" in options:
            raise ConfigError("monitor.record.directory is set on the scheduler only")
        directory = _record_directory()
        if directory is None and not os.path.isabs(path):
            raise ConfigError(
                f"monitor.record.path must be absolute on the scheduler, got {path!r}"
            )
        settings = record_settings({**options, "path": path, "directory": directory})
        if settings is None:
            raise ConfigError("monitor.record.path must be a non-empty path")
        return await self.start_recording(**settings)

    async def _rpc_stop_recording(self) -> Any:
        return await self.stop_recording()

    # -- reading -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The pipeline's current snapshot (plain data)."""
        if self.pipeline is None:
            raise RuntimeError("the dask-monitor plugin has not started")
        return self.pipeline.snapshot()

    # -- RPC handlers (scheduler event loop) ---------------------------------------

    async def _rpc_snapshot(
        self, flush: bool = False, span: str | None = None
    ) -> Snapshot:
        if flush:
            self.flush()
            if self.pipeline is not None:  # let user observers take the batch
                await self.pipeline.settle(SETTLE_SECONDS)
        if span is not None:
            if self.pipeline is None:
                raise RuntimeError("the dask-monitor plugin has not started")
            return self.pipeline.snapshot(span=span)
        return self.snapshot()

    def attach(
        self, token: str, *, client: str | None, observers: tuple[Any, ...] = ()
    ) -> dict[str, Any]:
        """Attach a handle: subscribe its observers; the settings in force.

        ``client`` is the id of the handle's client: its attachments end when
        it leaves (:meth:`remove_client`). Raises ``ValueError`` for a token
        attached already (a second handle must not take over the first one's
        observers).
        """
        if token in self.attachments:
            raise ValueError(f"dask-monitor: attachment {token!r} exists already")
        if self.pipeline is None:
            raise RuntimeError("the dask-monitor plugin has not started")
        added: list[Any] = []
        for observer in observers:
            self.pipeline.add_observer(observer)
            added.append(observer)
        self.attachments[token] = (client, added)
        return {
            "token": token,
            "config": self.config.to_dict(),
            "preloaded": self.preloaded,
        }

    def remove_client(self, scheduler: Scheduler, client: str) -> None:
        """A client left: its attachments end unless it is back within
        ``ORPHAN_GRACE`` seconds (Dask's clients reconnect by themselves
        after a dropped connection, with the same id)."""
        now = time.monotonic()
        for token, (owner, _) in self.attachments.items():
            if owner == client:
                self._orphans.setdefault(token, now)

    def add_client(self, scheduler: Scheduler, client: str) -> None:
        """A client (re)connected: its attachments are its own again."""
        if self._orphans:
            for token, (owner, _) in self.attachments.items():
                if owner == client:
                    self._orphans.pop(token, None)

    def _end_orphans(self) -> None:
        """Detach what clients that did not come back left attached."""
        horizon = time.monotonic() - ORPHAN_GRACE
        for token in [t for t, since in self._orphans.items() if since <= horizon]:
            del self._orphans[token]
            if token in self.attachments:
                self._rpc_detach(token)

    def _rpc_detach(self, token: str) -> dict[str, Any]:
        self._orphans.pop(token, None)
        _, observers = self.attachments.pop(token, (None, []))
        if self.pipeline is not None:
            for observer in observers:
                self.pipeline.remove_observer(observer)
        removed = False
        if not self.attachments and not self.preloaded and self.scheduler is not None:
            scheduler = self.scheduler
            self.flush()
            self._stop()
            if scheduler.plugins.get(self.name) is self:
                scheduler.remove_plugin(self.name)
            removed = True
        return {"removed": removed}


async def attach_on_scheduler(
    config: MonitorConfig,
    token: str,
    client: str | None,
    observers: tuple[Any, ...] = (),
    *,
    dask_scheduler: Scheduler,
) -> dict[str, Any]:
    """Install the plugin unless it runs, and attach a handle: one operation.

    Run by ``Client.run_on_scheduler`` (:meth:`Monitor.attach`). Between
    finding (or starting) the plugin and attaching to it nothing else runs
    on the scheduler's loop, so a last handle detaching elsewhere cannot
    remove the plugin in between, as it could between two RPCs.
    """
    plugin = get_plugin(dask_scheduler)
    if plugin is None:
        await dask_scheduler.register_scheduler_plugin(
            MonitorPlugin(config), name=PLUGIN_NAME, idempotent=True
        )
        plugin = get_plugin(dask_scheduler)
        if plugin is None:
            raise RuntimeError("dask-monitor: the plugin could not be installed")
    return plugin.attach(token, client=client, observers=observers)


def _record_directory() -> Any:
    """The scheduler's ``monitor.record.directory``, or ``None``."""
    raw = dask.config.get("monitor.record", None)
    return raw.get("directory") if isinstance(raw, dict) else None


def _split_workers(
    items: list[tuple[Any, ...]],
) -> tuple[list[tuple[Any, ...]], list[tuple[int, Any]]]:
    """The task tuples, and the worker tuples with the number of task tuples
    before each."""
    tasks: list[tuple[Any, ...]] = []
    marks: list[tuple[int, Any]] = []
    for item in items:
        if item[1] is _WORKER:
            marks.append((len(tasks), item))
        else:
            tasks.append(item)
    return tasks, marks


def _names(
    keys: list[Any], tgs: list[Any]
) -> tuple[list[str], list[str], list[str | None]]:
    """Prefix, group and span columns when some tasks had no ``TaskState``."""
    prefixes: list[str] = []
    groups: list[str] = []
    spans: list[str | None] = []
    for key, tg in zip(keys, tgs, strict=True):
        if tg is not None:
            prefixes.append(tg.prefix.name)
            groups.append(tg.name)
            spans.append(tg.span_id)
        else:
            name = key_split(key)
            prefixes.append(name)
            groups.append(name)
            spans.append(None)
    return prefixes, groups, spans


def _completion(kw: dict[str, Any]) -> Details:
    """Compute time, start and stop, size, transfer and disk seconds of a
    completion, from its kwargs (the compute interval is the last
    ``startstops`` entry whose action is ``compute``; transfer and disk
    seconds sum their entries: ``transfer``, ``disk-read``, ``disk-write``)."""
    duration = begin = end = transfer = disk = None
    for ss in kw.get("startstops") or ():
        action = ss.get("action")
        if action == "compute":
            begin = ss["start"]
            end = ss["stop"]
            duration = end - begin
        elif action == "transfer":
            transfer = (transfer or 0.0) + (ss["stop"] - ss["start"])
        elif action == "disk-read" or action == "disk-write":
            disk = (disk or 0.0) + (ss["stop"] - ss["start"])
    # Once per completion: tuple.__new__ skips Details(...)'s argument handling.
    return tuple.__new__(
        Details, (duration, begin, end, kw.get("nbytes"), None, None, transfer, disk)
    )


def _blamed_texts(
    ts: Any, exception: str | None, traceback: str | None
) -> tuple[str | None, str | None]:
    """The texts of the task ``ts`` erred because of, with a line naming it."""
    blame = getattr(ts, "exception_blame", None)
    if blame is None or blame is ts:
        return exception, traceback
    text = getattr(blame, "exception_text", None) or None
    try:
        prefix = blame.prefix.name
    except AttributeError:
        prefix = key_split(blame.key)
    line = cause_line(str(blame.key)[:200], prefix, exception_type(text) or "unknown")
    root = getattr(blame, "traceback_text", None) or ""
    return text, f"{line}\n{root}" if root else line


def _error_texts(kw: dict[str, Any] | None, ts: Any) -> tuple[str | None, str | None]:
    exception = traceback = None
    if kw:
        exception = kw.get("exception_text")
        traceback = kw.get("traceback_text")
    if exception is None and ts is not None:
        exception = getattr(ts, "exception_text", None) or None
        traceback = traceback or getattr(ts, "traceback_text", None) or None
    return exception, traceback
