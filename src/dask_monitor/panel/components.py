"""Bokeh components of the panel: each owns a ``source`` and a ``root``.

Like the components of Dask's dashboard, a component's :meth:`~Component.update`
reads the newest snapshot from its feed and returns at once when the snapshot
has not changed (same ``seq``). What it sends to the browser is bounded: tables
show the top ``n`` rows, append-only series are streamed with a rollover, and
tables whose rows stay the same are patched cell by cell.

Task keys, prefixes, worker addresses and exception texts are untrusted: they
reach the browser only as canvas text, table cells (``StringFormatter``: text),
``PreText`` (a text node) and tooltip fields (``@field``: escaped by Bokeh).
None of them is ever put into HTML unescaped: the only HTML made of user
strings is the insights' (:class:`InsightStrip`, :class:`Insights`), each
string passed through ``html.escape`` first (see ``_data.insight_strip_html``).

All methods run on the thread that owns the Bokeh document (for the dashboard
pages: the scheduler's event loop).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, Protocol, cast

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.layouts import row as hrow
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    CustomJSTickFormatter,
    DatetimeTickFormatter,
    FixedTicker,
    HoverTool,
    InlineStyleSheet,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.models.widgets import (
    DataTable,
    Div,
    NumberFormatter,
    PreText,
    Select,
    StringFormatter,
    TableColumn,
    Toggle,
)
from bokeh.plotting import figure

from dask_monitor.config import PLUGIN_NAME, MonitorConfig
from dask_monitor.snapshot import Snapshot
from dask_monitor.text import insights_of
from dask_monitor.units import DURATION_JS

from . import _data
from ._style import (
    BLUE,
    ERRED,
    INSIGHTS_CSS,
    MUTED,
    PRE_CSS,
    PROCESSING,
    SUMMARY_CSS,
    TABLE_CSS,
    WAITING,
)

__all__ = [
    "COMPONENTS",
    "EVERYTHING",
    "Alerts",
    "Component",
    "Composite",
    "Durations",
    "Errors",
    "Feed",
    "Health",
    "InsightStrip",
    "Insights",
    "PrefixProgress",
    "SchedulerFeed",
    "SpanSelector",
    "StaticFeed",
    "Summary",
    "TaskStream",
    "Throughput",
    "Workers",
    "measure_payload",
    "sync_source",
]


# -- feeds ----------------------------------------------------------------------------


def _table_header(text: str, name: str) -> Div:
    """The bold one-line title above a table (errors, alerts, insights)."""
    return Div(
        text=text,
        render_as_text=True,
        stylesheets=[
            InlineStyleSheet(
                css=":host { font-weight: bold; font-size: 11pt; color: #333;"
                " padding: 2px 10px; }"
            )
        ],
        sizing_mode="stretch_width",
        name=name,
    )


class Feed(Protocol):
    """Where components get snapshots from."""

    def version(self) -> Hashable:
        """Changes whenever the snapshot changed; ``None`` when there is none."""

    def snapshot(self) -> Snapshot | None:
        """The current snapshot, or ``None`` when the monitor is not running."""


class StaticFeed:
    """A feed of snapshots set by hand: reports, replays, tests.

    Examples
    --------
    >>> from dask_monitor.testing import make_snapshot
    >>> feed = StaticFeed(make_snapshot(seed=1))
    >>> feed.version() is not None
    True
    """

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snapshot = snapshot

    def set(self, snapshot: Snapshot | None) -> None:
        """Replace the snapshot (components see it at their next update)."""
        self._snapshot = snapshot

    def version(self) -> Hashable:
        snap = self._snapshot
        return None if snap is None else (snap["started"], snap["seq"])

    def snapshot(self) -> Snapshot | None:
        return self._snapshot


class SchedulerFeed:
    """Snapshots of the monitor plugin running on a scheduler (in its process).

    The plugin is looked up at every call (one dict lookup), so a page opened
    before ``Monitor.attach`` starts showing data once the plugin runs, and a
    replaced plugin is followed. Call it on the scheduler's event loop only.

    ``span`` narrows the snapshot to one Dask span (a name such as ``"etl"``,
    or a span id: see ``Pipeline.snapshot(span=...)``); ``None`` is everything.
    Each page (each Bokeh document) has its own feed, so each browser session
    watches its own selection. A span's snapshot is computed only when the
    pipeline's ``seq`` changed, at most once per ``seq`` and span for all the
    sessions watching that span.
    """

    def __init__(self, scheduler: Any, span: str | None = None) -> None:
        self.scheduler = scheduler
        self.span = span

    def _plugin(self) -> Any:
        return running_monitor(self.scheduler)

    def version(self) -> Hashable:
        plugin = self._plugin()
        if plugin is None:
            return None
        return (id(plugin.pipeline), plugin.pipeline.seq, self.span)

    def snapshot(self) -> Snapshot | None:
        plugin = self._plugin()
        if plugin is None:
            return None
        if self.span is None:
            return cast(Snapshot, plugin.snapshot())
        return _span_snapshot(plugin.pipeline, self.span)


def running_monitor(scheduler: Any) -> Any:
    """The monitor's plugin running on ``scheduler`` (one with a pipeline),
    or ``None``: found by name, so that the panel need not import it."""
    plugins = getattr(scheduler, "plugins", None) or {}
    plugin = plugins.get(PLUGIN_NAME)
    if getattr(plugin, "pipeline", None) is None:
        return None
    return plugin


# Span snapshots of the current seq, shared by the sessions of a pipeline.
_span_cache: weakref.WeakKeyDictionary[Any, tuple[int, dict[str, Snapshot]]] = (
    weakref.WeakKeyDictionary()
)
_SPAN_CACHE_SIZE = 16


def _span_snapshot(pipeline: Any, span: str) -> Snapshot:
    """``pipeline.snapshot(span=span)``, cached until the pipeline's seq changes."""
    seq = pipeline.seq
    entry = _span_cache.get(pipeline)
    if entry is None or entry[0] != seq:
        entry = (seq, {})
        _span_cache[pipeline] = entry
    cached = entry[1].get(span)
    if cached is None:
        # A page keeps its selection while the span is unknown (not yet
        # flushed, or gone): it shows an empty view rather than failing.
        cached = cast(Snapshot, pipeline.snapshot(span=span, missing_ok=True))
        if len(entry[1]) < _SPAN_CACHE_SIZE:
            entry[1][span] = cached
    return cached


