"""Responders (``dask_monitor.alerts.On``) against a real nats-server on loopback.

Alerts are published by the monitor's own publisher (``NatsPublisher``), as a
scheduler does; raw bytes by a plain nats-py client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import pytest

from dask_monitor.alerts import On
from dask_monitor.events import Alert
from dask_monitor.sinks.nats import NatsPublisher, alert_subject

from .test_nats import NatsServer, until

pytest.importorskip("nats")


def alert(kind: str, message: str = "hello", **details: Any) -> Alert:
    return Alert(kind, "warning", message, time.time(), details=details)


def publish_raw(url: str, subject: str, data: bytes) -> None:
    """Publish ``data`` as is (no encoding, no validation)."""
    import nats

    async def main() -> None:
        nc = await nats.connect(url)
        await nc.publish(subject, data)
        await nc.flush()
        await nc.close()

    asyncio.run(main())


class Serving:
    """``target.run(...)`` on a thread; ``stop()`` ends it and joins."""

    def __init__(self, target: Any, *ons: On, **kwargs: Any) -> None:
        self.target = target
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)
        self.thread.start()
        until(lambda: all(on.stats.listening for on in ons) or self.error)
        assert self.error is None, self.error

    def _run(self, **kwargs: Any) -> None:
        try:
            self.target.run(**kwargs)
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.target.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "run() did not return after stop()"
        assert self.error is None, self.error


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def publisher(nats_server: NatsServer) -> Iterator[NatsPublisher]:
    """The monitor's publisher for cluster ``c1``."""
    pub = NatsPublisher(nats_server.url, cluster="c1")
    pub.start()
    try:
        yield pub
    finally:
        pub.close(timeout=10)


@pytest.fixture(autouse=True)
def no_declared_ons() -> Iterator[None]:
    """Each test starts and ends with no On declared in the process."""
    On.forget()
    yield
    On.forget()


