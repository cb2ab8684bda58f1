"""A standalone HTML report of one snapshot: the panel's views, offline."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bokeh.embed import file_html
from bokeh.resources import INLINE

from dask_monitor.config import MonitorConfig
from dask_monitor.snapshot import Snapshot

from ._style import THEME
from .components import StaticFeed
from .views import full_view

__all__ = ["report_html", "write_report"]


def report_html(
    snapshot: Snapshot,
    *,
    title: str | None = None,
    config: MonitorConfig | None = None,
) -> str:
    """The panel for ``snapshot`` as one self-contained HTML page.

    BokehJS is inlined (no network access needed to open it); the data is the
    snapshot's, drawn by the same components as the live panel.
    """
    view = full_view(StaticFeed(snapshot), config)
    view.update()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot["timestamp"]))
    title = title or f"dask-monitor report {stamp}"
    return file_html(view.root, INLINE, title, theme=THEME)


def write_report(
    snapshot: Snapshot,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    config: MonitorConfig | None = None,
) -> Path:
    """Write :func:`report_html` of ``snapshot`` to ``path`` (UTF-8); return it."""
    out = Path(path)
    out.write_text(report_html(snapshot, title=title, config=config), encoding="utf-8")
    return out