# -- helpers ---------------------------------------------------------------------------


def sync_source(
    source: ColumnDataSource,
    data: dict[str, list[Any]],
    key: str | None = None,
    *,
    patch: bool = True,
) -> str:
    """Bring ``source.data`` to ``data`` with the smallest message.

    Returns ``"same"`` (nothing sent), ``"patch"`` (only changed cells sent:
    same columns, same length and, with ``key``, the same rows in the same
    order) or ``"replace"`` (all columns sent). With ``patch=False`` a change
    always replaces.
    """
    old = source.data
    n = len(next(iter(data.values()), []))
    same_shape = set(old) == set(data) and all(len(old[k]) == n for k in data)
    if same_shape and not patch:
        if all(list(old[k]) == v for k, v in data.items()):
            return "same"
    elif same_shape and (key is None or list(old[key]) == data[key]):
        patches: dict[str, list[tuple[int, Any]]] = {}
        changed = 0
        for name, values in data.items():
            current = old[name]
            cells = [
                (i, v)
                for i, (a, v) in enumerate(zip(current, values, strict=True))
                if a != v
            ]
            if cells:
                patches[name] = cells
                changed += len(cells)
        if not patches:
            return "same"
        if changed <= n * len(data) // 2:
            source.patch(patches)
            return "patch"
    source.data = data
    return "replace"


def measure_payload(doc: Document, action: Callable[[], Any]) -> tuple[int, int]:
    """Run ``action`` and measure what the Bokeh server would send for it.

    Returns ``(messages, bytes)``: the ``PATCH-DOC`` messages made from the
    document's change events and their size on the websocket (JSON parts and
    binary buffers). For tests and benchmarks.
    """
    from bokeh.protocol import Protocol

    events: list[Any] = []

    def collect(event: Any) -> None:
        events.append(event)

    doc.on_change(collect)
    try:
        action()
    finally:
        doc.remove_on_change(collect)
    protocol = Protocol()
    size = 0
    for event in events:
        msg = protocol.create("PATCH-DOC", [event])
        size += len(msg.header_json) + len(msg.metadata_json) + len(msg.content_json)
        size += sum(len(buffer.data) for buffer in msg.buffers)
    return len(events), size


def _table(
    source: ColumnDataSource,
    autosize_mode: Literal["none", "force_fit"] = "none",
    **kwargs: Any,
) -> DataTable:
    """A ``DataTable`` that redraws when its source changes.

    BokehJS 3.9 redraws a table when its view's indices change, which a patch
    or a new ``data`` of the same length does not do: the cells would keep
    their old values. A small callback redraws the table on every change.
    Column widths are fixed by default (``autosize_mode="none"``):
    "fit_columns" throws in SlickGrid on redraw, and "force_fit" makes all
    columns equally wide once the table was redrawn.
    """
    table = DataTable(
        source=source,
        index_position=None,
        reorderable=False,
        autosize_mode=autosize_mode,
        stylesheets=[InlineStyleSheet(css=TABLE_CSS)],
        **kwargs,
    )
    redraw = CustomJS(args={"table": table}, code="table.change.emit()")
    source.js_on_change("data", redraw)
    source.js_on_change("patching", redraw)
    return table


def _hover(tooltips: list[tuple[str, str]], renderers: list[Any]) -> HoverTool:
    # "@field" values are HTML-escaped by Bokeh; never use the {safe} format.
    for _, value in tooltips:
        assert "{safe}" not in value
    return HoverTool(
        tooltips=tooltips, renderers=renderers, point_policy="follow_mouse"
    )


def duration_axis(fig: Any) -> None:
    """Make the x axis of ``fig`` (log scale) an axis of durations in seconds.

    Ticks read ``"100µs"``, ``"5ms"``, ``"2s"``, ``"1m00s"`` (the text of the
    tooltips: :data:`~dask_monitor.units.DURATION_JS`), never ``"0"``. The
    ticks and the range are set from the data by :func:`set_duration_range`.
    """
    axis = fig.xaxis[0]
    axis.ticker = FixedTicker(ticks=[1e-3, 1e-2, 1e-1, 1.0])
    axis.formatter = CustomJSTickFormatter(code=DURATION_JS)
    axis.axis_label = None


def set_duration_range(fig: Any, low: float, high: float) -> None:
    """Range and ticks of a :func:`duration_axis` for values in [low, high]."""
    start, end, ticks = _data.duration_ticks(low, high)
    if fig.x_range.start != start or fig.x_range.end != end:
        fig.x_range.update(start=start, end=end)
    axis = fig.xaxis[0]
    if list(axis.ticker.ticks) != ticks:
        axis.ticker.ticks = ticks


def _figure(title: str, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "title": title,
        "tools": "",
        "toolbar_location": None,
        "min_border_left": 10,
        "min_border_right": 10,
        "min_border_top": 4,
        "min_border_bottom": 4,
    }
    options.update(kwargs)
    fig: Any = figure(**options)
    fig.title.text_font_size = "11pt"
    fig.title.text_color = "#333333"
    return fig