class TestHandlers:
    """Handlers get the alerts whose subjects match."""

    def test_sync_and_async_handlers_receive_a_published_alert(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """The published alert reaches a plain and an ``async def`` handler,
        equal to what was sent."""
        got: list[Alert] = []
        threads: list[str] = []
        on = On("straggler", url=nats_server.url)

        @on
        def plain(a: Alert) -> None:
            threads.append(threading.current_thread().name)
            got.append(a)

        @on
        async def coroutine(a: Alert) -> None:
            got.append(a)

        serving = Serving(on, on)
        try:
            sent = alert("straggler", "slow task", key="x-1")
            publisher.publish(sent)
            until(lambda: len(got) == 2)
            assert got == [sent, sent]
            assert threads and threads[0] != serving.thread.name  # not on the loop
            assert on.stats.received == 1
        finally:
            serving.stop()

    def test_wildcards_are_relative_to_the_alert_subjects(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """``insight.*`` matches one token after ``insight``, ``>`` any rest,
        a kind only itself."""
        seen: dict[str, list[str]] = {"one": [], "star": [], "rest": [], "all": []}
        ons = {
            "one": On("stall", url=nats_server.url),
            "star": On("insight.*", url=nats_server.url),
            "rest": On("insight.>", url=nats_server.url),
            "all": On(url=nats_server.url),
        }
        for name, on in ons.items():
            on(lambda a, name=name: seen[name].append(a.kind))
        serving = Serving(On, *ons.values())
        try:
            kinds = ["stall", "insight.tiny-tasks", "insight.a.b", "straggler"]
            for kind in kinds:
                publisher.publish(alert(kind))
            until(lambda: len(seen["all"]) == len(kinds))
            until(lambda: len(seen["rest"]) == 2)
            time.sleep(0.2)  # anything wrongly delivered arrives by now
            assert sorted(seen["all"]) == sorted(kinds)
            assert seen["one"] == ["stall"]
            assert seen["star"] == ["insight.tiny-tasks"]
            assert sorted(seen["rest"]) == ["insight.a.b", "insight.tiny-tasks"]
        finally:
            serving.stop()

    def test_only_the_given_cluster(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """``cluster=`` narrows to the alerts of one monitor."""
        got: list[str] = []
        on = On("stall", url=nats_server.url, cluster="c2")
        on(lambda a: got.append(a.message))
        serving = Serving(on, on)
        other = NatsPublisher(nats_server.url, cluster="c2")
        other.start()
        try:
            publisher.publish(alert("stall", "from c1"))
            other.publish(alert("stall", "from c2"))
            until(lambda: got)
            time.sleep(0.2)
            assert got == ["from c2"]
        finally:
            other.close(timeout=10)
            serving.stop()


class TestFaults:
    """Bad input and failing handlers do not stop a responder."""

    def test_a_bad_message_is_counted_and_skipped(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """Not JSON, JSON that is no alert: counted, skipped; the next alert
        is handled."""
        got: list[Alert] = []
        on = On("stall", url=nats_server.url)
        on(got.append)
        serving = Serving(on, on)
        try:
            subject = alert_subject("c1", "stall")
            publish_raw(nats_server.url, subject, b"\xff not json")
            publish_raw(nats_server.url, subject, b'{"kind": 1, "severity": "x"}')
            sent = alert("stall")
            publisher.publish(sent)
            until(lambda: got)
            assert got == [sent]
            assert on.stats.received == 3
            assert on.stats.invalid == 2
        finally:
            serving.stop()

    def test_a_raising_handler_does_not_stop_the_others(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """A handler that raises is counted; the other handler and the next
        alerts are handled."""
        calm: list[str] = []
        on = On("stall", url=nats_server.url)

        @on
        def angry(a: Alert) -> None:
            if a.message == "first":
                raise RuntimeError("handler bug")

        on(lambda a: calm.append(a.message))
        serving = Serving(on, on)
        try:
            publisher.publish(alert("stall", "first"))
            publisher.publish(alert("stall", "second"))
            until(lambda: len(calm) == 2)
            assert calm == ["first", "second"]
            assert on.stats.failed == 1
        finally:
            serving.stop()

    def test_it_reconnects_after_the_server_restarts(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """The server goes and comes back on the same port: alerts published
        after that reach the handler again."""
        got: list[str] = []
        on = On("stall", url=nats_server.url)
        on(lambda a: got.append(a.message))
        serving = Serving(on, on)
        try:
            publisher.publish(alert("stall", "before"))
            until(lambda: got == ["before"])
            nats_server.stop()
            until(lambda: not on.stats.listening)
            nats_server.start()
            until(lambda: on.stats.listening, timeout=30)
            assert on.stats.reconnects >= 1
            publisher.publish(alert("stall", "after"))
            until(lambda: "after" in got, timeout=30)
        finally:
            serving.stop()


class TestLifeCycle:
    """Serving starts from the class or one instance, and ends cleanly."""

    def test_on_run_serves_every_declared_on(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """``@On(...)`` declares; ``On.run()`` serves them all; ``On.stop()``
        ends it."""
        got: list[str] = []

        @On("stall", url=nats_server.url)
        def a(alert: Alert) -> None:
            got.append("a:" + alert.kind)

        @On("straggler", url=nats_server.url)
        async def b(alert: Alert) -> None:
            got.append("b:" + alert.kind)

        assert a.__name__ == "a"  # returned unchanged
        serving = Serving(On, *On._declared)
        try:
            publisher.publish(alert("stall"))
            publisher.publish(alert("straggler"))
            until(lambda: len(got) == 2)
            assert sorted(got) == ["a:stall", "b:straggler"]
        finally:
            serving.stop()
        assert not any(on.stats.listening for on in On._declared)

    def test_serve_on_a_running_loop(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """``await on.serve()`` inside an application's loop; a handler that
        calls ``on.stop()`` ends it."""
        got: list[str] = []
        on = On("stall", url=nats_server.url)

        @on
        async def once(a: Alert) -> None:
            got.append(a.message)
            on.stop()

        async def main() -> None:
            task = asyncio.create_task(on.serve())
            while not on.stats.listening:
                assert not task.done(), task
                await asyncio.sleep(0.02)
            publisher.publish(alert("stall", "only"))
            await asyncio.wait_for(task, 30)

        asyncio.run(main())
        assert got == ["only"]

    def test_stop_lets_a_running_handler_finish(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """``stop()`` while a handler runs: it completes, then ``run()`` returns."""
        started, finished = threading.Event(), threading.Event()
        on = On("stall", url=nats_server.url)

        @on
        def slow(a: Alert) -> None:
            started.set()
            time.sleep(0.5)
            finished.set()

        serving = Serving(on, on)
        publisher.publish(alert("stall"))
        assert started.wait(15)
        serving.stop()
        assert finished.is_set()

    def test_stop_before_run_returns_at_once(self, nats_server: NatsServer) -> None:
        """A stop asked before serving starts ends the next run at once."""
        on = On("stall", url=nats_server.url)
        on(lambda a: None)
        on.stop()
        on.run()  # returns
        assert not on.stats.listening

    def test_ctrl_c_ends_run_cleanly(
        self, nats_server: NatsServer, publisher: NatsPublisher
    ) -> None:
        """SIGINT to a process blocked in ``On.run()``: exit code 0, no traceback."""
        code = textwrap.dedent(
            """
            import sys, threading, time
            from dask_monitor.alerts import On

            @On("stall")
            def show(alert):
                print("got", alert.message, flush=True)

            def ready():
                while not On._declared[0].stats.listening:
                    time.sleep(0.02)
                print("ready", flush=True)

            threading.Thread(target=ready, daemon=True).start()
            On.run()
            print("ended", flush=True)
            """
        )
        env = {**os.environ, "DASK_MONITOR_NATS_URL": nats_server.url}
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            publisher.publish(alert("stall", "hi"))
            assert proc.stdout.readline().strip() == "got hi"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert out.strip() == "ended"
        assert "Traceback" not in err


class TestSettings:
    """Where the URL comes from, and which patterns are accepted."""

    def test_url_argument_then_config_then_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The argument wins, then ``monitor.nats.url``, then the environment."""
        monkeypatch.setenv("DASK_MONITOR_NATS_URL", "nats://127.0.0.1:3")
        assert On("stall")._url(None) == "nats://127.0.0.1:3"
        with dask.config.set({"monitor.nats.url": "nats://127.0.0.1:2"}):
            assert On("stall")._url(None) == "nats://127.0.0.1:2"
            assert On("stall", url="nats://127.0.0.1:1")._url(None) == (
                "nats://127.0.0.1:1"
            )
        monkeypatch.delenv("DASK_MONITOR_NATS_URL")
        with pytest.raises(ValueError, match="no NATS URL"):
            On("stall")._url(None)

    def test_subjects(self) -> None:
        """Patterns are tails of ``dask.monitor.<cluster>.alerts``."""
        assert On("insight.*").subjects == ("dask.monitor.*.alerts.insight.*",)
        assert On(cluster="c1").subjects == ("dask.monitor.c1.alerts.>",)
        assert On("a", cluster="my.cluster").subjects == (
            "dask.monitor.my_cluster.alerts.a",  # the token a monitor publishes on
        )

    @pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a b", "x*", 3])
    def test_bad_patterns_are_refused(self, pattern: Any) -> None:
        """A pattern that is not a subject tail fails at once, named."""
        with pytest.raises(ValueError):
            On(pattern)

    def test_an_unreachable_server_fails_at_start(self) -> None:
        """No server: ``run()`` raises ``OSError`` naming it, after the timeout."""
        from .test_nats import free_port

        on = On("stall", url=f"nats://127.0.0.1:{free_port()}")
        on(lambda a: None)
        with pytest.raises(OSError, match="cannot connect to NATS"):
            on.run(timeout=1)
