"""Prometheus metrics on the scheduler's own /metrics, scraped over HTTP."""

from __future__ import annotations

import urllib.request
from typing import Any

import dask
import pytest
from distributed import Client, wait

from dask_monitor import Monitor
from dask_monitor.sinks import prometheus
from dask_monitor.sinks.prometheus import MonitorCollector, prometheus_settings

from .conftest import make_cluster

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families


def fail(x: int) -> int:
    raise ValueError(x)


def scrape(cluster: Any) -> dict[str, Any]:
    port = cluster.scheduler.http_server.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def make_prefix_fn(i: int) -> Any:
    def fn(x: int) -> int:
        return x + i

    fn.__name__ = f"step{i:02d}"
    fn.__qualname__ = fn.__name__
    return fn


def test_metrics_on_the_schedulers_endpoint() -> None:
    """The dask_monitor_* families are there, with bounded prefix labels."""
    with (
        dask.config.set({"monitor.prometheus.top-prefixes": 3}),
        make_cluster(n_workers=1) as cluster,
        Client(cluster) as client,
    ):
        assert not prometheus.registered()
        with Monitor.attach(client, interval="20ms") as monitor:
            assert prometheus.registered()
            futures = []
            for i in range(6):
                futures += client.map(make_prefix_fn(i), range(5 + i), pure=False)
            client.gather(futures)
            bad = client.map(fail, range(3))
            wait(bad)
            monitor.snapshot(flush=True)
            families = scrape(cluster)
        # Detaching removed the plugin, and its collector with it.
        assert not prometheus.registered()
        after = scrape(cluster)
    assert not any(name.startswith("dask_monitor") for name in after)
    for name in (
        "dask_monitor_events",
        "dask_monitor_events_dropped",
        "dask_monitor_events_merged",
        "dask_monitor_flush_seconds",
        "dask_monitor_tasks_completed",
        "dask_monitor_tasks_erred",
        "dask_monitor_task_duration_seconds",
        "dask_monitor_throughput_tasks_per_second",
        "dask_monitor_alerts",
    ):
        assert name in families, sorted(families)
    completed = {
        s.labels["prefix"]: s.value
        for s in families["dask_monitor_tasks_completed"].samples
        if s.name.endswith("_total")
    }
    # Three labels of their own (the busiest prefixes) and "other": bounded.
    assert len(completed) == 4 and "other" in completed
    assert sum(completed.values()) == sum(5 + i for i in range(6))
    assert completed["step05"] == 10
    erred = {
        s.labels["prefix"]: s.value
        for s in families["dask_monitor_tasks_erred"].samples
        if s.name.endswith("_total")
    }
    assert sum(erred.values()) == 3
    histogram = families["dask_monitor_task_duration_seconds"]
    assert histogram.type == "histogram"
    assert {s.labels["prefix"] for s in histogram.samples} <= set(completed)
    gauge = families["dask_monitor_task_duration_quantile_seconds"]
    quantiles = {s.labels["quantile"] for s in gauge.samples}
    assert quantiles == {"0.5", "0.9", "0.99"}
    assert {s.labels["prefix"] for s in gauge.samples} <= set(completed) - {"other"}
    events = families["dask_monitor_events"].samples[0].value
    assert events > 0
    # Each task's creation took its first move with it.
    assert families["dask_monitor_events_merged"].samples[0].value >= 10
    # Nothing duplicates distributed's per-prefix state totals.
    assert "dask_scheduler_prefix_state_totals" in families
    assert not any("state" in name for name in families if "monitor" in name)


def test_collector_reads_nothing_without_a_snapshot() -> None:
    """No snapshot yet: no metrics, no error."""
    assert list(MonitorCollector(lambda: None).collect()) == []


def test_settings() -> None:
    """monitor.prometheus: enabled and top-prefixes, validated."""
    assert prometheus_settings({"enabled": False}) == {
        "enabled": False,
        "top_prefixes": 20,
    }
    with pytest.raises(ValueError, match="top-prefixes"):
        prometheus_settings({"top-prefixes": 0})
    with pytest.raises(ValueError, match="unknown"):
        prometheus_settings({"port": 1})


def test_registered_once_per_process() -> None:
    """Two sources: one collector; it goes away with the last source."""
    from prometheus_client import REGISTRY

    before = len(list(REGISTRY._collector_to_names))
    undo1 = prometheus.register_source(lambda: None)
    undo2 = prometheus.register_source(lambda: None)
    assert len(list(REGISTRY._collector_to_names)) == before + 1
    undo1()
    assert prometheus.registered()
    undo2()
    undo2()
    assert not prometheus.registered()
    assert len(list(REGISTRY._collector_to_names)) == before


