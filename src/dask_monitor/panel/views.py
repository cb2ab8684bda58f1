"""Views: components put together for a page, a pane or a report."""

from __future__ import annotations

from typing import Any

from bokeh.layouts import column
from bokeh.models import GridBox

from dask_monitor.config import MonitorConfig

from .components import (
    COMPONENTS,
    Alerts,
    Component,
    Composite,
    Durations,
    Errors,
    Feed,
    InsightStrip,
    PrefixProgress,
    Summary,
    TaskStream,
    Throughput,
    Workers,
)
from .resources import ResourcesView

__all__ = ["full_view", "individual_view"]


def _grid(children: list[list[Any]], cols: list[str]) -> GridBox:
    """Rows of children in columns of relative widths (CSS grid, ``"3fr"``)."""
    options: dict[str, Any] = {
        "children": [
            (child, r, c)
            for r, row in enumerate(children)
            for c, child in enumerate(row)
        ],
        "cols": cols,
        "sizing_mode": "stretch_width",
        "spacing": (10, 16),
    }
    return GridBox(**options)


def full_view(
    feed: Feed, config: MonitorConfig | None = None, *, insights: bool = True
) -> Composite:
    """The whole panel (``/monitor`` and reports), laid out for a laptop screen.

    The insights strip first (the top three; ``insights=False`` leaves it out,
    as the report does, whose first section lists them all); the summary and
    overall bar; then progress by prefix beside throughput, the task stream
    beside worker utilisation, durations beside errors, the workers' resources
    (memory, CPU, network), and the recent alerts below. The monitor's health
    is the summary's second line (the ``health`` view has the details).
    """
    config = config if config is not None else MonitorConfig.from_config()
    summary = Summary(feed, config)
    prefixes = PrefixProgress(feed, config)
    throughput = Throughput(feed, config, height=prefixes.root.height)
    stream = TaskStream(feed, config, height=290)
    workers = Workers(feed, config, height=290)
    durations = Durations(feed, config)
    errors = Errors(feed, config)
    alerts = Alerts(feed, config)
    resources = ResourcesView(feed, config)
    strip = InsightStrip(feed, config) if insights else None
    components: list[Component] = [
        summary,
        prefixes,
        throughput,
        stream,
        workers,
        durations,
        errors,
        resources,
        alerts,
    ]
    if strip is not None:
        components.append(strip)
    root = column(
        *([strip.root] if strip is not None else []),
        summary.root,
        _grid([[prefixes.root, throughput.root]], ["3fr", "2fr"]),
        _grid([[stream.root, workers.root]], ["3fr", "2fr"]),
        _grid([[durations.root, errors.root]], ["2fr", "3fr"]),
        resources.root,
        alerts.root,
        sizing_mode="stretch_width",
        spacing=8,
        name="dask-monitor",
    )
    return Composite(feed, components, root, config)


def individual_view(
    name: str, feed: Feed, config: MonitorConfig | None = None, **kwargs: Any
) -> Component:
    """One view for a pane: ``progress`` (summary and prefixes), ``throughput``,
    ``durations``, ``workers``, ``errors``, ``task-stream``, ``health``,
    ``alerts``, ``resources`` or ``insights``.

    Raises ``KeyError`` for an unknown name.
    """
    config = config if config is not None else MonitorConfig.from_config()
    kwargs.setdefault("sizing_mode", "stretch_both")
    if name == "progress":
        summary = Summary(feed, config)
        prefixes = PrefixProgress(feed, config, **kwargs)
        root = column(summary.root, prefixes.root, **kwargs)
        return Composite(feed, [summary, prefixes], root, config)
    if name == "resources":
        return ResourcesView(feed, config, **kwargs)
    cls = COMPONENTS[name]
    return cls(feed, config, **kwargs)
