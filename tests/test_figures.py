"""Rate, ETA and utilisation on a real cluster, checked against what happened.

Every figure is compared with a measure taken outside the code that computes
it: the scheduler's own per-prefix counts, the client's clock, a recorded run.
Tolerances are wide (a loaded 2-core machine), never exact timings.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, span

from dask_monitor import Monitor, replay
from dask_monitor.config import MonitorConfig
from dask_monitor.panel.components import StaticFeed, TaskStream
from tests.workloads import inc

from .conftest import make_cluster


def nap(x: int, seconds: float) -> int:
    """Sleep ``seconds`` (a task of a known duration, prefix ``nap``)."""
    time.sleep(seconds)
    return x


def _done(cluster: LocalCluster, prefix: str) -> int:
    """Tasks of ``prefix`` in memory, by the scheduler's own count."""
    tp = cluster.scheduler.task_prefixes.get(prefix)
    return 0 if tp is None else int(tp.states.get("memory", 0))


class TestBurstAfterIdle:
    def test_rate_eta_and_average_follow_the_real_run(self) -> None:
        """100 quick tasks, 12 s idle, 300 naps of 0.1 s on 2x2 threads: the
        rate reads the burst's real pace, the ETA early in the burst the time
        that really remained, and after the end the rate falls to ~0 while the
        average is the run's."""
        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="100ms") as monitor,
        ):
            t_first = time.time()
            client.gather(client.map(inc, range(100)))
            time.sleep(12.0)
            n = 300
            t_submit = time.time()
            futures = client.map(nap, range(n), [0.1] * n)
            samples: list[tuple[float, int, dict[str, Any]]] = []
            while _done(cluster, "nap") < n:
                totals = monitor.snapshot()["totals"]
                samples.append((time.time(), _done(cluster, "nap"), totals))
                time.sleep(0.5)
            client.gather(futures)
            t_end = time.time()  # the client's clock: the work is done
            # The scheduler's own completions: the real pace of the burst,
            # from its first finish (a task's length after submission) on.
            started = [s for s in samples if s[1] > 0]
            true_rate = (n - started[0][1]) / (t_end - started[0][0])
            middle = [s[2]["rate"] for s in samples if n * 0.25 <= s[1] <= n * 0.8]
            assert len(middle) >= 3
            assert abs(statistics.median(middle) / true_rate - 1) <= 0.35, (
                middle,
                true_rate,
            )
            early = [
                (t_end - t, s["eta"])
                for t, d, s in samples
                if n * 0.2 <= d <= n * 0.4 and s["eta"] is not None
            ]
            assert early, samples
            errors = [abs(eta / left - 1) for left, eta in early]
            assert statistics.median(errors) <= 0.35, early
            for _, eta in early:
                assert eta > 0
            time.sleep(6.0)
            after = monitor.snapshot(flush=True)["totals"]
            assert after["rate"] < 1.0
            true_average = (100 + n) / (t_end - t_first)
            assert after["average_rate"] is not None
            assert abs(after["average_rate"] / true_average - 1) <= 0.15
            assert after["run_seconds"] is not None
            assert abs(after["run_seconds"] - (t_end - t_first)) <= 1.5
            assert t_end - t_submit > 2.0  # the burst really took a while


class TestSpanPace:
    def test_a_selected_span_reads_its_own_pace(self) -> None:
        """With a span selected while its work runs, the rate is that span's
        real pace (the scheduler's completions over the client's clock)."""
        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="100ms") as monitor,
        ):
            n = 240
            with span("naps"):
                futures = client.map(nap, range(n), [0.1] * n)
            # Until its tasks reached the monitor the span is not known.
            deadline = time.time() + 30
            while not cluster.scheduler.task_prefixes.get("nap"):
                assert time.time() < deadline
                time.sleep(0.01)
            monitor.snapshot(flush=True)
            samples: list[tuple[float, int, float]] = []
            while _done(cluster, "nap") < n:
                view = monitor.snapshot(span="naps")
                samples.append(
                    (time.time(), _done(cluster, "nap"), view["totals"]["rate"])
                )
                time.sleep(0.4)
            client.gather(futures)
            t_end = time.time()
            started = [s for s in samples if s[1] > 0]
            true_rate = (n - started[0][1]) / (t_end - started[0][0])
            middle = [r for _, d, r in samples if n * 0.3 <= d <= n * 0.85]
            assert len(middle) >= 2
            assert abs(statistics.median(middle) / true_rate - 1) <= 0.35, (
                middle,
                true_rate,
            )
            prefix = monitor.snapshot(span="naps")["prefixes"]["nap"]
            assert prefix["done"] == n


