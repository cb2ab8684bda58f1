"""Per-span views: each computation's snapshot counts only its own tasks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dask.array as da
import pytest
from distributed import Client, span, wait

from dask_monitor import Monitor, Pipeline, get_plugin, replay
from dask_monitor.events import TaskStatus
from dask_monitor.observers.spans import SpansObserver
from dask_monitor.replay import replay_pipeline
from dask_monitor.testing import FakeClock

from .conftest import make_cluster


def slow_a(x: int) -> int:
    time.sleep(0.01)
    return x


def slow_b(x: int) -> int:
    time.sleep(0.01)
    return x


def _ts(
    key: str,
    prefix: str,
    start: str,
    finish: str,
    t: float,
    span: str,
    duration: float | None = None,
) -> TaskStatus:
    return TaskStatus(
        key, prefix, f"{prefix}-g", start, finish, t, span=span, duration=duration
    )


class TestSpansObserver:
    def test_shared_keys_give_the_views_of_own_keys(self) -> None:
        """Sharing the progress observer's keys changes no view, duplicates
        and recomputations included; the keys are taken once per batch."""
        from dask_monitor.batch import Batch
        from dask_monitor.observers.progress import ProgressObserver

        t = 1_000.0
        events = [
            _ts("a-1", "a", "new", "waiting", t, "s1"),
            _ts("b-1", "b", "new", "waiting", t, "s2"),
            _ts("a-1", "a", "new", "released", t, "s1"),  # a duplicate report
            _ts("a-1", "a", "waiting", "processing", t, "s1"),
            _ts("b-1", "b", "waiting", "processing", t, "s2"),
            _ts("a-1", "a", "processing", "memory", t, "s1", duration=1.0),
            _ts("b-1", "b", "processing", "memory", t, "s2", duration=2.0),
            _ts("a-1", "a", "memory", "released", t + 1, "s1"),  # data lost
            _ts("a-1", "a", "released", "waiting", t + 1, "s1"),
            _ts("a-1", "a", "waiting", "processing", t + 1, "s1"),
            _ts("a-1", "a", "processing", "memory", t + 1, "s1", duration=1.0),
        ]
        progress = ProgressObserver()
        shared = SpansObserver(keys=progress.keys)
        own = SpansObserver()
        for lo, hi in ((0, 2), (2, 3), (3, 7), (7, 11)):
            batch = Batch.from_events(events[lo:hi])
            progress.update_batch(batch)
            shared.update_batch(batch)
            own.update_batch(events[lo:hi])
        assert shared.summary() == own.summary()
        for span_id in ("s1", "s2"):
            assert shared.view([span_id]) == own.view([span_id])
        view = shared.view(["s1"])
        assert view["totals"]["recomputed"] == 1
        assert view["totals"]["total"] == 1
        assert progress.snapshot()["totals"]["recomputed"] == 1

    def test_views_by_id_name_and_nesting(self) -> None:
        """A name selects its spans and the spans nested in them."""
        obs = SpansObserver()
        obs.name_spans({"s1": "etl", "s2": "etl/load", "s3": "ml"})
        events = []
        for i, sp in enumerate(["s1", "s2", "s2", "s3"]):
            events += [
                _ts(f"k{i}", f"p{sp}", "new", "processing", 1.0, sp),
                _ts(f"k{i}", f"p{sp}", "processing", "memory", 2.0, sp, 0.5),
            ]
        obs.update_batch(events)
        assert obs.view(obs.ids("etl"))["totals"]["done"] == 3
        assert obs.view(obs.ids("etl/load"))["totals"]["done"] == 2
        assert obs.view(obs.ids("s3"))["totals"]["done"] == 1
        merged = obs.view(obs.ids("etl"))
        assert set(merged["prefixes"]) == {"ps1", "ps2"}
        assert merged["prefixes"]["ps2"]["durations"]["count"] == 2
        assert obs.view(obs.ids("nothing"))["totals"]["total"] == 0

    def test_bounded_to_the_most_recent_spans(self) -> None:
        """Only max_spans spans keep aggregates; the least recently active go."""
        obs = SpansObserver(max_spans=3)
        for i in range(10):
            obs.update_batch([_ts(f"k{i}", "p", "new", "memory", float(i), f"s{i}")])
        assert list(obs.summary()) == ["s9", "s8", "s7"]
        assert obs.evicted == 7

    def test_pipeline_snapshot_for_a_span(self) -> None:
        """Pipeline.snapshot(span=...) narrows totals and prefixes; lists spans."""
        pipeline = Pipeline(clock=lambda: 10.0)
        pipeline.name_spans({"a": "etl", "b": "ml"})
        pipeline.process(
            [
                _ts("x1", "load", "new", "processing", 1.0, "a"),
                _ts("x1", "load", "processing", "memory", 1.0, "a"),
                _ts("y1", "fit", "new", "processing", 1.0, "b"),
                _ts("y2", "fit", "new", "processing", 1.0, "b"),
            ]
        )
        whole = pipeline.snapshot()
        assert set(whole["spans"]) == {"a", "b"}
        assert whole["spans"]["b"]["name"] == "ml"
        etl = pipeline.snapshot(span="etl")
        assert set(etl["prefixes"]) == {"load"}
        assert etl["totals"]["total"] == 1
        assert etl["span"]["ids"] == ["a"]
        assert pipeline.snapshot(span="ml")["totals"]["remaining"] == 2


class TestSpanPace:
    def test_span_view_rates_are_the_spans_own(self) -> None:
        """With a span selected, totals and prefix rates are that span's current
        pace (not 0, not the cluster's), and its throughput series is its own."""
        clock = FakeClock(100.0)
        pipeline = Pipeline(clock=clock)
        pipeline.name_spans({"a": "etl", "b": "ml"})
        for second in range(8):
            t = 100.0 + second
            events = []
            for i in range(10):
                key = f"x{second}-{i}"
                events += [
                    _ts(key, "load", "new", "processing", t, "a"),
                    _ts(key, "load", "processing", "memory", t, "a", 0.1),
                ]
            for i in range(2):
                key = f"y{second}-{i}"
                events += [
                    _ts(key, "fit", "new", "processing", t, "b"),
                    _ts(key, "fit", "processing", "memory", t, "b", 0.5),
                ]
            pipeline.process(events)
            clock.now = t + 1.0
        etl = pipeline.snapshot(span="etl")
        ml = pipeline.snapshot(span="ml")
        assert pipeline.snapshot()["totals"]["rate"] == pytest.approx(12.0, rel=0.05)
        assert etl["totals"]["rate"] == pytest.approx(10.0, rel=0.05)
        assert etl["prefixes"]["load"]["rate"] == pytest.approx(10.0, rel=0.05)
        assert ml["totals"]["rate"] == pytest.approx(2.0, rel=0.05)
        assert sum(etl["throughput"]["counts"]) == 80
        assert etl["totals"]["average_rate"] == pytest.approx(80 / 7.0)
        clock.now = 120.0  # nothing finished for a while
        assert pipeline.snapshot(span="etl")["totals"]["rate"] == 0.0


def test_two_computations_at_once_in_different_spans(tmp_path: Path) -> None:
    """Running concurrently in two spans: each span's snapshot has its own tasks."""
    log = tmp_path / "spans.dmlog"
    with (
        make_cluster() as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="20ms") as monitor,
    ):
        monitor.record(log)
        results: dict[str, object] = {}

        def run(name: str) -> None:
            with span(name):
                if name == "etl":
                    futures = client.map(slow_a, range(40))
                else:
                    futures = client.map(slow_b, range(25))
                wait(futures)
                results[name] = futures

        threads = [threading.Thread(target=run, args=(n,)) for n in ("etl", "ml")]
        for t in threads:
            t.start()
        with span("array"):
            da.ones((40, 40), chunks=10).sum().compute()
        for t in threads:
            t.join()
        etl = monitor.snapshot(flush=True, span="etl")
        ml = monitor.snapshot(span="ml")
        whole = monitor.snapshot()
        monitor.stop_recording()
    assert etl["totals"]["done"] == 40
    assert set(etl["prefixes"]) == {"slow_a"}
    assert ml["totals"]["done"] == 25
    assert set(ml["prefixes"]) == {"slow_b"}
    names = {row["name"] for row in whole["spans"].values()}
    assert {"etl", "ml", "array"} <= names
    assert whole["totals"]["done"] > 65
    # The span names are in the log: a replay answers the same questions.
    pipeline = replay_pipeline(log)
    assert pipeline.snapshot(span="etl")["totals"]["done"] == 40
    assert replay(log)["totals"]["done"] == whole["totals"]["done"]


