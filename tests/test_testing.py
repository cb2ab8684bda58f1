"""The shipped test helpers: a fake clock, synthetic events, a recording
observer, and snapshots that a real pipeline makes."""

from __future__ import annotations

import json
import time

import msgpack
import pytest

from dask_monitor.config import MonitorConfig
from dask_monitor.events import NEW, WorkerStatus
from dask_monitor.pipeline import Pipeline
from dask_monitor.subject import Subject
from dask_monitor.testing import (
    WORKERS,
    EventStream,
    FakeClock,
    RecordingObserver,
    make_insight,
    make_snapshot,
)


class TestFakeClock:
    """The clock moves only when told to."""

    def test_reads_and_advances(self) -> None:
        """Calling it gives the time; advance() moves it and returns the new time."""
        clock = FakeClock(10.0)
        assert clock() == 10.0 == clock()
        assert clock.advance(2.5) == 12.5
        assert clock() == 12.5
        clock.now = 100.0
        assert clock() == 100.0

    def test_drives_a_pipeline(self) -> None:
        """The pipeline reads its time from the fake clock (start, elapsed)."""
        clock = FakeClock(1_000.0)
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        clock.advance(30.0)
        pipeline.process(EventStream.lifecycle("inc-1", 1_000.0, release=False))
        snap = pipeline.snapshot()
        assert snap["started"] == 1_000.0
        assert snap["elapsed"] == 30.0


class TestEventStream:
    """Events in the order Dask reports them, the same every time."""

    def test_lifecycle_follows_dask_order(self) -> None:
        """Creation to forgotten, through processing and memory, one step apart."""
        events = EventStream.lifecycle("inc-1", 1_000.0, step=1.0)
        assert [(e.start, e.finish) for e in events] == [
            (NEW, "released"),
            ("released", "waiting"),
            ("waiting", "processing"),
            ("processing", "memory"),
            ("memory", "released"),
            ("released", "forgotten"),
        ]
        assert [e.timestamp for e in events] == [1_000.0 + i for i in range(6)]
        done = events[3]
        assert done.worker == WORKERS[0]
        assert done.begin is not None and done.end == done.timestamp
        assert done.duration == pytest.approx(done.end - done.begin)
        assert {(e.prefix, e.group) for e in events} == {("inc", "inc-g")}

    def test_lifecycle_variants(self) -> None:
        """Queued, erred, kept in memory, or left released; with a span."""
        queued = EventStream.lifecycle("a-1", queued=True, release=False, span="s")
        assert [e.finish for e in queued] == [
            "released",
            "waiting",
            "queued",
            "processing",
            "memory",
        ]
        assert {e.span for e in queued} == {"s"}
        erred = EventStream.lifecycle("b-1", error="ValueError('x')", forget=False)
        assert [e.finish for e in erred][-2:] == ["erred", "released"]
        assert erred[-2].exception == "ValueError('x')"
        assert erred[-2].exception_type == "ValueError"

    def test_workers_join_and_leave(self) -> None:
        """Worker events carry threads, tasks in flight and whether expected."""
        added = EventStream.workers(5.0, nthreads=4, n=3)
        assert [w.address for w in added] == list(WORKERS[:3])
        assert all(isinstance(w, WorkerStatus) and w.nthreads == 4 for w in added)
        one = EventStream.add_worker("tcp://w:1", 1.0, nthreads=8)
        assert (one.action, one.nthreads) == ("added", 8)
        gone = EventStream.remove_worker("tcp://w:1", 2.0, processing=3)
        assert (gone.action, gone.processing, gone.expected) == ("removed", 3, False)

    def test_merge_orders_by_time_and_is_stable(self) -> None:
        """Merged streams come in time order; equal times keep stream order."""
        a = EventStream.lifecycle("a-1", 1_000.0, step=1.0)
        b = EventStream.lifecycle("b-1", 1_000.5, step=1.0)
        c = EventStream.lifecycle("c-1", 1_000.0, step=1.0)
        merged = EventStream.merge(a, b, c)
        times = [e.timestamp for e in merged]
        assert times == sorted(times)
        assert len(merged) == len(a) + len(b) + len(c)
        # At t = 1000.0 the first stream's event comes first.
        assert [e.key for e in merged[:2]] == ["a-1", "c-1"]
        assert merged == EventStream.merge(a, b, c)

    def test_chunks_cut_in_order(self) -> None:
        """Chunks are consecutive, of the sizes given (cycled), nothing lost."""
        events = EventStream.lifecycle("a-1") + EventStream.lifecycle("b-1")
        chunks = list(EventStream.chunks(events, [1, 4]))
        assert [len(c) for c in chunks] == [1, 4, 1, 4, 1, 1]
        assert [e for c in chunks for e in c] == events

    def test_workload_is_deterministic_and_in_time_order(self) -> None:
        """The same seed gives the same stream, in time order, 6 or 7 events a
        task (7 if queued)."""
        one = list(EventStream.workload(500, prefixes=4, seed=3))
        assert one == list(EventStream.workload(500, prefixes=4, seed=3))
        assert one != list(EventStream.workload(500, prefixes=4, seed=4))
        times = [e.timestamp for e in one]
        assert times == sorted(times)
        assert 6 < len(one) / 500 < 7
        assert {e.prefix for e in one} == {"p0", "p1", "p2", "p3"}


