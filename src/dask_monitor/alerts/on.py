"""Responders: call your functions with the alerts a monitor publishes on NATS.

The Python side of ``dask-monitor listen --nats``, for a service that acts on
alerts (restart a job, page someone, scale a cluster) without a Dask client::

    from dask_monitor.alerts import On

    @On("straggler")
    def page(alert):
        ...

    @On("insight.*")
    async def note(alert):
        ...

    On.run()  # every On declared so far, until Ctrl-C or On.stop()

Patterns are NATS subjects relative to ``dask.monitor.<cluster>.alerts.``:
one alert kind, ``*`` for any one token and ``>`` for the rest. The server is
the ``url`` argument, else Dask config ``monitor.nats.url``, else the
environment variable ``DASK_MONITOR_NATS_URL``.

Messages are parsed as JSON only, with the same validation as
``dask-monitor listen``: a bad one is counted and skipped. Needs ``nats-py``
(``pip install dask-monitor[nats]``), imported when serving starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from dask_monitor.config import NatsConfig
from dask_monitor.events import Alert
from dask_monitor.sinks.nats import (
    SUBJECT_PREFIX,
    connect,
    decode_alert,
    redact,
    token,
)
from dask_monitor.text import safe_text

__all__ = ["On", "OnStats"]

logger = logging.getLogger(__name__)

Handler = Callable[[Alert], Any]
H = TypeVar("H", bound=Handler)

_WILDCARDS = frozenset({"*", ">"})

#: Seconds a stop waits for running handlers before closing the connection.
DRAIN = 30.0


def _check_pattern(pattern: str) -> str:
    """``pattern`` if it is a valid subject tail; ``ValueError`` naming it if not."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"an alert pattern must be a non-empty str, got {pattern!r}")
    tokens = pattern.split(".")
    for i, t in enumerate(tokens):
        if t in _WILDCARDS:
            if t == ">" and i != len(tokens) - 1:
                raise ValueError(f"'>' must be the last token of {pattern!r}")
            continue
        if not t or any(c in t for c in " \t\r\n*>"):
            raise ValueError(f"{pattern!r} is not a NATS subject: bad token {t!r}")
    return pattern


@dataclass(frozen=True, slots=True)
class OnStats:
    """What an :class:`On` has seen since it was created."""

    #: Messages received on its subjects (valid or not).
    received: int = 0
    #: Messages that were not an alert (not JSON, missing fields ...): skipped.
    invalid: int = 0
    #: Handler calls that raised (logged; the next alert is handled as usual).
    failed: int = 0
    #: Times the connection came back after a loss.
    reconnects: int = 0
    #: Whether it is subscribed on a live connection right now.
    listening: bool = False


class _Group:
    """Serve a set of :class:`On` (one connection per server URL); stoppable
    from any thread. ``members`` is read when serving starts."""

    def __init__(self, members: Callable[[], list[On]]) -> None:
        self._members = members
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_asked = False

    def run(self, url: str | None = None, *, timeout: float = 5.0) -> None:
        """Serve until :meth:`stop` or Ctrl-C, blocking; returns quietly then."""
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a normal end
            asyncio.run(self.serve(url, timeout=timeout))

    async def serve(self, url: str | None = None, *, timeout: float = 5.0) -> None:
        """Serve on the running loop until :meth:`stop` (or cancellation).

        Raises ``OSError`` when a server cannot be reached at the start (after
        that, lost connections are retried forever), ``ValueError`` when there
        is nothing to serve or no URL.
        """
        members = self._members()
        if not members:
            raise ValueError("no On to serve: decorate a function with @On(...)")
        by_url: dict[str, list[On]] = {}
        for on in members:
            by_url.setdefault(on._url(url), []).append(on)
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            if self._stop_asked:
                self._stop.set()
        connections = [_Connection(server, ons) for server, ons in by_url.items()]
        try:
            for connection in connections:
                await connection.open(timeout)
            await self._stop.wait()
        finally:
            for connection in connections:
                await connection.close(timeout)
            with self._lock:
                self._loop = self._stop = None
                self._stop_asked = False

    def stop(self) -> None:
        """End :meth:`serve`/:meth:`run` (thread-safe; before they start too):
        handlers already running finish first."""
        with self._lock:
            self._stop_asked = True
            loop, event = self._loop, self._stop
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)


