"""Insights: each kind's thresholds, the hysteresis, the timer and the alerts.

Kinds computed from task events are driven through a real pipeline with
synthetic events and a fake clock; the kinds that read the data helper's
fields (``resources``, ``prefixes[p]["seconds"]``) get synthetic snapshots,
as does the engine's hysteresis, whose figures a test must set exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from dask_monitor.config import ConfigError, InsightsSettings, MonitorConfig
from dask_monitor.events import NEW, Event
from dask_monitor.observers.errors import cause_line
from dask_monitor.observers.insights import (
    CHECKS,
    KINDS,
    Facts,
    Finding,
    InsightsEngine,
)
from dask_monitor.pipeline import Pipeline
from dask_monitor.testing import WORKERS, FakeClock
from dask_monitor.text import evidence_items

from .conftest import Stream

A, B = WORKERS[0], WORKERS[1]


def make_pipeline(clock: FakeClock, **insights: Any) -> Pipeline:
    """A pipeline on ``clock`` with ``monitor.insights`` overridden."""
    config = MonitorConfig.from_config(insights=insights)
    return Pipeline(config, clock=clock, raise_errors=True)


def insights_of(pipeline: Pipeline, kind: str | None = None) -> list[dict[str, Any]]:
    """The snapshot's insights (of ``kind``), after a tick at the clock's time."""
    pipeline.tick()
    items = pipeline.snapshot()["insights"]
    return [i for i in items if kind is None or i["kind"] == kind]


def completions(
    stream: Stream, prefix: str, durations: list[float], t: float = 1_000.0
) -> list[Event]:
    """Tasks of ``prefix`` that ran for ``durations`` (kept in memory)."""
    events: list[Event] = []
    for i, d in enumerate(durations):
        events += stream.lifecycle(
            f"{prefix}-{i}", t, step=0.0, duration=d, release=False
        )
    return events


def prefix_row(**fields: Any) -> dict[str, Any]:
    """A snapshot's prefix row with the fields a check reads."""
    row: dict[str, Any] = {"done": 100, "total": 100, "remaining": 0, "erred": 0}
    row["durations"] = {"count": 100, "p50": 0.5, "mean": 0.5, "max": 0.6}
    row.update(fields)
    return row


def snapshot(**sections: Any) -> dict[str, Any]:
    """A synthetic snapshot: empty sections unless given."""
    base: dict[str, Any] = {
        "totals": {"remaining": 0},
        "prefixes": {},
        "prefixes_folded": 0,
        "workers": {},
        "errors": [],
        "alerts": {"recent": []},
    }
    base.update(sections)
    return base


def tiny(p50: float, count: int = 5_000) -> dict[str, Any]:
    """A snapshot with one prefix ``inc`` of ``count`` tasks of median ``p50``."""
    durations = {"count": count, "p50": p50, "mean": p50, "max": p50}
    return snapshot(prefixes={"inc": prefix_row(durations=durations)})


def kinds(engine: InsightsEngine) -> dict[tuple[str, str], str]:
    """``(kind, subject) -> severity`` of what the engine shows."""
    return {(i["kind"], i["subject"]): i["severity"] for i in engine.snapshot()}