class TestRecordingObserver:
    """It records what a subject hands it, in order."""

    def test_records_batches_and_events(self) -> None:
        """Batches and single events, task and worker events apart."""
        subject = Subject(raise_errors=True)
        rec = RecordingObserver()
        events = [
            *EventStream.workers(1_000.0, n=1),
            *EventStream.lifecycle("inc-1", release=False),
            *EventStream.lifecycle("bad-1", error="ValueError('x')"),
        ]
        with subject.subscribed(rec):
            subject.notify_batch(events[:3])
            subject.notify_batch(events[3:])
        subject.notify_batch(events)  # unsubscribed: not recorded
        assert [len(b) for b in rec.batches] == [3, len(events) - 3]
        assert rec.events == events
        assert rec.workers == events[:1]
        assert rec.tasks == events[1:]
        assert [(e.key, e.finish) for e in rec.finished] == [
            ("inc-1", "memory"),
            ("bad-1", "erred"),
        ]
        assert rec.keys("forgotten") == ["bad-1"]
        rec.clear()
        assert rec.events == [] and rec.batches == []

    def test_in_a_pipeline(self) -> None:
        """As a pipeline's extra observer it gets every batch and its reset."""
        rec = RecordingObserver("mine")
        pipeline = Pipeline(MonitorConfig(), clock=FakeClock(), observers=[rec])
        pipeline.process(EventStream.lifecycle("inc-1"))
        pipeline.reset()
        assert len(rec.tasks) == 6
        assert rec.resets == 1
        assert "mine" in pipeline.snapshot()["monitor"]["observers"]


NOW = 1_700_000_000.0


def plain(data: object) -> None:
    """Fail unless ``data`` survives JSON and msgpack unchanged."""
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert msgpack.unpackb(msgpack.packb(data), strict_map_key=True) == data


