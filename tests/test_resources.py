"""Worker resources sampled on a real cluster agree with the scheduler's own
figures; per prefix seconds agree with its per-prefix durations; a recorded
run replays to the same figures."""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from distributed import Client, LocalCluster

from dask_monitor import Monitor, replay
from dask_monitor.replay import export_events

from .conftest import make_cluster

np = pytest.importorskip("numpy")

MB = 10**6


def allocate(nbytes: int) -> Any:
    """A result of ``nbytes`` bytes, touched (so that it is resident)."""
    return np.ones(nbytes // 8)


def add_sums(x: Any, y: Any) -> float:
    return float(x.sum() + y.sum())


def _scheduler_view(dask_scheduler: Any) -> dict[str, Any]:
    """What the scheduler itself reports of each worker (run on the scheduler)."""
    return {
        address: {
            "memory": ws.memory.process,
            "managed": ws.memory.managed,
            "spilled": ws.memory.spilled,
            "limit": ws.memory_limit,
            "cpu": ws.metrics.get("cpu"),
            "paused": ws.status.name == "paused",
        }
        for address, ws in dask_scheduler.workers.items()
    }


def _prefix_durations(dask_scheduler: Any) -> dict[str, Any]:
    """The scheduler's own cumulative seconds per prefix and action."""
    return {
        name: dict(tp.all_durations)
        for name, tp in dask_scheduler.task_prefixes.items()
    }


def _wait_for(
    monitor: Monitor, ok: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    """The first snapshot for which ``ok`` holds (polled); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        snap: dict[str, Any] = monitor.snapshot(flush=True)  # type: ignore[assignment]
        if ok(snap):
            return snap
        if time.monotonic() > deadline:
            pytest.fail(f"not reached in {timeout} s: {snap.get('resources')}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def processes() -> Iterator[LocalCluster]:
    """Two worker processes (own memory each), one thread each, 2 GB limit."""
    with make_cluster(
        n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GB"
    ) as cluster:
        yield cluster


class TestSampling:
    def test_figures_agree_with_the_schedulers_own(
        self, processes: LocalCluster
    ) -> None:
        """Limit, paused, managed memory equal; process memory within 10%."""
        with Client(processes) as client, Monitor.attach(client) as monitor:
            snap = _wait_for(
                monitor,
                lambda s: (
                    len(s["resources"]["workers"]) == 2
                    and all(
                        len(w["history"]["time"]) >= 2
                        for w in s["resources"]["workers"].values()
                    )
                ),
            )
            truth = client.run_on_scheduler(_scheduler_view)
            sampled = snap["resources"]["workers"]
            assert set(sampled) == set(truth)
            for address, row in sampled.items():
                real = truth[address]
                assert row["limit"] == real["limit"] == 2 * 10**9
                assert row["paused"] is real["paused"] is False
                assert row["managed"] == real["managed"]  # idle: nothing moves
                assert row["spilled"] == real["spilled"] == 0
                assert row["memory"] == pytest.approx(real["memory"], rel=0.1)
                assert row["unmanaged"] == row["memory"] - row["managed"]
                assert 0.0 <= row["cpu"] <= 400.0
                assert row["time"] <= time.time()
            cluster = snap["resources"]["cluster"]
            assert cluster["limit"] == 4 * 10**9 and cluster["workers"] == 2
            assert cluster["memory"] == sum(r["memory"] for r in sampled.values())
            assert snap["resources"]["interval"] == 1.0
            times = next(iter(sampled.values()))["history"]["time"]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert all(g >= 0.99 for g in gaps)  # about once a second, not more

    def test_a_200_mb_result_raises_its_workers_memory(
        self, processes: LocalCluster
    ) -> None:
        """Managed memory rises by the result's size, process memory about as much."""
        with Client(processes) as client, Monitor.attach(client) as monitor:
            a, b = sorted(processes.scheduler.workers)
            before = _wait_for(monitor, lambda s: a in s["resources"]["workers"])[
                "resources"
            ]["workers"][a]
            big = client.submit(allocate, 200 * MB, workers=[a], pure=False)
            snap = _wait_for(
                monitor,
                # Managed memory is known at once (the task's report), process
                # memory with the worker's next heartbeat: wait for both.
                lambda s: (
                    s["resources"]["workers"][a]["managed"]
                    >= before["managed"] + 190 * MB
                    and s["resources"]["workers"][a]["memory"]
                    >= before["memory"] + 150 * MB
                ),
            )
            after = snap["resources"]["workers"][a]
            truth = client.run_on_scheduler(_scheduler_view)[a]
            assert after["managed"] - before["managed"] == pytest.approx(
                200 * MB, rel=0.05
            )
            assert after["managed"] == truth["managed"]
            assert after["memory"] - before["memory"] <= 300 * MB
            assert after["memory"] == pytest.approx(truth["memory"], rel=0.1)
            other = snap["resources"]["workers"][b]
            assert other["managed"] < 10 * MB  # the other worker holds nothing
            del big


class TestPrefixSeconds:
    def test_transfer_seconds_of_a_prefix_that_fetches(
        self, processes: LocalCluster
    ) -> None:
        """A task whose input lives on another worker has transfer seconds,
        equal to what the scheduler sums for its prefix; so do compute seconds."""
        with Client(processes) as client, Monitor.attach(client) as monitor:
            a, b = sorted(processes.scheduler.workers)
            x = client.submit(allocate, 50 * MB, workers=[a], pure=False, key="big-1")
            y = client.submit(allocate, 8, workers=[b], pure=False, key="small-1")
            z = client.submit(add_sums, x, y, workers=[b], pure=False, key="add_sums-1")
            z.result()
            snap = monitor.snapshot(flush=True)
            truth = client.run_on_scheduler(_prefix_durations)
            row = snap["prefixes"]["add_sums"]
            assert row["seconds"]["transfer"] > 0
            assert row["seconds"]["transfer"] == pytest.approx(
                truth["add_sums"]["transfer"], abs=1e-5
            )
            for name in ("big", "add_sums"):
                assert snap["prefixes"][name]["seconds"]["compute"] == pytest.approx(
                    truth[name]["compute"], abs=1e-5
                )
            assert snap["prefixes"]["big"]["seconds"]["transfer"] == 0.0
            assert snap["prefixes"]["big"]["nbytes"] == pytest.approx(50 * MB, rel=0.01)
            del x, y, z


class TestReplay:
    def test_a_recorded_run_replays_to_the_same_resources_and_seconds(
        self, tmp_path: Path
    ) -> None:
        """Samples and per prefix seconds read back from the log equal the live ones."""
        path = tmp_path / "run.dmlog"
        with make_cluster() as cluster, Client(cluster) as client:
            with dask.config.set({"monitor.record": str(path)}):
                monitor = Monitor.attach(client, interval="50ms")
            futures = client.map(allocate, [MB] * 20, pure=False)
            total = client.submit(lambda xs: sum(float(x.sum()) for x in xs), futures)
            total.result()
            _wait_for(
                monitor,
                lambda s: (
                    len(s["resources"]["cluster"].get("history", {}).get("time", []))
                    >= 3
                ),
            )
            stats = monitor.stop_recording()
            assert stats is not None and stats["dropped"] == 0
            live = monitor.snapshot(flush=True)
            monitor.detach()
        snap = replay(path)
        assert live["prefixes"]["allocate"]["seconds"]["compute"] > 0
        for name, row in snap["prefixes"].items():
            assert row["seconds"] == live["prefixes"][name]["seconds"]
            assert row["nbytes"] == live["prefixes"][name]["nbytes"]
        # The live plugin kept sampling after the recording stopped: compare
        # the live history up to the replay's last round.
        res, live_res = snap["resources"], live["resources"]
        last = res["cluster"]["time"]
        assert set(res["workers"]) == set(live_res["workers"])
        for address, row in res["workers"].items():
            history = live_res["workers"][address]["history"]
            kept = sum(t <= last for t in history["time"])
            assert kept >= 3
            assert row["history"] == {k: v[:kept] for k, v in history.items()}
        cluster = live_res["cluster"]["history"]
        kept = sum(t <= last for t in cluster["time"])
        assert res["cluster"]["history"] == {k: v[:kept] for k, v in cluster.items()}
        # The samples export as a table: one row per worker and round.
        out, fmt, rows = export_events(path, tmp_path / "r.csv", kind="resources")
        with open(out, newline="") as f:
            table = list(csv.DictReader(f))
        assert fmt == "csv" and len(table) == rows == 2 * kept
        assert {r["address"] for r in table} == set(res["workers"])
        assert sorted({float(r["timestamp"]) for r in table}) == cluster["time"][:kept]
