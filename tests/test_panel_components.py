"""Panel components against synthetic snapshots: change checks, bounded updates."""

from __future__ import annotations

import copy
import html
import re
import time
from typing import Any

import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.models.widgets import DataTable, Div, TableColumn
from dask.utils import format_bytes

from dask_monitor.config import MonitorConfig
from dask_monitor.panel import report_html, write_report
from dask_monitor.panel._data import new_events
from dask_monitor.panel.components import (
    Component,
    Composite,
    Durations,
    Errors,
    PrefixProgress,
    StaticFeed,
    Summary,
    TaskStream,
    Throughput,
    Workers,
    measure_payload,
    rows_that_fit,
    sync_source,
)
from dask_monitor.panel.report import times_table_html
from dask_monitor.panel.views import full_view, individual_view
from dask_monitor.pipeline import Pipeline
from dask_monitor.snapshot import Snapshot
from dask_monitor.testing import EventStream, make_snapshot
from dask_monitor.units import format_duration

XSS = "<img src=x onerror=window.__pwned=1>"
NOW = 1_700_000_000.0


def run(
    seq: int, *, n_prefixes: int = 12, n_workers: int = 4, n_errors: int = 3
) -> Snapshot:
    """Snapshot ``seq`` of one synthetic run, a quarter second apart."""
    return make_snapshot(
        n_prefixes=n_prefixes,
        n_workers=n_workers,
        n_errors=n_errors,
        seed=11,
        seq=seq,
        now=NOW + seq * 0.25,
        elapsed=100.0 + seq * 0.25,
        progress=min(0.3 + seq * 0.01, 1.0),
    )


def attach(component: Component) -> Document:
    doc = Document()
    doc.add_root(component.root)
    return doc


class Counting(Component):
    """Counts renders."""

    def __init__(self, feed: StaticFeed) -> None:
        super().__init__(feed, MonitorConfig())
        self.source = ColumnDataSource({"x": []})
        self.root = Div(text="")
        self.renders = 0

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        self.renders += 1


class TestUpdate:
    """update() renders only when the snapshot's seq changed."""

    def test_returns_early_on_the_same_seq(self) -> None:
        """Same seq: no render and nothing sent; a new seq renders once."""
        feed = StaticFeed(run(1))
        counting = Counting(feed)
        counting.update()
        counting.update()
        assert counting.renders == 1
        feed.set(run(2))
        counting.update()
        counting.update()
        assert counting.renders == 2

        view = full_view(feed)
        doc = attach(view)
        view.update()
        assert measure_payload(doc, view.update) == (0, 0)
        feed.set(run(3))
        messages, size = measure_payload(doc, view.update)
        assert messages > 0
        assert size > 0

    def test_without_a_snapshot_it_says_so(self) -> None:
        """A feed with no snapshot shows 'not running' and empty charts."""
        summary = Summary(StaticFeed(None), MonitorConfig())
        summary.update()
        assert "not running" in summary.div.text

    def test_composite_checks_once_for_all(self) -> None:
        """A composite renders all its components and marks them current."""
        feed = StaticFeed(run(1))
        parts = [Counting(feed), Counting(feed)]
        composite = Composite(feed, parts, Div(text=""), MonitorConfig())
        composite.update()
        composite.update()
        assert [p.renders for p in parts] == [1, 1]
        parts[0].update()  # already current: nothing to do
        assert parts[0].renders == 1


