"""A standalone HTML report of one snapshot: the panel's views, offline."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import InlineStyleSheet
from bokeh.models.widgets import Div
from bokeh.resources import INLINE
from dask.utils import format_bytes

from dask_monitor.config import MonitorConfig
from dask_monitor.snapshot import Snapshot
from dask_monitor.text import TimeSplit, is_finished, where_time_went
from dask_monitor.units import format_duration

from ._style import THEME
from .components import Insights, StaticFeed
from .resources import TABLE_CSS as RESOURCES_CSS
from .resources import resources_table_html
from .views import full_view

__all__ = [
    "default_title",
    "heading_html",
    "installed_versions",
    "report_html",
    "report_root",
    "times_table_html",
    "write_report",
]

#: Packages named in a report's heading, as (label, distribution).
_PACKAGES = (
    ("dask", "dask"),
    ("distributed", "distributed"),
    ("dask-monitor", "dask-monitor"),
)

_HEADING_CSS = """
:host { padding: 4px 10px 2px 10px; }
h1 { font-size: 17pt; font-weight: 600; color: #222; margin: 4px 0 4px 0; }
.dm-run { color: #555; font-size: 10pt; line-height: 1.5; }
.dm-run b { color: #333; font-weight: 600; }
"""


def installed_versions() -> dict[str, str]:
    """Versions of dask, distributed and dask-monitor installed here."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for label, dist in _PACKAGES:
        try:
            out[label] = version(dist)
        except PackageNotFoundError:
            out[label] = "unknown"
    return out


def heading_html(
    snapshot: Snapshot,
    title: str,
    *,
    source: str | None = None,
    versions: Mapping[str, str] | None = None,
    finished: bool | None = None,
) -> str:
    """The report's heading: title, when the run started, where it comes from
    and the versions that made it. Every value is escaped (titles, paths and
    addresses are user text). ``finished``: whether the run is over (by
    default, as the snapshot says; a replayed log without its footer is not)."""
    started = time.strftime(
        "%Y-%m-%d %H:%M:%S %Z", time.localtime(snapshot["started"])
    ).strip()
    if finished is None:
        finished = is_finished(snapshot)
    state = "finished run" if finished else "run in progress"
    facts = [f"{state} started <b>{html.escape(started)}</b>"]
    if source:
        facts.append(f"source <b>{html.escape(source)}</b>")
    if versions:
        facts.append(
            ", ".join(
                f"{html.escape(str(name))} <b>{html.escape(str(v))}</b>"
                for name, v in versions.items()
            )
        )
    joined = " \u00b7 ".join(facts)
    return f'<h1>{html.escape(title)}</h1><div class="dm-run">{joined}</div>'


#: Prefixes with a row of their own in the report's "Where the time went".
TIME_ROWS = 20


def _time_cells(split: TimeSplit) -> str:
    share = split.transfer_share
    cells = (
        format_duration(split.compute),
        format_duration(split.transfer),
        "-" if share is None else f"{share:.0%}",
        format_duration(split.disk),
        format_bytes(split.nbytes),
    )
    return "".join(f"<td>{html.escape(c)}</td>" for c in cells)


def times_table_html(snapshot: Snapshot, n: int = TIME_ROWS) -> str:
    """The report's "Where the time went": per prefix, its compute, transfer
    and disk seconds summed over its completions and its output bytes; the
    ``n`` prefixes with the most time (compute + transfer + disk), most
    first, then the others summed in one row. Prefix names are escaped.

    Empty when no prefix has a time split (a snapshot of an older version).
    """
    rows, rest, n_rest = where_time_went(snapshot, n)
    if not rows:
        return ""
    head = "".join(
        f"<th>{label}</th>"
        for label in (
            "Prefix",
            "Compute",
            "Fetching inputs",
            "Share fetching",
            "Spilled data (disk)",
            "Output",
        )
    )
    body = [
        f"<tr><td>{html.escape(name)}</td>{_time_cells(split)}</tr>"
        for name, split in rows
    ]
    if rest is not None:
        label = f"{n_rest:,} other prefix{'es' if n_rest != 1 else ''}"
        body.append(f'<tr class="dm-total"><td>{label}</td>{_time_cells(rest)}</tr>')
    note = (
        "<p>Seconds summed over each prefix's finished tasks, from the "
        "workers' reports (<code>startstops</code>): computing, fetching "
        "inputs from other workers, reading and writing spilled data; "
        "output is the size of its results.</p>"
    )
    return (
        f"<h2>Where the time went</h2><table><tr>{head}</tr>{''.join(body)}</table>"
        f"{note}"
    )


def report_html(
    snapshot: Snapshot,
    *,
    title: str | None = None,
    config: MonitorConfig | None = None,
    source: str | None = None,
    versions: Mapping[str, str] | None = None,
    finished: bool | None = None,
) -> str:
    """The panel for ``snapshot`` as one self-contained HTML page.

    BokehJS is inlined (no network access needed to open it); the data is the
    snapshot's, drawn by the same components as the live panel, under a
    heading: ``title``, the run's start, ``source`` (an event log's path or a
    scheduler's address) and ``versions`` (package -> version: a log's
    header has those of the run; by default, of a live snapshot, the
    versions installed here); ``finished``: see :func:`heading_html`.
    """
    title = title or default_title(snapshot)
    root = report_root(
        snapshot,
        title=title,
        config=config,
        source=source,
        versions=versions,
        finished=finished,
    )
    return file_html(root, INLINE, title, theme=THEME)


def default_title(snapshot: Snapshot) -> str:
    """``"dask-monitor report <run start>"``."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot["started"]))
    return f"dask-monitor report {stamp}"


def report_root(
    snapshot: Snapshot,
    *,
    title: str,
    config: MonitorConfig | None = None,
    source: str | None = None,
    versions: Mapping[str, str] | None = None,
    finished: bool | None = None,
) -> Any:
    """The report's Bokeh layout: :func:`heading_html`, then the "Insights"
    section (every insight with its evidence, advice and docs link: what to
    do comes first), then the full panel (without its insights strip, which
    would repeat the section), "Where the time went" (:func:`times_table_html`)
    and the workers' resources."""
    feed = StaticFeed(snapshot)
    view = full_view(feed, config, insights=False)
    view.update()
    insights = Insights(feed, config)
    insights.update()
    if versions is None and snapshot.get("live", True):
        versions = installed_versions()
    heading = Div(
        text=heading_html(
            snapshot, title, source=source, versions=versions, finished=finished
        ),
        stylesheets=[InlineStyleSheet(css=_HEADING_CSS)],
        sizing_mode="stretch_width",
        name="dm-report-heading",
    )
    resources = Div(
        text=resources_table_html(snapshot),
        stylesheets=[InlineStyleSheet(css=RESOURCES_CSS)],
        sizing_mode="stretch_width",
        name="dm-report-resources",
    )
    insights.root.name = "dm-report-insights"
    times_html = times_table_html(snapshot)
    times = Div(
        text=times_html,
        stylesheets=[InlineStyleSheet(css=RESOURCES_CSS)],
        sizing_mode="stretch_width",
        name="dm-report-times",
        visible=bool(times_html),
    )
    return column(
        heading,
        insights.root,
        view.root,
        times,
        resources,
        sizing_mode="stretch_width",
        spacing=4,
    )


def write_report(
    snapshot: Snapshot,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    config: MonitorConfig | None = None,
    source: str | None = None,
    versions: Mapping[str, str] | None = None,
) -> Path:
    """Write :func:`report_html` of ``snapshot`` to ``path`` (UTF-8); return it."""
    out = Path(path)
    text = report_html(
        snapshot, title=title, config=config, source=source, versions=versions
    )
    out.write_text(text, encoding="utf-8")
    return out