def rows_that_fit(fig: Any) -> int:
    """Bars with a legible label each that a figure of its height holds
    (about 14 px a row below its title and axis; at least 4)."""
    height = fig.height if isinstance(fig.height, int) else 300
    return max(4, (height - 70) // 14)


def _sized(kwargs: dict[str, Any], height: int) -> dict[str, Any]:
    """Figure sizing from component keyword arguments (Dask's convention)."""
    out = dict(kwargs)
    out.setdefault("sizing_mode", "stretch_width")
    if out["sizing_mode"] in ("stretch_width", "fixed", "scale_width"):
        out.setdefault("height", height)
    return out


# -- components -----------------------------------------------------------------------


class Component:
    """Base class: ``source``, ``root``, ``update()`` and ``render(snapshot)``.

    Parameters
    ----------
    feed
        Where snapshots come from (:class:`SchedulerFeed`, :class:`StaticFeed`).
    config
        Panel settings (``panel_*``); Dask config ``monitor.*`` when omitted.
    **kwargs
        Sizing of the root (``sizing_mode``, ``height``, ``width``).
    """

    source: ColumnDataSource
    root: Any
    title = "dask-monitor"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        self.feed = feed
        self.config = config if config is not None else MonitorConfig.from_config()
        self._version: Hashable = object()  # differs from any version
        self._epoch: float | None = None

    def update(self) -> None:
        """Show the feed's newest snapshot; return at once if it did not change."""
        version = self.feed.version()
        if version == self._version:
            return
        self._version = version
        snapshot = self.feed.snapshot()
        if snapshot is None:
            self.render(_data.empty_snapshot(), attached=False)
        else:
            self.render(snapshot)

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        """Show ``snapshot`` (no change check: :meth:`update` does that)."""
        raise NotImplementedError

    def _new_epoch(self, snapshot: Snapshot) -> bool:
        """Whether the snapshot belongs to another run than the last one shown."""
        epoch = snapshot["started"]
        if epoch != self._epoch:
            self._epoch = epoch
            return True
        return False


class Composite(Component):
    """Several components behind one feed: one change check for all of them."""

    def __init__(
        self,
        feed: Feed,
        components: Sequence[Component],
        root: Any,
        config: MonitorConfig | None = None,
    ) -> None:
        super().__init__(feed, config)
        self.components = list(components)
        self.root = root
        self.source = self.components[0].source

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        for component in self.components:
            component.render(snapshot, attached)
            component._version = self._version


class Summary(Component):
    """Done/total, tasks/s, elapsed, ETA and its range, errors, the monitor's health;
    and the overall progress bar."""

    title = "Progress"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.div = Div(
            text=_data.summary_html(_data.empty_snapshot(), attached=False),
            stylesheets=[InlineStyleSheet(css=SUMMARY_CSS)],
            sizing_mode="stretch_width",
            name="dm-summary",
        )
        self.source = ColumnDataSource(_data.overall_columns(_data.empty_snapshot()))
        self.bar = _figure(
            "",
            height=34,
            sizing_mode="stretch_width",
            x_range=Range1d(start=0, end=1),
            y_range=Range1d(start=-0.5, end=0.5),
            min_border_top=0,
            min_border_bottom=0,
        )
        self.bar.axis.visible = False
        self.bar.grid.visible = False
        _stacked_quads(self.bar, self.source, color=BLUE)
        self.bar.add_tools(
            _hover(
                [(label, f"@{field}") for field, label in _data.SEGMENTS]
                + [("total", "@total")],
                self.bar.renderers[:1],
            )
        )
        options = dict(kwargs)
        options["sizing_mode"] = "stretch_width"  # as tall as its contents
        options.pop("height", None)
        self.root = column(self.div, self.bar, **options)

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        text = _data.summary_html(snapshot, attached)
        if self.div.text != text:
            self.div.text = text
        sync_source(self.source, _data.overall_columns(snapshot))


def _labels(
    fig: Any, source: ColumnDataSource, x: float, text: str, **style: Any
) -> None:
    """One text label per row of ``source`` (at its ``y``), left of or right
    of the bars; ``style`` overrides the default look."""
    fig.text(
        source=source,
        x=x,
        y="y",
        text=text,
        **{
            "text_align": "left",
            "text_baseline": "middle",
            "text_font_size": "9pt",
            "text_color": "#333333",
            **style,
        },
    )


def _stacked_quads(fig: Any, source: ColumnDataSource, color: str) -> None:
    """The bar background, then one quad per segment, Dask's colours."""
    fig.quad(
        source=source,
        left=0,
        right=1,
        top="top",
        bottom="bottom",
        fill_color="#f3f3f3",
        line_color="#d0d0d0",
    )
    style: dict[str, dict[str, Any]] = {
        "done": {"fill_color": color, "fill_alpha": 0.45},
        "memory": {"fill_color": color, "fill_alpha": 0.95},
        "erred": {"fill_color": ERRED, "fill_alpha": 0.8},
        "processing": {"fill_color": PROCESSING, "fill_alpha": 0.55},
        "waiting": {
            "fill_color": WAITING,
            "fill_alpha": 0.5,
            "hatch_pattern": "/",
            "hatch_color": "#ffffff",
            "hatch_alpha": 0.8,
        },
    }
    for field, _ in _data.SEGMENTS:
        fig.quad(
            source=source,
            left=f"{field}_left",
            right=f"{field}_right",
            top="top",
            bottom="bottom",
            line_alpha=0,
            **style[field],
        )


class PrefixProgress(Component):
    """Per-prefix stacked bars, sorted by activity: top ``panel_prefixes`` rows
    and a line saying how many more."""

    title = "Progress by task prefix"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        n = self.config.panel_prefixes
        data, more = _data.prefix_columns(_data.empty_snapshot(), n)
        self.source = ColumnDataSource(data, name="dm-prefixes")
        self.more_source = ColumnDataSource(more)
        self.root = _figure(
            self.title,
            x_range=Range1d(start=-0.44, end=1.2),
            y_range=Range1d(start=-(n + 0.6), end=0.6),
            **_sized(kwargs, 70 + 21 * n),
        )
        fig = self.root
        fig.axis.visible = False
        fig.grid.visible = False
        _stacked_quads(fig, self.source, color="color")
        _labels(fig, self.source, -0.015, "label", text_align="right")
        _labels(fig, self.source, 1.015, "counts")
        _labels(
            fig,
            self.more_source,
            -0.42,
            "text",
            text_font_style="italic",
            text_color=MUTED,
        )
        fig.add_tools(
            _hover(
                [("prefix", "@name"), ("done / total", "@counts")]
                + [(label, f"@{field}") for field, label in _data.SEGMENTS]
                + [("retried (raised, ran again)", "@retried")]
                + [("rate", "@rate"), ("ETA", "@eta"), ("median duration", "@p50")],
                fig.renderers[:1],
            )
        )

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        data, more = _data.prefix_columns(snapshot, self.config.panel_prefixes)
        sync_source(self.source, data, key="name")
        sync_source(self.more_source, more)


class Throughput(Component):
    """Tasks finished per second over time (the snapshot's throughput ring),
    streamed one complete bin at a time; a dashed vertical line marks each
    Dask restart (``snapshot["restarts"]``, source ``restarts``)."""

    title = "Throughput"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource({"time": [], "rate": []}, name="dm-throughput")
        self.rollover = max(self.config.throughput_bins, 60)
        self._last = 0.0
        fig = self.root = _figure(
            "Throughput (tasks/s)",
            x_axis_type="datetime",
            **_sized(kwargs, 300),
        )
        fig.varea(
            source=self.source, x="time", y1=0, y2="rate", fill_color=BLUE, alpha=0.15
        )
        line = fig.line(source=self.source, x="time", y="rate", color=BLUE, width=2)
        #: Times of Dask restarts (ms), drawn as vertical lines.
        self.restarts = ColumnDataSource({"time": []}, name="dm-restarts")
        fig.vspan(
            source=self.restarts,
            x="time",
            line_color=MUTED,
            line_dash="dashed",
            line_width=2,
        )
        fig.y_range.start = 0
        fig.xaxis.formatter = DatetimeTickFormatter(
            seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M"
        )
        fig.add_tools(
            HoverTool(
                tooltips=[("time", "@time{%H:%M:%S}"), ("tasks/s", "@rate{0,0.0}")],
                formatters={"@time": "datetime"},
                renderers=[line],
                mode="vline",
            )
        )

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        if self._new_epoch(snapshot):
            self._last = 0.0
            if len(self.source.data["time"]):
                self.source.data = {"time": [], "rate": []}
        new: dict[str, Any] = _data.throughput_points(snapshot, self._last)
        if new["time"]:
            self._last = new["time"][-1]
            self.source.stream(new, rollover=self.rollover)
        restarts = [t * 1000.0 for t in snapshot.get("restarts") or ()]
        if list(self.restarts.data["time"]) != restarts:
            self.restarts.data = {"time": restarts}
        title = _data.throughput_title(snapshot)
        if self.root.title.text != title:
            self.root.title.text = title


#: How far the durations axis reaches past the longest task when rows carry
#: a label on their right (a factor on a log axis: about 0.8 decade).
_WHERE_ROOM = 6.0


class Durations(Component):
    """Compute-time percentiles (p50, p90, p99, max) of the prefixes with the
    most compute time, on a log scale; where each prefix's time went
    (compute, fetching inputs, spilled data, and its output bytes) in the
    tooltip, and beside its row when fetching or spilled data take at least
    :data:`~dask_monitor.panel._data.VISIBLE_SHARE` of it."""

    title = "Task durations"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        n = self.config.panel_prefixes
        self.source = ColumnDataSource(
            _data.duration_columns(_data.empty_snapshot(), n), name="dm-durations"
        )
        fig = self.root = _figure(
            "Task durations per prefix: p50 \u2013 p90 \u2013 p99 \u2013 max",
            x_axis_type="log",
            x_range=Range1d(start=1e-3, end=1.0),
            y_range=Range1d(start=-(n - 0.4), end=0.6),
            name="dm-durations-plot",
            **_sized(kwargs, 70 + 21 * n),
        )
        fig.ygrid.visible = False
        fig.yaxis.ticker = FixedTicker(ticks=[])
        fig.yaxis.major_tick_line_color = None
        fig.yaxis.axis_line_color = None
        fig.yaxis.major_label_text_font_size = "9pt"
        duration_axis(fig)
        span = fig.segment(
            source=self.source,
            x0="p99",
            x1="max",
            y0="y",
            y1="y",
            line_color="#999999",
            line_width=1.5,
        )
        fig.hbar(
            source=self.source,
            y="y",
            left="p90",
            right="p99",
            height=0.5,
            fill_color="color",
            fill_alpha=0.3,
            line_color="color",
            line_alpha=0.6,
        )
        fig.hbar(
            source=self.source,
            y="y",
            left="p50",
            right="p90",
            height=0.5,
            fill_color="color",
            fill_alpha=0.85,
            line_alpha=0,
        )
        fig.scatter(
            source=self.source,
            x="max",
            y="y",
            marker="dash",
            size=9,
            line_color="#555555",
            angle=1.5708,
        )
        # Where a prefix's time goes, beside its row when fetching inputs or
        # spilled data take a good share of it (the rest in the tooltip).
        fig.text(
            source=self.source,
            x="max",
            y="y",
            text="where",
            x_offset=8,
            text_align="left",
            text_baseline="middle",
            text_font_size="8.5pt",
            text_color="#8c4a00",
            name="dm-durations-where",
        )
        self.hover = _hover(self._tooltips(False), [span, *fig.renderers[1:3]])
        fig.add_tools(self.hover)

    @staticmethod
    def _tooltips(times: bool) -> list[tuple[str, str]]:
        """The tooltip rows; with ``times``, where the prefix's time went."""
        rows = [
            ("prefix", "@name"),
            ("tasks", "@count"),
            ("mean", "@mean_text"),
            ("p50", "@p50_text"),
            ("p90", "@p90_text"),
            ("p99", "@p99_text"),
            ("max", "@max_text"),
        ]
        if times:
            rows += [
                ("compute, all tasks", "@compute_text"),
                ("fetching inputs", "@transfer_text"),
                ("spilled data (disk)", "@disk_text"),
                ("output", "@nbytes_text"),
            ]
        return rows

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        data = _data.duration_columns(snapshot, self.config.panel_prefixes)
        if data["p50"]:
            high = max(data["max"])
            if any(data["where"]):
                high *= _WHERE_ROOM  # room for the labels right of the bars
            set_duration_range(self.root, min(data["p50"]), high)
        # A span's view (or an older snapshot) has no time split: no rows
        # for it in the tooltip rather than empty ones.
        tooltips = self._tooltips(any(data["compute_text"]))
        if self.hover.tooltips != tooltips:
            self.hover.tooltips = tooltips
        if sync_source(self.source, data, key="name") == "replace":
            axis = self.root.yaxis[0]
            axis.ticker.ticks = data["y"]
            axis.major_label_overrides = _data.duration_labels(data)


class Workers(Component):
    """Utilisation of each worker (busy thread-seconds over available ones),
    running workers first; at most ``panel_workers`` of them."""

    title = "Workers"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        data, _ = _data.worker_columns(_data.empty_snapshot(), 0)
        self.source = ColumnDataSource(data, name="dm-workers")
        fig = self.root = _figure(
            "Worker utilisation",
            x_range=Range1d(start=0, end=1.45),
            y_range=Range1d(start=-3.5, end=0.6),
            **_sized(kwargs, 300),
        )
        fig.ygrid.visible = False
        fig.yaxis.ticker = FixedTicker(ticks=[])
        fig.yaxis.major_tick_line_color = None
        fig.yaxis.axis_line_color = None
        fig.yaxis.major_label_text_font_size = "9pt"
        fig.xaxis.ticker = FixedTicker(ticks=[0, 0.25, 0.5, 0.75, 1.0])
        fig.xaxis.formatter = NumeralTickFormatter(format="0%")
        fig.quad(
            left=0,
            right=1,
            top="top",
            bottom="bottom",
            source=self.source,
            fill_color="#f3f3f3",
            line_color="#e0e0e0",
        )
        bars = fig.quad(
            left=0,
            right="utilisation",
            top="top",
            bottom="bottom",
            source=self.source,
            fill_color="color",
            fill_alpha=0.8,
            line_alpha=0,
        )
        _labels(
            fig, self.source, 1.02, "text", text_font_size="8.5pt", text_color="#444444"
        )
        fig.add_tools(
            _hover(
                [
                    ("worker", "@name"),
                    ("status", "@status"),
                    ("threads", "@nthreads"),
                    ("processing", "@processing"),
                    ("completed", "@completed"),
                    ("erred", "@erred"),
                    ("busy", "@busy"),
                    ("utilisation now", "@now"),
                    ("over the run", "@run"),
                ],
                [bars, fig.renderers[0]],
            )
        )

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        n = min(self.config.panel_workers, rows_that_fit(self.root))
        data, hidden = _data.worker_columns(snapshot, n)
        rows = len(data["y"])
        height = 0.72 if rows < 40 else 0.9
        data["top"] = [y + height / 2 for y in data["y"]]
        data["bottom"] = [y - height / 2 for y in data["y"]]
        if sync_source(self.source, data, key="name") == "replace":
            axis = self.root.yaxis[0]
            step = max(1, rows // 30)  # keep labels legible with many workers
            ticks = data["y"][::step]
            axis.ticker.ticks = ticks
            axis.major_label_overrides = {
                y: label
                for y, label in zip(data["y"], data["label"], strict=True)
                if y in ticks
            }
            self.root.y_range.start = -(max(rows, 4) - 0.4)
        title = _data.worker_title(snapshot)
        if hidden:
            title += f" ({hidden:,} not shown)"
        if self.root.title.text != title:
            self.root.title.text = title


class Errors(Component):
    """Erred tasks by (prefix, exception type), most frequent first; select a row
    to read its exception and traceback."""

    title = "Errors"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        table, texts = self._split(_data.error_columns(_data.empty_snapshot(), 0))
        # The table's rows; the long texts apart, sent only when they change.
        self.source = ColumnDataSource(table, name="dm-errors")
        self.texts = ColumnDataSource(texts, name="dm-error-texts")
        text = StringFormatter()  # renders cell values as text, never HTML
        columns = [
            TableColumn(field="prefix", title="prefix", formatter=text, width=120),
            # Wide enough for "caused by <prefix>: <type>" rows.
            TableColumn(field="type", title="exception", formatter=text, width=170),
            TableColumn(
                field="count",
                title="tasks",
                formatter=NumberFormatter(format="0,0"),
                width=50,
            ),
            TableColumn(
                field="retried",
                title="retried",
                formatter=NumberFormatter(format="0,0"),
                width=50,
            ),
            TableColumn(field="exception", title="message", formatter=text, width=280),
            TableColumn(field="worker", title="worker", formatter=text, width=120),
            TableColumn(field="last", title="last", formatter=text, width=64),
        ]
        sizing = dict(kwargs)
        stretch_both = sizing.get("sizing_mode") == "stretch_both"
        self.table = _table(
            self.source,
            columns=columns,
            sizing_mode="stretch_both" if stretch_both else "stretch_width",
            height=150,
            selectable=True,
            name="dm-errors-table",
        )
        self.detail = PreText(
            text="No errors.",
            sizing_mode="stretch_both" if stretch_both else "stretch_width",
            height=140,
            stylesheets=[InlineStyleSheet(css=PRE_CSS)],
            name="dm-error-detail",
        )
        # Selecting a row shows its text below; the text goes into a text node.
        self.source.selected.js_on_change(
            "indices",
            CustomJS(
                args={
                    "source": self.source,
                    "texts": self.texts,
                    "detail": self.detail,
                },
                code="""
                const i = source.selected.indices[0]
                if (i != null && i < texts.data.traceback.length) {
                    detail.text = texts.data.traceback[i]
                }
                """,
            ),
        )
        self.header = _table_header("Errors", "dm-errors-header")
        self.root = column(self.header, self.table, self.detail, **_sized(kwargs, 330))

    @staticmethod
    def _split(data: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], ...]:
        texts = {"key": data["key"], "traceback": data.pop("traceback")}
        return data, texts

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        table, texts = self._split(
            _data.error_columns(snapshot, self.config.panel_errors)
        )
        changed = sync_source(self.source, table, key="key") != "same"
        changed |= sync_source(self.texts, texts, key="key") != "same"
        if changed:
            indices = self.source.selected.indices
            i = indices[0] if indices and indices[0] < len(texts["key"]) else 0
            text = texts["traceback"][i] if texts["traceback"] else "No errors."
            if self.detail.text != text:
                self.detail.text = text
        title = _data.errors_title(snapshot, len(table["key"]))
        if self.header.text != title:
            self.header.text = title


class TaskStream(Component):
    """Recent sampled tasks: one rectangle per task from its compute start to its
    end, one row per worker (a lane per thread), coloured by prefix."""

    title = "Task stream (sampled)"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource(self._empty(), name="dm-task-stream")
        self.rollover = self.config.panel_tasks
        self._last = float("-inf")
        self._rows: dict[str, int] = {}
        self._lanes: dict[str, list[float]] = {}
        fig = self.root = _figure(
            "Task stream (sampled recent tasks)",
            x_axis_type="datetime",
            y_range=Range1d(start=-0.6, end=0.6),
            **_sized(kwargs, 300),
        )
        fig.ygrid.visible = False
        fig.yaxis.ticker = FixedTicker(ticks=[])
        fig.yaxis.major_tick_line_color = None
        fig.yaxis.axis_line_color = None
        fig.yaxis.major_label_text_font_size = "8.5pt"
        fig.xaxis.formatter = DatetimeTickFormatter(
            milliseconds="%H:%M:%S.%3N",
            seconds="%H:%M:%S",
            minsec="%H:%M:%S",
            minutes="%H:%M",
        )
        rects = fig.rect(
            source=self.source,
            x="x",
            y="y",
            width="width",
            height="height",
            fill_color="color",
            line_color="color",
            fill_alpha=0.85,
            line_alpha=0.9,
        )
        fig.add_tools(
            _hover(
                [
                    ("key", "@key"),
                    ("prefix", "@prefix"),
                    ("worker", "@worker"),
                    ("duration", "@duration"),
                    ("state", "@state"),
                ],
                [rects],
            )
        )

    @staticmethod
    def _empty() -> dict[str, list[Any]]:
        return {
            k: []
            for k in (
                "x",
                "y",
                "width",
                "height",
                "color",
                "key",
                "prefix",
                "worker",
                "duration",
                "state",
            )
        }

    def _lane(self, worker: str, threads: int, begin: float, end: float) -> int:
        """Greedy lane of a task on its worker: the first thread free at ``begin``.

        A worker's lanes grow to its threads when those become known. Dask
        shifts compute intervals by the worker's clock offset, which moves
        between tasks: a task may start a few milliseconds before any lane is
        free, and then takes the lane free first.
        """
        lanes = self._lanes.get(worker)
        if lanes is None or len(lanes) < threads:
            known = lanes or []
            lanes = self._lanes[worker] = known + [float("-inf")] * (
                max(threads, 1) - len(known)
            )
        for i, free in enumerate(lanes):
            if free <= begin:
                lanes[i] = end
                return i
        i = min(range(len(lanes)), key=lanes.__getitem__)
        lanes[i] = end
        return i

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        if self._new_epoch(snapshot):
            self._last = float("-inf")
            self._rows.clear()
            self._lanes.clear()
            if len(self.source.data["x"]):
                self.source.data = self._empty()
        events = _data.new_events(snapshot, self._last, self.rollover)
        if not events:
            return
        self._last = events[-1]["timestamp"]
        workers = snapshot["workers"]
        new: dict[str, Any] = self._empty()
        rows_before = len(self._rows)
        for e in sorted(events, key=lambda e: e["begin"] or 0.0):
            worker = e["worker"] or "?"
            row = self._rows.setdefault(worker, len(self._rows))
            info = workers.get(worker)
            threads = (info["nthreads"] if info else None) or 1
            begin = e["begin"] or 0.0
            end = e["end"] or begin
            lane = self._lane(worker, threads, begin, end)
            height = 0.8 / threads
            new["x"].append((begin + end) * 500.0)
            new["width"].append(max(end - begin, 1e-4) * 1000.0)
            new["y"].append(-row + 0.4 - height * (lane + 0.5))
            new["height"].append(height * 0.9)
            new["color"].append(_data.event_color(e))
            new["key"].append(_data.display_text(e["key"], 200))
            new["prefix"].append(_data.display_text(e["prefix"], 200))
            new["worker"].append(_data.display_text(worker, 200))
            new["duration"].append(_data.fmt_seconds(e["duration"]))
            new["state"].append(e["finish"])
        self.source.stream(new, rollover=self.rollover)
        if len(self._rows) != rows_before:
            axis = self.root.yaxis[0]
            rows = len(self._rows)
            # A label every few rows (a thousand workers' rows are thin).
            step = max(1, -(-rows // rows_that_fit(self.root)))
            ticks = [-float(r) for r in range(0, rows, step)]
            names = {-float(r): w for w, r in self._rows.items()}
            axis.ticker.ticks = ticks
            axis.major_label_overrides = {
                y: _data.display_text(_data.short_address(names[y]), 24) for y in ticks
            }
            self.root.y_range.start = -(rows - 0.4)


class Health(Component):
    """The monitor accounting for itself: events, drops, flush cost, overhead."""

    title = "Monitor health"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource(
            _data.health_columns(_data.empty_snapshot()), name="dm-health"
        )
        text = StringFormatter()
        sizing = dict(kwargs)
        self.root = _table(
            self.source,
            columns=[
                TableColumn(field="metric", title="monitor", formatter=text, width=220),
                TableColumn(field="value", title="", formatter=text, width=220),
            ],
            autosize_mode="force_fit",  # two columns: equal widths are fine
            **_sized(sizing, 260),
            name="dm-health-table",
        )

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        sync_source(self.source, _data.health_columns(snapshot), key="metric")


class Alerts(Component):
    """Recent alerts, newest first (at most ``rows``), coloured by severity; the
    header counts them per kind. Messages, keys, prefixes and details are shown
    as table text only."""

    title = "Alerts"
    #: Rows shown at most (the snapshot keeps ``monitor.alerts.recent`` alerts).
    rows = 50

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource(
            _data.alert_columns(_data.empty_snapshot(), 0), name="dm-alerts"
        )
        text = StringFormatter()  # renders cell values as text, never HTML
        coloured = StringFormatter(text_color="color", font_style="bold")
        columns = [
            TableColumn(field="time", title="time", formatter=text, width=64),
            TableColumn(
                field="severity", title="severity", formatter=coloured, width=64
            ),
            TableColumn(field="kind", title="kind", formatter=coloured, width=100),
            TableColumn(field="message", title="message", formatter=text, width=380),
            TableColumn(field="prefix", title="prefix", formatter=text, width=110),
            TableColumn(field="worker", title="worker", formatter=text, width=120),
            TableColumn(field="key", title="key", formatter=text, width=160),
            TableColumn(field="details", title="details", formatter=text, width=260),
        ]
        stretch_both = kwargs.get("sizing_mode") == "stretch_both"
        self.table = _table(
            self.source,
            columns=columns,
            sizing_mode="stretch_both" if stretch_both else "stretch_width",
            height=170,
            selectable=True,
            name="dm-alerts-table",
        )
        self.header = _table_header("Alerts: none", "dm-alerts-header")
        self.root = column(self.header, self.table, **_sized(kwargs, 210))

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        data = _data.alert_columns(snapshot, self.rows)
        sync_source(self.source, data)
        title = _data.alerts_title(snapshot, len(data["kind"]))
        if self.header.text != title:
            self.header.text = title


def _insight_columns(insights: list[dict[str, Any]] | None) -> dict[str, list[Any]]:
    """What insights are shown, as short columns of plain text (the texts are
    in the Divs' HTML): for tests and Bokeh clients."""
    rows = insights or []
    return {
        "kind": [_data.display_text(i["kind"], 40) for i in rows],
        "severity": [_data.display_text(i["severity"], 12) for i in rows],
        "subject": [_data.display_text(i["subject"], 200) for i in rows],
    }


def _insights_div(
    name: str, sheet: InlineStyleSheet | None = None, **kwargs: Any
) -> Div:
    """A Div of insight HTML (escaped by ``_data``), with TeX typesetting off;
    Divs of one component share their ``sheet`` (sent once)."""
    if sheet is None:
        sheet = InlineStyleSheet(css=INSIGHTS_CSS)
    return Div(
        text="",
        disable_math=True,
        stylesheets=[sheet],
        name=name,
        **kwargs,
    )


class InsightStrip(Component):
    """The top :attr:`shown` insights, one line each (severity icon and colour,
    message, subject), above the panel; a button opens all of them with their
    evidence, advice and docs link.

    When insights were evaluated and none holds, one quiet line says so (a
    reader learns the panel looks for problems, and that it found none). A
    snapshot without an ``insights`` field (a monitor that computes none, or
    none attached) hides the strip: it claims nothing it did not check.

    The button opens the list below the strip. The list is filled only while
    it is open (a server-side callback of the page's session): every change
    of its cards would otherwise go to every open page, looked at or not. Its
    state is the session's and survives the updates of the list. The strip
    needs a server: reports list the insights in a section of their own
    (:class:`Insights`).
    """

    title = "Insights"
    #: Insights shown in the strip itself.
    shown = 3
    #: Insights the button opens at most (all of them: the insights page).
    listed = 20

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource(_insight_columns(None), name="dm-insights")
        sheet = InlineStyleSheet(css=INSIGHTS_CSS)
        #: One Div per line: a line that changes is sent alone.
        self.lines = [
            _insights_div(
                f"dm-insights-line-{i}",
                sheet,
                sizing_mode="stretch_width",
                margin=(0, 5, 0, 5),  # lines of one block, not widgets apart
            )
            for i in range(self.shown)
        ]
        self.div = column(
            *self.lines, sizing_mode="stretch_width", name="dm-insights-strip"
        )
        self.toggle = Toggle(
            label="All insights",
            active=False,
            visible=False,
            width=200,
            button_type="light",
            name="dm-insights-toggle",
        )
        self.details = _insights_div(
            "dm-insights-all", sheet, sizing_mode="stretch_width", visible=False
        )
        self.toggle.on_change("active", self._toggled)
        self._insights: list[dict[str, Any]] = []
        self.root = column(
            hrow(self.div, self.toggle, sizing_mode="stretch_width"),
            self.details,
            sizing_mode="stretch_width",
            visible=False,
            name="dm-insights",
        )

    @property
    def text(self) -> str:
        """The strip's HTML, all lines."""
        return "".join(div.text for div in self.lines)

    def _toggled(self, attr: str, old: Any, new: Any) -> None:
        self._show_details()

    def _show_details(self) -> None:
        """Fill the list while it is open, empty it (sending nothing more) when
        it is closed."""
        insights = self._insights
        opened = bool(self.toggle.active and insights)
        cards = ""
        if opened:
            cards = _data.insight_cards_html(insights[: self.listed])
            if len(insights) > self.listed:
                cards += (
                    f'<div class="dm-ins-none">\u2026 and '
                    f"{len(insights) - self.listed:,} more on the insights page "
                    "(/individual-monitor-insights)</div>"
                )
        if self.details.text != cards:
            self.details.text = cards
        if self.details.visible != opened:
            self.details.visible = opened

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        insights = insights_of(snapshot) if attached else None
        self._insights = insights or []
        sync_source(self.source, _insight_columns((insights or [])[: self.shown]))
        if insights is None:
            if self.root.visible:
                self.root.visible = False
            return
        strip = _data.insight_lines(insights[: self.shown])
        if not self.root.visible:
            self.root.visible = True
        for i, div in enumerate(self.lines):
            text = strip[i] if i < len(strip) else ""
            if div.text != text:
                div.text = text
            if div.visible != bool(text):
                div.visible = bool(text)
        label = (
            f"All {len(insights):,} insights: evidence, advice"
            if len(insights) > 1
            else "Evidence and advice"
        )
        if self.toggle.label != label:
            self.toggle.label = label
        if self.toggle.visible != bool(insights):
            self.toggle.visible = bool(insights)
        self._show_details()


class Insights(Component):
    """Every insight, most severe first, as a card: severity, kind, subject,
    since when; the message; the evidence; the advice and the Dask docs page
    that explains it (opened in a new tab). The page
    ``/individual-monitor-insights`` and the report's first section."""

    title = "Insights"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource(_insight_columns(None), name="dm-insights")
        stretch_both = kwargs.get("sizing_mode") == "stretch_both"
        self.header = _table_header(_data.insights_title(None), "dm-insights-header")
        self.cards = _insights_div(
            "dm-insights-list",
            sizing_mode="stretch_both" if stretch_both else "stretch_width",
            styles={"overflow-y": "auto"},
        )
        options = dict(kwargs)
        options.setdefault("sizing_mode", "stretch_width")
        if options["sizing_mode"] != "stretch_both":
            options.pop("height", None)  # as tall as its cards
        self.root = column(self.header, self.cards, **options)

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        insights = insights_of(snapshot) if attached else None
        sync_source(self.source, _insight_columns(insights))
        title = _data.insights_title(insights)
        if self.header.text != title:
            self.header.text = title
        cards = "" if insights is None else _data.insight_cards_html(insights)
        if self.cards.text != cards:
            self.cards.text = cards


#: The selector's value for "everything" (no span).
EVERYTHING = ""


class SpanSelector(Component):
    """A ``Select`` of what one page watches: everything, or one Dask span.

    The options follow the snapshot's ``spans`` summary (span names, most
    recently active first, at most ``limit``). Choosing one sets the span of
    this page's :class:`SchedulerFeed` (its own, one per browser session) and
    redraws the page's components at once (``on_change``: the server-side
    callback of that session). Feeds without a ``span`` attribute (reports)
    get a disabled selector.
    """

    title = "Watching"
    limit = 100

    def __init__(
        self,
        feed: Feed,
        config: MonitorConfig | None = None,
        *,
        on_change: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(feed, config)
        self.source = ColumnDataSource({"name": []})
        self.on_select = on_change
        current = getattr(feed, "span", None)
        self._names: list[str] = [] if current is None else [current]
        self.select = Select(
            title="",
            value=EVERYTHING if current is None else current,
            options=self._options(),
            width=260,
            disabled=not hasattr(feed, "span"),
            name="dm-span-select",
        )
        self.select.on_change("value", self._changed)
        self.note = Div(
            text=self._note(current),
            render_as_text=True,
            stylesheets=[
                InlineStyleSheet(
                    css=":host { color: #6b6b6b; font-size: 9.5pt;"
                    " padding: 6px 0 0 4px; }"
                )
            ],
            sizing_mode="stretch_width",
            name="dm-span-note",
        )
        label = Div(
            text="Watching",
            render_as_text=True,
            stylesheets=[
                InlineStyleSheet(
                    css=":host { font-weight: bold; font-size: 10pt; color: #333;"
                    " padding: 6px 6px 0 10px; }"
                )
            ],
        )
        options = dict(kwargs)
        options.setdefault("sizing_mode", "stretch_width")
        options.pop("height", None)
        self.root = hrow(label, self.select, self.note, **options)

    def _options(self) -> list[str | tuple[Any, str]]:
        options: list[str | tuple[Any, str]] = [(EVERYTHING, "everything")]
        options += [(n, f"span {_data.display_text(n, 60)}") for n in self._names]
        return options

    @staticmethod
    def _note(span: str | None) -> str:
        if span is None:
            return "all tasks of the cluster"
        return (
            f"tasks of span {_data.display_text(span, 60)} only in the totals, "
            "prefixes and errors; throughput, workers, task stream and alerts "
            "are the whole cluster's"
        )

    def _changed(self, attr: str, old: Any, new: Any) -> None:
        span = None if not new else str(new)
        if getattr(self.feed, "span", None) == span:
            return
        self.feed.span = span  # type: ignore[attr-defined]
        text = self._note(span)
        if self.note.text != text:
            self.note.text = text
        if self.on_select is not None:
            self.on_select()

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        names: list[str] = []
        seen: set[str] = set()
        spans = snapshot.get("spans") or {}
        for info in spans.values():
            name = str(info.get("name") or "")
            if name and name not in seen:
                seen.add(name)
                names.append(name)
            if len(names) >= self.limit:
                break
        names.sort()  # stable options: the most recent spans, by name
        current = getattr(self.feed, "span", None)
        if current is not None and current not in seen:
            names.append(current)  # keep the selection listed
        if names != self._names:
            self._names = names
            self.select.options = self._options()


#: Individual views by short name, as in ``/individual-monitor-<name>``.
COMPONENTS: dict[str, type[Component]] = {
    "progress": PrefixProgress,
    "throughput": Throughput,
    "durations": Durations,
    "workers": Workers,
    "errors": Errors,
    "task-stream": TaskStream,
    "health": Health,
    "alerts": Alerts,
    "insights": Insights,
}