class TestBoundedUpdates:
    """What an update sends does not grow with prefixes or workers."""

    @pytest.mark.parametrize("n_prefixes", [100, 10_000])
    def test_payload_with_many_prefixes_and_workers(self, n_prefixes: int) -> None:
        """One update with 100 workers stays under 48 kB, 10,000 prefixes or not.

        (32 kB before the resources view, about 6 kB for 100 workers, and
        insight alerts, which fill this run's alert table: 48 of its prefixes
        fail outright; the table holds at most ``alerts.recent`` rows.)"""
        kw: dict[str, Any] = {
            "n_prefixes": n_prefixes,
            "n_workers": 100,
            "n_errors": 50,
        }
        feed = StaticFeed(run(1, **kw))
        view = full_view(feed)
        doc = attach(view)
        view.update()
        feed.set(run(2, **kw))
        t0 = time.perf_counter()
        messages, size = measure_payload(doc, view.update)
        seconds = time.perf_counter() - t0
        print(
            f"\none update, {n_prefixes:,} prefixes, 100 workers: "
            f"{messages} messages, {size:,} bytes, {seconds * 1000:.1f} ms"
        )
        assert size < 48_000
        prefixes = view.components[1]
        assert isinstance(prefixes, PrefixProgress)
        assert len(prefixes.source.data["name"]) == MonitorConfig().panel_prefixes
        workers = view.components[4]
        assert isinstance(workers, Workers)
        # As many bars as the figure holds legibly, at most panel_workers.
        shown = min(MonitorConfig().panel_workers, rows_that_fit(workers.root))
        assert len(workers.source.data["name"]) == shown

    def test_a_thousand_workers_keep_the_worker_bars_legible(self) -> None:
        """Worker utilisation shows as many bars as its figure holds with a
        legible label each, and says how many workers are not shown."""
        snap = make_snapshot(n_prefixes=4, n_workers=200, seed=3)
        view = Workers(StaticFeed(snap), height=290)
        doc = Document()
        doc.add_root(view.root)
        view.update()
        fits = rows_that_fit(view.root)
        assert 4 <= len(view.source.data["y"]) == fits < 50
        assert f"({200 - fits:,} not shown)" in view.root.title.text
        assert len(view.root.yaxis[0].ticker.ticks) <= fits

    def test_first_render_is_bounded_too(self) -> None:
        """Even the first render of 10,000 prefixes sends under 200 kB."""
        feed = StaticFeed(run(1, n_prefixes=10_000, n_workers=100, n_errors=100))
        view = full_view(feed)
        doc = attach(view)
        _, size = measure_payload(doc, view.update)
        assert size < 200_000


class TestStreamsAndPatches:
    """Series are streamed with rollover, unchanged tables patched."""

    def test_throughput_streams_new_bins(self) -> None:
        """After the first render only the new complete bins are streamed."""
        feed = StaticFeed(run(1))
        tp = Throughput(feed, MonitorConfig())
        tp.update()
        n = len(tp.source.data["time"])
        assert 90 <= n <= 102
        feed.set(run(9))  # two seconds later: two more complete bins
        tp.update()
        assert len(tp.source.data["time"]) == n + 2
        assert tp.source.data["time"] == sorted(tp.source.data["time"])

    def test_throughput_rollover(self) -> None:
        """The series keeps at most its rollover."""
        feed = StaticFeed(run(1))
        tp = Throughput(feed, MonitorConfig(throughput_bins=60))
        tp.update()
        assert len(tp.source.data["time"]) == 60

    def test_task_stream_streams_new_events_only(self) -> None:
        """New sampled events are appended, each once, up to the rollover."""
        feed = StaticFeed(run(1))
        ts = TaskStream(feed, MonitorConfig(panel_tasks=300))
        ts.update()
        assert len(ts.source.data["x"]) == 300
        before = list(ts.source.data["x"])
        later = run(2)
        fresh = new_events(later, run(1)["samples"]["recent"][-1]["timestamp"], 300)
        assert 0 < len(fresh) < 300
        feed.set(later)
        ts.update()
        assert len(ts.source.data["x"]) == 300  # rolled over
        assert list(ts.source.data["x"][: 300 - len(fresh)]) == before[len(fresh) :]
        assert sorted(ts.source.data["x"][-len(fresh) :]) == sorted(
            (e["begin"] + e["end"]) * 500.0 for e in fresh
        )

    def test_task_stream_lanes_stay_in_their_row(self) -> None:
        """A worker's tasks stay within its row, one lane per thread."""
        feed = StaticFeed(run(1, n_workers=3))
        ts = TaskStream(feed, MonitorConfig())
        ts.update()
        for y, h in zip(ts.source.data["y"], ts.source.data["height"], strict=True):
            row = round(-y)
            assert -row - 0.45 <= y - h / 2 and y + h / 2 <= -row + 0.45

    def test_new_run_clears_the_series(self) -> None:
        """A snapshot of another run (other start) starts the series afresh."""
        feed = StaticFeed(run(1))
        tp = Throughput(feed, MonitorConfig())
        tp.update()
        other = make_snapshot(seed=11, now=NOW + 50.0, elapsed=5.0, seq=1)
        feed.set(other)
        tp.update()
        assert len(tp.source.data["time"]) <= 6

    def test_unchanged_rows_are_patched(self) -> None:
        """Same rows, new counts: patch; other rows: replace; same: nothing."""
        source = ColumnDataSource({"name": ["a", "b"], "n": [1, 2], "m": [0, 0]})
        assert (
            sync_source(source, {"name": ["a", "b"], "n": [1, 2], "m": [0, 0]}, "name")
            == "same"
        )
        assert (
            sync_source(source, {"name": ["a", "b"], "n": [1, 3], "m": [0, 0]}, "name")
            == "patch"
        )
        assert source.data["n"] == [1, 3]
        assert (
            sync_source(source, {"name": ["b", "a"], "n": [3, 1], "m": [0, 0]}, "name")
            == "replace"
        )

    def test_error_table_patches_counts(self) -> None:
        """A new count in the same error rows patches one cell."""
        snap = run(1)
        feed = StaticFeed(snap)
        errors = Errors(feed, MonitorConfig())
        doc = attach(errors)
        errors.update()
        assert errors.detail.text.startswith(snap["errors"][0]["type"])
        later = run(2)
        later["errors"] = copy.deepcopy(snap["errors"])
        later["errors"][0]["count"] += 1
        feed.set(later)
        messages, size = measure_payload(doc, errors.update)
        assert messages >= 1
        assert size < 2_000


