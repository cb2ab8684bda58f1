"""The NATS alert publisher against a real nats-server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from distributed import Client, wait

from dask_monitor import Monitor
from dask_monitor.alerts import ERROR_BURST
from dask_monitor.events import Alert
from dask_monitor.sinks.nats import NatsPublisher, alert_subject, decode_alert

from .conftest import make_cluster, require_executable

pytest.importorskip("nats")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


class NatsServer:
    """A nats-server subprocess on 127.0.0.1 at a free port; stop and restart it."""

    def __init__(self) -> None:
        self.executable = require_executable("nats-server", "/usr/sbin/nats-server")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.executable, "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        until(self._accepts, timeout=10)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Subscriber:
    """A nats-py subscriber on its own thread and loop, collecting messages."""

    def __init__(self, url: str, subject: str = "dask.monitor.*.alerts.*") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.nc: Any = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(url, subject),)
        )
        self._thread.start()
        assert self._ready.wait(10), "the test subscriber could not connect"

    async def _main(self, url: str, subject: str) -> None:
        import nats

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.nc = await nats.connect(
            url, reconnect_time_wait=0.1, max_reconnect_attempts=-1
        )

        async def on_message(msg: Any) -> None:
            with self._lock:
                self.messages.append((msg.subject, msg.data))

        await self.nc.subscribe(subject, cb=on_message)
        await self.nc.flush()
        self._ready.set()
        await self._stop.wait()
        await self.nc.close()

    @property
    def connected(self) -> bool:
        return bool(self.nc is not None and self.nc.is_connected)

    def alerts(self) -> list[Alert]:
        with self._lock:
            return [decode_alert(data) for _, data in self.messages]

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


class TestNatsPublisher:
    """The publisher by itself."""

    def test_subscriber_receives_json(self, nats_server: NatsServer) -> None:
        """An alert arrives as JSON on dask.monitor.<cluster>.alerts.<kind>."""
        subscriber = Subscriber(nats_server.url)
        publisher = NatsPublisher(nats_server.url, cluster="test.cluster one")
        publisher.start()
        try:
            alert = Alert("stall", "warning", "stuck", 1.5, details={"idle": 3.0})
            publisher.publish(alert)
            until(lambda: subscriber.messages)
            subject, data = subscriber.messages[0]
            assert subject == "dask.monitor.test_cluster_one.alerts.stall"
            assert json.loads(data)["message"] == "stuck"
            assert decode_alert(data) == alert
            assert publisher.stats()["sent"] == 1
        finally:
            publisher.close(timeout=10)
            subscriber.close()

    def test_an_alert_nats_refuses_does_not_block_the_rest(
        self, nats_server: NatsServer
    ) -> None:
        """An alert over the server's payload limit is dropped; the next arrive."""
        subscriber = Subscriber(nats_server.url)
        publisher = NatsPublisher(nats_server.url, cluster="c")
        publisher.start()
        try:
            until(lambda: publisher.connected)
            huge = Alert("custom", "info", "big", 1.0, details={"x": "a" * 2**21})
            publisher.publish(huge)
            for i in range(3):
                publisher.publish(Alert("stall", "warning", f"after {i}", 2.0))
            until(lambda: len(subscriber.messages) >= 3)
            assert [a.message for a in subscriber.alerts()] == [
                "after 0",
                "after 1",
                "after 2",
            ]
            stats = publisher.stats()
            assert stats["failed"] == 1 and stats["dropped"] == 1
            assert stats["sent"] == 3 and stats["backlog"] == 0
        finally:
            publisher.close(timeout=10)
            subscriber.close()

    def test_a_url_urlsplit_refuses_does_not_break_stats(self) -> None:
        """stats() works with a non-numeric port or a list of servers."""
        for url in ("nats://u:p@127.0.0.1:abc", "nats://u:p@a:1,nats://b:2"):
            publisher = NatsPublisher(url, cluster="c")
            assert "p@" not in publisher.stats()["url"]

    def test_long_alert_texts_are_clipped(self) -> None:
        """An alert quoting a 2 MB key keeps 1,000 characters of it."""
        from dask_monitor.events import MAX_ALERT_TEXT

        alert = Alert("straggler", "warning", "m" * 10**6, 1.0, key="k" * 2 * 10**6)
        assert alert.key is not None and len(alert.key) == MAX_ALERT_TEXT
        assert len(alert.message) == MAX_ALERT_TEXT
        assert alert.key.endswith("\u2026")

    def test_unreachable_server_bounded_backlog(self) -> None:
        """No server: publish never blocks or raises; the backlog is bounded."""
        publisher = NatsPublisher(
            f"nats://127.0.0.1:{free_port()}", cluster="c", backlog=3, connect_timeout=1
        )
        publisher.start()
        try:
            for i in range(10):
                publisher.publish(Alert("k", "info", str(i), float(i)))
            stats = publisher.stats()
            assert stats["dropped"] == 7 and stats["backlog"] == 3
            assert stats["connected"] is False
            until(lambda: publisher.stats()["errors"] >= 1)
        finally:
            publisher.close(timeout=10)

    def test_subject_tokens_are_safe(self) -> None:
        """Dots, spaces and wildcards cannot leak into subject tokens."""
        assert alert_subject("a.b c*", "x>y") == "dask.monitor.a_b_c_.alerts.x_y"
        assert alert_subject("*", "*") == "dask.monitor.*.alerts.*"


@pytest.mark.slow
def test_cluster_alerts_survive_a_nats_restart(nats_server: NatsServer) -> None:
    """Server stopped mid-run: the run finishes, drops are counted, delivery resumes."""
    alerts = {"error_burst": {"count": 1, "cooldown": 0}}
    nats = {"url": nats_server.url, "cluster": "ci", "backlog": 2}
    subscriber = Subscriber(nats_server.url)
    try:
        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, alerts=alerts, nats=nats, interval="50ms") as mon,
        ):

            def sink() -> dict[str, Any]:
                stats: dict[str, Any] = mon.snapshot(flush=True)["alerts"]["sinks"]
                return stats["nats"]

            until(lambda: sink()["connected"])
            wait(client.submit(boom, 0, pure=False))
            until(lambda: subscriber.alerts())
            first = subscriber.alerts()[0]
            assert first.kind == ERROR_BURST and first.prefix == "boom"
            assert subscriber.messages[0][0] == f"dask.monitor.ci.alerts.{ERROR_BURST}"

            nats_server.stop()
            until(lambda: not sink()["connected"])
            futures = client.map(boom, range(1, 6), pure=False)
            wait(futures)  # the computation finishes without NATS
            until(lambda: sink()["dropped"] >= 3)
            assert sink()["backlog"] == 2

            nats_server.start()
            until(lambda: subscriber.connected and sink()["connected"], timeout=30)
            # Fail a task now and then until one's alert arrives: the
            # subscriber's own resubscription may lag behind its reconnection.
            last = [0.0]

            def resumed() -> bool:
                if any(
                    "boom 10" in str(a.details.get("exception"))
                    for a in subscriber.alerts()
                ):
                    return True
                if time.monotonic() - last[0] > 0.5:
                    last[0] = time.monotonic()
                    wait(client.submit(boom, 100, pure=False))
                return False

            until(resumed)
            assert sink()["sent"] >= 2
    finally:
        subscriber.close()
