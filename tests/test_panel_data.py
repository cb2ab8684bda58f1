"""Snapshot -> panel columns: bounded, consistent, and text stays text."""

from __future__ import annotations

import html
from typing import Any

import pytest

from dask_monitor.panel import PATHS, panel_url
from dask_monitor.panel._data import (
    display_text,
    duration_columns,
    empty_snapshot,
    error_columns,
    fmt_eta,
    fmt_seconds,
    health_columns,
    new_events,
    overall_columns,
    prefix_columns,
    summary_html,
    throughput_points,
    top_prefixes,
    worker_columns,
)
from dask_monitor.testing import make_snapshot

XSS = "<img src=x onerror=window.__pwned=1>"


class TestColumns:
    """Every table is cut to its top N rows."""

    def test_prefixes_top_n_and_more_line(self) -> None:
        """10,000 prefixes give N rows and a line counting the rest."""
        snap = make_snapshot(n_prefixes=10_000, n_workers=3, seed=1)
        data, more = prefix_columns(snap, 15)
        assert len(data["name"]) == 15
        assert more["text"][0].startswith("\u2026 9,985 more prefixes")
        shown = sum(snap["prefixes"][n]["done"] for n in data["name"])
        rest = snap["totals"]["done"] - shown
        assert f"{rest:,} / " in more["text"][0]

    def test_prefixes_with_work_left_come_first(self) -> None:
        """Active prefixes are listed before finished ones."""
        snap = make_snapshot(n_prefixes=40, seed=2, progress=0.5)
        rows = top_prefixes(snap, 40)
        remaining = [row["remaining"] > 0 for _, row in rows]
        assert remaining == sorted(remaining, reverse=True)

    def test_segments_add_up_to_one(self) -> None:
        """Each bar's segments go from 0 to 1 without gaps."""
        snap = make_snapshot(n_prefixes=20, seed=4)
        data, _ = prefix_columns(snap, 20)
        for i in range(20):
            assert data["done_left"][i] == 0.0
            assert data["done_right"][i] == data["memory_left"][i]
            assert data["waiting_right"][i] == pytest.approx(1.0)
        overall = overall_columns(snap)
        assert overall["waiting_right"][0] == pytest.approx(1.0)

    def test_workers_durations_errors_are_bounded(self) -> None:
        """Workers, durations and errors never exceed their N."""
        snap = make_snapshot(n_prefixes=500, n_workers=100, n_errors=80, seed=6)
        workers, hidden = worker_columns(snap, 50)
        assert len(workers["name"]) == 50
        assert hidden == 50
        assert len(duration_columns(snap, 15)["name"]) == 15
        assert len(error_columns(snap, 20)["key"]) == 20

    def test_with_workers_left_out_the_least_busy_come_first(self) -> None:
        """More workers than rows: the running workers least busy now are
        shown, least busy first; all of them fit: by address."""
        snap = make_snapshot(n_prefixes=4, n_workers=30, seed=2)
        for i, (_, row) in enumerate(sorted(snap["workers"].items())):
            row["utilisation"] = (i * 7 % 30) / 30
        data, hidden = worker_columns(snap, 5)
        assert hidden == 25
        assert [float(u) for u in data["utilisation"]] == [k / 30 for k in range(5)]
        everyone, _ = worker_columns(snap, 30)
        assert everyone["name"] == sorted(everyone["name"])

    def test_durations_are_ordered(self) -> None:
        """p50 <= p90 <= p99 <= max on every row (log axis: all positive)."""
        data = duration_columns(make_snapshot(n_prefixes=30, seed=8), 30)
        for row in zip(data["p50"], data["p90"], data["p99"], data["max"], strict=True):
            assert 0 < row[0] <= row[1] <= row[2] <= row[3]

    def test_throughput_streams_complete_bins_once(self) -> None:
        """Points after the last one sent; the filling bin waits."""
        snap = make_snapshot(seed=1, now=1_000_000.5, elapsed=100.0)
        first = throughput_points(snap, 0.0)
        assert first["time"][-1] < snap["timestamp"] * 1000
        assert len(first["time"]) <= 101
        later = make_snapshot(seed=1, now=1_000_003.5, elapsed=103.0, seq=2)
        new = throughput_points(later, first["time"][-1])
        assert len(new["time"]) == 3

    def test_new_events_are_newer_and_limited(self) -> None:
        """Only events after the last timestamp shown, at most ``limit``."""
        snap = make_snapshot(seed=2, n_events=300)
        events = new_events(snap, 0.0, 100)
        assert len(events) == 100
        cut = events[50]["timestamp"]
        assert all(e["timestamp"] > cut for e in new_events(snap, cut, 1000))

    def test_empty_snapshot(self) -> None:
        """The empty snapshot renders: no rows, no division by zero."""
        snap = empty_snapshot()
        assert prefix_columns(snap, 15)[0]["name"] == []
        assert "0" in summary_html(snap)
        assert health_columns(snap)["metric"]