class TestSpansOnACluster:
    """Span names, unknown spans and fresh span snapshots, with ``distributed.span``."""

    def test_span_snapshot_right_after_the_work_has_all_its_tasks(self) -> None:
        """``snapshot(span=...)`` flushes first: with a flush interval far longer
        than the work, the span still counts every task it ran."""
        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="30s") as monitor,
        ):
            with span("etl"):
                futures = client.map(slow_a, range(30))
                wait(futures)
            etl = monitor.snapshot(span="etl")
            scheduler_done = cluster.scheduler.task_prefixes["slow_a"].states["memory"]
        assert scheduler_done == 30
        assert etl["totals"]["done"] == 30
        assert set(etl["prefixes"]) == {"slow_a"}

    def test_unknown_span_raises_naming_the_known_ones(self) -> None:
        """A typo raises UnknownSpanError (a ValueError) listing known spans;
        a known name still answers."""
        import pytest

        from dask_monitor import UnknownSpanError

        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="20ms") as monitor,
        ):
            with span("etl"):
                wait(client.map(slow_a, range(5)))
            with pytest.raises(UnknownSpanError, match="etl") as info:
                monitor.snapshot(span="elt")
            assert isinstance(info.value, ValueError)
            assert "'elt'" in str(info.value)
            assert monitor.snapshot(span="etl")["totals"]["done"] == 5
            pipeline = get_plugin(cluster.scheduler).pipeline  # type: ignore[union-attr]
            with pytest.raises(UnknownSpanError):
                pipeline.snapshot(span="elt")

    def test_nested_and_repeated_spans_have_full_distinct_names(self) -> None:
        """Nested spans reach the snapshot as "etl/load"; the repeated
        ``default`` spans of separate computations are told apart in ``watch``."""
        from dask_monitor.watch import render, span_labels

        with (
            make_cluster() as cluster,
            Client(cluster) as client,
            Monitor.attach(client, interval="20ms") as monitor,
        ):
            with span("etl"), span("load"):
                wait(client.map(slow_a, range(5)))
            for i in range(3):  # each burst outside a span: a new default span
                keys = [f"burst{i}-{j}" for j in range(3)]  # a task group each
                client.gather(client.map(slow_b, range(3), key=keys))
            snap = monitor.snapshot(flush=True)
            ext = cluster.scheduler.extensions["spans"]
            truth = {
                sid: "/".join(sp.name)
                for sid, sp in ext.spans.items()
                if sid in snap["spans"]
            }
        names = {sid: row["name"] for sid, row in snap["spans"].items()}
        assert names == truth  # the scheduler's own full name paths
        assert "etl/load" in names.values()
        assert list(names.values()).count("default") >= 2
        labels = span_labels(snap["spans"])
        assert len(set(labels.values())) == len(labels)
        assert (
            labels[next(k for k, v in names.items() if v == "etl/load")] == "etl/load"
        )
        frame = render(snap)
        listed = frame.split("Spans")[1]
        for label in list(labels.values())[:5]:
            assert label in listed