class TestUtilisation:
    def test_saturated_threads_read_busy_now(self) -> None:
        """4 threads all busy on 0.3 s tasks for several seconds: each worker's
        utilisation now reads >= 0.8 (busy threads over threads, lately)."""
        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="100ms") as monitor,
        ):
            time.sleep(3.0)  # idle time since the workers appeared
            futures = client.map(nap, range(100), [0.3] * 100)  # ~7.5 s on 4 threads
            deadline = time.time() + 60
            # 72 done: over 5 s saturated, longer than the window (5 s).
            while _done(cluster, "nap") < 72 and time.time() < deadline:
                time.sleep(0.1)
            workers = monitor.snapshot(flush=True)["workers"]
            running = [w for w in workers.values() if w["status"] == "running"]
            assert len(running) == 2
            for row in running:
                assert row["nthreads"] == 2
                assert row["utilisation"] >= 0.8, workers
            client.gather(futures)


class TestReplayOfARecordedRun:
    def test_threads_utilisation_and_lanes(self, tmp_path: Path) -> None:
        """Recorded on a running cluster: the replay knows each worker's threads,
        its whole-run utilisation equals the live one, and the task stream keeps
        one lane per thread (no two rectangles of a lane overlap, but for the
        jitter of Dask's own compute intervals)."""
        path = tmp_path / "run.dmlog"
        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="50ms") as monitor,
        ):
            # Workers run before the recording starts (the header lists
            # them); the tasks are all recorded, so that the whole-run figures
            # of the live run and of its replay cover the same work.
            monitor.record(path)
            client.gather(client.map(inc, range(10)))
            client.gather(client.map(nap, range(40), [0.2] * 40))
            live = monitor.snapshot(flush=True)
            monitor.stop_recording()
        snap = replay(path)
        assert set(snap["workers"]) == set(live["workers"])
        for address, row in live["workers"].items():
            again = snap["workers"][address]
            assert again["nthreads"] == row["nthreads"] == 2
            assert row["utilisation_run"] > 0.3
            # At its last event the replayed run was busy: not 0% as before.
            assert again["utilisation"] > 0.3, again
            assert abs(again["utilisation_run"] - row["utilisation_run"]) <= 0.05, (
                again,
                row,
            )
        stream = TaskStream(StaticFeed(snap), MonitorConfig())
        stream.update()
        data = stream.source.data
        assert len(data["x"]) >= 40
        lanes: dict[tuple[str, float], list[tuple[float, float]]] = {}
        for x, w, y, worker in zip(
            data["x"], data["width"], data["y"], data["worker"], strict=True
        ):
            if w < 50:  # ms: the quick tasks, drawn wider than they ran
                continue
            lanes.setdefault((worker, round(y, 6)), []).append((x - w / 2, x + w / 2))
        assert len(lanes) == 4, lanes  # two threads on each of two workers
        for spans in lanes.values():
            spans.sort()
            for (b0, e0), (b1, e1) in itertools.pairwise(spans):
                # Dask shifts each compute interval by the worker's estimate
                # of its clock offset (``scheduler_delay``), which moves by
                # tens of ms between tasks on a loaded machine: consecutive
                # tasks of one thread may overlap by that much, never by a
                # task (as one lane per worker did).
                overlap = e0 - b1
                assert overlap <= 0.5 * min(e0 - b0, e1 - b1), spans
