"""Errors, retries and restarts are history: real clusters, checked against
what the client and the scheduler saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dask
from distributed import Client, LocalCluster, span, wait

from dask_monitor import Monitor, replay
from dask_monitor.panel.components import (
    Errors,
    PrefixProgress,
    StaticFeed,
    Throughput,
)
from dask_monitor.text import format_line, format_summary
from tests.workloads import fail_if_odd, flaky, inc

from .conftest import make_cluster, prefix_states, snapshot_states

T = TypeVar("T")


def until(condition: Callable[[], T], timeout: float = 30.0) -> T:
    """Poll ``condition`` until it is truthy; its value (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def no_tasks(scheduler: Any, prefix: str) -> bool:
    """Whether the scheduler forgot every task of ``prefix``."""
    return not any(ts.prefix.name == prefix for ts in scheduler.tasks.values())


def panel_row(snapshot: Any, prefix: str) -> dict[str, Any]:
    """The progress bar of ``prefix`` as the panel's data source holds it."""
    bars = PrefixProgress(StaticFeed(snapshot))
    bars.update()
    data = bars.source.data
    i = list(data["name"]).index(prefix)
    return {field: values[i] for field, values in data.items()}


class TestErredHistory:
    """A prefix's erred tasks stay on its bar after Dask forgot them."""

    def test_erred_segment_survives_the_release(self, cluster: LocalCluster) -> None:
        """The bar's erred segment (panel source) still counts the futures that
        raised once they are released and forgotten; same in the span view."""
        scheduler = cluster.scheduler
        with Client(cluster) as client, Monitor.attach(client) as monitor:
            with span("failing"):
                futures = client.map(fail_if_odd, range(20))
            wait(futures)
            raised = sum(f.status == "error" for f in futures)
            assert raised == 10
            del futures
            until(lambda: no_tasks(scheduler, "fail_if_odd"))
            snap = monitor.snapshot(flush=True)
            views = [snap, monitor.snapshot(span="failing", flush=True)]
            for view in views:
                row = view["prefixes"]["fail_if_odd"]
                assert row["states"] == {}  # Dask forgot them all
                bar = panel_row(view, "fail_if_odd")
                assert bar["erred"] == f"{raised:,}"
                width = bar["erred_right"] - bar["erred_left"]
                assert abs(width - raised / row["total"]) < 1e-9
                assert bar["done"] == f"{20 - raised:,}"


class TestRetries:
    """Attempts that raised and that Dask retried are counted, not hidden."""

    def test_retried_tasks_are_counted_and_their_exception_shown(
        self, cluster: LocalCluster, tmp_path: Path
    ) -> None:
        """Ten tasks failing once each with retries=3: ten retries per prefix,
        group and in total, no erred task, all done, and an error row names
        the exception that caused the retries."""
        scheduler = cluster.scheduler
        with Client(cluster) as client, Monitor.attach(client) as monitor:
            futures = client.map(flaky, range(10), marks=str(tmp_path), retries=3)
            assert client.gather(futures) == list(range(10))
            # Each task really raised once (its marker file) and then succeeded.
            assert len(list(tmp_path.iterdir())) == 10
            snap = monitor.snapshot(flush=True)
            row = snap["prefixes"]["flaky"]
            assert row["retried"] == 10
            assert row["erred"] == 0
            assert row["done"] == row["total"] == 10
            assert snapshot_states(snap)["flaky"] == {"memory": 10}
            assert snapshot_states(snap) == prefix_states(scheduler)
            assert snap["totals"]["retried"] == 10
            assert sum(g["retried"] for g in snap["groups"].values()) == 10
            [error] = [e for e in snap["errors"] if e["prefix"] == "flaky"]
            assert error["type"] == "ValueError"
            assert error["count"] == error["retried"] == 10
            assert "first attempt at" in error["exception"]
            assert "retried 10" in format_line(snap)
            assert "10 retried" in format_summary(snap)
            bar = panel_row(snap, "flaky")
            assert bar["retried"] == "10"
            assert bar["counts"].endswith("\u21bb10")  # beside the bar
            del futures


class TestCausedBy:
    """Tasks that erred because a dependency erred name their root cause."""

    def test_dependency_failures_are_grouped_under_their_root_cause(
        self, cluster: LocalCluster
    ) -> None:
        """Dependents of failing tasks form one error row caused by the
        failing prefix and its exception type, as the client saw it."""
        with Client(cluster) as client, Monitor.attach(client) as monitor:
            roots = client.map(fail_if_odd, [1, 3, 5])
            dependents = client.map(inc, roots)
            wait(dependents)
            seen = {type(f.exception()).__name__ for f in dependents}
            assert seen == {"ValueError"}  # what the client got
            snap = monitor.snapshot(flush=True)
            rows = {(e["prefix"], e["type"]): e for e in snap["errors"]}
            assert ("inc", "unknown") not in rows
            own = rows["fail_if_odd", "ValueError"]
            assert own["count"] == 3 and own["caused_by"] is None
            caused = rows["inc", "caused by fail_if_odd: ValueError"]
            assert caused["count"] == 3
            cause = caused["caused_by"]
            assert cause is not None
            assert cause["prefix"] == "fail_if_odd" and cause["type"] == "ValueError"
            assert cause["key"] in {str(f.key) for f in roots}
            assert "caused by fail_if_odd: ValueError" in format_summary(snap)
            errors = Errors(StaticFeed(snap))
            errors.update()
            assert "caused by fail_if_odd: ValueError" in errors.source.data["type"]
            del roots, dependents


class TestRestart:
    """client.restart() is a boundary: history stays, live state starts over."""

    def test_restart_keeps_history_and_states_match_after(self, tmp_path: Path) -> None:
        """Counts, errors, alerts and throughput survive a restart, which is
        recorded; removed workers are not listed; later work matches the
        scheduler's own counts; a replay of the run's log agrees."""
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 20}),
            make_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
            # Insights alert on a timer of their own (up to a second after
            # the errors): off, so the alerts compared are those of the rules.
            Monitor.attach(client, insights={"enabled": False}) as monitor,
        ):
            scheduler = cluster.scheduler
            log = tmp_path / "run.dmlog"
            monitor.record(str(log))
            good = client.map(inc, range(30))
            bad = client.map(fail_if_odd, range(24))
            wait(good + bad)
            raised = sum(f.status == "error" for f in bad)
            before = monitor.snapshot(flush=True)
            assert before["totals"]["erred"] == raised == 12
            assert before["alerts"]["counts"].get("error-burst", 0) >= 1
            old_workers = set(scheduler.workers)
            t0 = time.time()
            client.restart()
            t1 = time.time()
            after = monitor.snapshot(flush=True)
            t = after["totals"]
            for field in ("completed", "erred", "retried", "done"):
                assert t[field] == before["totals"][field], field
            assert t["completed"] == 42
            assert t["remaining"] == 0 and t["total"] == t["done"]
            assert after["errors"] == before["errors"]
            assert after["alerts"]["counts"] == before["alerts"]["counts"]
            assert after["alerts"]["recent"] == before["alerts"]["recent"]
            assert after["throughput"]["total"] == before["throughput"]["total"]
            assert sum(after["throughput"]["counts"]) == sum(
                before["throughput"]["counts"]
            )
            assert after["prefixes"]["fail_if_odd"]["erred"] == 12
            assert snapshot_states(after) == prefix_states(scheduler) == {}
            [restart] = after["restarts"]
            assert t0 <= restart <= t1
            until(lambda: len(scheduler.workers) == 2)
            after = monitor.snapshot(flush=True)
            running = {
                a for a, w in after["workers"].items() if w["status"] == "running"
            }
            assert running == set(scheduler.workers)
            assert not old_workers & set(after["workers"])
            marker = Throughput(StaticFeed(after))
            marker.update()
            assert list(marker.restarts.data["time"]) == [restart * 1000.0]

            again = client.map(inc, range(100, 110))
            more = client.map(fail_if_odd, range(100, 104))
            wait(again + more)
            snap = monitor.snapshot(flush=True)
            assert snapshot_states(snap) == prefix_states(scheduler)
            assert snap["prefixes"]["inc"]["states"] == {"memory": 10}
            t = snap["totals"]
            assert t["completed"] == 42 + 12
            assert t["erred"] == 12 + 2
            assert t["total"] == t["done"] + t["remaining"]
            stats = monitor.stop_recording()
            assert stats is not None and stats["dropped"] == 0
            replayed = replay(log)
            [again_restart] = replayed["restarts"]
            assert abs(again_restart - restart) < 1.0
            for field in ("completed", "erred", "done", "remaining", "total"):
                assert replayed["totals"][field] == snap["totals"][field], field
            assert replayed["errors"] == list(snap["errors"])  # msgpack: tuples
            assert snapshot_states(replayed) == snapshot_states(snap)
            assert set(replayed["workers"]) == set(snap["workers"])
            del good, bad, again, more
