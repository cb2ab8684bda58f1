"""The scheduler plugin: a thin adapter from Dask's scheduler to the pipeline.

The ``transition`` hook runs on the scheduler's event loop for every task
transition, so it does O(1) work: it is the
:class:`~dask_monitor.scheduler.buffer.TransitionBuffer`'s ``append`` (one
dict lookup and five fields appended to a bounded flat buffer; no object per
transition). A periodic callback on the same loop (the flush) drains the
buffer into one :class:`~dask_monitor.batch.Batch` (lists of keys, prefixes,
states ...; no event object per transition) and hands it to the
:class:`~dask_monitor.pipeline.Pipeline`, whose observers read the columns.
:class:`~dask_monitor.events.TaskStatus` objects are made from the batch only
for whoever asks for them (user observers, samples, errors).

This is the only module that touches scheduler objects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from time import thread_time
from typing import TYPE_CHECKING, Any, ClassVar

import dask.config
from distributed.diagnostics.plugin import SchedulerPlugin
from tornado.ioloop import PeriodicCallback

from dask_monitor.alerts.rules import topics as alert_topics
from dask_monitor.batch import Batch
from dask_monitor.config import (
    PLUGIN_NAME,
    ConfigError,
    MonitorConfig,
    PrometheusSettings,
    RecordSettings,
)
from dask_monitor.events import Alert, Event
from dask_monitor.pipeline import Pipeline
from dask_monitor.resources import ResourceSampler
from dask_monitor.runs import check_run
from dask_monitor.scheduler.buffer import TASK_ERRED, TransitionBuffer
from dask_monitor.sinks.eventlog import (
    EventLogWriter,
    auto_log_path,
    check_log_path,
    record_settings,
)
from dask_monitor.sinks.prometheus import register_source
from dask_monitor.snapshot import Snapshot
from dask_monitor.storage import (
    is_url,
    show,
)

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

_PROCESSING = "processing"

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
        #: What the hooks recorded since the last flush.
        self.buffer = TransitionBuffer(config.buffer_size)
        # Dask calls ``transition`` for every transition of every task: the
        # buffer's ``append`` is the hook itself, no call in between (unless
        # a subclass overrides the method). The buffer is never replaced.
        if type(self).transition is MonitorPlugin.transition:
            self.transition = self.buffer.append  # type: ignore[method-assign]
        #: Workers Dask is removing: address -> (stimulus id, expected), from
        #: its ``remove-worker`` event (see ``log_event``).
        self._leaving: dict[str, tuple[Any, bool]] = {}
        #: Our wrapper of the scheduler's ``task-erred`` handler, and the handler.
        self._task_erred: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        self._pc: PeriodicCallback | None = None
        self._closed = False
        self.recorder: EventLogWriter | None = None
        #: The run's name and tags (``run``, ``tags``: checked by
        #: :func:`dask_monitor.runs.check_run`), put in recordings' headers.
        self.run_labels: dict[str, Any] = {}
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
            "run_labels": self.run_labels,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["config"],
            observers=state["observers"],
            preloaded=state["preloaded"],
        )
        self.run_labels = dict(state.get("run_labels") or {})

    # -- life cycle ----------------------------------------------------------

    async def start(self, scheduler: Scheduler) -> None:
        """Set up the pipeline, the flush, the RPC handlers; seed existing state."""
        previous = get_plugin(scheduler)
        if previous is not None and previous is not self:
            previous._stop()
        # Every setting is checked before anything is set up, and what was
        # set up is undone if a later step fails: a failed start leaves no
        # handler, thread or collector behind.
        record = self._record_settings()
        metrics = self._prometheus_settings()
        self.scheduler = scheduler
        self.buffer.tasks = scheduler.tasks
        self._closed = False
        loop = asyncio.get_running_loop()
        if record is not None and record["path"] is None:
            directory = record.pop("directory")
            record["path"] = await loop.run_in_executor(
                None, auto_log_path, directory, str(scheduler.address)
            )
        if record is not None:  # off the loop: file systems can block
            await loop.run_in_executor(None, check_log_path, record["path"])
        try:
            self._start(scheduler, metrics, record)
        except BaseException:
            self._stop()
            raise

    def _record_settings(self) -> dict[str, Any] | None:
        """The event log to write from the start, or ``None``: the config's
        ``record`` over the scheduler's own ``monitor.record``, confined to
        the scheduler's ``monitor.record.directory`` (never the config's: a
        client does not choose where the scheduler may write).

        With the directory set and no path, every run is recorded there: the
        result's ``path`` is then ``None`` and ``directory`` set, for
        :meth:`start` to name the log off the loop (``auto_log_path``). A URL
        path is taken from the scheduler's own config, or under a URL
        directory only."""
        own = RecordSettings.from_config(dask.config.get("monitor.record", None))
        settings = self.config.record.over(own)
        if settings.path is None:
            directory = _record_directory()
            if not directory:
                return None
            # A directory alone: every run is recorded, under a name made at
            # the start (see auto_log_path), so a nightly job needs no code.
            checked = record_settings(
                {
                    "path": "run.dmlog",
                    "directory": directory,
                    **settings.writer_options(),
                }
            )
            assert checked is not None
            return {**checked, "path": None, "directory": directory}
        if (
            is_url(settings.path)
            and settings.path != own.path
            and _record_directory() is None
        ):
            raise ConfigError(
                f"monitor.record.path {show(settings.path)!r}: a URL from a "
                "client's settings is taken only under a URL "
                "monitor.record.directory set on the scheduler"
            )
        return record_settings(
            {
                "path": settings.path,
                "directory": _record_directory(),
                **settings.writer_options(),
            }
        )

    def _prometheus_settings(self) -> PrometheusSettings:
        """The config's ``prometheus`` over the scheduler's own, then the defaults."""
        own = dask.config.get("monitor.prometheus", None)
        return self.config.prometheus.over(
            PrometheusSettings.from_config(own)
        ).resolved()

    def _start(
        self,
        scheduler: Scheduler,
        metrics: PrometheusSettings,
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
        from dask_monitor.scheduler.dashboard import add_pages

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
        buffer = self.buffer
        for ws in scheduler.workers.values():
            buffer.add_worker(ws.address, ws.nthreads)
        for key, ts in scheduler.tasks.items():
            state = ts.state
            if state == "forgotten":
                continue
            on = ts.processing_on
            worker = on.address if state == _PROCESSING and on is not None else None
            buffer.seed(key, state, ts.group, worker)

    def _watch_errors(self, scheduler: Scheduler) -> None:
        """Keep the exception text of attempts that raised and will be retried.

        Dask retries such a task (``processing -> released -> waiting``)
        without passing the worker's exception to the transitions, so the
        plugin reads it off the worker's ``task-erred`` message: a wrapper
        around the scheduler's stream handler, called only for errors.
        """
        handlers = scheduler.stream_handlers
        original = handlers.get(TASK_ERRED)
        if original is None or self._task_erred is not None:
            return
        raised = self.buffer.raised
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

        handlers[TASK_ERRED] = handle_task_erred
        self._task_erred = (handle_task_erred, original)

    def _unwatch_errors(self, scheduler: Scheduler) -> None:
        """Give the scheduler its own ``task-erred`` handler back."""
        wrapped, self._task_erred = self._task_erred, None
        handlers = scheduler.stream_handlers
        if wrapped is not None and handlers.get(TASK_ERRED) is wrapped[0]:
            handlers[TASK_ERRED] = wrapped[1]
        self.buffer.raised.clear()

    # -- hooks (scheduler event loop; keep them O(1)) ------------------------

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any
    ) -> None:
        """Buffer one transition (:meth:`.TransitionBuffer.append`).

        Each plugin's own ``transition`` is its buffer's ``append`` (set in
        ``__init__``): this method is what the class documents.
        """
        self.buffer.append(key, start, finish, *args, **kwargs)

    def update_graph(
        self, scheduler: Scheduler, *, tasks: Any = (), **kwargs: Any
    ) -> None:
        """Report tasks created in ``released`` (Dask makes no transition for it).

        Each call is also recorded as a submission (client, keys, time, span)
        so that one computation can be looked at on its own:
        ``monitor.snapshot(span=submission["span"])``.
        """
        if self.pipeline is not None:
            get = self.buffer.tasks.get
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
        self.buffer.create(tasks)

    def add_worker(self, scheduler: Scheduler, worker: str) -> None:
        """Report a worker that joined."""
        ws = scheduler.workers.get(worker)
        nthreads = ws.nthreads if ws is not None else None
        self.buffer.add_worker(worker, nthreads)

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
        self.buffer.remove_worker(worker, expected=expected)

    def restart(self, scheduler: Scheduler) -> None:
        """Dask forgot every task without transitions: a boundary in the history.

        What is buffered happened before the restart (the releases Dask made
        for it among them): it is flushed first, so that completions and
        errors of the last moments count. Then the pipeline forgets what
        Dask forgot and keeps the rest (:meth:`Pipeline.restart`).
        """
        if self.pipeline is not None and not self._closed:
            self.flush()
        self.buffer.forget()
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
        buffer = self.buffer
        pipeline = self.pipeline
        if not buffer or pipeline is None:
            if pipeline is not None:
                pipeline.tick()  # time-based alert rules (stall, straggler)
            return
        t0 = thread_time()  # CPU time: time the loop was descheduled is no cost
        pending = buffer.take()
        events = pending.events
        try:
            batch = buffer.convert(pending, time.time())
            self._name_spans(batch)
            pipeline.process(batch)
        except Exception:  # never raise into Dask's loop
            logger.exception("dask-monitor: flush failed; %d events lost", events)
        if pending.dropped:
            # After the batch: the scheduler's state now is what the buffered
            # transitions led to, and they must not be applied on top of it.
            self._reconcile(pipeline)
        pipeline.account(
            events=events,
            dropped=pending.dropped,
            seconds=thread_time() - t0,
            merged=pending.merged,
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

    # -- Prometheus ----------------------------------------------------------------

    def _start_metrics(self, settings: PrometheusSettings) -> None:
        """Export ``dask_monitor_*`` metrics on the scheduler's ``/metrics``."""
        top = settings.top_prefixes
        if not settings.enabled or top is None or self._unregister_metrics is not None:
            return  # (top is set: the settings are resolved)
        try:
            self._unregister_metrics = register_source(self._metrics_snapshot, top=top)
        except ImportError:
            logger.debug("dask-monitor: prometheus_client missing; no metrics")

    def _metrics_snapshot(self) -> Snapshot | None:
        return None if self.pipeline is None else self.pipeline.snapshot()

    # -- recording -----------------------------------------------------------------

    async def start_recording(
        self, path: str, labels: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Append every event from now on to an event log at ``path`` (scheduler side).

        A recording in progress is stopped first. ``labels`` (``run``,
        ``tags``) go into its header over :attr:`run_labels`; ``options`` go to
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
        return self._open_recorder({"path": path, **options}, labels)

    def _open_recorder(
        self, settings: dict[str, Any], labels: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Subscribe a writer for ``settings`` (whose path was checked)."""
        assert self.pipeline is not None
        header = {**self._record_header(), **self.run_labels, **(labels or {})}
        writer = EventLogWriter(header=header, checked=True, **settings)
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
        self,
        path: str,
        options: dict[str, Any] | None = None,
        labels: dict[str, Any] | None = None,
    ) -> Any:
        # Validated before the recording in progress is stopped: a bad call
        # must not end a good recording. Where logs may go is the scheduler's
        # own setting (monitor.record.directory), never a caller's.
        options = dict(options or {})
        if "directory" in options:
            raise ConfigError("monitor.record.directory is set on the scheduler only")
        directory = _record_directory()
        if directory is None and is_url(path):
            # A client picks no place the scheduler writes to: a URL only
            # under a URL monitor.record.directory set on the scheduler.
            raise ConfigError(
                f"monitor.record.path {show(path)!r}: a URL is taken from a "
                "client only under a URL monitor.record.directory set on the "
                "scheduler"
            )
        if directory is None and not os.path.isabs(path):
            raise ConfigError(
                f"monitor.record.path must be absolute on the scheduler, got {path!r}"
            )
        settings = record_settings({**options, "path": path, "directory": directory})
        if settings is None:
            raise ConfigError("monitor.record.path must be a non-empty path")
        labels = check_run((labels or {}).get("run"), (labels or {}).get("tags"))
        return await self.start_recording(labels=labels, **settings)

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
    labels: dict[str, Any] | None = None,
    *,
    dask_scheduler: Scheduler,
) -> dict[str, Any]:
    """Install the plugin unless it runs, and attach a handle: one operation.

    Run by ``Client.run_on_scheduler`` (:meth:`Monitor.attach`). Between
    finding (or starting) the plugin and attaching to it nothing else runs
    on the scheduler's loop, so a last handle detaching elsewhere cannot
    remove the plugin in between, as it could between two RPCs.
    ``labels`` (a run's ``run`` and ``tags``) go into the headers of the
    recordings started from then on (from the plugin's start when this call
    installs it).
    """
    labels = check_run((labels or {}).get("run"), (labels or {}).get("tags"))
    plugin = get_plugin(dask_scheduler)
    if plugin is not None and labels:
        plugin.run_labels = labels
    if plugin is None:
        fresh = MonitorPlugin(config)
        fresh.run_labels = labels
        await dask_scheduler.register_scheduler_plugin(
            fresh, name=PLUGIN_NAME, idempotent=True
        )
        plugin = get_plugin(dask_scheduler)
        if plugin is None:
            raise RuntimeError("dask-monitor: the plugin could not be installed")
    return plugin.attach(token, client=client, observers=observers)


def _record_directory() -> Any:
    """The scheduler's ``monitor.record.directory``, or ``None``."""
    raw = dask.config.get("monitor.record", None)
    return raw.get("directory") if isinstance(raw, dict) else None
