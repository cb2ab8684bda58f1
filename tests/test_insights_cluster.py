"""Insights on a real cluster: each workload provokes its kind, named with
the right subject; a healthy workload provokes nothing of note.

Each workload runs a few seconds. The timing settings are shortened
(``hold`` 0.5 s instead of 10 s, evaluations every 0.1 s) so that live
conditions show within them; the thresholds are the defaults.
``memory-pressure`` and ``transfer-bound`` need worker processes (memory of
their own; transfers over TCP): they start clusters of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster, wait

from dask_monitor import Monitor, replay
from dask_monitor.alerts.rules import TOPIC
from dask_monitor.events import Alert

from .conftest import make_cluster
from .workloads import inc

pytestmark = pytest.mark.slow

FAST = {
    "interval": "50ms",
    "insights": {"check_interval": 0.1, "hold": 0.5, "release": 1.0},
}


def crunch(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def load(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def step(previous: float, seconds: float = 0.25) -> float:
    time.sleep(seconds)
    return previous + 1


def pinned(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def healthy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def allocate(nbytes: int) -> Any:
    """A result of ``nbytes`` bytes, touched (so that it is resident)."""
    import numpy

    return numpy.ones(nbytes // 8)


def peek(x: Any) -> float:
    return float(x[0])


def _memory_of(dask_scheduler: Any) -> dict[str, Any]:
    """What the scheduler itself knows of each worker's memory (run on it)."""
    return {
        address: {
            "process": ws.memory.process,
            "managed": ws.memory.managed,
            "limit": ws.memory_limit,
        }
        for address, ws in dask_scheduler.workers.items()
    }


def _durations_of(dask_scheduler: Any) -> dict[str, dict[str, float]]:
    """The scheduler's own cumulative seconds per prefix and action."""
    return {n: dict(tp.all_durations) for n, tp in dask_scheduler.task_prefixes.items()}


def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


