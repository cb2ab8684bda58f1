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

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from time import thread_time
from typing import TYPE_CHECKING, Any, ClassVar

import dask.config
from dask.utils import key_split
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import loads
from tornado.ioloop import PeriodicCallback

from dask_monitor.alerts.rules import topics as alert_topics
from dask_monitor.batch import Batch, Details, pick
from dask_monitor.config import MonitorConfig
from dask_monitor.events import NEW, Alert, Event, WorkerStatus
from dask_monitor.pipeline import Pipeline
from dask_monitor.sinks.eventlog import EventLogWriter, record_settings
from dask_monitor.sinks.prometheus import prometheus_settings, register_source
from dask_monitor.snapshot import Snapshot

if TYPE_CHECKING:
    from distributed import Scheduler

__all__ = ["PLUGIN_NAME", "MonitorPlugin", "get_plugin"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "dask-monitor"

#: Names of the RPC handlers the plugin adds to the scheduler.
HANDLERS = (
    "dask_monitor_snapshot",
    "dask_monitor_attach",
    "dask_monitor_detach",
    "dask_monitor_record",
    "dask_monitor_stop_recording",
)

_FLUSH = "dask-monitor-flush"

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
        self.attachments: dict[str, list[Any]] = {}
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
        self._tasks: dict[Any, Any] = {}
        self._where: dict[Any, str | None] = {}
        self._pc: PeriodicCallback | None = None
        self._closed = False
        self.recorder: EventLogWriter | None = None
        self._span_names: dict[str, str] = {}
        self._unregister_metrics: Callable[[], None] | None = None
        self.nats: Any = None  # the NATS alert publisher, when monitor.nats.url is set

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
        self.scheduler = scheduler
        self._tasks = scheduler.tasks
        self._closed = False
        self.pipeline = Pipeline(
            self.config, observers=self._initial_observers, dispatch=True
        )
        self._start_alerts(scheduler)
        self._seed(scheduler)
        scheduler.handlers["dask_monitor_snapshot"] = self._rpc_snapshot
        scheduler.handlers["dask_monitor_attach"] = self._rpc_attach
        scheduler.handlers["dask_monitor_detach"] = self._rpc_detach
        scheduler.handlers["dask_monitor_record"] = self._rpc_record
        scheduler.handlers["dask_monitor_stop_recording"] = self._rpc_stop_recording
        settings = record_settings(dask.config.get("monitor.record", None))
        if settings is not None:
            self.start_recording(**settings)
        self._start_metrics()
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
        try:
            from dask_monitor.panel import ensure_pages

            ensure_pages(scheduler)
        except Exception:  # the dashboard is optional: never fail the plugin
            logger.warning("dask-monitor: could not add the panel pages", exc_info=True)

    async def close(self) -> None:
        """Flush what is buffered, then stop the flush and remove the handlers."""
        if self.pipeline is not None and not self._closed:
            self.flush()
        self._stop()

    def _stop(self) -> None:
        self._closed = True
        self.stop_recording()
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

    # -- hooks (scheduler event loop; keep them O(1)) ------------------------

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        """Buffer one transition; count it as dropped when the buffer is full.

        A task entering ``processing`` is buffered with its worker's address
        (read off the task state); other transitions with their kwargs.

        A call that leaves the task where it was is no event: Dask reports
        ``waiting -> waiting`` for every task it queues instead of sending it
        to a worker (then ``waiting -> queued``): 3-14% of the events of
        the benchmarks' real runs. ``erred -> erred`` is kept (the task erred again).

        A task's first move, ``released -> waiting``, right after its creation
        was buffered (``update_graph``; in the same tick of the loop, so
        nearly always before the next flush) is folded into it: one event
        ``new -> waiting`` instead of two, one event in six of a real run.
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

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        """Report a worker that left."""
        self._buffer += (worker, _WORKER, "removed", None, {})
        self._marks += 1

    def restart(self, scheduler: Scheduler) -> None:
        """Dask forgot every task without transitions: clear the aggregates."""
        buf = self._buffer
        self._buffer = [
            field
            for i in range(0, len(buf), FIELDS)
            if buf[i + 1] is _WORKER
            for field in buf[i : i + FIELDS]
        ]
        self._marks = len(self._buffer) // FIELDS
        self._created.clear()
        self._where.clear()
        if self.pipeline is not None:
            self.pipeline.reset()

    # -- flush (scheduler event loop, every ``interval``) ------------------------

    def flush(self) -> None:
        """Turn the buffered transitions into events and notify the observers."""
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
                return Batch([], [], [], [], [], [], [], now, None, {}, others)
            raw, starts, finishes, tgs, kws = map(list, zip(*tasks, strict=True))
        if not raw:
            return Batch([], [], [], [], [], [], [], now, None, {}, others)
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
            raw,
            prefixes,
            groups,
            starts,
            finishes,
            workers,
            spans,
            now,
            None,
            details,
            others,
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
                workers[i] = worker
        if _ERRED in index:
            self._error_details(batch, kws, index[_ERRED])

    def _error_details(self, batch: Batch, kws: list[Any], rows: list[int]) -> None:
        """The error texts of the events at ``rows`` (into ``erred``): from
        the transition's kwargs, else from the task if the scheduler has it."""
        details = batch.details
        get = self._tasks.get
        raw = batch.keys
        for i in rows:
            exception, traceback = _error_texts(kws[i], get(raw[i]))
            if exception is not None or traceback is not None:
                details[i] = (None, None, None, None, exception, traceback)

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
                address, action, now, info.get("nthreads"), processing
            )
            others.append((pos, status))
        return others

    # -- Prometheus ----------------------------------------------------------------

    def _start_metrics(self) -> None:
        """Export ``dask_monitor_*`` metrics on the scheduler's ``/metrics``."""
        settings = prometheus_settings()
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

    def start_recording(self, path: str, **options: Any) -> dict[str, Any]:
        """Append every event from now on to an event log at ``path`` (scheduler side).

        A recording in progress is stopped first. ``options`` go to
        :class:`~dask_monitor.sinks.eventlog.EventLogWriter`. Returns its stats.
        """
        if self.pipeline is None:
            raise RuntimeError("the dask-monitor plugin has not started")
        self.stop_recording()
        scheduler = self.scheduler
        cluster: dict[str, Any] = {}
        if scheduler is not None:
            cluster = {
                "scheduler": scheduler.address,
                "id": scheduler.id,
                "workers": len(scheduler.workers),
                "nthreads": sum(ws.nthreads for ws in scheduler.workers.values()),
            }
        header = {
            "cluster": cluster,
            "started": self.pipeline.started,
            "config": self.config.to_dict(),
            # Workers that joined before the recording: their "added" events
            # are not in the log, their threads are needed for utilisation.
            "workers": self.pipeline.workers.roster(),
        }
        writer = EventLogWriter(path, header=header, **options)
        self.recorder = writer
        self.pipeline.subject.subscribe(writer)
        self.pipeline.alerts.subscribe(writer)  # alerts are recorded too
        writer.name_spans(dict(self.pipeline.spans.names))
        return writer.stats()

    def stop_recording(self) -> dict[str, Any] | None:
        """Write what is buffered and close the event log; its stats, or ``None``."""
        writer, self.recorder = self.recorder, None
        if writer is None:
            return None
        if self.pipeline is not None and not self._closed:
            self.flush()
        if self.pipeline is not None:
            self.pipeline.subject.unsubscribe(writer)
            self.pipeline.alerts.unsubscribe(writer)
        writer.close()
        return writer.stats()

    def _rpc_record(self, path: str, options: dict[str, Any] | None = None) -> Any:
        self.flush()  # what is buffered happened before the call
        return self.start_recording(path, **(options or {}))

    def _rpc_stop_recording(self) -> Any:
        return self.stop_recording()

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

    def _rpc_attach(
        self, token: str | None = None, observers: bytes | None = None
    ) -> dict[str, Any]:
        token = token or uuid.uuid4().hex
        added: list[Any] = []
        if observers is not None:
            if not dask.config.get("distributed.scheduler.pickle", True):
                raise ValueError(
                    "dask-monitor: observers are shipped pickled, and this scheduler "
                    "does not accept pickled data (distributed.scheduler.pickle)"
                )
            assert self.pipeline is not None
            for observer in loads(observers):
                self.pipeline.add_observer(observer)
                added.append(observer)
        self.attachments[token] = added
        return {
            "token": token,
            "config": self.config.to_dict(),
            "preloaded": self.preloaded,
        }

    def _rpc_detach(self, token: str) -> dict[str, Any]:
        observers = self.attachments.pop(token, [])
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
    """Compute time, start and stop, and size of a completion, from its kwargs
    (the compute interval is the last ``startstops`` entry whose action is
    ``compute``)."""
    duration = begin = end = None
    for ss in kw.get("startstops") or ():
        if ss.get("action") == "compute":
            begin = ss["start"]
            end = ss["stop"]
            duration = end - begin
    return (duration, begin, end, kw.get("nbytes"), None, None)


def _error_texts(kw: dict[str, Any] | None, ts: Any) -> tuple[str | None, str | None]:
    exception = traceback = None
    if kw:
        exception = kw.get("exception_text")
        traceback = kw.get("traceback_text")
    if exception is None and ts is not None:
        exception = getattr(ts, "exception_text", None) or None
        traceback = traceback or getattr(ts, "traceback_text", None) or None
    return exception, traceback
