"""Load: a million transitions through the plugin, and many panel sessions.

The hook and the flush are driven synthetically (no scheduler): the plugin's
buffer, the conversion and every built-in observer run as they do live.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import tracemalloc
from typing import Any

import pytest
from dask.utils import key_split

from dask_monitor.pipeline import Pipeline
from dask_monitor.scheduler.plugin import MonitorPlugin
from tests.workloads import slow_inc

#: DASK_MONITOR_FULL_LOAD=1 runs 1,000,000 task life cycles (5,000,000 hook
#: calls, about a minute); by default 200,000 life cycles, i.e. 1,000,000 calls.
TASKS = 1_000_000 if os.environ.get("DASK_MONITOR_FULL_LOAD") == "1" else 200_000
STARTSTOPS = [{"action": "compute", "start": 1.0, "stop": 1.001}]


def offline_plugin(**options: Any) -> MonitorPlugin:
    """A plugin whose pipeline exists but that has no scheduler."""
    plugin = MonitorPlugin(**options)
    plugin.pipeline = Pipeline(plugin.config)
    return plugin


def life_cycle(plugin: MonitorPlugin, key: str, worker: str) -> None:
    """The five transitions of a task that runs and is then forgotten."""
    tr = plugin.transition
    tr(key, "released", "waiting", stimulus_id="s")
    tr(key, "waiting", "processing", stimulus_id="s", worker=worker)
    tr(
        key,
        "processing",
        "memory",
        stimulus_id="s",
        worker=worker,
        nbytes=8,
        startstops=STARTSTOPS,
    )
    tr(key, "memory", "released", stimulus_id="s")
    tr(key, "released", "forgotten", stimulus_id="s")


@pytest.mark.slow
def test_a_million_transitions_memory_bounded_nothing_lost() -> None:
    """1,000,000 hook calls (flushed every 1,000 tasks): nothing dropped, every
    task counted, and the last quarter of the run, traced with tracemalloc,
    leaves no memory behind (every table is bounded; tasks are forgotten).

    Without a scheduler, prefixes come from Dask's ``key_split``, whose own
    LRU cache (Dask's, bounded at 100,000 keys) is emptied at both ends of the
    traced part so that it does not count as ours.
    """
    plugin = offline_plugin(buffer_size=10_000)
    prefixes = [f"stage{i}" for i in range(50)]
    workers = [f"tcp://10.0.0.{i}:1234" for i in range(20)]
    traced_from = TASKS * 3 // 4
    calls = 0
    try:
        for i in range(TASKS):
            if i == traced_from:
                plugin.flush()
                key_split.cache_clear()
                gc.collect()
                tracemalloc.start()
            life_cycle(plugin, f"{prefixes[i % 50]}-{i}", workers[i % 20])
            calls += 5
            if i % 1000 == 999:
                plugin.flush()
        plugin.flush()
        key_split.cache_clear()
        gc.collect()
        grown, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    snap = plugin.snapshot()
    m = snap["monitor"]
    assert m["events"] == calls and m["dropped"] == 0
    assert snap["totals"]["completed"] == TASKS
    assert snap["totals"]["done"] == TASKS and snap["totals"]["remaining"] == 0
    assert sum(r["completed"] for r in snap["prefixes"].values()) == TASKS
    # Bounded: a quarter of the run (250,000 calls) leaves < 1 MiB behind,
    # and never holds more than a few buffers' worth at once.
    assert grown < 2**20, grown
    assert peak < 32 * 2**20, peak


def test_overflow_drops_exactly_what_the_buffer_bound_says() -> None:
    """Buffer of 1,000, flushed every 1,500 calls: 500 dropped per flush,
    counted exactly; events == calls; update_graph drops are counted too."""
    plugin = offline_plugin(buffer_size=1_000)
    calls = 0
    for flush in range(100):
        for i in range(1_500):
            plugin.transition(f"x-{flush}-{i}", "released", "waiting", stimulus_id="s")
            calls += 1
        plugin.flush()
    m = plugin.snapshot()["monitor"]
    assert m["events"] == calls == 150_000
    assert m["dropped"] == 100 * 500
    assert m["buffer_capacity"] == 1_000
    assert plugin.snapshot()["totals"]["states"] == {"waiting": 100 * 1_000}


# -- many panel sessions -----------------------------------------------------------

SESSIONS = 50
SESSION_SECONDS = 15.0
TASKS_UNDER_SESSIONS = 200


def _monitor_context(scheduler: Any) -> Any:
    """The Bokeh ApplicationContext serving /monitor on the scheduler."""
    for app in scheduler.http_application.applications:
        contexts = getattr(app, "_applications", {})
        if "/monitor" in contexts:
            return contexts["/monitor"]
    raise AssertionError("no /monitor page on the dashboard")


def _on_loop(loop: Any, fn: Any) -> Any:
    """Run ``fn()`` (sync or async) on a tornado loop from another thread."""

    async def call() -> Any:
        result = fn()
        if asyncio.iscoroutine(result):
            result = await result
        return result

    return asyncio.run_coroutine_threadsafe(call(), loop.asyncio_loop).result(120)


class Sessions:
    """``n`` Bokeh websocket sessions of one page, read continuously by a thread."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url
        self.n = n
        self.messages = [0] * n
        self.errors: list[BaseException] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.conns: list[Any] = []

    async def _open(self) -> None:
        from bokeh.util.token import generate_jwt_token, generate_session_id
        from tornado.websocket import websocket_connect

        for i in range(self.n):
            sid = generate_session_id(secret_key=None, signed=False)
            token = generate_jwt_token(sid, secret_key=None, signed=False)
            conn = await websocket_connect(self.url, subprotocols=["bokeh", token])
            self.conns.append(conn)
            self.loop.create_task(self._read(i, conn))

    async def _read(self, i: int, conn: Any) -> None:
        try:
            while (await conn.read_message()) is not None:
                self.messages[i] += 1
        except Exception as e:  # a broken session is a failure of the test
            self.errors.append(e)

    def __enter__(self) -> Sessions:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(120)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            for conn in self.conns:
                conn.close()
            await asyncio.sleep(0.2)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _components() -> int:
    from dask_monitor.panel.components import Component

    for _ in range(3):  # destroyed documents are cycles behind weak references
        gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Component))