class TestText:
    """User strings stay text: escaped in HTML, defused for TeX, truncated."""

    def test_summary_holds_no_user_strings(self) -> None:
        """The one HTML fragment is made of numbers and fixed words."""
        snap = make_snapshot(n_prefixes=3, n_errors=2, seed=1)
        snap["prefixes"][XSS] = snap["prefixes"].pop("inc")
        snap["errors"][0]["exception"] = XSS
        text = summary_html(snap)
        assert "<img" not in text
        assert "onerror" not in text
        assert "not running" in summary_html(snap, attached=False)

    def test_display_text(self) -> None:
        """Long names are cut; newlines and TeX delimiters are defused."""
        assert display_text("x" * 100, 10) == "x" * 9 + "\u2026"
        assert "\n" not in display_text("a\nb")
        for tex in ("$$x$$", "a \\[x\\] b", "\\(x\\)"):
            shown = display_text(tex)
            assert "$$" not in shown
            assert "\\[" not in shown
            assert "\\(" not in shown
        assert display_text(XSS) == XSS  # left as is: rendered as text
        assert html.escape(XSS) != XSS

    def test_errors_keep_their_text(self) -> None:
        """Exception texts reach the table verbatim (a text cell shows them)."""
        snap = make_snapshot(n_errors=1, seed=1)
        snap["errors"][0]["exception"] = XSS
        data = error_columns(snap, 5)
        assert data["exception"] == [XSS]
        assert XSS in data["traceback"][0]

    def test_formats(self) -> None:
        """Durations down to microseconds; ETA with its range."""
        assert fmt_seconds(None) == "-"
        assert fmt_seconds(0.0005) == "500\u00b5s"
        assert fmt_seconds(0.0042) == "4.2ms"
        assert fmt_eta(None, None, None) == "-"
        assert fmt_eta(30.0, 20.0, 45.0) == "30s (20s\u201345s)"


class TestPanelUrl:
    """The page's URL follows the dashboard link: port, proxy and prefix."""

    @pytest.mark.parametrize(
        ("link", "page", "prefix", "url"),
        [
            (
                "http://127.0.0.1:8787/status",
                "monitor",
                "",
                "http://127.0.0.1:8787/monitor",
            ),
            (
                "http://127.0.0.1:40123/status",
                "errors",
                "",
                "http://127.0.0.1:40123/individual-monitor-errors",
            ),
            (
                "https://hub.example/user/me/proxy/8787/status",
                "monitor",
                "",
                "https://hub.example/user/me/proxy/8787/monitor",
            ),
            ("http://h:1/status", "monitor", "/dask/", "http://h:1/dask/monitor"),
            ("http://h:1/dask/status", "monitor", "dask", "http://h:1/dask/monitor"),
            (
                "http://h:1",
                "task-stream",
                "",
                "http://h:1/individual-monitor-task-stream",
            ),
        ],
    )
    def test_panel_url(self, link: str, page: str, prefix: str, url: str) -> None:
        """Beside ``status``, with the prefix added when missing."""
        assert panel_url(link, page, prefix=prefix) == url

    def test_paths(self) -> None:
        """The pages the issue asks for, and health."""
        assert "/monitor" in PATHS
        for name in ("progress", "throughput", "durations", "workers", "errors"):
            assert f"/individual-monitor-{name}" in PATHS
        assert "/individual-monitor-task-stream" in PATHS


