"""Client side: attach the monitor to a cluster and read its snapshot."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from distributed import Client, default_client

from dask_monitor.alerts.client import AlertCallback, AlertHub, AlertStream
from dask_monitor.config import ConfigError, MonitorConfig
from dask_monitor.scheduler.plugin import attach_on_scheduler
from dask_monitor.snapshot import Snapshot
from dask_monitor.storage import is_url

__all__ = ["Monitor"]

logger = logging.getLogger(__name__)


class Monitor:
    """A handle on the dask-monitor plugin of one cluster.

    Create it with :meth:`Monitor.attach`; do not call the constructor.

    Examples
    --------
    >>> from distributed import Client
    >>> client = Client()  # doctest: +SKIP
    >>> monitor = Monitor.attach(client)  # doctest: +SKIP
    >>> client.map(inc, range(100))  # doctest: +SKIP
    >>> monitor.snapshot()["totals"]["done"]  # doctest: +SKIP
    100
    >>> monitor.detach()  # doctest: +SKIP
    """

    def __init__(self, client: Client, config: MonitorConfig, token: str) -> None:
        self.client = client
        self.config = config
        self.token = token
        self.attached = False
        self.preloaded = False
        #: Settings this handle asked for by keyword (see :meth:`attach`).
        self._asked: frozenset[str] = frozenset()

    @property
    def _scheduler(self) -> Any:
        """The client's RPC to the scheduler (untyped: its methods are dynamic)."""
        return self.client.scheduler

    # -- attaching -----------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        client: Client | None = None,
        *,
        observers: Iterable[Any] = (),
        run: str | None = None,
        tags: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Monitor:
        """Install the monitor on ``client``'s scheduler (once); return a handle.

        Parameters
        ----------
        client
            The client of the cluster; the default client when omitted. With an
            asynchronous client, ``await`` the result.
        observers
            Observers of your own (objects with ``update(event)`` and optionally
            ``update_batch(events)``, or callables). They are pickled, sent to
            the scheduler and subscribed there beside the built-in ones, and
            unsubscribed by :meth:`detach`.
        run
            The run's name (``"nightly-etl"``), written with ``tags`` into the
            headers of the event logs recorded from now on (and shown by
            ``dask-monitor history list``); at most 200 characters.
        tags
            Texts that describe the run (``{"team": "data"}``): at most 32,
            each name and value at most 200 characters.
        **options
            Settings by name (``interval="50ms"``, ``buffer_size=10_000``),
            overriding Dask config ``monitor.*``. They apply when this call
            installs the plugin; a plugin already running (or preloaded)
            keeps its settings, and a ``UserWarning`` names each one asked
            for here that it does not have.
            Alert rules and the NATS publisher take nested mappings merged over
            ``monitor.alerts`` / ``monitor.nats``:
            ``alerts={"stall": {"seconds": 30}}``, ``nats={"url": "nats://..."}``.

        Raises
        ------
        ConfigError
            If a setting is unknown or invalid (before anything is sent).
        TypeError
            If an observer is neither callable nor has an ``update`` method.

        Notes
        -----
        Attaching twice installs one plugin: nothing is counted twice. The plugin
        is removed when the last handle that attached it detaches, unless it was
        preloaded (``dask scheduler --preload dask_monitor``).
        """
        from dask_monitor.runs import check_run

        client = client if client is not None else default_client()
        labels = check_run(run, tags)
        config = MonitorConfig.from_config(**options)
        observers = tuple(observers)
        for observer in observers:
            if not (callable(getattr(observer, "update", None)) or callable(observer)):
                raise TypeError(
                    f"observer {observer!r} has no update() method and is not callable"
                )
        monitor = cls(client, config, uuid.uuid4().hex)
        monitor._asked = frozenset(k for k, v in options.items() if v is not None)
        return client.sync(monitor._attach, observers, labels)  # type: ignore[no-any-return]

    async def _attach(
        self, observers: tuple[Any, ...], labels: dict[str, Any] | None = None
    ) -> Monitor:
        info = await self.client.run_on_scheduler(
            attach_on_scheduler,
            self.config,
            self.token,
            self.client.id,
            observers,
            labels or None,
        )
        self.attached = True
        self.preloaded = bool(info["preloaded"])
        running = MonitorConfig(**info["config"])
        if running != self.config:
            ignored = _differences(
                {k: v for k, v in self.config.to_dict().items() if k in self._asked},
                running.to_dict(),
            )
            if ignored:
                warnings.warn(
                    "dask-monitor is already running on the scheduler and keeps "
                    "its settings; these asked for here do not apply: "
                    + "; ".join(ignored),
                    UserWarning,
                    stacklevel=2,
                )
            logger.info(
                "dask-monitor was already running on the scheduler with other "
                "settings; it keeps them: %s",
                running,
            )
            self.config = running
        return self

    def detach(self) -> Any:
        """Unsubscribe this handle's observers; remove the plugin if it was the last.

        Returns an awaitable with an asynchronous client.
        """
        return self.client.sync(self._detach)

    async def _detach(self) -> None:
        if not self.attached:
            return
        self.attached = False
        await self._scheduler.dask_monitor_detach(token=self.token)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    async def __aenter__(self) -> Monitor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._detach()

    # -- reading -------------------------------------------------------------------

    def snapshot(
        self,
        *,
        flush: bool | None = None,
        span: str | None = None,
        timeout: float | None = None,
    ) -> Snapshot:
        """The scheduler's current snapshot (plain data).

        Parameters
        ----------
        flush
            Flush the transitions buffered on the scheduler first, so the
            snapshot includes everything up to this call. By default only
            with ``span``: a span's snapshot is asked for right after its
            work, whose last transitions would otherwise still be buffered
            (and its name not yet known).
        span
            A Dask span's id or name (``with distributed.span("etl"): ...``):
            totals, prefixes, groups and errors then count that span's tasks
            only (and those of spans nested in it); ``snapshot["spans"]``
            lists the recent spans.
        timeout
            Seconds to wait for the scheduler's answer (by default as long
            as the client waits for any call).

        Returns an awaitable with an asynchronous client.

        Raises
        ------
        TimeoutError
            If the scheduler did not answer within ``timeout`` seconds.
        UnknownSpanError
            If ``span`` names no span the monitor has seen (the message lists
            some that it has).
        RuntimeError
            If this handle was detached.
        """
        if not self.attached:
            raise RuntimeError(
                "this Monitor was detached; Monitor.attach(client) gives a new one"
            )
        if flush is None:
            flush = span is not None
        return self.client.sync(  # type: ignore[no-any-return]
            self._snapshot, flush, span, callback_timeout=timeout
        )

    async def _snapshot(self, flush: bool, span: str | None = None) -> Snapshot:
        if span is None:
            result: Snapshot = await self._scheduler.dask_monitor_snapshot(flush=flush)
        else:
            result = await self._scheduler.dask_monitor_snapshot(flush=flush, span=span)
        return result

    # -- alerts --------------------------------------------------------------------

    def on(self, kind: str | None = None, callback: AlertCallback | None = None) -> Any:
        """Call ``callback(alert)`` for every alert of ``kind`` (all if ``None``).

        ``monitor.on("straggler", fn)`` returns an unsubscribe callable;
        ``@monitor.on("straggler")`` decorates a function and returns it
        (remove it with :meth:`off`). Callbacks get an
        :class:`~dask_monitor.events.Alert` and may be ``async def``; they run
        on the client's event loop thread, so keep them short. Built on
        ``client.subscribe_topic("dask-monitor-alerts", ...)``: alerts logged
        before the subscription reached the scheduler are not replayed.
        """
        hub = AlertHub.of(self.client)
        if callback is not None:
            return hub.add(kind, callback)

        def decorator(fn: AlertCallback) -> AlertCallback:
            hub.add(kind, fn)
            return fn

        return decorator

    def off(self, callback: AlertCallback, kind: str | None = None) -> bool:
        """Remove a callback added by :meth:`on`; whether it was subscribed."""
        return AlertHub.of(self.client).remove(callback, kind)

    def alerts(self, kind: str | None = None, *, maxsize: int = 1_000) -> AlertStream:
        """Alerts of ``kind`` (all if ``None``) as they arrive: ``async for``.

        Subscribed at once; iterate from any event loop. End it with
        ``stream.close()`` or ``async with monitor.alerts() as stream:``.
        At most ``maxsize`` unread alerts are kept (oldest dropped, counted).
        """
        return AlertStream(AlertHub.of(self.client), kind, maxsize)

    # -- progress -------------------------------------------------------------------

    def progress(self, *, desc: str | None = None, **options: Any) -> Any:
        """A context manager: a progress bar for the Dask work submitted inside it.

        ::

            with monitor.progress():
                df.compute()

        The block runs in a Dask span of its own; a tqdm bar (a widget in
        notebooks) follows that span's snapshot and closes cleanly on errors
        and ``KeyboardInterrupt``. See :func:`dask_monitor.progressbar.progress`
        for the options. Needs a synchronous client.
        """
        from dask_monitor.progressbar import progress

        return progress(self, desc=desc, **options)

    # -- recording ------------------------------------------------------------------

    def record(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | str | None = None,
        queue_size: int | None = None,
        flush_interval: float | str | None = None,
        run: str | None = None,
        tags: Mapping[str, str] | None = None,
        upload_interval: float | str | None = None,
    ) -> Any:
        """Record every event from now on to an event log at ``path`` on the scheduler.

        The scheduler writes it in a background thread; a recording in progress
        is stopped first, and an existing log at ``path`` is replaced. Replay it
        with :func:`dask_monitor.replay` or ``dask-monitor replay``. To record a
        whole run, set Dask config ``monitor.record`` on the scheduler instead.

        Parameters
        ----------
        path
            A path on the scheduler's machine (the same one for a local cluster),
            or a URL (``s3://bucket/runs/a.dmlog``) written through fsspec with
            the scheduler's credentials; a URL is taken only under the
            scheduler's ``monitor.record.directory`` when that is a URL.
        max_bytes
            Size of a segment before the next one (``path.1``, ...) starts.
        queue_size
            Events waiting to be written at most; more are dropped (counted in
            the snapshot's ``monitor["sinks"]["eventlog"]``).
        flush_interval
            How often the file is flushed.
        run, tags
            The run's name and tags for the log's header, over those given
            to :meth:`attach` (see there for the limits).
        upload_interval
            For a URL: how often the open segment is uploaded (segments are
            uploaded as they rotate and on close in any case).

        Returns the writer's counters (an awaitable with an asynchronous client).

        Raises
        ------
        ConfigError
            For an invalid option (``max_bytes`` below 1 MiB ...), naming it;
            the recording in progress, if any, goes on.
        """
        from dask_monitor.runs import check_run
        from dask_monitor.sinks.eventlog import record_settings

        labels = check_run(run, tags)
        given = {
            "max_bytes": max_bytes,
            "queue_size": queue_size,
            "flush_interval": flush_interval,
            "upload_interval": upload_interval,
        }
        # Checked here too, so that a bad value fails before any call.
        settings = record_settings(
            {
                "path": os.fspath(path),
                **{k: v for k, v in given.items() if v is not None},
            }
        )
        if settings is None:
            raise ConfigError("monitor.record.path must be a non-empty path")
        options = {k: v for k, v in settings.items() if k != "path"}
        return self.client.sync(
            self._scheduler.dask_monitor_record,
            path=(
                os.fspath(path) if is_url(path) else os.fspath(Path(path).absolute())
            ),
            options=options,
            labels=labels,
        )

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        tags: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Iterator[Any]:
        """Record what runs inside the ``with`` block as the run ``name``.

        ``with monitor.run("nightly-etl", "/logs/etl.dmlog", tags={...}):``
        is :meth:`record` with ``run=name`` and ``tags`` on entry (``options``
        are its other settings) and :meth:`stop_recording` on exit, also
        when the block raises: the log then has its footer. Yields what
        :meth:`record` returns. Needs a synchronous client.

        Raises
        ------
        ConfigError
            For a bad name, tags or option, before anything is recorded.
        """
        stats = self.record(path, run=name, tags=tags, **options)
        try:
            yield stats
        finally:
            self.stop_recording()

    def stop_recording(self) -> Any:
        """Write what is buffered and close the event log; its counters, or ``None``."""
        return self.client.sync(self._scheduler.dask_monitor_stop_recording)

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<Monitor {state} to {self._scheduler.address!r}>"

    # -- panel and report ----------------------------------------------------------

    def panel(
        self,
        page: str = "monitor",
        *,
        height: int | str = 1000,
        width: int | str = "100%",
        link: str | None = None,
    ) -> Any:
        """The live panel, to show inline in Jupyter (an IFrame of the dashboard).

        Parameters
        ----------
        page
            ``"monitor"`` (everything) or one view: ``"progress"``,
            ``"throughput"``, ``"durations"``, ``"workers"``, ``"errors"``,
            ``"task-stream"``, ``"health"``.
        height, width
            Of the frame, in pixels or CSS units.
        link
            The dashboard link to use instead of ``client.dashboard_link``
            (which follows Dask config ``distributed.dashboard.link``, so
            proxies and non-default ports work); the scheduler's dashboard
            prefix is added when the link lacks it.

        Returns an ``IPython.display.IFrame``: the last expression of a cell
        displays it. Needs a synchronous client and a scheduler dashboard.
        """
        from dask_monitor.links import panel_iframe

        return panel_iframe(self.client, page, height=height, width=width, link=link)

    def report(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Write a standalone HTML report of the current snapshot to ``path``.

        The same views as the live panel, for everything flushed up to this
        call; the file works offline (BokehJS inlined). Returns the path.
        Needs a synchronous client.
        """
        from dask_monitor.panel import write_report

        snapshot = self.snapshot(flush=True)
        return write_report(
            snapshot,
            path,
            title=title,
            config=self.config,
            source=f"scheduler {getattr(self.client.scheduler, 'address', '?')}",
        )


def _differences(
    asked: Mapping[str, Any], running: Mapping[str, Any], prefix: str = "monitor"
) -> list[str]:
    """``"monitor.name: asked A, running B"`` for each setting that differs."""
    out: list[str] = []
    for name, value in asked.items():
        label = f"{prefix}.{name.replace('_', '-')}"
        have = running.get(name)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            out += _differences(value, have, label)
        elif value != have:
            out.append(f"{label}: asked {value!r}, running {have!r}")
    return out