@pytest.mark.slow
def test_fifty_panel_sessions_during_a_computation() -> None:
    """50 live /monitor sessions for 15 s while 200 tasks run: the run
    completes with the right counts, every session gets updates, and once
    they close the server's sessions and our components go back to baseline."""
    from distributed import Client

    from dask_monitor import Monitor

    from .conftest import make_cluster, prefix_states, snapshot_states

    with (
        make_cluster(protocol="tcp://", host="127.0.0.1") as cluster,
        Client(cluster) as client,
        Monitor.attach(client) as monitor,
    ):
        scheduler = cluster.scheduler
        context = _monitor_context(scheduler)
        baseline = len(list(context.sessions))
        components = _components()
        url = f"ws://127.0.0.1:{scheduler.http_server.port}/monitor/ws"
        t0 = time.monotonic()
        futures = client.map(slow_inc, range(TASKS_UNDER_SESSIONS))
        with Sessions(url, SESSIONS) as sessions:
            deadline = time.monotonic() + 60
            while len(list(context.sessions)) < baseline + SESSIONS:
                assert time.monotonic() < deadline, len(list(context.sessions))
                time.sleep(0.05)
            results = client.gather(futures)
            time.sleep(max(0.0, SESSION_SECONDS - (time.monotonic() - t0)))
            assert not sessions.errors, sessions.errors
            assert min(sessions.messages) > 2  # every session got updates
        assert results == list(range(1, TASKS_UNDER_SESSIONS + 1))
        snap = monitor.snapshot(flush=True)
        assert snapshot_states(snap) == prefix_states(scheduler)

        def connected() -> int:
            return sum(s.connection_count for s in context.sessions)

        deadline = time.monotonic() + 10
        while _on_loop(cluster.loop, connected) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Bokeh discards unused sessions after a linger (15 s by default);
        # ask for the same clean-up now, with no linger. Bokeh's
        # Document.destroy runs a full gc.collect() per session (0.1-0.6 s
        # each, on the scheduler loop): skip those 50 here and collect once
        # below, which checks the same thing.
        collect = gc.collect
        gc.collect = lambda *args: 0  # type: ignore[assignment]
        try:
            _on_loop(cluster.loop, lambda: context._cleanup_sessions(0))
        finally:
            gc.collect = collect
        assert len(list(context.sessions)) == baseline
        # Destroyed documents are released by callbacks the loop runs soon
        # after; a leak stays, so poll with a deadline rather than once.
        deadline = time.monotonic() + 20
        while _components() > components and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _components() <= components
        del futures
