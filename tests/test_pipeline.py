"""The pipeline: default observers behind one subject, and the snapshot."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from dask_monitor.config import MonitorConfig
from dask_monitor.events import NEW, TaskStatus, WorkerStatus
from dask_monitor.pipeline import Pipeline
from dask_monitor.testing import FakeClock


def lifecycle(
    key: str, prefix: str, t: float, worker: str = "tcp://w:1"
) -> list[TaskStatus]:
    """The transitions of one task that completes in 0.5 s."""
    return [
        TaskStatus(key, prefix, prefix + "-g", NEW, "released", t),
        TaskStatus(key, prefix, prefix + "-g", "released", "waiting", t),
        TaskStatus(key, prefix, prefix + "-g", "waiting", "processing", t, worker),
        TaskStatus(
            key, prefix, prefix + "-g", "processing", "memory", t + 0.5, worker,
            0.5, t, t + 0.5, 8,
        ),
    ]  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestPipeline:
    """Feeding batches of events produces a consistent snapshot."""

    def test_snapshot_counts_a_batch(self, clock: FakeClock) -> None:
        """Ten completed tasks over two prefixes show up in totals and prefixes."""
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        events: list[Any] = [WorkerStatus("tcp://w:1", "added", clock.now, 2)]
        for i in range(10):
            events += lifecycle(
                f"a-{i}" if i < 6 else f"b-{i}", "a" if i < 6 else "b", clock.now
            )
        pipeline.process(events)
        clock.now += 1
        snap = pipeline.snapshot()
        assert snap["totals"]["completed"] == 10
        assert snap["totals"]["done"] == 10
        assert snap["prefixes"]["a"]["states"] == {"memory": 6}
        assert snap["prefixes"]["b"]["durations"]["count"] == 4
        assert snap["workers"]["tcp://w:1"]["completed"] == 10

    def test_snapshot_is_plain_data(self, clock: FakeClock) -> None:
        """The snapshot survives JSON and msgpack round trips unchanged."""
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        pipeline.process(lifecycle("x-1", "x", clock.now))
        pipeline.account(events=4, dropped=0, seconds=0.001)
        snap = pipeline.snapshot()
        assert json.loads(json.dumps(snap)) == snap
        assert msgpack.unpackb(msgpack.packb(snap), strict_map_key=False) == snap

    def test_snapshot_is_cached_until_the_next_batch(self, clock: FakeClock) -> None:
        """Reading twice without new events returns the same object; seq moves on."""
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        pipeline.process(lifecycle("x-1", "x", clock.now))
        first = pipeline.snapshot()
        assert pipeline.snapshot() is first
        pipeline.process(lifecycle("x-2", "x", clock.now))
        second = pipeline.snapshot()
        assert second["seq"] > first["seq"]
        assert second["totals"]["completed"] == 2

    def test_ticks_refresh_figures_that_move_with_the_clock(
        self, clock: FakeClock
    ) -> None:
        """After the work ends, ticks rebuild the snapshot (at most once a
        second) until the rate has fallen to 0; then a tick changes nothing."""
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        start = clock.now
        for second in range(5):
            clock.now = start + second
            pipeline.process(
                [
                    e
                    for i in range(10)
                    for e in lifecycle(f"x-{second}-{i}", "x", start + second)
                ]
            )
        clock.now += 1.0
        busy = pipeline.snapshot()["totals"]
        assert busy["rate"] > 5.0
        assert busy["average_rate"] == pytest.approx(50 / 4.5)
        assert busy["run_seconds"] == pytest.approx(4.5)
        for _ in range(40):  # 10 s of ticks every 250 ms
            clock.now += 0.25
            pipeline.tick()
        after = pipeline.snapshot()
        assert after["totals"]["rate"] == 0.0
        assert after["totals"]["average_rate"] == pytest.approx(50 / 4.5)
        clock.now += 5.0
        pipeline.tick()
        assert pipeline.snapshot() is after

    def test_accounting_shows_drops_and_flush_cost(self, clock: FakeClock) -> None:
        """Events, drops and flush time are reported in the monitor section."""
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        pipeline.account(events=100, dropped=7, seconds=0.002)
        pipeline.account(events=50, dropped=0, seconds=0.004)
        clock.now += 10
        m = pipeline.snapshot()["monitor"]
        assert (m["events"], m["dropped"], m["flushes"]) == (157, 7, 2)
        assert m["flush_max"] == pytest.approx(0.004)
        assert m["overhead"] == pytest.approx(0.006 / 10)

    def test_reset_forgets_aggregates_but_not_accounting(
        self, clock: FakeClock
    ) -> None:
        """After reset the counts start over; the monitor's own totals remain."""
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        pipeline.process(lifecycle("x-1", "x", clock.now))
        pipeline.account(events=4, dropped=0, seconds=0.001)
        pipeline.reset()
        snap = pipeline.snapshot()
        assert snap["totals"]["completed"] == 0
        assert snap["prefixes"] == {}
        assert snap["monitor"]["events"] == 4

    def test_a_raising_user_observer_is_isolated(self, clock: FakeClock) -> None:
        """A user observer that raises is counted; the built-in ones still count."""

        def broken(event: Any) -> None:
            raise RuntimeError("bug")

        pipeline = Pipeline(MonitorConfig(), clock=clock, observers=[broken])
        pipeline.process(lifecycle("x-1", "x", clock.now))
        snap = pipeline.snapshot()
        assert snap["totals"]["completed"] == 1
        assert sum(snap["monitor"]["observer_errors"].values()) == 4


