"""Terminal text of a snapshot: live runs, finished runs and empty ones read right."""

from __future__ import annotations

from typing import Any, cast

from dask_monitor import Pipeline
from dask_monitor.events import TaskStatus, WorkerStatus
from dask_monitor.snapshot import Snapshot
from dask_monitor.testing import make_insight, make_snapshot
from dask_monitor.text import format_line, format_summary
from dask_monitor.units import format_duration
from dask_monitor.watch import render, span_labels


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _run(n: int, *, finish: int, live: bool = True, duration: float = 2e-4) -> Snapshot:
    """A pipeline fed ``n`` tasks of 200µs on one worker, ``finish`` of them done."""
    clock = Clock(1_000.0)
    pipeline = Pipeline(clock=clock, live=live)
    events: list[Any] = [WorkerStatus("tcp://w:1", "added", 1_000.0, nthreads=2)]
    for i in range(n):
        key = f"inc-{i}"
        events.append(TaskStatus(key, "inc", "inc-1", "new", "processing", 1_000.0))
    for i in range(finish):
        t = 1_000.0 + (i + 1) * 0.1
        events.append(
            TaskStatus(
                f"inc-{i}",
                "inc",
                "inc-1",
                "processing",
                "memory",
                t,
                worker="tcp://w:1",
                duration=duration,
                begin=t - duration,
                end=t,
            )
        )
    clock.now = 1_000.0 + max(finish, 1) * 0.1
    pipeline.process(events)
    return pipeline.snapshot()


class TestFormatLine:
    """The one-line summary."""

    def test_empty_snapshot_says_no_tasks_yet(self) -> None:
        """No task at all reads "no tasks yet", not "0/0 done (100%)"."""
        line = format_line(Pipeline(clock=lambda: 5.0).snapshot())
        assert "no tasks yet" in line
        assert "0/0" not in line
        assert "100%" not in line

    def test_running_work_shows_pace_and_eta(self) -> None:
        """Work under way: done/total, the current pace and an ETA."""
        line = format_line(_run(10, finish=4))
        assert "4/10 done" in line
        assert "tasks/s" in line
        assert "ETA" in line

    def test_finished_live_run_shows_its_totals(self) -> None:
        """Everything done: tasks done and the average rate; no ETA, no "0ms"."""
        line = format_line(_run(10, finish=10))
        assert "10 tasks done" in line
        assert "average" in line
        assert "ETA" not in line
        assert "0ms" not in line

    def test_one_task_is_singular(self) -> None:
        """One task done reads "1 task done"."""
        assert "1 task done" in format_line(_run(1, finish=1))

    def test_replay_is_finished_even_half_way(self) -> None:
        """A replayed (not live) run shows totals and what was left undone."""
        line = format_line(_run(10, finish=6, live=False))
        assert "6 tasks done" in line
        assert "4 not done" in line
        assert "ETA" not in line


class TestFormatSummary:
    """The multi-line summary."""

    def test_durations_under_a_millisecond_keep_their_value(self) -> None:
        """200µs durations read in µs, not "0ms"."""
        text = format_summary(_run(10, finish=10))
        assert "200\u00b5s" in text
        assert "0ms" not in text

    def test_replay_has_no_flush_cost(self) -> None:
        """A replay's summary leaves out the flush cost it does not reproduce."""
        text = format_summary(_run(10, finish=10, live=False))
        assert "Finished 10 tasks" in text
        assert "flushing" not in text
        assert "Recorded:" in text

    def test_live_summary_keeps_the_monitor_cost(self) -> None:
        """Live, the monitor's own cost is there."""
        assert "flushing" in format_summary(_run(10, finish=10))

    def test_where_the_time_went_one_line_per_top_prefix(self) -> None:
        """One line per prefix, most time first, with its compute, fetching
        (and its share), disk and output figures from the snapshot; no
        section where prefixes have no seconds."""
        snap = make_snapshot(n_prefixes=6, seed=3, transfer={"add": 40.0})
        text = format_summary(snap, top=3)
        section = text.split("Where the time went")[1].split("\n\n")[0]
        lines = section.splitlines()[1:]
        assert len(lines) == 4  # three prefixes and the others summed
        assert lines[0].split()[0] == "add"
        seconds = snap["prefixes"]["add"]["seconds"]
        share = seconds["transfer"] / sum(seconds.values())
        assert (
            f"compute {format_duration(seconds['compute'])}, fetching "
            f"{format_duration(seconds['transfer'])} ({share:.0%}), disk 0s"
        ) in lines[0]
        assert "other prefixes" in lines[-1]
        # Without per-prefix seconds (an older snapshot): no section at all.
        for row in snap["prefixes"].values():
            del row["seconds"]
        assert "Where the time went" not in format_summary(snap, top=3)

    def test_where_the_time_went_keeps_names_safe(self) -> None:
        """A prefix name with terminal controls is shown escaped."""
        snap = make_snapshot(n_prefixes=3, seed=3)
        name = next(iter(snap["prefixes"]))
        snap["prefixes"]["\x1b]0;owned\x07\nfake"] = snap["prefixes"].pop(name)
        text = format_summary(snap)
        assert "\x1b" not in text and "\x07" not in text
        section = text.split("Where the time went")[1]
        assert "\\x1b]0;owned\\x07\\nfake" in section


