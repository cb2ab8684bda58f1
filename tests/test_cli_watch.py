"""``dask-monitor watch`` on bad, unreachable and vanishing schedulers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dask-monitor"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


class TestWatchFailures:
    """Every failure is one line on stderr and exit code 1, never a hang."""

    def test_a_bad_address_is_one_line(self) -> None:
        """'nonsense' is not an address: one line, exit 1."""
        result = run("watch", "nonsense", "--once", "--timeout", "2")
        assert result.returncode == 1
        assert "cannot connect to the scheduler at nonsense" in one_error_line(
            result.stderr
        )

    def test_nobody_at_the_address_is_one_line(self) -> None:
        """A closed port: 'cannot connect' after --timeout, exit 1."""
        address = f"tcp://127.0.0.1:{free_port()}"
        result = run("watch", address, "--once", "--timeout", "1")
        assert result.returncode == 1
        assert "cannot connect" in one_error_line(result.stderr)

    def test_a_scheduler_that_dies_is_said_to_be_gone(self) -> None:
        """Kill the scheduler under a running watch: it says so and exits 1."""
        port = free_port()
        scheduler = subprocess.Popen(
            [
                str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                "--port", str(port), "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        watcher = None
        try:
            address = f"tcp://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:  # wait for the scheduler to listen
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "scheduler never started"
                    time.sleep(0.1)
            watcher = subprocess.Popen(
                [
                    str(BIN / "dask-monitor"), "watch", address,
                    "--interval", "0.2", "--timeout", "2",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert watcher.stdout is not None
            assert "no tasks yet" in watcher.stdout.readline()  # a first frame
            scheduler.kill()
            scheduler.wait(30)
            _, err = watcher.communicate(timeout=60)
            assert watcher.returncode == 1
            assert "is gone" in one_error_line(err)
        finally:
            scheduler.kill()
            if watcher is not None:
                watcher.kill()