class TestRestart:
    """Pipeline.restart: a boundary in the history, not an eraser."""

    def test_restart_keeps_history_and_records_its_time(self) -> None:
        """Counts, errors, alerts, durations and throughput stay; live
        states go; the restart's time is in the snapshot."""
        clock = FakeClock(1_000.0)
        pipeline = Pipeline(MonitorConfig(), clock=clock)
        events: list[Any] = []
        for i in range(12):
            key = f"bad-{i}"
            events += [
                TaskStatus(key, "bad", "bad-g", NEW, "waiting", 1_000.0),
                TaskStatus(key, "bad", "bad-g", "waiting", "processing", 1_000.0),
                TaskStatus(
                    key, "bad", "bad-g", "processing", "erred", 1_000.1,
                    "tcp://w:1", exception="ValueError('x')",
                ),
            ]  # fmt: skip
        for i in range(5):
            events += lifecycle(f"inc-{i}", "inc", 1_000.0 + i)
        events.append(TaskStatus("inc-9", "inc", "inc-g", NEW, "waiting", 1_006.0))
        clock.now = 1_010.0
        pipeline.process(events)
        pipeline.tick()
        before = pipeline.snapshot()
        assert before["alerts"]["counts"].get("error-burst") == 1
        clock.now = 1_011.0
        pipeline.restart()
        after = pipeline.snapshot()
        assert after["restarts"] == [1_011.0]
        t = after["totals"]
        assert (t["completed"], t["erred"], t["done"]) == (5, 12, 17)
        assert t["remaining"] == 0 and t["total"] == 17 and t["states"] == {}
        assert after["errors"] == before["errors"]
        assert after["alerts"]["counts"] == before["alerts"]["counts"]
        tp, tp0 = after["throughput"], before["throughput"]
        assert tp["total"] == tp0["total"] == 17
        assert sum(tp["counts"]) == sum(tp0["counts"]) == 17
        assert after["prefixes"]["inc"]["durations"]["count"] == 5
        assert after["samples"] == before["samples"]
        pipeline.reset()
        assert pipeline.snapshot()["restarts"] == []


class TestThreads:
    """A reader on another thread never sees or causes a half-updated pipeline."""

    def test_snapshots_from_another_thread_while_batches_are_fed(self) -> None:
        """Thousands of batches fed while a second thread reads snapshots:
        no exception on either side, and every duration is counted."""
        import threading

        now = [1_000.0]
        pipeline = Pipeline(MonitorConfig(), clock=lambda: now[0], raise_errors=True)
        errors: list[BaseException] = []
        stop = threading.Event()

        def read() -> None:
            try:
                while not stop.is_set():
                    pipeline.snapshot()
                    pipeline.snapshot(span="s", missing_ok=True)
            except BaseException as e:  # the reader's failure is the test's
                errors.append(e)

        reader = threading.Thread(target=read)
        reader.start()
        n = 0
        try:
            for b in range(1_500):
                events: list[Any] = []
                for j in range(8):
                    prefix = f"p{(b + j) % 40}"
                    events += lifecycle(f"{prefix}-{b}-{j}", prefix, now[0])
                    n += 1
                pipeline.process(events)
                now[0] += 0.01
        finally:
            stop.set()
            reader.join(30)
        assert not errors, errors[0]
        snap = pipeline.snapshot()
        assert snap["totals"]["completed"] == n
        assert sum(r["durations"]["count"] for r in snap["prefixes"].values()) == n
