"""The resources view: memory per worker against its limit, CPU, network.

Reads ``snapshot["resources"]`` (see :class:`~dask_monitor.snapshot.Resources`):
memory per worker as stacked managed / unmanaged / spilled bars with the
worker's limit and Dask's thresholds marked (target 60%, spill 70%, pause
80%, terminate 95% of the limit: ``distributed.worker.memory.*``), CPU per
worker, and the cluster's network traffic over time.

Worker addresses are untrusted text: they reach the browser as canvas text
and escaped tooltip fields only.
"""

from __future__ import annotations

import html
from bisect import bisect_left
from typing import Any

from bokeh.layouts import column
from bokeh.layouts import row as hrow
from bokeh.models import (
    ColumnDataSource,
    DatetimeTickFormatter,
    FixedTicker,
    HoverTool,
    NumeralTickFormatter,
    Range1d,
)
from dask.utils import format_bytes

from dask_monitor.config import MonitorConfig
from dask_monitor.snapshot import Snapshot

from . import _data
from ._style import BLUE, MUTED
from .components import (
    Component,
    Feed,
    _figure,
    _hover,
    _sized,
    rows_that_fit,
    sync_source,
)

__all__ = [
    "THRESHOLDS",
    "ResourcesView",
    "cpu_columns",
    "memory_columns",
    "network_columns",
    "resources_rows",
    "resources_table_html",
    "resources_title",
]

#: Dask's memory thresholds (fractions of a worker's limit), with their names
#: and colours: ``distributed.worker.memory.target/spill/pause/terminate``.
THRESHOLDS: tuple[tuple[float, str, str], ...] = (
    (0.60, "target", "#2ca02c"),
    (0.70, "spill", "#ff7f0e"),
    (0.80, "pause", "#d62728"),
    (0.95, "terminate", "#7f0000"),
)

MANAGED = "#1f77b4"
UNMANAGED = "#9ecae1"
SPILLED = "#bdbdbd"
PAUSED = "#d62728"
NET_IN = BLUE
NET_OUT = "#ff7f0e"
#: Rounds of network traffic kept in the browser (the cluster's ring).
NETWORK_POINTS = 600

Columns = dict[str, list[Any]]


def _bytes(n: float | None) -> str:
    return "-" if n is None else format_bytes(int(n))


def _share(n: int, limit: int | None) -> str:
    return "-" if not limit else f"{n / limit:.0%}"


def _resources(snapshot: Snapshot) -> dict[str, Any]:
    """``snapshot["resources"]``, or ``{}`` (a snapshot of an older version)."""
    res: dict[str, Any] = dict(snapshot.get("resources") or {})
    return res


def _ordered(snapshot: Snapshot, n: int) -> tuple[list[tuple[str, Any]], int]:
    """Up to ``n`` workers by address, and how many were left out.

    With more than ``n`` workers, those using the most memory (the ones
    nearest their limits), by address.
    """
    workers = _resources(snapshot).get("workers") or {}
    if len(workers) > n:
        top = sorted(workers.items(), key=lambda kv: (-kv[1]["memory"], kv[0]))[:n]
        return sorted(top), len(workers) - n
    return sorted(workers.items()), 0


def memory_columns(snapshot: Snapshot, n: int) -> tuple[Columns, Columns, int]:
    """Stacked memory bars of up to ``n`` workers, the marks of their limits
    and thresholds, and how many workers were left out."""
    shown, hidden = _ordered(snapshot, n)
    bars: Columns = {
        k: []
        for k in (
            "y",
            "name",
            "label",
            "managed",
            "unmanaged_end",
            "spilled_end",
            "spilled",
            "memory",
            "managed_text",
            "unmanaged_text",
            "spilled_text",
            "memory_text",
            "limit_text",
            "share",
            "status",
            "text",
        )
    }
    marks: Columns = {
        k: [] for k in ("x", "y0", "y1", "color", "width", "name", "kind")
    }
    for i, (address, w) in enumerate(shown):
        y = -float(i)
        managed = max(int(w["managed"]), 0)
        memory = max(int(w["memory"]), managed)
        spilled = max(int(w["spilled"]), 0)
        limit = w.get("limit")
        bars["y"].append(y)
        bars["name"].append(_data.display_text(address, 200))
        bars["label"].append(_data.display_text(_data.short_address(address), 28))
        bars["managed"].append(managed)
        bars["unmanaged_end"].append(memory)
        bars["spilled_end"].append(memory + spilled)
        bars["spilled"].append(spilled)
        bars["memory"].append(memory)
        bars["managed_text"].append(_bytes(managed))
        bars["unmanaged_text"].append(_bytes(memory - managed))
        bars["spilled_text"].append(_bytes(spilled))
        bars["memory_text"].append(_bytes(memory))
        bars["limit_text"].append(_bytes(limit))
        bars["share"].append(_share(memory, limit))
        status = "paused" if w.get("paused") else "running"
        bars["status"].append(status)
        text = f"{_bytes(memory)}"
        if limit:
            text += f" \u00b7 {memory / limit:.0%}"
        if spilled:
            text += f" \u00b7 {_bytes(spilled)} spilled"
        if w.get("paused"):
            text += " \u00b7 paused"
        bars["text"].append(text)
        if limit:
            for fraction, name, color in (*THRESHOLDS, (1.0, "limit", "#000000")):
                marks["x"].append(fraction * limit)
                marks["y0"].append(y - 0.45)
                marks["y1"].append(y + 0.45)
                marks["color"].append(color)
                marks["width"].append(3 if name == "limit" else 2)
                kind = f"{name} {fraction:.0%}" if fraction < 1 else name
                marks["kind"].append(kind)
                marks["name"].append(f"{kind}: {_bytes(fraction * limit)}")
    return bars, marks, hidden


