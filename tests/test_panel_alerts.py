"""The panel's alerts table and span selector, against synthetic snapshots."""

from __future__ import annotations

import copy

from bokeh.document import Document
from bokeh.models.widgets import DataTable, Div, StringFormatter

from dask_monitor import Pipeline
from dask_monitor.events import TaskStatus
from dask_monitor.panel import PATHS, report_html
from dask_monitor.panel._data import SEVERITY_COLORS, alert_columns, summary_html
from dask_monitor.panel.components import (
    COMPONENTS,
    Alerts,
    Composite,
    SpanSelector,
    StaticFeed,
    _span_snapshot,
)
from dask_monitor.panel.views import full_view, individual_view
from dask_monitor.snapshot import Snapshot
from dask_monitor.testing import make_snapshot

XSS = "<img src=x onerror=window.__pwned=1>"
NOW = 1_700_000_000.0


def snap(n_alerts: int = 6, seq: int = 1) -> Snapshot:
    return make_snapshot(seed=3, now=NOW, seq=seq, n_alerts=n_alerts)


class TestAlertsTable:
    def test_make_snapshot_default_has_no_alerts(self) -> None:
        """Existing callers are unchanged: no alerts unless asked."""
        none = make_snapshot(seed=1)["alerts"]
        assert none["total"] == 0 and none["recent"] == [] and none["counts"] == {}
        alerts = snap(6)["alerts"]
        assert alerts["total"] == 6 == len(alerts["recent"])
        assert sum(alerts["counts"].values()) == 6
        stamps = [a["timestamp"] for a in alerts["recent"]]
        assert stamps == sorted(stamps)  # oldest first, as AlertLog keeps them

    def test_newest_first_bounded_and_coloured(self) -> None:
        snapshot = snap(80)
        alerts = Alerts(StaticFeed(snapshot))
        alerts.update()
        data = alerts.source.data
        assert len(data["kind"]) == Alerts.rows == 50
        newest = snapshot["alerts"]["recent"][-1]
        assert data["message"][0] == newest["message"]
        assert data["kind"][0] == newest["kind"]
        for severity, color in zip(data["severity"], data["color"], strict=True):
            assert color == SEVERITY_COLORS[severity]
        header = alerts.header.text
        assert header.startswith("Alerts: 80 \u00b7 ")
        for kind, count in snapshot["alerts"]["counts"].items():
            assert f"{kind} {count:,}" in header
        assert "newest 50 shown" in header

    def test_an_insight_alerts_evidence_reads_as_figures(self) -> None:
        """An insight alert's nested evidence is spread into name=value pairs,
        rounded, without the advice, link or timestamps the insights page shows."""
        from dask_monitor.panel._data import _details_text

        text = _details_text(
            {
                "subject": "inc",
                "subject_type": "prefix",
                "evidence": {"count": 5000, "p50": 0.000123456, "overhead_share": 0.9},
                "advice": "Use larger chunks.",
                "link": "https://docs.dask.org/en/stable/best-practices.html",
                "since": 1_800_000_000.25,
            }
        )
        assert text == "subject=inc, count=5000, p50=0.000123, overhead_share=0.9"

    def test_no_alerts(self) -> None:
        alerts = Alerts(StaticFeed(snap(0)))
        alerts.update()
        assert alerts.header.text == "Alerts: none"
        assert list(alerts.source.data["kind"]) == []

    def test_untrusted_text_stays_text(self) -> None:
        """Messages, keys and details reach the table only as StringFormatter cells."""
        snapshot = snap(3)
        recent = copy.deepcopy(snapshot["alerts"]["recent"])
        recent[-1].update(
            kind=XSS, message=f"bad {XSS}", key=XSS, prefix=XSS, details={"x": XSS}
        )
        snapshot["alerts"] = {
            **snapshot["alerts"],
            "recent": recent,
            "counts": {XSS: 1, "stall": 2},
        }
        alerts = Alerts(StaticFeed(snapshot))
        doc = Document()
        doc.add_root(alerts.root)
        alerts.update()
        assert alerts.source.data["message"][0] == f"bad {XSS}"
        assert alerts.source.data["key"][0] == XSS
        for table in doc.select({"type": DataTable}):
            for column in table.columns:
                assert isinstance(column.formatter, StringFormatter) or (
                    column.field not in ("message", "key", "kind", "details")
                )
        header = doc.select_one({"name": "dm-alerts-header"})
        assert isinstance(header, Div) and header.render_as_text
        assert XSS in header.text
        # The summary's HTML escapes the kinds.
        html = summary_html(snapshot)
        assert XSS not in html and "&lt;img" in html

    def test_malformed_entries_are_skipped(self) -> None:
        snapshot = snap(2)
        snapshot["alerts"]["recent"].append("not an alert")
        assert len(alert_columns(snapshot, 10)["kind"]) == 2

    def test_unchanged_alerts_send_nothing(self) -> None:
        feed = StaticFeed(snap(5, seq=1))
        alerts = Alerts(feed)
        alerts.update()
        data = dict(alerts.source.data)
        feed.set(snap(5, seq=2))
        alerts.update()
        assert alerts.source.data == data

    def test_summary_counts_kinds(self) -> None:
        html = summary_html(snap(4))
        assert '<span class="dm-label">alerts</span>' in html
        assert "error-burst 1" in html
        assert "alerts" not in summary_html(snap(0))

    def test_in_full_view_individual_view_and_report(self) -> None:
        snapshot = snap(4)
        view = full_view(StaticFeed(snapshot))
        doc = Document()
        doc.add_root(view.root)
        view.update()
        source = doc.select_one({"name": "dm-alerts"})
        assert source is not None and len(source.data["kind"]) == 4
        assert "alerts" in COMPONENTS
        assert "/individual-monitor-alerts" in PATHS
        one = individual_view("alerts", StaticFeed(snapshot))
        one.update()
        assert isinstance(one, Alerts) and len(one.source.data["kind"]) == 4
        html = report_html(snapshot)
        assert snapshot["alerts"]["recent"][-1]["message"] in html