def until(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def insight(monitor: Monitor, kind: str) -> dict[str, Any] | None:
    """The snapshot's insight of ``kind`` (the first), or ``None``."""
    for item in monitor.snapshot(flush=True).get("insights", []):
        if item["kind"] == kind:
            return dict(item)
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with make_cluster(n_workers=2, threads_per_worker=2) as c:
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


class TestEachKindOnACluster:
    """A workload per kind; the insight names the prefix, worker or cluster."""

    def test_tiny_tasks(self, cluster: LocalCluster, client: Client) -> None:
        """1,500 increments: tiny tasks of ``inc``, counted as Dask ran them."""
        with Monitor.attach(client, **FAST) as monitor:
            futures = client.map(inc, range(1_500))
            wait(futures)
            item = until(lambda: insight(monitor, "tiny-tasks"))
            assert item["subject"] == "inc" and item["subject_type"] == "prefix"
            assert item["severity"] in ("warning", "critical")
            # Evaluated about every 0.1 s: it soon counts all that Dask ran.
            ran = cluster.scheduler.task_prefixes["inc"].states["memory"]
            assert ran == 1_500
            until(lambda: insight(monitor, "tiny-tasks")["evidence"]["count"] == ran)
            assert item["evidence"]["p50"] < 0.01

    def test_erroring_with_an_alert(
        self, cluster: LocalCluster, client: Client
    ) -> None:
        """Every task raising: a critical ``erroring`` insight about ``boom``
        and an ``insight.erroring`` alert reaching ``monitor.on``."""
        with Monitor.attach(client, **FAST) as monitor:
            got: list[Alert] = []
            lock = threading.Lock()

            def on_alert(alert: Alert) -> None:
                with lock:
                    got.append(alert)

            monitor.on("insight.erroring", on_alert)
            until(lambda: cluster.scheduler._broker._topics.get(TOPIC))
            futures = client.map(boom, range(6))
            wait(futures)
            item = until(lambda: insight(monitor, "erroring"))
            assert item["subject"] == "boom" and item["severity"] == "critical"
            assert item["evidence"]["erred"] == 6
            assert item["evidence"]["type"] == "ValueError"
            until(lambda: got)
            alert = got[0]
            assert alert.kind == "insight.erroring" and alert.prefix == "boom"
            assert alert.details["evidence"]["erred"] == 6
            del futures

    def test_skew(self, client: Client) -> None:
        """30 loads of 20 ms and one of 1.6 s: skew of ``load``."""
        with Monitor.attach(client, **FAST) as monitor:
            wait(client.map(load, [0.02] * 30 + [1.6], pure=False))
            item = until(lambda: insight(monitor, "skew"))
            assert item["subject"] == "load"
            assert item["evidence"]["max"] >= 1.6 * 0.95
            assert item["evidence"]["p75"] < 0.5

    def test_hot_prefix(self, client: Client) -> None:
        """``crunch`` sleeps 2.4 s in all, ``inc`` next to nothing: ``crunch``."""
        with Monitor.attach(client, **FAST) as monitor:
            wait(client.map(inc, range(20)))
            wait(client.map(crunch, [0.3] * 8, pure=False))
            item = until(lambda: insight(monitor, "hot-prefix"))
            assert item["subject"] == "crunch" and item["severity"] == "info"
            assert item["evidence"]["compute_share"] > 0.9

    def test_low_parallelism(self, client: Client) -> None:
        """A chain of ten steps of 0.25 s on four threads: low parallelism of
        the cluster, with one thread busy and the rest of the chain waiting."""
        with Monitor.attach(client, **FAST) as monitor:
            x = client.submit(step, 0, pure=False)
            for _ in range(9):
                x = client.submit(step, x, pure=False)
            item = until(lambda: insight(monitor, "low-parallelism"))
            assert item["subject"] == "cluster"
            assert item["evidence"]["threads"] == 4
            assert item["evidence"]["busy_threads"] <= 1
            assert item["evidence"]["waiting"] >= 1
            assert x.result() == 10

    def test_imbalance(self, cluster: LocalCluster, client: Client) -> None:
        """Tasks restricted to one worker while the other idles: imbalance
        naming the busy worker."""
        busy = sorted(cluster.scheduler.workers)[0]
        with Monitor.attach(client, **FAST) as monitor:
            futures = client.map(pinned, [0.25] * 24, workers=[busy], pure=False)
            item = until(lambda: insight(monitor, "imbalance"))
            assert item["subject"] == busy and item["subject_type"] == "worker"
            assert item["evidence"]["idle_workers"] == 1
            wait(futures)


MB = 10**6


class TestResourceKindsOnACluster:
    """The kinds that read sampled memory and per-prefix transfer seconds."""

    def test_memory_pressure(self) -> None:
        """A worker holding 400 MB of results under a 500 MB limit: memory
        pressure naming it, with the scheduler's figures; releasing the
        results makes it go.

        Dask's own spilling, pausing and terminating are off, so that the
        results stay in memory while the figures are compared.
        """
        pytest.importorskip("numpy")
        off = {
            f"distributed.worker.memory.{t}": False
            for t in ("target", "spill", "pause", "terminate")
        }
        with (
            dask.config.set(off),
            make_cluster(
                n_workers=1, threads_per_worker=1, processes=True, memory_limit="500MB"
            ) as cluster,
            Client(cluster) as client,
        ):
            (address,) = cluster.scheduler.workers
            with Monitor.attach(client, **FAST) as monitor:
                futures = client.map(allocate, [50 * MB] * 8, pure=False)
                wait(futures)
                item = until(lambda: insight(monitor, "memory-pressure"))
                assert item["subject"] == address
                assert item["subject_type"] == "worker"
                truth = client.run_on_scheduler(_memory_of)[address]
                evidence = item["evidence"]
                assert evidence["limit_bytes"] == truth["limit"] == 500 * MB
                assert evidence["managed_bytes"] == pytest.approx(400 * MB, rel=0.01)
                assert evidence["managed_bytes"] == truth["managed"]
                # Process memory comes with heartbeats; sampled within a second.
                assert evidence["memory_bytes"] == pytest.approx(
                    truth["process"], rel=0.1
                )
                assert evidence["memory_share"] == pytest.approx(
                    truth["process"] / truth["limit"], rel=0.1
                )
                assert evidence["memory_share"] > 0.7
                severe = evidence["memory_share"] >= 0.8
                assert item["severity"] == ("critical" if severe else "warning")
                assert "Task results" in item["advice"]
                del futures
                until(lambda: insight(monitor, "memory-pressure") is None)
                truth = client.run_on_scheduler(_memory_of)[address]
                assert truth["managed"] < 10 * MB
                assert truth["process"] < 0.6 * truth["limit"]

    def test_transfer_bound(self) -> None:
        """A cheap task on worker B taking 100 MB arrays made on worker A:
        transfer-bound naming its prefix, with the seconds the scheduler
        counts for it.

        Rounds go on until the scheduler counts 1.5 s of fetching, so that a
        fast machine gets there too (with more rounds).
        """
        pytest.importorskip("numpy")
        with (
            make_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            a, b = sorted(cluster.scheduler.workers)
            with Monitor.attach(client, **FAST) as monitor:
                deadline = time.monotonic() + 60
                ran = 0
                while (
                    client.run_on_scheduler(_durations_of)
                    .get("peek", {})
                    .get("transfer", 0.0)
                    < 1.5
                ):
                    assert time.monotonic() < deadline
                    xs = client.map(allocate, [100 * MB] * 2, workers=[a], pure=False)
                    wait(xs)
                    wait(client.map(peek, xs, workers=[b], pure=False))
                    ran += len(xs)
                    del xs
                truth = client.run_on_scheduler(_durations_of)["peek"]
                item = until(
                    lambda: (
                        (i := insight(monitor, "transfer-bound"))
                        and i["evidence"]["count"] == ran  # all of them seen
                        and i
                    )
                )
                assert item["subject"] == "peek" and item["subject_type"] == "prefix"
                evidence = item["evidence"]
                assert evidence["transfer_seconds"] == pytest.approx(
                    truth["transfer"], abs=1e-3
                )
                assert evidence["compute_seconds"] == pytest.approx(
                    truth["compute"], abs=1e-3
                )
                assert evidence["transfer_seconds"] > evidence["compute_seconds"]
                assert evidence["count"] == ran


def test_a_healthy_workload_has_nothing_of_note(client: Client) -> None:
    """Tasks of 0.2 s on all threads, memory well under limits: no insight of
    severity warning or above, at any time during the run or after it."""
    seen: list[dict[str, Any]] = []
    with Monitor.attach(client, **FAST) as monitor:
        futures = client.map(healthy, [0.2] * 40, pure=False)
        while not all(f.done() for f in futures):
            seen += monitor.snapshot(flush=True).get("insights", [])
            time.sleep(0.1)
        time.sleep(0.5)
        snap = monitor.snapshot(flush=True)
        seen += snap.get("insights", [])
        assert snap["totals"]["completed"] >= 40
        assert isinstance(snap["insights"], list)  # evaluated, and empty of note
    noted = [(i["kind"], i["severity"], i["message"]) for i in seen]
    assert [n for n in noted if n[1] != "info"] == []


def test_a_replay_of_the_run_has_the_same_insights(
    client: Client, tmp_path: Path
) -> None:
    """A recorded run's replay names the same kinds, subjects and severities
    as the live run (those of the run's history: tiny tasks, errors)."""
    log = tmp_path / "run.dmlog"
    with Monitor.attach(client, **FAST) as monitor:
        monitor.record(str(log))
        wait(client.map(inc, range(1_200)))
        wait(client.map(boom, range(4)))

        def both() -> list[tuple[str, str, str]]:
            items = monitor.snapshot(flush=True)["insights"]
            return sorted((i["kind"], i["subject"], i["severity"]) for i in items)

        live = until(lambda: len(both()) == 2 and both())
        assert monitor.stop_recording()["dropped"] == 0
    replayed = replay(log)["insights"]
    assert sorted((i["kind"], i["subject"], i["severity"]) for i in replayed) == live
    assert {(k, s) for k, s, _ in live} == {("tiny-tasks", "inc"), ("erroring", "boom")}
