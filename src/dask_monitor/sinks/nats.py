"""NATS: publish alerts as JSON to ``dask.monitor.<cluster>.alerts.<kind>``.

:class:`NatsPublisher` runs on its own thread with its own asyncio loop, so
the scheduler's loop only appends to a bounded backlog (a few microseconds
per alert) and never waits for the network. While NATS is unreachable the
backlog keeps the newest ``backlog`` alerts; older ones are dropped and
counted. The publisher reconnects by itself and never raises into Dask.

Delivery is at most once: an alert written to a connection that dies before
the server read it is lost. Messages are JSON only; nothing received from
NATS is unpickled or executed (the CLI's ``listen`` only parses JSON).

Needs ``nats-py`` (``pip install dask-monitor[nats]``), imported lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from dask_monitor.config import redact_url
from dask_monitor.events import Alert, Event

__all__ = [
    "SUBJECT_PREFIX",
    "NatsPublisher",
    "alert_subject",
    "connect",
    "decode_alert",
    "encode_alert",
    "redact",
    "token",
]

logger = logging.getLogger(__name__)

#: First tokens of every subject.
SUBJECT_PREFIX = "dask.monitor"

_BAD_TOKEN = re.compile(r"[^A-Za-z0-9_\-]")


def token(text: str) -> str:
    """``text`` made safe as one NATS subject token (no dots, spaces, wildcards)."""
    return _BAD_TOKEN.sub("_", text) or "_"


def alert_subject(cluster: str, kind: str) -> str:
    """The subject of an alert: ``dask.monitor.<cluster>.alerts.<kind>``.

    ``cluster`` and ``kind`` may be ``*`` (a wildcard, for subscribers). Dots
    in ``kind`` separate tokens (``insight.memory-pressure`` is matched by
    ``insight.*``); each token is made safe.
    """
    c = cluster if cluster == "*" else token(cluster)
    k = kind if kind in ("*", ">") else ".".join(map(token, kind.split(".")))
    return f"{SUBJECT_PREFIX}.{c}.alerts.{k}"


def encode_alert(alert: Alert) -> bytes:
    """The JSON bytes sent for an alert (non-JSON details become strings)."""
    return json.dumps(alert.to_dict(), default=str, separators=(",", ":")).encode()


def decode_alert(data: bytes) -> Alert:
    """An alert from received bytes: JSON only.

    Raises
    ------
    ValueError
        If the bytes are not UTF-8 JSON of an alert mapping.
    """
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return Alert.from_dict(value)


def redact(url: str) -> str:
    """``url`` without user and password, for logs and snapshots (never raises)."""
    return redact_url(url)


def _refused(exc: Exception) -> bool:
    """Whether NATS refused one message for what it is (not for the connection)."""
    from nats.errors import BadHeaderError, BadSubjectError, MaxPayloadError

    return isinstance(
        exc, MaxPayloadError | BadSubjectError | BadHeaderError | TypeError | ValueError
    )


async def _quiet_error(exc: Exception) -> None:
    """nats-py error callback: its default logs tracebacks; ours counts elsewhere."""
    logger.debug("nats: %r", exc)


async def connect(
    url: str,
    *,
    timeout: float = 2.0,
    reconnect: bool = False,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
    **kwargs: Any,
) -> Any:
    """Connect to NATS with a short timeout; returns a ``nats.aio.client.Client``.

    Raises
    ------
    ImportError
        If ``nats-py`` is not installed.
    OSError
        If the server cannot be reached (the message names the URL).
    """
    import nats

    try:
        # With unlimited reconnects nats-py retries a failed first connection
        # forever: bound the whole attempt.
        return await asyncio.wait_for(
            nats.connect(
                url,
                connect_timeout=max(1, round(timeout)),
                allow_reconnect=reconnect,
                max_reconnect_attempts=-1 if reconnect else 0,
                reconnect_time_wait=0.5,
                error_cb=error_cb or _quiet_error,
                name="dask-monitor",
                **kwargs,
            ),
            timeout,
        )
    except TimeoutError:
        raise OSError(
            f"cannot connect to NATS at {redact(url)}: no answer within {timeout:g} s"
        ) from None
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise OSError(f"cannot connect to NATS at {redact(url)}: {reason}") from exc


class NatsPublisher:
    """Publish alerts to NATS from a background thread, never blocking the caller.

    Subscribe it to the pipeline's alert subject (it is an observer: its
    ``update`` takes alerts and ignores other events), or call
    :meth:`publish`. :meth:`stats` gives the figures shown in the snapshot.

    Parameters
    ----------
    url
        NATS server, e.g. ``"nats://127.0.0.1:4222"``.
    cluster
        Subject token naming the cluster (made safe with :func:`token`).
    backlog
        Alerts kept while NATS is unreachable; the oldest are dropped beyond.
    connect_timeout
        Seconds per connection attempt.

    Notes
    -----
    ``publish`` is thread-safe and O(1). Nothing raises out of the publisher:
    connection and publish errors are counted, logged at debug level (the
    first one as a warning), and retried with a backoff of up to 5 s. An
    alert that NATS refuses for what it is (larger than the server's
    payload limit, a bad subject) is dropped and counted in ``failed`` and
    ``dropped`` rather than retried, so it cannot hold up the ones behind it.
    """

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        cluster: str,
        backlog: int = 1_000,
        connect_timeout: float = 2.0,
    ) -> None:
        if backlog < 1:
            raise ValueError(f"backlog must be >= 1, got {backlog!r}")
        self.url = url
        self.cluster = token(cluster)
        self.capacity = backlog
        self.connect_timeout = connect_timeout
        self.sent = 0
        self.dropped = 0
        self.failed = 0  # dropped because NATS refused them (counted in dropped)
        self.errors = 0
        self.connects = 0
        self.last_error: str | None = None
        self._backlog: deque[tuple[int, str, bytes]] = deque()
        self._seq = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._nc: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- any thread ----------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (once); it connects in the background."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"dask-monitor-nats-{self.cluster}", daemon=True
        )
        self._thread.start()
        self._ready.wait(5)

    def update(self, event: Event) -> None:
        """Observer interface: publish alerts, ignore other events."""
        if type(event) is Alert:
            self.publish(event)

    def publish(self, alert: Alert) -> None:
        """Queue ``alert`` for sending; drop (and count) the oldest if full."""
        try:
            item = (0, alert_subject(self.cluster, alert.kind), encode_alert(alert))
        except Exception as exc:  # never raise into the caller
            self._error(exc)
            return
        with self._lock:
            self._seq += 1
            if len(self._backlog) >= self.capacity:
                self._backlog.popleft()
                self.dropped += 1
            self._backlog.append((self._seq, item[1], item[2]))
        self._poke()

    @property
    def connected(self) -> bool:
        """Whether the publisher is connected to NATS right now."""
        nc = self._nc
        return bool(nc is not None and nc.is_connected)

    @property
    def changes(self) -> int:
        """Grows whenever :meth:`stats` would change (cheap; for snapshot caching)."""
        return self.sent + self.dropped + self.errors + self.connects + self._seq

    def stats(self) -> dict[str, Any]:
        """Plain figures: connected, sent, dropped, backlog, errors, last error."""
        with self._lock:
            backlog = len(self._backlog)
        return {
            "url": redact(self.url),
            "subject": alert_subject(self.cluster, "<kind>"),
            "connected": self.connected,
            "sent": self.sent,
            "dropped": self.dropped,
            "failed": self.failed,
            "backlog": backlog,
            "backlog_capacity": self.capacity,
            "errors": self.errors,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    def close(self, timeout: float | None = 0) -> None:
        """Stop the thread; wait for it up to ``timeout`` seconds (0: don't wait).

        Alerts still in the backlog are sent first if connected, else dropped.
        """
        self._stopping = True
        self._poke()
        thread = self._thread
        if thread is not None and timeout != 0:
            thread.join(timeout)

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        # RuntimeError: the loop is closed, the thread has ended.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if self.errors == 1:
            logger.warning(
                "dask-monitor: NATS publisher (%s): %s; retrying, later errors are "
                "only counted",
                redact(self.url),
                self.last_error,
            )
        else:
            logger.debug("dask-monitor: NATS publisher: %s", self.last_error)

    # -- the publisher's thread ------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except Exception as exc:  # pragma: no cover - a bug; never raise
            self._error(exc)
        finally:
            self._loop = None
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._loop = loop
        self._ready.set()
        delay = 0.1
        try:
            while not self._stopping:
                nc = self._nc
                if nc is None or nc.is_closed:
                    try:
                        self._nc = await connect(
                            self.url,
                            timeout=self.connect_timeout,
                            reconnect=True,
                            reconnected_cb=self._reconnected,
                        )
                        self.connects += 1
                        delay = 0.1
                    except Exception as exc:
                        self._error(exc)
                        await self._sleep(delay)
                        delay = min(delay * 2, 5.0)
                        continue
                await self._send()
                await self._sleep(1.0)
            await self._send()
        finally:
            await self._disconnect()

    async def _reconnected(self) -> None:
        self.connects += 1
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        wake = self._wake
        assert wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    async def _send(self) -> None:
        nc = self._nc
        sent = 0
        while nc is not None and nc.is_connected:
            with self._lock:
                if not self._backlog:
                    break
                seq, subject, payload = self._backlog[0]
            try:
                await nc.publish(subject, payload)
            except Exception as exc:
                self._error(exc)
                if not _refused(exc):
                    break  # the connection's trouble: keep the alert, retry
                # This alert's own trouble (too large, a bad subject): it
                # would fail forever and hold up all behind it.
                self.failed += 1
                self.dropped += 1
            else:
                self.sent += 1
                sent += 1
            with self._lock:
                # The head may have been dropped meanwhile (backlog full).
                if self._backlog and self._backlog[0][0] == seq:
                    self._backlog.popleft()
        if sent and nc is not None and nc.is_connected:
            try:
                await nc.flush(timeout=2)
            except Exception as exc:
                self._error(exc)

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        try:
            await asyncio.wait_for(nc.close(), 2)
        except Exception as exc:
            self._error(exc)