class TestUntrustedText:
    """Keys, prefixes and exception texts never reach the page as HTML."""

    def test_no_markup_model_carries_user_text(self) -> None:
        """Divs that render HTML hold no user string; tables use text formatters."""
        snap = run(1, n_errors=2)
        snap["prefixes"][XSS] = snap["prefixes"].pop(next(iter(snap["prefixes"])))
        snap["errors"][0]["exception"] = XSS
        snap["errors"][0]["prefix"] = XSS
        for event in snap["samples"]["recent"][:20]:
            event["key"] = XSS
            event["prefix"] = XSS
        view = full_view(StaticFeed(snap))
        doc = attach(view)
        view.update()
        seen_in_data = False
        for model in doc.models:
            if isinstance(model, Div) and not model.render_as_text:
                assert XSS not in model.text
                assert "<img" not in model.text
            if isinstance(model, TableColumn):
                assert type(model.formatter).__name__ in (
                    "StringFormatter",
                    "NumberFormatter",
                )
            if isinstance(model, ColumnDataSource):
                seen_in_data |= any(
                    XSS in v
                    for col in model.data.values()
                    for v in col
                    if isinstance(v, str)
                )
            if isinstance(model, DataTable):
                assert model.source is not None
            tooltips = getattr(model, "tooltips", None)
            if isinstance(tooltips, list):
                assert not any("{safe}" in value for _, value in tooltips)
        assert seen_in_data  # shown, as data that Bokeh renders as text

    def test_report_is_standalone(self, tmp_path: Any) -> None:
        """The report inlines BokehJS, loads nothing from the network, escapes data."""
        snap = run(1)
        snap["prefixes"]["x</script><script>window.__pwned=1</script>"] = snap[
            "prefixes"
        ].pop(next(iter(snap["prefixes"])))
        text = report_html(snap)
        assert "<script>window.__pwned" not in text
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"?https?:", text)
        assert "Bokeh" in text
        path = write_report(snap, tmp_path / "report.html")
        assert path.stat().st_size > 500_000  # BokehJS is in the file


class TestViews:
    """Individual views exist for each page."""

    @pytest.mark.parametrize(
        "name",
        [
            "progress",
            "throughput",
            "durations",
            "workers",
            "errors",
            "task-stream",
            "health",
        ],
    )
    def test_individual_view_renders(self, name: str) -> None:
        """Each individual view renders a snapshot and fills its pane."""
        view = individual_view(name, StaticFeed(run(1)))
        attach(view)
        view.update()
        assert view.root.sizing_mode == "stretch_both"

    def test_unknown_view(self) -> None:
        """An unknown view name is a KeyError."""
        with pytest.raises(KeyError):
            individual_view("nope", StaticFeed(run(1)))


def _share(snapshot: Snapshot, prefix: str, part: str = "transfer") -> float:
    """The share of a prefix's time spent on ``part``, from its snapshot row."""
    seconds = snapshot["prefixes"][prefix]["seconds"]
    return seconds[part] / sum(seconds.values())  # type: ignore[arg-type]