class _SpanFeed(StaticFeed):
    """A static feed with a span selection, as SchedulerFeed has."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.span: str | None = None


def with_spans(names: list[str]) -> Snapshot:
    """A run whose tasks belong to spans of these names (one id each)."""
    return make_snapshot(seed=3, now=NOW, spans=names)


class TestSpanSelector:
    def test_options_follow_the_spans(self) -> None:
        feed = _SpanFeed(with_spans(["ml", "etl", "etl"]))
        selector = SpanSelector(feed)
        selector.update()
        assert selector.select.options == [
            ("", "everything"),
            ("etl", "span etl"),
            ("ml", "span ml"),
        ]
        assert selector.select.value == "" and not selector.select.disabled

    def test_selecting_sets_the_feed_and_redraws(self) -> None:
        feed = _SpanFeed(with_spans(["etl", "ml"]))
        calls: list[int] = []
        selector = SpanSelector(feed, on_change=lambda: calls.append(1))
        selector.update()
        selector.select.value = "etl"
        assert feed.span == "etl" and calls == [1]
        assert "span etl only" in selector.note.text
        # Still listed once its span is gone from the summary.
        feed.set(with_spans(["ml"]))
        feed._snapshot["seq"] = 2  # type: ignore[index]
        selector.update()
        assert ("etl", "span etl") in selector.select.options
        selector.select.value = ""
        assert feed.span is None and calls == [1, 1]

    def test_static_feed_disables_it(self) -> None:
        selector = SpanSelector(StaticFeed(snap(0)))
        assert selector.select.disabled

    def test_composite_with_selector(self) -> None:
        feed = _SpanFeed(with_spans(["etl"]))
        panel = full_view(feed)
        selector = SpanSelector(feed, on_change=panel.update)
        view = Composite(feed, [selector, panel], panel.root)
        view.update()
        assert ("etl", "span etl") in selector.select.options


def _ts(key: str, prefix: str, start: str, finish: str, span: str) -> TaskStatus:
    return TaskStatus(key, prefix, f"{prefix}-g", start, finish, 1.0, span=span)


def test_span_snapshots_are_cached_per_seq() -> None:
    """One span snapshot per (seq, span), whatever the number of sessions."""
    pipeline = Pipeline(clock=lambda: 10.0)
    pipeline.name_spans({"a": "etl", "b": "ml"})
    pipeline.process(
        [
            _ts("x1", "load", "new", "processing", "a"),
            _ts("y1", "fit", "new", "processing", "b"),
        ]
    )
    first = _span_snapshot(pipeline, "etl")
    assert _span_snapshot(pipeline, "etl") is first
    assert set(first["prefixes"]) == {"load"}
    assert set(_span_snapshot(pipeline, "ml")["prefixes"]) == {"fit"}
    pipeline.process([_ts("x2", "load", "new", "processing", "a")])
    second = _span_snapshot(pipeline, "etl")
    assert second is not first and second["totals"]["total"] == 2
