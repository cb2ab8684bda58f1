"""Shared fixtures: real clusters, never mocks of Dask."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from distributed import Client, LocalCluster

#: Set by .ci/run: in CI a missing system dependency fails instead of skipping.
REQUIRE_ALL = os.environ.get("DASK_MONITOR_REQUIRE_ALL") == "1"


def require_executable(name: str, *candidates: str) -> str:
    """Path of a system program the test needs; skip (fail in CI) when missing."""
    for path in (shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return path
    message = (
        f"{name} is not installed (Debian package {name}; `make test` installs it)"
    )
    if REQUIRE_ALL:
        pytest.fail(message)
    pytest.skip(message)


#: Debian's Chromium, headless, on this closed network: no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (``/usr/bin/chromium``) driven by Playwright."""
    chromium = require_executable("chromium", "/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def make_cluster(**kwargs: Any) -> LocalCluster:
    """A small LocalCluster on loopback with its dashboard on a free port."""
    options: dict[str, Any] = {
        "n_workers": 2,
        "threads_per_worker": 2,
        "processes": False,
        "dashboard_address": "127.0.0.1:0",
    }
    options.update(kwargs)
    if options["processes"]:
        # Worker processes talk TCP: keep it on loopback. In-process clusters
        # use the inproc transport, which takes no host.
        options.setdefault("host", "127.0.0.1")
    return LocalCluster(**options)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """One in-process cluster shared by a test module."""
    with make_cluster() as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A fresh client of the module's cluster."""
    with Client(cluster) as c:
        yield c


def prefix_states(scheduler: Any) -> dict[str, dict[str, int]]:
    """The scheduler's own per-prefix state counts: non-zero, forgotten left out."""
    out: dict[str, dict[str, int]] = {}
    for name, tp in scheduler.task_prefixes.items():
        states = {s: n for s, n in tp.states.items() if n and s != "forgotten"}
        if states:
            out[name] = states
    return out


def snapshot_states(snapshot: Any) -> dict[str, dict[str, int]]:
    """The monitor's per-prefix state counts: non-zero only."""
    out: dict[str, dict[str, int]] = {}
    for name, row in snapshot["prefixes"].items():
        states = {s: n for s, n in row["states"].items() if n}
        if states:
            out[name] = states
    return out


@pytest.fixture(scope="session")
def s3_bucket() -> Iterator[str]:
    """A bucket on a real S3-compatible server (moto's server mode) on
    127.0.0.1, reached through s3fs with dummy credentials: ``s3://<name>``."""
    import socket

    import fsspec
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = fsspec.config.conf.get("s3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing-key")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        # fsspec's own config: every s3fs made from a URL talks to moto.
        fsspec.config.conf["s3"] = {"client_kwargs": {"endpoint_url": endpoint}}
        try:
            fs = fsspec.filesystem("s3", skip_instance_cache=True)
            fs.mkdir("dm-test")
            yield "s3://dm-test"
        finally:
            if saved is None:
                fsspec.config.conf.pop("s3", None)
            else:
                fsspec.config.conf["s3"] = saved
            server.stop()