class _GroupMethod:
    """``On.name(...)`` acts on every declared :class:`On`; ``on.name(...)`` on
    that one alone."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: On | None, owner: type[On]) -> Callable[..., Any]:
        group = owner._everyone if obj is None else obj._alone
        method: Callable[..., Any] = getattr(group, self.name)
        return method


class On:
    """Call functions with the alerts whose subjects match ``patterns``.

    Use it as a decorator (``@On("straggler")``; the function is returned
    unchanged), then serve: ``On.run()`` blocks and serves every ``On``
    declared in the process, ``await On.serve()`` does the same on a running
    loop, ``On.stop()`` ends either from any thread. The same methods on one
    instance (``on.run()``, ``await on.serve()``, ``on.stop()``) serve that one
    alone.

    Parameters
    ----------
    *patterns
        Alert kinds as NATS subject tails: ``"straggler"``, ``"insight.*"``,
        ``">"`` (everything); none means ``">"``.
    url
        NATS server(s); else ``monitor.nats.url``, else ``DASK_MONITOR_NATS_URL``
        (read when serving starts).
    cluster
        Only this cluster's alerts (the subject token a monitor publishes
        under: its ``monitor.nats.cluster``); else that setting, else every
        cluster.

    Handlers get one :class:`~dask_monitor.events.Alert` each, one alert at a
    time per pattern and in the order received. ``async def`` handlers run on
    the serving loop; plain functions on a worker thread, so that a slow one
    does not stall the connection. A handler that raises is logged and counted
    (:attr:`stats`); the other handlers and the next alerts go on. Messages that
    are not alerts are counted and skipped. Lost connections are retried
    forever, and the subscriptions come back with them; alerts published while
    disconnected are not seen (NATS core delivers at most once).

    Raises ``ValueError`` for a pattern that is not a subject tail.
    """

    _declared: list[On] = []  # every On that decorated a function, in order
    _everyone: _Group = _Group(lambda: list(On._declared))

    run = _GroupMethod("run")
    serve = _GroupMethod("serve")
    stop = _GroupMethod("stop")

    def __init__(
        self, *patterns: str, url: str | None = None, cluster: str | None = None
    ) -> None:
        self.patterns: tuple[str, ...] = tuple(
            _check_pattern(p) for p in (patterns or (">",))
        )
        self.url = url
        self.cluster = cluster
        self.handlers: list[Handler] = []
        self._alone = _Group(lambda: [self])
        self._counts = {"received": 0, "invalid": 0, "failed": 0, "reconnects": 0}
        self._listening = False

    def __call__(self, handler: H) -> H:
        """Add ``handler`` (sync or async, taking one alert); return it as is."""
        if not callable(handler):
            raise TypeError(f"an alert handler must be callable, got {handler!r}")
        self.handlers.append(handler)
        if self not in On._declared:
            On._declared.append(self)
        return handler

    def __repr__(self) -> str:
        names = [getattr(h, "__qualname__", repr(h)) for h in self.handlers]
        return f"On({', '.join(map(repr, self.patterns))}, handlers={names})"

    @property
    def stats(self) -> OnStats:
        """Counts so far, and whether it is listening now."""
        return OnStats(**self._counts, listening=self._listening)

    @property
    def subjects(self) -> tuple[str, ...]:
        """The NATS subjects it subscribes to."""
        cluster = self.cluster or _nats_config().cluster or "*"
        cluster = cluster if cluster == "*" else token(cluster)  # as published
        return tuple(f"{SUBJECT_PREFIX}.{cluster}.alerts.{p}" for p in self.patterns)

    @classmethod
    def forget(cls, ons: Iterable[On] | None = None) -> None:
        """Stop serving ``ons`` (all when ``None``) with ``On.run()``/``On.serve()``
        from the next start on; they still serve alone."""
        keep = [] if ons is None else [o for o in cls._declared if o not in set(ons)]
        cls._declared[:] = keep

    def _url(self, override: str | None) -> str:
        url = override or self.url or _nats_config().url
        if not url:
            raise ValueError(
                "no NATS URL: pass url=..., or set monitor.nats.url or "
                "DASK_MONITOR_NATS_URL"
            )
        return url

    async def _handle(self, msg: Any) -> None:
        """One message: decode it, then call each handler (counted, never raises)."""
        self._counts["received"] += 1
        try:
            alert = decode_alert(msg.data)
        except ValueError as exc:
            self._counts["invalid"] += 1
            # Anyone who can publish can send junk: warn once, count the rest.
            first = self._counts["invalid"] == 1
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "dask-monitor: skipping a message on %s: %s%s",
                safe_text(msg.subject, 200),
                safe_text(str(exc), 200),
                " (more are counted in On.stats.invalid)" if first else "",
            )
            return
        for handler in list(self.handlers):
            try:
                if _is_async(handler):
                    await handler(alert)
                else:
                    result = await asyncio.to_thread(handler, alert)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self._counts["failed"] += 1
                logger.exception(
                    "dask-monitor: alert handler %s failed on a %s alert",
                    getattr(handler, "__qualname__", repr(handler)),
                    safe_text(alert.kind, 200),
                )


def _nats_config() -> NatsConfig:
    """Dask config ``monitor.nats``, validated, with the environment's URL."""
    import dask.config

    return NatsConfig.from_config(dask.config.get("monitor.nats", default=None))


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (a callable object's method)
    )