def test_insights_gauge_on_the_schedulers_endpoint() -> None:
    """dask_monitor_insights{kind,severity} counts the active insights of each
    pair on the real /metrics: every known pair is there (0 when none),
    unknown kinds and severities are folded into ``other``, and the series
    drop to 0 when the insights go."""
    from dask_monitor.testing import make_insight, make_snapshot

    hostile = "<img src=x onerror=alert(1)>"
    active = [
        make_insight("memory-pressure", "critical", "tcp://127.0.0.1:1"),
        make_insight("tiny-tasks", "warning", "inc"),
        make_insight("tiny-tasks", "warning", "dec"),
        make_insight("tiny-tasks", "info", "add"),
        make_insight(hostile, "warning", "x"),  # a kind from nowhere
        make_insight("skew", "bogus", "y"),  # a severity from nowhere
    ]
    current: dict[str, Any] = {"snapshot": make_snapshot(seed=1, insights=active)}
    with make_cluster(n_workers=1) as cluster:
        undo = prometheus.register_source(lambda: current["snapshot"])
        try:
            families = scrape(cluster)
            current["snapshot"] = make_snapshot(seed=1, insights=[])
            cleared = scrape(cluster)
            bare = dict(make_snapshot(seed=1))
            bare.pop("insights", None)  # a monitor computing no insights
            current["snapshot"] = bare
            absent = scrape(cluster)
        finally:
            undo()

    def values(families: dict[str, Any]) -> dict[tuple[str, str], float]:
        return {
            (s.labels["kind"], s.labels["severity"]): s.value
            for s in families["dask_monitor_insights"].samples
        }

    got = values(families)
    assert got["memory-pressure", "critical"] == 1
    assert got["tiny-tasks", "warning"] == 2
    assert got["tiny-tasks", "info"] == 1
    assert got["other", "warning"] == 1
    assert got["skew", "other"] == 1
    assert sum(got.values()) == len(active)
    known = {
        (k, s)
        for k in prometheus.INSIGHT_KINDS
        for s in ("info", "warning", "critical")
    }
    assert known <= set(got)
    assert set(got) - known == {("other", "warning"), ("skew", "other")}
    assert all(hostile not in kind for kind, _ in got)
    after = values(cleared)
    assert set(after) == known and not any(after.values())
    assert "dask_monitor_insights" not in absent


def test_the_gauge_knows_every_kind_the_engine_reports() -> None:
    """The gauge's own kind labels are the engine's kinds (sinks do not import
    observers, so the list is written twice and checked here)."""
    from dask_monitor.observers.insights import KINDS
    from dask_monitor.sinks.prometheus import INSIGHT_KINDS

    assert set(INSIGHT_KINDS) == set(KINDS)


def make_nap(name: str) -> Any:
    def nap(seconds: float) -> float:
        import time

        time.sleep(seconds)
        return seconds

    nap.__name__ = nap.__qualname__ = name
    return nap


def histogram_of(families: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A prefix's ``le -> count``, ``_count`` and ``_sum`` from a scrape."""
    family = families["dask_monitor_task_duration_seconds"]
    out: dict[str, Any] = {"buckets": {}}
    for s in family.samples:
        if s.labels["prefix"] != prefix:
            continue
        if s.name.endswith("_bucket"):
            out["buckets"][s.labels["le"]] = s.value
        else:
            out[s.name.rsplit("_", 1)[1]] = s.value
    return out


def test_duration_histogram_counts_what_the_tasks_slept() -> None:
    """Each ``le`` bucket on the real /metrics counts the completions whose
    duration is at most ``le`` (known from what each task was told to sleep,
    with at least 18 ms of head room under the next bound), ``_count`` counts
    them all, and ``_sum`` is the durations' sum."""
    from dask_monitor.snapshot import DURATION_BUCKETS

    # Bounds 0.03, 0.1 and 0.3 s; a task takes its sleep and a little more.
    naps = [0.012] * 6 + [0.04] * 4 + [0.12] * 3
    with (
        make_cluster(n_workers=1, threads_per_worker=2) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as monitor,
    ):
        futures = client.map(make_nap("nap"), naps, pure=False)
        assert sorted(client.gather(futures)) == sorted(naps)
        snapshot = monitor.snapshot(flush=True)
        got = histogram_of(scrape(cluster), "nap")
    d = snapshot["prefixes"]["nap"]["durations"]
    assert got["count"] == len(naps) == d["count"]
    le = {float(k): v for k, v in got["buckets"].items()}
    assert set(le) == {*DURATION_BUCKETS, float("inf")}
    values = [le[b] for b in sorted(le)]
    assert values == sorted(values)  # cumulative
    for bound in sorted(le):
        assert le[bound] == sum(n <= bound for n in naps), bound
    assert sum(naps) <= got["sum"] <= sum(naps) + 0.05 * len(naps)
    assert got["sum"] == pytest.approx(d["mean"] * d["count"], rel=1e-9)


def test_counters_never_go_down_when_prefixes_change_places() -> None:
    """With one label of its own, a prefix counted under ``other`` that
    becomes the busiest stays there: between two scrapes no counter or
    bucket goes down, and the labels stay bounded."""

    def samples(families: dict[str, Any]) -> dict[Any, float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for name in (
                "dask_monitor_tasks_completed",
                "dask_monitor_task_duration_seconds",
            )
            for s in families[name].samples
        }

    with (
        dask.config.set({"monitor.prometheus.top-prefixes": 1}),
        make_cluster(n_workers=1) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as monitor,
    ):
        client.gather(client.map(make_nap("slow"), [0.04] * 6, pure=False))
        client.gather(client.map(make_prefix_fn(0), range(3), pure=False))
        monitor.snapshot(flush=True)
        before = scrape(cluster)
        # The fast prefix, in "other" so far, becomes the busiest by far.
        client.gather(client.map(make_prefix_fn(0), range(3, 40), pure=False))
        monitor.snapshot(flush=True)
        after = scrape(cluster)
    first, second = samples(before), samples(after)
    assert set(first) <= set(second)
    went_down = {k: (v, second[k]) for k, v in first.items() if second[k] < v}
    assert not went_down
    prefixes = {
        s.labels["prefix"] for s in after["dask_monitor_task_duration_seconds"].samples
    }
    assert prefixes == {"slow", "other"}
    assert histogram_of(after, "other")["count"] == 40