def _without_times(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with no time split per prefix, as a span's view has it."""
    out = copy.deepcopy(snapshot)
    for row in out["prefixes"].values():
        row.pop("seconds", None)
        row.pop("nbytes", None)
    return out


class TestWhereTimeGoes:
    """The durations chart tells where a prefix's time goes."""

    def test_a_prefix_fetching_most_of_its_time_says_so_beside_its_row(self) -> None:
        """A prefix fetching inputs 1.5 s per compute second reads "60% fetching
        data" beside its row; prefixes that only compute have no label."""
        snap = make_snapshot(n_prefixes=12, seed=11, transfer={"inc": 1.5})
        durations = Durations(StaticFeed(snap), MonitorConfig())
        durations.update()
        data = durations.source.data
        row = list(data["name"]).index("inc")
        share = _share(snap, "inc")
        assert share == pytest.approx(0.6, abs=0.01)
        assert data["where"][row] == f"{share:.0%} fetching data"
        assert [w for i, w in enumerate(data["where"]) if i != row] == [""] * (
            len(data["name"]) - 1
        )
        seconds = snap["prefixes"]["inc"]["seconds"]
        assert data["transfer_text"][row] == (
            f"{format_duration(seconds['transfer'])} ({share:.0%} of its time)"
        )
        assert data["compute_text"][row] == format_duration(seconds["compute"])
        assert data["nbytes_text"][row] == format_bytes(
            snap["prefixes"]["inc"]["nbytes"]
        )
        labels = [label for label, _ in durations.hover.tooltips]
        assert "fetching inputs" in labels and "output" in labels

    def test_labels_fit_on_the_axis(self) -> None:
        """With a label beside a row, the axis reaches well past the longest
        task: the label has room before the plot's edge."""
        snap = make_snapshot(n_prefixes=12, seed=11, transfer={"inc": 1.5})
        durations = Durations(StaticFeed(snap), MonitorConfig())
        durations.update()
        longest = max(durations.source.data["max"])
        assert durations.root.x_range.end >= 5 * longest

    def test_a_span_view_shows_no_time_split(self) -> None:
        """A span's view (which has no ``seconds`` per prefix) shows no labels
        and no time rows in the tooltip, rather than zeros; the whole run's
        view of the same pipeline does."""
        pipeline = Pipeline(clock=lambda: 1_100.0)
        pipeline.name_spans({"s1": "etl"})
        pipeline.process(
            EventStream.merge(
                EventStream.workers(1_000.0, nthreads=2, n=1),
                *(
                    EventStream.lifecycle(
                        f"load-{i}", 1_000.0 + i, span="s1", transfer=2.0
                    )
                    for i in range(4)
                ),
            )
        )
        feed = StaticFeed(pipeline.snapshot())
        durations = Durations(feed, MonitorConfig())
        durations.update()
        assert list(durations.source.data["where"]) == ["80% fetching data"]
        labels = [label for label, _ in durations.hover.tooltips]
        assert "fetching inputs" in labels

        durations.render(pipeline.snapshot(span="etl"))  # same seq: no update()
        data = durations.source.data
        assert list(data["name"]) == ["load"]
        assert list(data["where"]) == [""]
        assert list(data["transfer_text"]) == [""]
        labels = [label for label, _ in durations.hover.tooltips]
        assert "fetching inputs" not in labels and "output" not in labels


class TestReportTimes:
    """The report's "Where the time went" section."""

    def test_rows_by_total_time_and_the_rest_summed(self) -> None:
        """The top prefixes by compute + transfer + disk come first, most first,
        and one row sums the others."""
        snap = make_snapshot(n_prefixes=12, seed=11, transfer={"inc": 40.0})
        text = times_table_html(snap, 3)
        assert text.startswith("<h2>Where the time went</h2>")
        names = re.findall(r"<tr><td>([^<]*)</td>", text)
        totals = {
            name: sum(row["seconds"].values())  # type: ignore[arg-type]
            for name, row in snap["prefixes"].items()
        }
        assert names == sorted(totals, key=lambda n: -totals[n])[:3]
        assert names[0] == "inc"  # its fetching puts it first
        inc = snap["prefixes"]["inc"]["seconds"]
        assert f"<td>{format_duration(inc['transfer'])}</td>" in text
        assert f"<td>{_share(snap, 'inc'):.0%}</td>" in text
        rest = sorted(
            (n for n, t in totals.items() if t > 0), key=lambda n: -totals[n]
        )[3:]
        compute = sum(snap["prefixes"][n]["seconds"]["compute"] for n in rest)
        assert (
            f'<tr class="dm-total"><td>{len(rest)} other prefixes</td>'
            f"<td>{format_duration(compute)}</td>"
        ) in text

    def test_a_hostile_prefix_name_is_escaped(self) -> None:
        """A prefix named like markup appears as text."""
        snap = run(1)
        snap["prefixes"][XSS] = snap["prefixes"].pop(next(iter(snap["prefixes"])))
        text = times_table_html(snap, 50)
        assert XSS not in text
        assert html.escape(XSS) in text
        assert "Where the time went" in report_html(snap)

    def test_no_section_without_a_time_split(self) -> None:
        """A snapshot without per-prefix seconds has no such section."""
        assert times_table_html(_without_times(run(1))) == ""