class TestTinyTasks:
    """``tiny-tasks``: median compute below ``tiny-task`` over ``tiny-count`` tasks."""

    def test_many_short_tasks_are_a_warning_with_the_overhead_share(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """1,000 tasks of 5 ms: a warning naming the prefix, its count, p50
        and the share of each task's time Dask's ~1 ms overhead takes."""
        pipeline = make_pipeline(clock)
        pipeline.process(completions(stream, "inc", [0.005] * 1_000))
        (item,) = insights_of(pipeline, "tiny-tasks")
        assert item["severity"] == "warning" and item["subject"] == "inc"
        assert item["subject_type"] == "prefix"
        evidence = item["evidence"]
        assert evidence["count"] == 1_000
        assert evidence["p50"] == pytest.approx(0.005, rel=0.02)
        assert evidence["overhead_share"] == pytest.approx(1 / 6, rel=0.02)
        assert item["link"].startswith("https://docs.dask.org/")
        assert "inc" in item["message"] and "5 ms" in item["message"]

    def test_below_the_overhead_itself_is_critical(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Tasks of 0.3 ms: Dask spends more on each than it computes: critical."""
        pipeline = make_pipeline(clock)
        pipeline.process(completions(stream, "inc", [0.0003] * 1_000))
        (item,) = insights_of(pipeline, "tiny-tasks")
        assert item["severity"] == "critical"
        assert "tasks of 300 \u00b5s (median)" in item["message"]

    @pytest.mark.parametrize(
        ("n", "seconds"), [(999, 0.005), (1_000, 0.011)], ids=["few", "long-enough"]
    )
    def test_not_below_either_threshold(
        self, clock: FakeClock, stream: Stream, n: int, seconds: float
    ) -> None:
        """999 tasks of 5 ms, or 1,000 of 11 ms: no tiny-tasks insight."""
        pipeline = make_pipeline(clock)
        pipeline.process(completions(stream, "inc", [seconds] * n))
        assert insights_of(pipeline, "tiny-tasks") == []

    def test_thresholds_are_settings(self, clock: FakeClock, stream: Stream) -> None:
        """``tiny-task: 50ms`` and ``tiny-count: 10``: 10 tasks of 20 ms qualify."""
        pipeline = make_pipeline(clock, tiny_task="50ms", tiny_count=10)
        pipeline.process(completions(stream, "inc", [0.02] * 10))
        assert [i["subject"] for i in insights_of(pipeline, "tiny-tasks")] == ["inc"]


class TestHysteresis:
    """On above a threshold, off only below a lower one and after ``release``."""

    def test_on_through_a_dip_then_off_once_clear_for_release(self) -> None:
        """p50 9 ms: on; 11 ms (above the 10 ms threshold, below 12 ms): stays
        on; 13 ms: still shown for ``release`` seconds, then gone."""
        engine = InsightsEngine(InsightsSettings(release=5.0))
        engine.evaluate(tiny(0.009), 100.0)
        assert kinds(engine) == {("tiny-tasks", "inc"): "warning"}
        engine.evaluate(tiny(0.011), 101.0)
        assert kinds(engine) == {("tiny-tasks", "inc"): "warning"}
        assert engine.snapshot()[0]["evidence"]["p50"] == 0.011  # updated
        engine.evaluate(tiny(0.013), 102.0)
        engine.evaluate(tiny(0.013), 106.0)
        assert kinds(engine) == {("tiny-tasks", "inc"): "warning"}
        engine.evaluate(tiny(0.013), 107.0)
        assert kinds(engine) == {}

    def test_a_return_before_release_keeps_it_on_since_the_start(self) -> None:
        """Clear for less than ``release``, then back: one insight, its ``since``
        the first time it turned on."""
        engine = InsightsEngine(InsightsSettings(release=5.0))
        engine.evaluate(tiny(0.005), 100.0)
        engine.evaluate(tiny(0.02), 101.0)
        engine.evaluate(tiny(0.005), 104.0)
        engine.evaluate(tiny(0.005), 110.0)
        (item,) = engine.snapshot()
        assert item["since"] == 100.0

    def test_never_on_above_the_on_threshold(self) -> None:
        """11 ms from the start: the lower "off" threshold does not turn it on."""
        engine = InsightsEngine()
        engine.evaluate(tiny(0.011), 100.0)
        assert engine.snapshot() == []

    def test_a_sustained_kind_shows_only_after_hold(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Low parallelism is shown once it lasted ``hold``; a moment of full
        parallelism in between starts the wait again."""
        engine = InsightsEngine(InsightsSettings(hold=10.0))
        low = narrow_snapshot(busy=1)
        engine.evaluate(low, 100.0)
        engine.evaluate(low, 109.0)
        assert engine.snapshot() == []
        engine.evaluate(narrow_snapshot(busy=4), 110.0)
        engine.evaluate(low, 111.0)
        engine.evaluate(low, 120.0)
        assert engine.snapshot() == []
        engine.evaluate(low, 121.0)
        (item,) = engine.snapshot()
        assert item["kind"] == "low-parallelism" and item["since"] == 111.0


def narrow_snapshot(busy: int, waiting: int = 10) -> dict[str, Any]:
    """Two workers of two threads, ``busy`` threads busy, tasks waiting."""
    workers = {
        A: worker_row(min(busy, 2)),
        B: worker_row(max(0, busy - 2)),
    }
    return snapshot(workers=workers, totals={"remaining": busy + waiting})


def worker_row(processing: int, nthreads: int = 2) -> dict[str, Any]:
    """A running worker with ``processing`` tasks, as busy lately."""
    return {
        "status": "running",
        "nthreads": nthreads,
        "processing": processing,
        "utilisation": min(processing, nthreads) / nthreads,
    }


class TestTimer:
    """Evaluated from aggregates on a timer, never per event."""

    def test_at_most_once_per_check_interval(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Ten batches and snapshots within a second: one evaluation; the
        next second, one more."""
        pipeline = make_pipeline(clock)
        for i in range(10):
            pipeline.process(completions(stream, f"p{i}", [0.1]))
            pipeline.snapshot()
            pipeline.tick()
            clock.advance(0.09)
        assert pipeline.insights.evaluations == 1
        clock.advance(0.2)
        pipeline.tick()
        assert pipeline.insights.evaluations == 2

    def test_a_tick_evaluates_without_readers(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """No snapshot asked for: the tick evaluates (alerts must not wait)."""
        pipeline = make_pipeline(clock)
        pipeline.process(completions(stream, "inc", [0.0003] * 1_000))
        pipeline.tick()
        assert pipeline.insights.evaluations == 1
        assert pipeline.alert_log.counts["insight.tiny-tasks"] == 1

    def test_idle_ticks_do_not_evaluate_again(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Nothing changed and nothing waits on a hold or release: ticks cost
        a comparison."""
        pipeline = make_pipeline(clock)
        pipeline.process(completions(stream, "inc", [0.1] * 3))
        pipeline.tick()
        clock.advance(30.0)  # past the time rates and utilisation still move
        pipeline.tick()
        evaluations = pipeline.insights.evaluations
        for _ in range(5):
            clock.advance(2.0)
            pipeline.tick()
        assert pipeline.insights.evaluations == evaluations

    def test_a_replay_evaluates_without_ticks(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """A pipeline fed a recorded run (no tick) has the insights at its end."""
        config = MonitorConfig.from_config()
        pipeline = Pipeline(config, clock=clock, live=False, raise_errors=True)
        events = completions(stream, "inc", [0.0003] * 1_000)
        for i in range(0, len(events), 500):
            pipeline.process(events[i : i + 500])
            clock.advance(0.1)
        kinds = [(i["kind"], i["subject"]) for i in pipeline.snapshot()["insights"]]
        assert kinds == [("tiny-tasks", "inc")]

    def test_disabled(self, clock: FakeClock, stream: Stream) -> None:
        """``monitor.insights.enabled: false``: no insights, no insight rule."""
        pipeline = make_pipeline(clock, enabled=False)
        pipeline.process(completions(stream, "inc", [0.0003] * 1_000))
        assert insights_of(pipeline) == []
        assert pipeline.insights.evaluations == 0
        assert not any(r.kind == "insight" for r in pipeline.rules)


class TestSkew:
    """``skew``: the slowest task above 1.5x the p75 once 75% of the prefix is done."""

    def test_one_slow_task_among_quick_ones(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """29 tasks of 0.1 s and one of 3 s: skew of that prefix, with its figures."""
        pipeline = make_pipeline(clock)
        pipeline.process(completions(stream, "load", [0.1] * 29 + [3.0]))
        (item,) = insights_of(pipeline, "skew")
        assert item["subject"] == "load" and item["severity"] == "warning"
        evidence = item["evidence"]
        assert evidence["max"] == pytest.approx(3.0, rel=0.02)
        assert evidence["p75"] == pytest.approx(0.1, rel=0.02)
        assert evidence["ratio"] == pytest.approx(30, rel=0.05)
        assert evidence["done_share"] == 1.0

    def test_not_before_three_quarters_are_done(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """The same durations with 15 more tasks waiting (67% done): no skew yet."""
        pipeline = make_pipeline(clock)
        waiting = [
            stream.task(f"load-w{i}", NEW, "waiting", 1_000.0) for i in range(15)
        ]
        pipeline.process(waiting + completions(stream, "load", [0.1] * 29 + [3.0]))
        assert insights_of(pipeline, "skew") == []

    @pytest.mark.parametrize(
        ("slow", "settings"),
        [(0.14, {"skew_seconds": 0}), (0.9, {})],
        ids=["under-factor", "under-seconds"],
    )
    def test_below_the_factor_or_the_margin(
        self,
        clock: FakeClock,
        stream: Stream,
        slow: float,
        settings: dict[str, Any],
    ) -> None:
        """1.4x the p75, or 0.8 s above it (``skew-seconds`` is 1 s): no skew."""
        pipeline = make_pipeline(clock, **settings)
        pipeline.process(completions(stream, "load", [0.1] * 29 + [slow]))
        assert insights_of(pipeline, "skew") == []

    def test_names_the_straggler_alerts_of_the_prefix(self) -> None:
        """Straggler alerts about the prefix are counted in the evidence."""
        durations = {"count": 30, "p50": 0.1, "mean": 0.2, "max": 3.0}
        alerts = {
            "recent": [
                {"kind": "straggler", "prefix": "load"},
                {"kind": "straggler", "prefix": "other-prefix"},
            ]
        }
        snap = snapshot(prefixes={"load": prefix_row(durations=durations)})
        snap["alerts"] = alerts
        facts = Facts(snap, InsightsSettings(), lambda prefix, q: 0.1)
        (finding,) = CHECKS["skew"](facts)
        assert finding.evidence["straggler_alerts"] == 1


class TestErroring:
    """``erroring``: a prefix failing repeatedly, with its root cause."""

    def fail(self, stream: Stream, prefix: str, n: int, ok: int = 0) -> list[Event]:
        events: list[Event] = []
        for i in range(n):
            events += stream.lifecycle(
                f"{prefix}-{i}", step=0.0, error=f"ValueError('bad {i}')", forget=False
            )
        return events + completions(stream, prefix, [0.1] * ok)

    def test_two_failures_are_not_repeated(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Two failures (``min-errors`` is 3): nothing."""
        pipeline = make_pipeline(clock)
        pipeline.process(self.fail(stream, "parse", 2))
        assert insights_of(pipeline, "erroring") == []

    def test_a_few_failures_among_many_successes_are_a_warning(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """3 of 10 failed: a warning with the exception type and text."""
        pipeline = make_pipeline(clock)
        pipeline.process(self.fail(stream, "parse", 3, ok=7))
        (item,) = insights_of(pipeline, "erroring")
        assert item["severity"] == "warning" and item["subject"] == "parse"
        evidence = item["evidence"]
        assert evidence["failures"] == 3 and evidence["erred"] == 3
        assert evidence["erred_share"] == pytest.approx(0.3)
        assert evidence["type"] == "ValueError"
        assert "ValueError" in item["message"]

    def test_mostly_failing_is_critical_and_raises_one_alert(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """All of them failed: critical, and one ``insight.erroring`` alert
        about the prefix; more failures within the cooldown raise no other."""
        pipeline = make_pipeline(clock)
        pipeline.process(self.fail(stream, "parse", 5))
        (item,) = insights_of(pipeline, "erroring")
        assert item["severity"] == "critical"
        (alert,) = [
            a
            for a in pipeline.snapshot()["alerts"]["recent"]
            if a["kind"] == "insight.erroring"
        ]
        assert alert["prefix"] == "parse" and alert["severity"] == "error"
        assert alert["details"]["evidence"]["failures"] == 5
        assert alert["details"]["link"] == item["link"]
        clock.advance(2.0)
        pipeline.process(self.fail(stream, "parse2", 5))
        insights_of(pipeline)
        counts = pipeline.snapshot()["alerts"]["counts"]
        assert counts["insight.erroring"] == 2  # one per prefix

    def test_no_second_alert_where_the_error_burst_rule_alerted(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """A prefix failing outright already raised an ``error-burst`` alert
        about it: the critical insight stays on show but pages no one twice."""
        pipeline = make_pipeline(clock)
        pipeline.process(self.fail(stream, "parse", 25))
        (item,) = insights_of(pipeline, "erroring")
        assert item["severity"] == "critical"
        recent = pipeline.snapshot()["alerts"]["recent"]
        assert any(
            a["kind"] == "error-burst" and a["prefix"] == "parse" for a in recent
        )
        assert not [a for a in recent if a["kind"] == "insight.erroring"]

    def test_dependents_count_for_their_root_cause(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Tasks that failed because a ``parse`` task did: counted for
        ``parse`` (its subject), not an insight of their own."""
        pipeline = make_pipeline(clock)
        events = self.fail(stream, "parse", 3)
        cause = cause_line("parse-0", "parse", "ValueError")
        for i in range(4):
            events.append(
                stream.task(
                    f"agg-{i}",
                    "waiting",
                    "erred",
                    1_001.0,
                    exception="ValueError('bad 0')",
                    traceback=cause,
                )
            )
        pipeline.process(events)
        (item,) = insights_of(pipeline, "erroring")
        assert item["subject"] == "parse"
        assert item["evidence"]["dependents"] == 4


class TestHotPrefix:
    """``hot-prefix``: one prefix with most of the run's compute time."""

    def test_the_prefix_with_most_compute(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """8 s of ``train`` against 2 s of ``load``: info about ``train`` (80%)."""
        pipeline = make_pipeline(clock)
        pipeline.process(
            completions(stream, "train", [1.0] * 8)
            + completions(stream, "load", [0.5] * 4)
        )
        (item,) = insights_of(pipeline, "hot-prefix")
        assert item["subject"] == "train" and item["severity"] == "info"
        assert item["evidence"]["compute_share"] == pytest.approx(0.8, rel=0.02)

    @pytest.mark.parametrize(
        "durations",
        [{"train": [1.0] * 8}, {"train": [0.06] * 10, "load": [0.01] * 10}],
        ids=["one-prefix", "under-a-second"],
    )
    def test_not_with_one_prefix_or_little_compute(
        self, clock: FakeClock, stream: Stream, durations: dict[str, list[float]]
    ) -> None:
        """One prefix only, or less than a second of compute: nothing to say."""
        pipeline = make_pipeline(clock)
        for prefix, values in durations.items():
            pipeline.process(completions(stream, prefix, values))
        assert insights_of(pipeline, "hot-prefix") == []

    def test_reads_compute_seconds_when_the_snapshot_has_them(self) -> None:
        """``prefixes[p]["seconds"]["compute"]`` wins over mean x count."""
        prefixes = {
            "a": prefix_row(seconds={"compute": 9.0, "transfer": 0.0, "disk": 0.0}),
            "b": prefix_row(seconds={"compute": 1.0, "transfer": 0.0, "disk": 0.0}),
        }
        facts = Facts(snapshot(prefixes=prefixes), InsightsSettings())
        (finding,) = CHECKS["hot-prefix"](facts)
        assert finding.subject == "a" and finding.evidence["compute_share"] == 0.9


class TestParallelism:
    """``low-parallelism`` and ``imbalance`` from the workers' live state."""

    def test_a_serial_chain_is_low_parallelism(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """One task processing, ten waiting on it, four threads: after ``hold``
        seconds a warning about the cluster."""
        pipeline = make_pipeline(clock, hold=10)
        events: list[Event] = [*stream.workers(1_000.0, nthreads=2, n=2)]
        events += [stream.task(f"step-{i}", NEW, "waiting", 1_000.0) for i in range(11)]
        events.append(stream.task("step-0", "waiting", "processing", 1_000.0, worker=A))
        pipeline.process(events)
        assert insights_of(pipeline, "low-parallelism") == []
        clock.advance(5.0)
        assert insights_of(pipeline, "low-parallelism") == []
        clock.advance(6.0)
        (item,) = insights_of(pipeline, "low-parallelism")
        assert item["subject"] == "cluster" and item["subject_type"] == "cluster"
        assert item["evidence"]["threads"] == 4
        assert item["evidence"]["busy_threads"] == 1
        assert item["evidence"]["waiting"] == 10

    def test_the_tail_of_a_run_is_not_low_parallelism(self) -> None:
        """The last task running, none waiting: nothing is held back."""
        facts = Facts(narrow_snapshot(busy=1, waiting=0), InsightsSettings())
        assert list(CHECKS["low-parallelism"](facts)) == []

    def test_work_pinned_to_one_worker_is_imbalance(
        self, clock: FakeClock, stream: Stream
    ) -> None:
        """Ten tasks processing on A, none on B: imbalance naming A."""
        pipeline = make_pipeline(clock, hold=2)
        events: list[Event] = [*stream.workers(990.0, nthreads=2, n=2)]
        for i in range(10):
            events.append(stream.task(f"pin-{i}", NEW, "waiting", 1_000.0))
            events.append(
                stream.task(f"pin-{i}", "waiting", "processing", 1_000.0, worker=A)
            )
        pipeline.process(events)
        clock.advance(1.0)  # the hold starts
        assert insights_of(pipeline, "imbalance") == []
        clock.advance(1.0)
        assert insights_of(pipeline, "imbalance") == []
        clock.advance(1.0)
        (item,) = insights_of(pipeline, "imbalance")
        assert item["subject"] == A and item["subject_type"] == "worker"
        assert item["evidence"]["idle_workers"] == 1
        assert item["evidence"]["utilisation_share"] == pytest.approx(1.0)
        assert insights_of(pipeline, "low-parallelism") == []

    def test_balanced_workers_are_no_imbalance(self) -> None:
        """Both workers busy: nothing."""
        facts = Facts(narrow_snapshot(busy=4), InsightsSettings())
        assert list(CHECKS["imbalance"](facts)) == []


def resources(**workers: dict[str, Any]) -> dict[str, Any]:
    """``snapshot["resources"]`` as the contract has it, for these workers."""
    rows = {}
    for address, fields in workers.items():
        row = {
            "time": 100.0,
            "memory": 0,
            "managed": 0,
            "unmanaged": 0,
            "spilled": 0,
            "limit": 1_000,
            "cpu": 50.0,
            "network_in": 0.0,
            "network_out": 0.0,
            "paused": False,
            "history": {},
        }
        row.update(fields)
        rows[address] = row
    return {"interval": 1.0, "workers": rows, "cluster": {}}


def memory(share: float, **fields: Any) -> dict[str, Any]:
    """A snapshot with one worker ``w`` using ``share`` of its 1,000-byte limit."""
    used = int(share * 1_000)
    row = {"memory": used, "managed": used // 2, "unmanaged": used // 2, **fields}
    return snapshot(resources=resources(w=row))


class TestMemoryPressure:
    """``memory-pressure`` from ``snapshot["resources"]`` (Dask's 60/70/80%)."""

    @pytest.mark.parametrize(
        ("share", "fields", "severity"),
        [
            (0.65, {}, None),
            (0.75, {}, "warning"),
            (0.85, {}, "critical"),
            (0.3, {"paused": True}, "critical"),
            (0.3, {"spilled": 500}, "warning"),
        ],
        ids=["under-spill", "spill", "pause", "paused", "spilling"],
    )
    def test_thresholds(
        self, share: float, fields: dict[str, Any], severity: str | None
    ) -> None:
        """65%: nothing; 75% or spilling: warning; 85% or paused: critical."""
        engine = InsightsEngine()
        engine.evaluate(memory(share, **fields), 100.0)
        expected = {} if severity is None else {("memory-pressure", "w"): severity}
        assert kinds(engine) == expected

    def test_off_only_under_the_target(self) -> None:
        """Shown at 75%: still at 65%; gone once under 60% for ``release``."""
        engine = InsightsEngine(InsightsSettings(release=3.0))
        engine.evaluate(memory(0.75), 100.0)
        engine.evaluate(memory(0.65), 101.0)
        engine.evaluate(memory(0.65), 110.0)
        assert ("memory-pressure", "w") in kinds(engine)
        engine.evaluate(memory(0.5), 111.0)
        engine.evaluate(memory(0.5), 114.0)
        assert kinds(engine) == {}

    def test_evidence_and_advice(self) -> None:
        """The evidence has the worker's figures; unmanaged memory gets its advice."""
        engine = InsightsEngine()
        engine.evaluate(memory(0.9, managed=100, unmanaged=800, spilled=50), 100.0)
        (item,) = engine.snapshot()
        assert item["subject_type"] == "worker"
        assert item["evidence"]["memory_share"] == pytest.approx(0.9)
        assert item["evidence"]["spilled_bytes"] == 50
        assert "unmanaged" in item["advice"]
        assert "worker-memory" in item["link"]

    def test_spilled_results_are_results_not_unmanaged_memory(self) -> None:
        """A worker that spilled most of its results holds less managed than
        unmanaged memory: the advice still names task results, not leaks."""
        engine = InsightsEngine()
        snap = memory(0.6, managed=200, unmanaged=400, spilled=500)
        engine.evaluate(snap, 100.0)
        (item,) = engine.snapshot()
        assert "Task results" in item["advice"]
        assert "(60%) in memory, 500 B on disk." in item["message"]

    def test_nothing_before_resources_are_sampled(self) -> None:
        """No ``resources`` in the snapshot (or none yet): no memory insight."""
        engine = InsightsEngine()
        engine.evaluate(snapshot(), 100.0)
        engine.evaluate(snapshot(resources={"interval": 1.0, "workers": {}}), 101.0)
        assert engine.snapshot() == []


def transfer(compute: float, seconds: float) -> dict[str, Any]:
    """A snapshot with prefix ``join``'s compute and transfer seconds."""
    row = prefix_row(
        seconds={"compute": compute, "transfer": seconds, "disk": 0.0},
        nbytes=10**9,
    )
    return snapshot(prefixes={"join": row})


class TestTransferBound:
    """``transfer-bound`` from ``prefixes[p]["seconds"]``."""

    def test_more_fetching_than_computing(self) -> None:
        """3 s fetching, 2 s computing: a warning with both figures."""
        engine = InsightsEngine()
        engine.evaluate(transfer(2.0, 3.0), 100.0)
        (item,) = engine.snapshot()
        assert (item["kind"], item["subject"]) == ("transfer-bound", "join")
        assert item["evidence"]["ratio"] == pytest.approx(1.5)
        assert item["evidence"]["output_bytes"] == 10**9

    @pytest.mark.parametrize(
        ("compute", "seconds"), [(2.0, 1.9), (0.1, 0.9)], ids=["less", "too-little"]
    )
    def test_not_below_the_ratio_or_the_minimum(
        self, compute: float, seconds: float
    ) -> None:
        """Less fetching than computing, or under a second of it: nothing."""
        engine = InsightsEngine()
        engine.evaluate(transfer(compute, seconds), 100.0)
        assert engine.snapshot() == []

    def test_hysteresis(self) -> None:
        """Shown at 1.5x: stays at 0.9x; goes at 0.5x once clear for ``release``."""
        engine = InsightsEngine(InsightsSettings(release=1.0))
        engine.evaluate(transfer(2.0, 3.0), 100.0)
        engine.evaluate(transfer(2.0, 1.8), 102.0)
        assert kinds(engine)
        engine.evaluate(transfer(4.0, 2.0), 103.0)
        engine.evaluate(transfer(4.0, 2.0), 104.0)
        assert kinds(engine) == {}

    def test_nothing_without_the_seconds(self) -> None:
        """A snapshot without ``seconds`` (before the data is merged): nothing."""
        engine = InsightsEngine()
        engine.evaluate(snapshot(prefixes={"join": prefix_row()}), 100.0)
        assert engine.snapshot() == []


class TestSnapshotShape:
    """The contract: plain data, most severe first, every field there."""

    def test_most_severe_first_and_plain(self) -> None:
        """Critical, then warning, then info; every item JSON- and msgpack-safe."""
        snap = memory(0.9)
        snap["prefixes"] = {
            "inc": prefix_row(
                durations={"count": 5_000, "p50": 0.005, "mean": 0.005, "max": 0.01}
            ),
            "big": prefix_row(
                durations={"count": 10, "p50": 5.0, "mean": 5.0, "max": 5.0}
            ),
        }
        engine = InsightsEngine()
        engine.evaluate(snap, 100.0)
        items = engine.snapshot()
        assert [i["severity"] for i in items] == ["critical", "warning", "info"]
        assert [i["kind"] for i in items] == [
            "memory-pressure",
            "tiny-tasks",
            "hot-prefix",
        ]
        fields = {
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
        assert all(set(i) == fields for i in items)
        Stream.assert_plain(items)

    def test_every_kind_has_a_check_and_a_docs_link(self) -> None:
        """The eight kinds of the issue, each linked to Dask's documentation."""
        assert set(KINDS) == {
            "tiny-tasks",
            "imbalance",
            "low-parallelism",
            "memory-pressure",
            "transfer-bound",
            "hot-prefix",
            "skew",
            "erroring",
        }
        for kind in KINDS:
            link = Finding(kind, "info", "x", "prefix", "", {}, "").link
            assert link.startswith(
                ("https://docs.dask.org/", "https://distributed.dask.org/")
            )

    def test_every_figure_of_the_evidence_reads_with_its_unit(self) -> None:
        """Each kind's evidence names its seconds, bytes and shares so that
        the views print them as durations, sizes and percentages; only a
        ratio is a bare number."""
        durations = {"count": 30, "p50": 0.1, "mean": 0.2, "max": 3.0}
        errors = [{"prefix": "parse", "count": 5, "type": "ValueError"}]
        pinned = snapshot(
            workers={A: worker_row(2), B: worker_row(0)}, totals={"remaining": 10}
        )
        provoking = {
            "tiny-tasks": tiny(0.0005),
            "imbalance": pinned,
            "low-parallelism": narrow_snapshot(busy=1),
            "memory-pressure": memory(0.9, spilled=50),
            "transfer-bound": transfer(2.0, 3.0),
            "hot-prefix": snapshot(
                prefixes={
                    "a": prefix_row(seconds={"compute": 9.0}),
                    "b": prefix_row(seconds={"compute": 1.0}),
                }
            ),
            "skew": snapshot(prefixes={"load": prefix_row(durations=durations)}),
            "erroring": snapshot(
                errors=errors, prefixes={"parse": prefix_row(done=10, erred=5)}
            ),
        }
        assert set(provoking) == set(KINDS)
        for kind, snap in provoking.items():
            facts = Facts(snap, InsightsSettings(), lambda prefix, q: 0.1)
            (finding,) = CHECKS[kind](facts)
            shown = dict(evidence_items(finding.evidence, limit=100))
            for name, value in finding.evidence.items():
                if isinstance(value, bool) or not isinstance(value, float):
                    continue
                text = shown[name.replace("_", " ")]
                unit = re.fullmatch(r"[-\d.,]+ ?(%|[nµm]?s|[KMGT]?i?B)", text)
                assert unit or name == "ratio", (kind, name, text)

    def test_a_failing_check_is_isolated(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A check that raises is counted; the other kinds still report."""

        def broken(facts: Facts) -> Iterator[Finding]:
            raise RuntimeError("boom")
            yield  # pragma: no cover

        engine = InsightsEngine(checks={**CHECKS, "broken": broken})
        engine.evaluate(tiny(0.005), 100.0)
        engine.evaluate(tiny(0.005), 101.0)
        assert engine.errors == {"broken": 2}
        assert kinds(engine) == {("tiny-tasks", "inc"): "warning"}

    def test_reset_forgets(self) -> None:
        """``Pipeline.reset``: no insight is left."""
        engine = InsightsEngine()
        engine.evaluate(tiny(0.005), 100.0)
        engine.reset()
        assert engine.snapshot() == []


class TestSettings:
    """``monitor.insights.*``: validated, with bounds."""

    def test_defaults_from_monitor_yaml(self) -> None:
        """The YAML defaults are the dataclass's."""
        assert MonitorConfig.from_config().insights == InsightsSettings()

    @pytest.mark.parametrize(
        ("setting", "value"),
        [
            ("skew_factor", 0.5),
            ("tiny_task", "2h"),
            ("tiny_count", 0),
            ("min_errors", True),
            ("hold", -1),
            ("check_interval", 0),
            ("unknown", 1),
        ],
    )
    def test_invalid_values_name_the_setting(self, setting: str, value: Any) -> None:
        """An out-of-range or mistyped value raises a ConfigError naming it."""
        with pytest.raises(ConfigError, match=r"monitor\.insights"):
            MonitorConfig.from_config(insights={setting: value})

    def test_round_trip(self) -> None:
        """``to_dict`` and back (an event log's header) keeps the settings."""
        config = MonitorConfig.from_config(insights={"hold": "3s", "skew_factor": 2})
        again = MonitorConfig(**config.to_dict())
        assert again.insights == config.insights
        assert again.insights.hold == 3.0