class TestWatch:
    """``watch``'s frame."""

    def test_spans_of_one_name_are_told_apart(self) -> None:
        """Three ``default`` spans get their id's start; unique names stay bare."""
        spans = {
            "aaaaaaaa-1": {"name": "default"},
            "bbbbbbbb-2": {"name": "default"},
            "cccccccc-3": {"name": "etl/load"},
        }
        labels = span_labels(spans)
        assert labels["aaaaaaaa-1"] == "default (aaaaaaaa)"
        assert labels["bbbbbbbb-2"] == "default (bbbbbbbb)"
        assert labels["cccccccc-3"] == "etl/load"

    def test_frame_lists_distinct_span_names(self) -> None:
        """The frame's span rows are distinct and carry the full name path."""
        snap = cast(dict[str, Any], dict(_run(4, finish=4)))
        snap["spans"] = {
            f"{c * 8}-{i}": {"name": name, "done": 1, "total": 1, "erred": 0}
            for i, (c, name) in enumerate(
                [("a", "default"), ("b", "default"), ("c", "etl/load")]
            )
        }
        frame = render(cast(Snapshot, snap))
        rows = frame.split("Spans")[1].splitlines()[1:]
        names = [r.split("  ")[1].strip() for r in rows if r.strip()]
        assert len(set(names)) == 3
        assert "etl/load" in frame

    def test_finished_prefix_rows_show_durations_not_pace(self) -> None:
        """Finished: prefix rows show the median duration (in µs here), no ETA."""
        frame = render(_run(10, finish=10))
        assert "p50" in frame
        assert "200\u00b5s" in frame
        assert "ETA" not in frame


def _with_insights(snapshot: Snapshot, items: list[dict[str, Any]]) -> Snapshot:
    snap = cast(dict[str, Any], dict(snapshot))
    snap["insights"] = items
    return cast(Snapshot, snap)


def _without_insights(snapshot: Snapshot) -> Snapshot:
    """The snapshot of a monitor that computes no insights (no field)."""
    snap = cast(dict[str, Any], dict(snapshot))
    snap.pop("insights", None)
    return cast(Snapshot, snap)


def _insights() -> list[dict[str, Any]]:
    return [
        make_insight("hot-prefix", "info", "inc", message="inc takes 90% of it."),
        make_insight("tiny-tasks", "warning", "inc"),
        make_insight("memory-pressure", "critical", "tcp://w:1"),
    ]


class TestInsightsInText:
    """The insights in watch's frame and in the replay/report summary."""

    def test_watch_shows_the_most_severe_one_on_one_line(self) -> None:
        """The line under the progress line is the critical insight, with a
        count of the others; nothing when there are none."""
        frame = render(_with_insights(_run(10, finish=5), _insights()), width=120)
        second = frame.splitlines()[1]
        assert second.startswith("Insight: [critical] memory-pressure (tcp://w:1): ")
        assert second.endswith("(+2 more)")
        assert len(second) <= 120
        assert "Insight" not in render(_with_insights(_run(10, finish=5), []))
        assert "Insight" not in render(_without_insights(_run(10, finish=5)))

    def test_summary_lists_them_with_evidence_advice_and_link(self) -> None:
        """Most severe first, right under the head line, each with its
        evidence, advice and docs link."""
        text = format_summary(_with_insights(_run(10, finish=10), _insights()))
        lines = text.splitlines()
        assert lines[2] == "Insights (3, most severe first):"
        kinds = [line.split("]")[1].split()[0] for line in lines if "  [" in line]
        assert kinds == ["memory-pressure", "tiny-tasks", "hot-prefix"]
        assert "      evidence: count 5,000, p50 1.2ms, overhead share 45%" in lines
        assert any(line.startswith("      advice: Make fewer") for line in lines)
        assert any(line.startswith("      see https://") for line in lines)

    def test_summary_says_when_none_was_found(self) -> None:
        """An empty list reads "none"; a snapshot without the field says nothing."""
        none = format_summary(_with_insights(_run(10, finish=10), []))
        assert "Insights: none" in none
        assert "Insights" not in format_summary(_without_insights(_run(10, finish=10)))