class _Connection:
    """One NATS connection serving some :class:`On`, reconnecting forever."""

    def __init__(self, url: str, ons: list[On]) -> None:
        self.url = url
        self.ons = ons
        self.nc: Any = None
        self.closing = False  # our own close disconnects too: not a loss

    def _listening(self, value: bool) -> None:
        for on in self.ons:
            on._listening = value

    async def _disconnected(self) -> None:
        if not self.closing:
            self._listening(False)
            logger.warning(
                "dask-monitor: lost NATS at %s; reconnecting", redact(self.url)
            )

    async def _reconnected(self) -> None:
        for on in self.ons:
            on._counts["reconnects"] += 1
        self._listening(True)
        logger.info("dask-monitor: reconnected to NATS at %s", redact(self.url))

    async def open(self, timeout: float) -> None:
        """Connect and subscribe each :class:`On` to its subjects."""
        self.nc = await connect(
            self.url,
            timeout=timeout,
            reconnect=True,
            disconnected_cb=self._disconnected,
            reconnected_cb=self._reconnected,
        )
        try:
            for on in self.ons:
                for subject in on.subjects:
                    await self.nc.subscribe(subject, cb=on._handle)
            await self.nc.flush(timeout=timeout)
        except BaseException:
            await self.close(timeout)
            raise
        self._listening(True)
        logger.info(
            "dask-monitor: answering alerts on %s at %s",
            ", ".join(s for on in self.ons for s in on.subjects),
            redact(self.url),
        )

    async def close(self, timeout: float) -> None:
        """Let running handlers finish (bounded: ``DRAIN`` seconds), then close;
        never raises."""
        self.closing = True
        self._listening(False)
        nc = self.nc
        if nc is None:
            return
        try:
            if nc.is_connected:
                await asyncio.wait_for(nc.drain(), DRAIN)
        except Exception:
            logger.debug("dask-monitor: NATS drain failed", exc_info=True)
        finally:
            if not nc.is_closed:
                await nc.close()