class TestMakeSnapshot:
    """make_snapshot is what a real pipeline makes of a synthetic run."""

    def test_totals_are_the_sums_of_the_prefixes(self) -> None:
        """done + remaining = total, and totals add up over prefixes."""
        snap = make_snapshot(n_prefixes=50, n_workers=7, n_errors=5, seed=3, now=NOW)
        t = snap["totals"]
        assert t["done"] + t["remaining"] == t["total"]
        assert t["done"] == sum(r["done"] for r in snap["prefixes"].values())
        assert t["total"] == sum(r["total"] for r in snap["prefixes"].values())
        assert t["erred"] == sum(e["count"] for e in snap["errors"])
        assert len(snap["prefixes"]) == 50
        assert len(snap["workers"]) == 7
        assert len(snap["errors"]) == 5
        for row in snap["prefixes"].values():
            assert row["done"] + row["remaining"] == row["total"]
            assert sum(row["states"].values()) == row["total"]

    def test_shape_follows_the_arguments(self) -> None:
        """Progress, time, workers' threads and sampled completions as asked."""
        snap = make_snapshot(
            n_prefixes=8, n_workers=3, threads=4, seed=2, progress=0.25,
            now=NOW, elapsed=60.0, seq=7, n_events=50,
        )  # fmt: skip
        t = snap["totals"]
        assert t["done"] / t["total"] == pytest.approx(0.25, abs=0.01)
        assert snap["timestamp"] == NOW
        assert snap["elapsed"] == pytest.approx(60.0)
        assert snap["seq"] == 7
        assert {w["nthreads"] for w in snap["workers"].values()} == {4}
        finished = [e for e in snap["samples"]["recent"] if e["end"] is not None]
        assert len(finished) == 50
        assert all(NOW - 60.0 <= e["timestamp"] <= NOW for e in finished)
        assert snap["throughput"]["total"] == t["done"]

    def test_finished_run(self) -> None:
        """progress=1: nothing left, ETA 0; progress=0: nothing done."""
        done = make_snapshot(seed=1, progress=1.0, now=NOW)["totals"]
        assert done["remaining"] == 0 and done["done"] == done["total"] > 0
        assert done["eta"] == 0.0
        idle = make_snapshot(seed=1, progress=0.0, now=NOW)["totals"]
        assert idle["done"] == 0 and idle["remaining"] == idle["total"] > 0

    def test_is_what_a_pipeline_makes(self) -> None:
        """Every section a pipeline's snapshot has, and nothing else."""
        clock = FakeClock(NOW)
        real = Pipeline(MonitorConfig(), clock=clock)
        real.process(EventStream.lifecycle("inc-1", NOW))
        clock.advance(10.0)
        expected = real.snapshot()
        snap = make_snapshot(seed=4, now=NOW)
        assert set(snap) == set(expected)
        for section in ("totals", "monitor", "throughput", "samples", "alerts"):
            assert set(snap[section]) == set(expected[section])  # type: ignore[literal-required]
        row = next(iter(snap["prefixes"].values()))
        assert set(row) == set(next(iter(expected["prefixes"].values())))

    def test_plain_data(self) -> None:
        """It survives JSON and msgpack unchanged, alerts and spans included."""
        plain(
            make_snapshot(n_errors=4, n_alerts=5, spans=["etl", "ml"], now=NOW, seed=9)
        )

    def test_deterministic(self) -> None:
        """Same arguments, same snapshot; another seed, another run."""
        a = make_snapshot(seed=5, now=NOW, n_alerts=3, spans=["x"])
        assert a == make_snapshot(seed=5, now=NOW, n_alerts=3, spans=["x"])
        assert a != make_snapshot(seed=6, now=NOW, n_alerts=3, spans=["x"])

    def test_successive_snapshots_of_one_run(self) -> None:
        """Same seed and start, later and further: same prefixes, more done,
        the same first bin and more of them."""
        a = make_snapshot(seed=5, now=NOW)
        b = make_snapshot(seed=5, now=NOW + 10.0, elapsed=130.0, seq=2, progress=0.7)
        assert set(a["prefixes"]) == set(b["prefixes"])
        assert a["totals"]["total"] == b["totals"]["total"]
        assert b["totals"]["done"] > a["totals"]["done"]
        assert a["throughput"]["start"] == b["throughput"]["start"]
        assert len(b["throughput"]["counts"]) == len(a["throughput"]["counts"]) + 10
        assert a["samples"]["recent"][-1]["timestamp"] < b["timestamp"]

    def test_rejects_bad_progress(self) -> None:
        """progress outside [0, 1] is an error."""
        with pytest.raises(ValueError, match="progress"):
            make_snapshot(progress=1.5)

    def test_alerts_as_asked(self) -> None:
        """n_alerts alerts, oldest first, the last at now, kinds in turn."""
        none = make_snapshot(seed=1, now=NOW)["alerts"]
        assert none["total"] == 0 and none["recent"] == []
        alerts = make_snapshot(seed=1, now=NOW, n_alerts=8)["alerts"]
        assert alerts["total"] == 8 == len(alerts["recent"])
        assert alerts["counts"] == {
            "error-burst": 2,
            "straggler": 2,
            "stall": 2,
            "worker-lost": 2,
        }
        stamps = [a["timestamp"] for a in alerts["recent"]]
        assert stamps == sorted(stamps) and stamps[-1] == NOW

    def test_many_errors_raise_real_alerts(self) -> None:
        """Thousands of errors trip the built-in error-burst rule by themselves."""
        alerts = make_snapshot(
            n_prefixes=100, n_workers=10, n_errors=40, seed=2, now=NOW
        )["alerts"]
        assert alerts["counts"].get("error-burst", 0) >= 1
        assert (
            alerts["rules"]["ErrorBurstRule"]["fired"]
            == alerts["counts"]["error-burst"]
        )
        # The rest: prefixes failing repeatedly, raised as critical insights.
        assert set(alerts["counts"]) == {"error-burst", "insight.erroring"}
        assert alerts["total"] == sum(
            rule["fired"] for rule in alerts["rules"].values()
        )

    def test_spans(self) -> None:
        """Tasks belong to the spans named, in turn by prefix."""
        snap = make_snapshot(seed=2, now=NOW, spans=["etl", "ml", "etl"])
        spans = snap["spans"]
        assert sorted(row["name"] for row in spans.values()) == ["etl", "etl", "ml"]
        assert sum(row["total"] for row in spans.values()) == snap["totals"]["total"]

    def test_insights_as_asked(self) -> None:
        """insights= sets the snapshot's insights (plain data, copies of the
        ones given); make_insight fills in the contract's fields."""
        given = [make_insight("memory-pressure", "critical", "tcp://10.0.0.1:8786")]
        snap = make_snapshot(seed=1, now=NOW, insights=given)
        assert snap["insights"] == given  # type: ignore[typeddict-item]
        assert snap["insights"][0] is not given[0]  # type: ignore[typeddict-item]
        json.dumps(snap)
        insight = given[0]
        assert set(insight) == {
            "kind",
            "severity",
            "subject",
            "subject_type",
            "message",
            "evidence",
            "advice",
            "link",
            "since",
        }
        assert insight["subject_type"] == "worker"
        assert "tcp://10.0.0.1:8786" in insight["message"]
        assert insight["link"].startswith("https://")
        assert make_insight(subject="inc")["subject_type"] == "prefix"

    def test_largest_benchmark_size_builds(self) -> None:
        """10,000 prefixes and 100 workers (benchmarks/panel_update.py) build,
        every prefix in the snapshot."""
        t0 = time.perf_counter()
        snap = make_snapshot(10_000, 100, n_errors=20, seed=1, progress=0.3, now=NOW)
        seconds = time.perf_counter() - t0
        print(f"\nmake_snapshot, 10,000 prefixes and 100 workers: {seconds:.2f} s")
        assert len(snap["prefixes"]) == 10_000
        assert snap["prefixes_folded"] == 0
        assert len(snap["workers"]) == 100
        assert len(snap["errors"]) == 20
