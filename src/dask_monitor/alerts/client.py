"""Client side of the alerts: callbacks and async iteration over Dask's pub/sub.

The scheduler logs every alert under the Dask event topic
``dask-monitor-alerts`` (and ``dask-monitor-alerts-<kind>``). A
``distributed.Client`` keeps one handler per topic, so each client gets one
:class:`AlertHub` that subscribes once and fans alerts out to the callbacks
and streams registered through :meth:`Monitor.on <dask_monitor.Monitor.on>`
and :meth:`Monitor.alerts <dask_monitor.Monitor.alerts>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from dask_monitor.alerts.rules import TOPIC
from dask_monitor.events import Alert

__all__ = ["AlertCallback", "AlertHub", "AlertStream"]

logger = logging.getLogger(__name__)

#: A callback given an alert; it may be ``async def``.
AlertCallback = Callable[[Alert], Any]

_hubs: weakref.WeakKeyDictionary[Any, AlertHub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def _check_kind(kind: str | None) -> str | None:
    if kind is None or kind == "*":
        return None
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"an alert kind must be a non-empty str or None, got {kind!r}")
    return kind


class AlertHub:
    """One client's subscription to the alert topic, shared by its listeners.

    Callbacks run on the client's event loop thread (the ``Client``'s own
    thread for a synchronous client): keep them short, and do not call
    blocking ``Client`` methods from them. ``async def`` callbacks are run as
    tasks on that loop. An exception in a callback is logged and does not
    stop the others. Adding and removing listeners is thread-safe.
    """

    def __init__(self, client: Any) -> None:
        self._client = weakref.ref(client)
        self._lock = threading.Lock()
        self._listeners: tuple[tuple[int, str | None, AlertCallback], ...] = ()
        self._next = 0
        self._subscribed = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self.invalid = 0

    @classmethod
    def of(cls, client: Any) -> AlertHub:
        """The hub of ``client`` (created on first use)."""
        with _hubs_lock:
            hub = _hubs.get(client)
            if hub is None:
                hub = _hubs[client] = cls(client)
            return hub

    def add(self, kind: str | None, callback: AlertCallback) -> Callable[[], bool]:
        """Call ``callback(alert)`` for alerts of ``kind`` (all when ``None``).

        Returns an unsubscribe callable (``True`` if it removed the callback).
        """
        kind = _check_kind(kind)
        if not callable(callback):
            raise TypeError(f"an alert callback must be callable, got {callback!r}")
        with self._lock:
            token = self._next
            self._next += 1
            self._listeners = (*self._listeners, (token, kind, callback))
            subscribe = not self._subscribed
            self._subscribed = True
        if subscribe:
            client = self._client()
            if client is not None:
                client.subscribe_topic(TOPIC, self._handle)

        def unsubscribe() -> bool:
            return self._remove(lambda t, k, c: t == token)

        return unsubscribe

    def remove(self, callback: AlertCallback, kind: str | None = None) -> bool:
        """Remove ``callback`` (for ``kind`` only, if given); whether it was there."""
        kind = _check_kind(kind)
        return self._remove(
            lambda t, k, c: c == callback and (kind is None or k == kind)
        )

    def _remove(self, match: Callable[[int, str | None, AlertCallback], bool]) -> bool:
        with self._lock:
            kept = tuple(item for item in self._listeners if not match(*item))
            removed = len(kept) != len(self._listeners)
            self._listeners = kept
            unsubscribe = removed and not kept and self._subscribed
            if unsubscribe:
                self._subscribed = False
        if unsubscribe:
            client = self._client()
            if client is not None:
                try:
                    client.unsubscribe_topic(TOPIC)
                except Exception:  # client closed, or handler already gone
                    logger.debug("unsubscribe_topic(%s) failed", TOPIC, exc_info=True)
        return removed

    def _handle(self, event: Any) -> None:
        """Dask topic handler: ``event`` is ``(timestamp, alert dict)``."""
        try:
            _, msg = event
            alert = Alert.from_dict(msg)
        except (TypeError, ValueError) as exc:
            self.invalid += 1
            logger.warning("ignoring an invalid message on %s: %s", TOPIC, exc)
            return
        for _, kind, callback in self._listeners:
            if kind is not None and kind != alert.kind:
                continue
            try:
                result = callback(alert)
            except Exception:
                logger.exception("alert callback %r raised", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("async alert callback raised", exc_info=task.exception())


class AlertStream:
    """Alerts as an asynchronous iterator: ``async for alert in monitor.alerts()``.

    Registered when created, so no alert is missed before the first
    iteration. Iterate from any event loop (it need not be the client's). At
    most ``maxsize`` alerts wait to be read; older ones are then dropped and
    counted in :attr:`dropped`. :meth:`close` (or leaving ``async with``)
    unsubscribes and ends the iteration.
    """

    def __init__(self, hub: AlertHub, kind: str | None = None, maxsize: int = 1_000):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize!r}")
        self._items: deque[Alert] = deque()
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = (
            None
        )
        self._closed = False
        self.dropped = 0
        self._unsubscribe = hub.add(kind, self._put)

    def _put(self, alert: Alert) -> None:
        with self._lock:
            if self._closed:
                return
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(alert)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._wake(waiter)

    @staticmethod
    def _wake(waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]) -> None:
        loop, future = waiter

        def done() -> None:
            if not future.done():
                future.set_result(None)

        # RuntimeError: that loop is closed, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(done)

    def __aiter__(self) -> AlertStream:
        return self

    async def __anext__(self) -> Alert:
        while True:
            loop = asyncio.get_running_loop()
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise StopAsyncIteration
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            await future

    def close(self) -> None:
        """Stop receiving alerts; iteration ends once the queued ones are read."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiter, self._waiter = self._waiter, None
        self._unsubscribe()
        if waiter is not None:
            self._wake(waiter)

    async def aclose(self) -> None:
        """Same as :meth:`close`."""
        self.close()

    async def __aenter__(self) -> AlertStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