def cpu_columns(snapshot: Snapshot, n: int) -> Columns:
    """CPU bars (percent, 100 = one core) of up to ``n`` workers."""
    shown, _ = _ordered(snapshot, n)
    data: Columns = {k: [] for k in ("y", "name", "label", "cpu", "text")}
    for i, (address, w) in enumerate(shown):
        cpu = max(float(w["cpu"]), 0.0)
        data["y"].append(-float(i))
        data["name"].append(_data.display_text(address, 200))
        data["label"].append(_data.display_text(_data.short_address(address), 28))
        data["cpu"].append(cpu)
        data["text"].append(f"{cpu:.0f}%")
    return data


def network_columns(snapshot: Snapshot) -> Columns:
    """The cluster's network traffic over time (ms since the epoch, bytes/s)."""
    cluster = _resources(snapshot).get("cluster") or {}
    history = cluster.get("history") or {}
    times = [t * 1000.0 for t in history.get("time", [])]
    return {
        "time": times,
        "network_in": list(history.get("network_in", [])),
        "network_out": list(history.get("network_out", [])),
    }


def resources_title(snapshot: Snapshot) -> str:
    """One line: the cluster's memory against its limit, spill, pauses, CPU."""
    cluster = _resources(snapshot).get("cluster") or {}
    if not cluster:
        return "Memory per worker (no sample yet)"
    memory = int(cluster["memory"])
    limit = cluster.get("limit")
    text = f"Memory {_bytes(memory)}"
    if limit:
        text += f" of {_bytes(limit)} ({memory / limit:.0%})"
    text += f", {_bytes(cluster['spilled'])} spilled"
    paused = int(cluster.get("paused", 0))
    if paused:
        text += f", {paused} paused"
    return text


def resources_rows(snapshot: Snapshot) -> list[dict[str, str]]:
    """One row of text per worker, and the cluster's total (for reports)."""
    res = _resources(snapshot)
    rows: list[dict[str, str]] = []
    items = list(sorted((res.get("workers") or {}).items()))
    cluster = res.get("cluster") or {}
    if cluster:
        items.append(("cluster", {**cluster, "paused": cluster.get("paused", 0)}))
    for name, w in items:
        limit = w.get("limit")
        paused = w.get("paused")
        rows.append(
            {
                "worker": name,
                "memory": _bytes(w["memory"]),
                "share": _share(int(w["memory"]), limit),
                "managed": _bytes(w["managed"]),
                "unmanaged": _bytes(w["unmanaged"]),
                "spilled": _bytes(w["spilled"]),
                "limit": _bytes(limit),
                "cpu": f"{float(w['cpu']):.0f}%",
                "network": f"{_bytes(w['network_in'])}/s in, "
                f"{_bytes(w['network_out'])}/s out",
                "paused": (
                    str(paused) if name == "cluster" else ("yes" if paused else "no")
                ),
            }
        )
    return rows


#: Columns of the report's resources table: (row key, heading).
_TABLE = (
    ("worker", "Worker"),
    ("memory", "Memory"),
    ("share", "Of limit"),
    ("managed", "Managed"),
    ("unmanaged", "Unmanaged"),
    ("spilled", "Spilled"),
    ("limit", "Limit"),
    ("cpu", "CPU"),
    ("network", "Network"),
    ("paused", "Paused"),
)

TABLE_CSS = """
:host { padding: 2px 10px; }
h2 { font-size: 13pt; font-weight: 600; color: #333; margin: 10px 0 4px 0; }
table { border-collapse: collapse; font-size: 9.5pt; }
th, td { padding: 2px 10px 2px 0; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { color: #555; font-weight: 600; border-bottom: 1px solid #ddd; }
tr.dm-total td { font-weight: 600; border-top: 1px solid #ddd; }
p { color: #666; font-size: 9.5pt; margin: 2px 0; }
"""