class TestSummaryStates:
    """The summary reads naturally when empty, running and finished."""

    def test_empty_says_no_tasks_yet(self) -> None:
        """No task: "no tasks yet", not "0 / 0 (0%)" and no ETA."""
        from dask_monitor import Pipeline
        from dask_monitor.panel._data import summary_html

        text = summary_html(Pipeline(clock=lambda: 1.0).snapshot())
        assert "no tasks yet" in text
        assert "0 / " not in text

    def test_finished_replay_has_no_live_only_figures(self) -> None:
        """A replayed snapshot: average rate and run time; no pace, ETA, flush."""
        from dask_monitor import Pipeline
        from dask_monitor.events import TaskStatus
        from dask_monitor.panel._data import health_columns, summary_html

        pipeline = Pipeline(clock=lambda: 20.0, live=False)
        pipeline.process(
            [
                TaskStatus("a-1", "a", "a", "new", "processing", 10.0),
                TaskStatus("a-1", "a", "a", "processing", "memory", 12.0, duration=1.0),
            ]
        )
        snap = pipeline.snapshot()
        text = summary_html(snap)
        for absent in ("tasks/s now", ">eta<", "flush", "overhead"):
            assert absent not in text
        assert "average tasks/s" in text
        assert "finished" in text
        assert not any("flush time" in m for m in health_columns(snap)["metric"])


class TestWorkerUtilisation:
    """The utilisation bars read 'now' while work is under way and 'over the
    run' once it is finished (its threads are idle now)."""

    @staticmethod
    def _snapshot(finish: bool) -> Any:
        from dask_monitor import Pipeline
        from dask_monitor.events import TaskStatus, WorkerStatus

        now = [1_000.0]
        pipeline = Pipeline(clock=lambda: now[0])
        w = "tcp://127.0.0.1:1"
        events: list[Any] = [WorkerStatus(w, "added", 1_000.0, 2)]
        for i in range(2):
            events.append(
                TaskStatus(f"a-{i}", "a", "a-g", "new", "processing", 1_000.0, w)
            )
        pipeline.process(events)
        if finish:
            pipeline.process(
                [
                    TaskStatus(
                        f"a-{i}", "a", "a-g", "processing", "memory", 1_004.0, w,
                        duration=4.0, begin=1_000.0, end=1_004.0,
                    )
                    for i in range(2)
                ]
            )  # fmt: skip
        now[0] = 1_004.0 if not finish else 1_030.0
        return pipeline.snapshot()

    def test_under_way_bars_show_threads_busy_now(self) -> None:
        """Two tasks on two threads for 4 s: 100% now."""
        from dask_monitor.panel._data import worker_columns, worker_title

        snap = self._snapshot(finish=False)
        data, _ = worker_columns(snap, 10)
        assert data["utilisation"] == [pytest.approx(1.0)]
        assert data["text"][0].startswith("100%") and data["now"] == ["100%"]
        assert worker_title(snap).startswith("Worker utilisation now")

    def test_finished_bars_show_the_run(self) -> None:
        """Long after the work, the bar is the run's share, not 0% now."""
        from dask_monitor.panel._data import worker_columns, worker_title

        snap = self._snapshot(finish=True)
        assert snap["workers"]["tcp://127.0.0.1:1"]["utilisation"] == 0.0
        data, _ = worker_columns(snap, 10)
        assert data["utilisation"] == [pytest.approx(1.0)]
        assert data["text"][0] == "100% \u00b7 2 done" and data["now"] == ["0%"]
        assert "over the run" in worker_title(snap)
