"""``dask-monitor listen`` and ``send`` as subprocesses."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import IO, Any

import pytest
from distributed import Client, wait

from dask_monitor import Monitor
from dask_monitor.alerts import ERROR_BURST, TOPIC

from .conftest import make_cluster
from .test_nats import NatsServer, free_port, nats_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "dask_monitor.cli"]


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_line(stream: IO[str] | None, text: str) -> str:
    """Read lines until one contains ``text`` (the process prints it once ready)."""
    assert stream is not None
    seen = []
    for line in stream:
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"{text!r} never printed; got {''.join(seen)!r}")


def until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


class TestListenScheduler:
    """``listen --scheduler``: alerts from a real computation; bad addresses."""

    def test_receives_an_alert_from_a_computation(self) -> None:
        """A failing task on the cluster is printed by the listener as JSON."""
        with (
            make_cluster(processes=False, protocol="tcp", host="127.0.0.1") as cluster,
            Client(cluster) as client,
            Monitor.attach(
                client, alerts={"error_burst": {"count": 1}}, interval="50ms"
            ),
        ):
            address = cluster.scheduler_address
            proc = start_cli(
                "listen", "--scheduler", address, "--on", ERROR_BURST, "--json",
                "--count", "1",
            )  # fmt: skip
            try:
                wait_for_line(proc.stderr, "listening")
                until(lambda: cluster.scheduler._broker._topics[TOPIC].subscribers)
                wait(client.submit(boom, 1, pure=False))
                out, err = proc.communicate(timeout=30)
            finally:
                proc.kill()
                proc.wait()
            assert proc.returncode == 0, err
            alert = json.loads(out.strip().splitlines()[-1])
            assert alert["kind"] == ERROR_BURST and alert["prefix"] == "boom"

    def test_unreachable_scheduler(self) -> None:
        """Nobody at the address: one line on stderr, exit code 1."""
        result = run_cli(
            "listen", "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1"
        )
        assert result.returncode == 1
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("Error: cannot connect")

    def test_needs_exactly_one_source(self) -> None:
        """Neither --scheduler nor --nats: a usage error."""
        result = run_cli("listen")
        assert result.returncode == 2
        assert "exactly one of" in result.stderr


class TestNatsCommands:
    """``listen --nats`` and ``send --nats`` against a real nats-server."""

    def test_send_reaches_listen_and_bad_messages_are_skipped(
        self,
        nats_server: NatsServer,  # noqa: F811
    ) -> None:
        """Invalid JSON: a one-line warning; the next alert is printed."""
        proc = start_cli(
            "listen", "--nats", nats_server.url, "--on", "custom", "--json",
            "--count", "1",
        )  # fmt: skip
        try:
            wait_for_line(proc.stderr, "listening")
            asyncio.run(publish_raw(nats_server.url))
            sent = run_cli(
                "send", "--nats", nats_server.url, "--on", "custom", "hello there"
            )
            assert sent.returncode == 0, sent.stderr
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, err
        alert = json.loads(out.strip().splitlines()[-1])
        assert alert["kind"] == "custom" and alert["message"] == "hello there"
        warnings = [line for line in err.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 2  # not JSON; JSON but not an alert
        assert all("ignoring a message" in w for w in warnings)

    def test_a_nats_restart_is_said_and_survived(
        self,
        nats_server: NatsServer,  # noqa: F811
    ) -> None:
        """The server goes away: a warning at once; it comes back: listening goes
        on, and an alert with an impossible timestamp is still printed."""
        proc = start_cli("listen", "--nats", nats_server.url, "--count", "1")
        try:
            wait_for_line(proc.stderr, "listening")
            nats_server.stop()
            wait_for_line(proc.stderr, "lost the connection to NATS")
            nats_server.start()
            wait_for_line(proc.stderr, "reconnected to NATS")
            asyncio.run(publish_raw_alert(nats_server.url, float("nan")))
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, err
        assert "from the future" in out

    @pytest.mark.parametrize("command", ["send", "listen"])
    def test_unreachable_nats(self, command: str) -> None:
        """No server: one line on stderr, exit code 1, within the timeout."""
        url = f"nats://127.0.0.1:{free_port()}"
        args = ["--nats", url, "--timeout", "1"]
        if command == "send":
            args += ["--on", "custom", "hi"]
        result = run_cli(command, *args)
        assert result.returncode == 1
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and "cannot connect to NATS" in lines[0]


async def publish_raw(url: str) -> None:
    import nats

    nc = await nats.connect(url)
    await nc.publish("dask.monitor.x.alerts.custom", b"not json {")
    await nc.publish("dask.monitor.x.alerts.custom", b'{"hello": "world"}')
    await nc.flush()
    await nc.close()


async def publish_raw_alert(url: str, timestamp: float) -> None:
    import nats

    alert = {"kind": "custom", "severity": "info", "message": "from the future"}
    nc = await nats.connect(url)
    await nc.publish(
        "dask.monitor.x.alerts.custom",
        json.dumps({**alert, "timestamp": timestamp}).encode(),
    )
    await nc.flush()
    await nc.close()