def resources_table_html(snapshot: Snapshot) -> str:
    """The report's table of the workers' latest resources and the cluster's
    total; every value is escaped (worker addresses are user text)."""
    rows = resources_rows(snapshot)
    head = "<h2>Resources</h2>"
    if not rows:
        return head + "<p>No resource samples in this run.</p>"
    cells = "".join(f"<th>{html.escape(label)}</th>" for _, label in _TABLE)
    body = []
    for row in rows:
        total = ' class="dm-total"' if row["worker"] == "cluster" else ""
        tds = "".join(f"<td>{html.escape(row[key])}</td>" for key, _ in _TABLE)
        body.append(f"<tr{total}>{tds}</tr>")
    note = (
        "<p>Latest sample of each worker (from its heartbeats); the last row "
        "sums the workers of the latest round.</p>"
    )
    return f"{head}<table><tr>{cells}</tr>{''.join(body)}</table>{note}"


class ResourcesView(Component):
    """Memory per worker (stacked managed, unmanaged and spilled bytes, with
    the limit and Dask's 60/70/80/95% thresholds marked), CPU per worker,
    and the cluster's network traffic over time; at most ``panel_workers``
    workers."""

    title = "Resources"

    def __init__(
        self, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
    ) -> None:
        super().__init__(feed, config)
        empty = _data.empty_snapshot()
        bars, marks, _ = memory_columns(empty, 0)
        self.source = ColumnDataSource(bars, name="dm-memory")
        self.marks = ColumnDataSource(marks, name="dm-memory-marks")
        self.cpu = ColumnDataSource(cpu_columns(empty, 0), name="dm-cpu")
        self.network = ColumnDataSource(network_columns(empty), name="dm-network")
        # Children keep their heights in a pane that stretches both ways:
        # the bars would otherwise take the whole pane.
        memory = self.memory_figure = _figure(
            "Memory per worker",
            x_range=Range1d(start=0, end=1),
            y_range=Range1d(start=-3.5, end=0.6),
            **_sized({}, 320),
        )
        memory.ygrid.visible = False
        memory.yaxis.ticker = FixedTicker(ticks=[])
        memory.yaxis.major_label_text_font_size = "9pt"
        memory.xaxis.formatter = NumeralTickFormatter(format="0.0 b")
        common = {"top": "top", "bottom": "bottom", "source": self.source}
        managed = memory.quad(
            left=0, right="managed", fill_color=MANAGED, line_alpha=0,
            legend_label="managed", **common,
        )  # fmt: skip
        unmanaged = memory.quad(
            left="managed", right="unmanaged_end", fill_color=UNMANAGED, line_alpha=0,
            legend_label="unmanaged", **common,
        )  # fmt: skip
        # Spilled bytes are on disk, not in memory: a strip of their own
        # under the memory bar, from zero, so that they never read as memory
        # past the pause line or the limit.
        spilled = memory.quad(
            left=0, right="spilled", top="spill_top", bottom="spill_bottom",
            source=self.source, fill_color=SPILLED, hatch_pattern="/",
            hatch_color="#ffffff", line_alpha=0, legend_label="spilled (disk)",
        )  # fmt: skip
        lines = memory.segment(
            x0="x", x1="x", y0="y0", y1="y1", source=self.marks,
            line_color="color", line_width="width", legend_field="kind",
        )  # fmt: skip
        legend = memory.legend[0]
        legend.orientation = "horizontal"
        legend.label_text_font_size = "8pt"
        legend.glyph_width = 14
        legend.spacing = 8
        legend.border_line_alpha = 0
        legend.background_fill_alpha = 0
        memory.add_layout(legend, "above")
        memory.add_tools(
            _hover(
                [
                    ("worker", "@name"),
                    ("status", "@status"),
                    ("process memory", "@memory_text (@share of the limit)"),
                    ("managed", "@managed_text"),
                    ("unmanaged", "@unmanaged_text"),
                    ("spilled", "@spilled_text"),
                    ("limit", "@limit_text"),
                ],
                [managed, unmanaged, spilled],
            )
        )
        memory.add_tools(_hover([("mark", "@name")], [lines]))
        cpu = self.cpu_figure = _figure(
            "CPU per worker (100% = one core)",
            x_range=Range1d(start=0, end=100),
            y_range=memory.y_range,
            **_sized({}, 260),
        )
        cpu.ygrid.visible = False
        cpu.yaxis.ticker = FixedTicker(ticks=[])
        cpu.yaxis.major_label_text_font_size = "9pt"
        cpu_bars = cpu.hbar(
            y="y", right="cpu", left=0, height=0.7, source=self.cpu,
            fill_color=BLUE, fill_alpha=0.8, line_alpha=0,
        )  # fmt: skip
        cpu.text(
            x="cpu", y="y", text="text", source=self.cpu, x_offset=4,
            text_baseline="middle", text_font_size="8.5pt", text_color="#444444",
        )  # fmt: skip
        cpu.add_tools(_hover([("worker", "@name"), ("CPU", "@text")], [cpu_bars]))
        network = self.network_figure = _figure(
            "Network (cluster, bytes/s)", x_axis_type="datetime", **_sized({}, 260)
        )
        net_in = network.line(
            source=self.network, x="time", y="network_in", color=NET_IN, width=2,
            legend_label="in",
        )  # fmt: skip
        network.line(
            source=self.network, x="time", y="network_out", color=NET_OUT, width=2,
            legend_label="out", line_dash="dashed",
        )  # fmt: skip
        network.y_range.start = 0
        network.yaxis.formatter = NumeralTickFormatter(format="0.0 b")
        network.xaxis.formatter = DatetimeTickFormatter(
            seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M"
        )
        network.legend.location = "top_left"
        network.legend.label_text_font_size = "8pt"
        network.add_tools(
            HoverTool(
                tooltips=[
                    ("time", "@time{%H:%M:%S}"),
                    ("in", "@network_in{0.0 b}/s"),
                    ("out", "@network_out{0.0 b}/s"),
                ],
                formatters={"@time": "datetime"},
                renderers=[net_in],
                mode="vline",
            )
        )
        self.root = column(
            memory,
            hrow(cpu, network, sizing_mode="stretch_width"),
            sizing_mode=kwargs.get("sizing_mode", "stretch_width"),
            name="dm-resources",
        )

    def _stream_network(self, snapshot: Snapshot) -> None:
        """Send the rounds not shown yet (all of them for another run)."""
        network = network_columns(snapshot)
        times = network["time"]
        shown = self.network.data["time"]
        last = shown[-1] if len(shown) else None
        if self._new_epoch(snapshot) or last is None or not times or times[0] > last:
            if list(shown) != times:
                self.network.data = network
            return
        # The latest round may have grown since (samples of one round in
        # two flushes): its cell is patched, the new rounds streamed.
        k = bisect_left(times, last)
        if k < len(times) and times[k] == last:
            i = len(shown) - 1
            data = self.network.data
            patch = {
                name: [(i, network[name][k])]
                for name in ("network_in", "network_out")
                if data[name][i] != network[name][k]
            }
            if patch:
                self.network.patch(patch)
            k += 1
        if k < len(times):
            new: dict[str, Any] = {name: v[k:] for name, v in network.items()}
            self.network.stream(new, rollover=NETWORK_POINTS)

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        n = min(self.config.panel_workers, rows_that_fit(self.memory_figure))
        bars, marks, hidden = memory_columns(snapshot, n)
        rows = len(bars["y"])
        bars["top"] = [y + 0.35 for y in bars["y"]]
        bars["bottom"] = [y - 0.08 for y in bars["y"]]
        bars["spill_top"] = [y - 0.14 for y in bars["y"]]
        bars["spill_bottom"] = [y - 0.35 for y in bars["y"]]
        if sync_source(self.source, bars, key="name") == "replace":
            step = max(1, rows // 30)
            ticks = bars["y"][::step]
            labels = {
                y: label
                for y, label in zip(bars["y"], bars["label"], strict=True)
                if y in ticks
            }
            for fig in (self.memory_figure, self.cpu_figure):
                axis = fig.yaxis[0]
                axis.ticker.ticks = ticks
                axis.major_label_overrides = labels
            self.memory_figure.y_range.start = -(max(rows, 3) - 0.4)
        sync_source(self.marks, marks, patch=False)
        right = max([*bars["unmanaged_end"], *bars["spilled"], *marks["x"], 1]) * 1.05
        if self.memory_figure.x_range.end != right:
            self.memory_figure.x_range.end = right
        cpu = cpu_columns(snapshot, n)
        sync_source(self.cpu, cpu, key="name")
        top = max([100.0, *cpu["cpu"]]) * 1.05
        if self.cpu_figure.x_range.end != top:
            self.cpu_figure.x_range.end = top
        self._stream_network(snapshot)
        title = resources_title(snapshot)
        if hidden:
            title += f" ({hidden:,} workers not shown)"
        if self.memory_figure.title.text != title:
            self.memory_figure.title.text = title
        color = "#333333" if attached else MUTED
        if self.memory_figure.title.text_color != color:
            self.memory_figure.title.text_color = color
