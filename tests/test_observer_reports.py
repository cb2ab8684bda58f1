"""Observers of your own report back: ``snapshot()["observers"][name]``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import msgpack
from distributed import Client

from dask_monitor import Monitor
from dask_monitor.config import MonitorConfig
from dask_monitor.events import NEW, Event, TaskStatus
from dask_monitor.pipeline import Pipeline
from dask_monitor.snapshot import observer_report
from tests.workloads import inc


def one_task(key: str, t: float = 100.0) -> list[TaskStatus]:
    """The events of one task that completes in 0.5 s."""
    w = "tcp://w:1"
    return [
        TaskStatus(key, "inc", "inc-g", NEW, "waiting", t),
        TaskStatus(key, "inc", "inc-g", "waiting", "processing", t, w),
        TaskStatus(
            key, "inc", "inc-g", "processing", "memory", t + 0.5, w, 0.5, t, t + 0.5
        ),
    ]


class CountDone:
    """Counts completions; reports them as plain data."""

    def __init__(self) -> None:
        self.done = 0
        self.keys: list[str] = []

    def update_batch(self, events: Sequence[Event]) -> None:
        for e in events:
            if isinstance(e, TaskStatus) and e.finish == "memory":
                self.done += 1
                self.keys.append(e.key)

    def update(self, event: Event) -> None:
        self.update_batch([event])

    def snapshot(self) -> dict[str, Any]:
        return {"done": self.done, "last": self.keys[-3:]}


class Reports:
    """Whatever it is told to report."""

    def __init__(self, name: str, report: Any) -> None:
        self.name = name
        self.value = report

    def update(self, event: Event) -> None:
        pass

    def snapshot(self) -> Any:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class TestObserverReport:
    """What an observer returns is made safe for a snapshot."""

    def test_plain_data_is_kept_and_tuples_become_lists(self) -> None:
        """Plain data passes through; tuples become lists; NaN becomes None."""
        report = observer_report({"a": (1, 2.5, "x", None, True), "b": float("nan")})
        assert report == {"a": [1, 2.5, "x", None, True], "b": None}

    def test_other_objects_are_refused_with_the_reason(self) -> None:
        """A set or a non-str key is no plain data: an error names the type."""
        assert "set" in observer_report({"a": {1, 2}})["error"]
        assert "int" in observer_report({1: "a"})["error"]

    def test_a_report_over_the_cap_is_replaced_by_an_error(self) -> None:
        """A report larger than the cap says how large it was."""
        report = observer_report({"x": "a" * 2000}, max_bytes=1000)
        assert set(report) == {"error"}
        assert "2,008 bytes" in report["error"]

    def test_deep_nesting_is_refused(self) -> None:
        """A report nested without end is refused, not a RecursionError."""
        deep: list[Any] = []
        for _ in range(100):
            deep = [deep]
        assert "deeper" in observer_report(deep)["error"]


class TestPipelineReports:
    """The pipeline shows user observers' reports in its snapshot."""

    def test_an_inline_observer_reports_what_it_counted(self) -> None:
        """An observer called inline (a replay) reports on each snapshot."""
        counter = CountDone()
        pipeline = Pipeline(MonitorConfig(), clock=lambda: 200.0, observers=[counter])
        for i in range(5):
            pipeline.process(one_task(f"inc-{i}"))
        snap = pipeline.snapshot()
        assert snap["observers"] == {
            "CountDone": {"done": 5, "last": ["inc-2", "inc-3", "inc-4"]}
        }
        json.dumps(snap)
        msgpack.packb(snap)

    def test_built_in_observers_and_rules_report_nothing_there(self) -> None:
        """Only extra observers appear: the built-in ones have sections of their own."""
        pipeline = Pipeline(MonitorConfig(), clock=lambda: 200.0)
        pipeline.process(one_task("inc-0"))
        assert pipeline.snapshot()["observers"] == {}

    def test_a_failing_or_unfit_report_breaks_nothing(self) -> None:
        """A raising snapshot() or an unfit one is an error entry; the rest stands."""
        pipeline = Pipeline(
            MonitorConfig(),
            clock=lambda: 200.0,
            observers=[
                Reports("raises", RuntimeError("boom")),
                Reports("unfit", object()),
                Reports("fine", [1, 2]),
            ],
        )
        pipeline.process(one_task("inc-0"))
        reports = pipeline.snapshot()["observers"]
        assert reports["raises"] == {"error": "snapshot() raised RuntimeError"}
        assert "object" in reports["unfit"]["error"]
        assert reports["fine"] == [1, 2]
        assert pipeline.snapshot()["totals"]["completed"] == 1

    def test_a_dispatched_observer_reports_from_its_own_thread(self) -> None:
        """With dispatching, the report is taken on the observer's thread."""
        counter = CountDone()
        pipeline = Pipeline(
            MonitorConfig(), clock=lambda: 200.0, observers=[counter], dispatch=True
        )
        try:
            for i in range(4):
                pipeline.process(one_task(f"inc-{i}"))
            assert asyncio.run(pipeline.settle(5.0))
            assert pipeline.snapshot()["observers"]["CountDone"]["done"] == 4
        finally:
            pipeline.close()


class TestOnACluster:
    """A user observer's report reaches the client."""

    def test_the_client_reads_what_the_observer_counted(self, client: Client) -> None:
        """The count an observer reports equals the futures the client gathered."""
        with Monitor.attach(client, observers=[CountDone()]) as monitor:
            futures = client.map(inc, range(7000, 7025))
            client.gather(futures)
            report = monitor.snapshot(flush=True)["observers"]["CountDone"]
        assert report["done"] == len(futures)
        assert set(report["last"]) <= {f.key for f in futures}
