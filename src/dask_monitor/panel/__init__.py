"""The live panel: Bokeh pages on the Dask dashboard, notebook display, reports.

The panel reads snapshots only. Its pages are served by the scheduler's
dashboard:

- ``/monitor``: everything, within the dashboard's navbar;
- ``/individual-monitor-progress``, ``-throughput``, ``-durations``,
  ``-workers``, ``-errors``, ``-task-stream``, ``-health``, ``-alerts``,
  ``-insights``: one view each, for dask-labextension panes.

Importing this package is cheap: Bokeh and Dask's dashboard are imported by the
functions that need them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask_monitor.links import PAGES, dashboard_prefix, panel_iframe, panel_url

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dask_monitor.config import MonitorConfig
    from dask_monitor.snapshot import Snapshot

__all__ = [
    "PAGES",
    "PATHS",
    "dashboard_prefix",
    "ensure_pages",
    "panel_iframe",
    "panel_url",
    "report_html",
    "serve_snapshot",
    "write_report",
]

#: Paths of the pages on the dashboard.
PATHS: tuple[str, ...] = tuple(f"/{path}" for path in PAGES.values())


def ensure_pages(scheduler: Any) -> bool:
    """Serve the panel's pages on a running scheduler's dashboard (idempotent).

    Call it on the scheduler's event loop (e.g. in ``SchedulerPlugin.start``).
    Returns whether the pages are served: ``False`` when the scheduler has no
    dashboard (disabled, or Bokeh missing); it never raises for that.
    Only this scheduler serves them; they are listed in
    ``/individual-plots.json`` and linked from the navbar.
    """
    http = getattr(scheduler, "http_application", None)
    if http is None or not getattr(http, "applications", None):
        return False
    try:
        from ._pages import ensure_pages as ensure
    except ImportError:  # no Bokeh, or a Bokeh that Dask's dashboard refuses
        return False
    return ensure(scheduler)


def report_html(
    snapshot: Snapshot,
    *,
    title: str | None = None,
    config: MonitorConfig | None = None,
    source: str | None = None,
    versions: Mapping[str, str] | None = None,
) -> str:
    """The panel for ``snapshot`` as one standalone HTML page (works offline),
    under a heading: title, run date, ``source`` and ``versions``."""
    from .report import report_html as render

    return render(
        snapshot, title=title, config=config, source=source, versions=versions
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
    """Write the standalone HTML report of ``snapshot`` to ``path``; return it."""
    from .report import write_report as write

    return write(
        snapshot, path, title=title, config=config, source=source, versions=versions
    )


def serve_snapshot(
    snapshot: Snapshot,
    *,
    config: MonitorConfig | None = None,
    port: int = 0,
    address: str = "127.0.0.1",
    title: str = "dask-monitor replay",
    source: str | None = None,
    versions: dict[str, str] | None = None,
) -> Any:
    """A started Bokeh server showing the panel for ``snapshot`` at ``/``
    (see :func:`dask_monitor.panel.serve.serve_snapshot`)."""
    from .serve import serve_snapshot as serve

    return serve(
        snapshot,
        config=config,
        port=port,
        address=address,
        title=title,
        source=source,
        versions=versions,
    )
