"""Client side: attach the monitor to a cluster and read its snapshot."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from distributed import Client, default_client
from distributed.protocol.pickle import dumps

from dask_monitor.config import MonitorConfig
from dask_monitor.plugin import MonitorPlugin
from dask_monitor.snapshot import Snapshot

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

    # -- attaching -----------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        client: Client | None = None,
        *,
        observers: Iterable[Any] = (),
        **options: Any,
    ) -> Monitor:
        """Install the monitor on the scheduler of ``client`` (once) and return a handle.

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
        **options
            Settings by name (``interval="50ms"``, ``buffer_size=10_000``),
            overriding Dask config ``monitor.*``. They apply when this call
            installs the plugin; a plugin already running keeps its settings.

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
        client = client if client is not None else default_client()
        config = MonitorConfig.from_config(**options)
        observers = tuple(observers)
        for observer in observers:
            if not (callable(getattr(observer, "update", None)) or callable(observer)):
                raise TypeError(
                    f"observer {observer!r} has no update() method and is not callable"
                )
        monitor = cls(client, config, uuid.uuid4().hex)
        return client.sync(monitor._attach, observers)  # type: ignore[no-any-return]

    async def _attach(self, observers: tuple[Any, ...]) -> Monitor:
        await self.client.register_plugin(MonitorPlugin(self.config))  # type: ignore[func-returns-value]
        info = await self.client.scheduler.dask_monitor_attach(
            token=self.token, observers=dumps(observers) if observers else None
        )
        self.attached = True
        self.preloaded = bool(info["preloaded"])
        running = MonitorConfig(**info["config"])
        if running != self.config:
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
        await self.client.scheduler.dask_monitor_detach(token=self.token)

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

    def snapshot(self, *, flush: bool = False) -> Snapshot:
        """The scheduler's current snapshot (plain data).

        Parameters
        ----------
        flush
            Flush the transitions buffered on the scheduler first, so the
            snapshot includes everything up to this call.

        Returns an awaitable with an asynchronous client.
        """
        return self.client.sync(self._snapshot, flush)  # type: ignore[no-any-return]

    async def _snapshot(self, flush: bool) -> Snapshot:
        result: Snapshot = await self.client.scheduler.dask_monitor_snapshot(
            flush=flush
        )
        return result

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"<Monitor {state} to {self.client.scheduler.address!r}>"
