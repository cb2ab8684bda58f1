"""Pages on a scheduler's dashboard: doc factories and their serving.

Imported only where a dashboard runs: it imports ``distributed.dashboard``.
Pages are added to one scheduler at a time (:func:`ensure_pages`), never to
Dask's process-wide page table, so a scheduler without the monitor has none.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models.widgets import Div
from distributed.dashboard.components.scheduler import env
from distributed.dashboard.scheduler import template_variables

from dask_monitor.config import MonitorConfig
from dask_monitor.links import INDIVIDUAL
from dask_monitor.snapshot import Snapshot

from ._data import empty_snapshot, summary_html
from ._style import THEME
from .components import (
    Component,
    Composite,
    SchedulerFeed,
    SpanSelector,
    running_monitor,
)
from .views import full_view, individual_view

__all__ = ["PAGE_FACTORIES", "ensure_pages", "monitor_doc"]

logger = logging.getLogger(__name__)

DocFactory = Callable[[Any, dict[str, Any], Document], None]


def _config(scheduler: Any) -> MonitorConfig:
    """The running monitor's settings, else Dask config's."""
    config = getattr(running_monitor(scheduler), "config", None)
    if isinstance(config, MonitorConfig):
        return config
    return MonitorConfig.from_config()


def _periodic(doc: Document, component: Component, seconds: float) -> None:
    # A weak reference, as Dask's add_periodic_callback: the callback does not
    # keep the component alive after its session is gone.
    ref = weakref.ref(component)

    def update() -> None:
        c = ref()
        if c is not None:
            c.update()

    doc.add_periodic_callback(update, max(int(seconds * 1000), 20))
    components = doc.__dict__.setdefault("_dask_monitor_components", [])
    components.append(component)


def monitor_doc(scheduler: Any, extra: dict[str, Any], doc: Document) -> None:
    """``/monitor``: the full panel inside the dashboard's navbar template."""
    config = _config(scheduler)
    # One feed per document: each browser session watches its own selection.
    feed = SchedulerFeed(scheduler)
    panel = full_view(feed, config)
    ref = weakref.ref(panel)

    def redraw() -> None:  # the selection changed: show it at once
        p = ref()
        if p is not None:
            p.update()

    selector = SpanSelector(feed, config, on_change=redraw)
    view = Composite(
        feed,
        [selector, panel],
        column(
            selector.root,
            panel.root,
            sizing_mode="stretch_width",
            spacing=4,
            name="dask-monitor-page",
        ),
        config,
    )
    view.update()
    doc.title = "Dask: Monitor"
    doc.add_root(view.root)
    doc.template = env.get_template("simple.html")
    variables = dict(extra)
    pages = list(variables.get("pages", []))
    if "monitor" not in pages:
        pages.append("monitor")
    variables["pages"] = pages
    doc.template_variables.update(variables)
    doc.theme = THEME
    _periodic(doc, view, config.panel_interval)


class NotRunning(Component):
    """One line, shown while no monitor runs on the page's scheduler (never
    attached, detached, or its plugin removed): the page stays up and says so."""

    def __init__(self, feed: SchedulerFeed, config: MonitorConfig) -> None:
        super().__init__(feed, config)
        self.root = Div(
            text=summary_html(empty_snapshot(), attached=False),
            visible=False,  # until the first update says
            sizing_mode="stretch_width",
            name="dm-not-running",
        )

    def render(self, snapshot: Snapshot, attached: bool = True) -> None:
        self.root.visible = not attached


def individual_doc(
    name: str, scheduler: Any, extra: dict[str, Any], doc: Document
) -> None:
    """``/individual-monitor-<name>``: one view filling the page (for panes)."""
    config = _config(scheduler)
    feed = SchedulerFeed(scheduler)
    view = individual_view(name, feed, config)
    if name != "progress":  # its summary says when no monitor runs
        note = NotRunning(feed, config)
        root = column(note.root, view.root, sizing_mode="stretch_both")
        view = Composite(feed, [view, note], root, config)
    view.update()
    doc.title = f"Dask: Monitor {name.replace('-', ' ')}"
    doc.add_root(view.root)
    doc.theme = THEME
    _periodic(doc, view, config.panel_interval)


#: Page path -> Bokeh doc factory ``(scheduler, extra, doc)``.
PAGE_FACTORIES: dict[str, DocFactory] = {
    "/monitor": monitor_doc,
    **{
        f"/individual-monitor-{name}": functools.partial(individual_doc, name)
        for name in INDIVIDUAL
    },
}


def _link(variables: dict[str, Any]) -> None:
    """Link the pages from this scheduler's navbar: ``monitor`` among Dask's
    pages, the individual pages in its plot list."""
    pages = variables.get("pages")
    if isinstance(pages, list) and "monitor" not in pages:
        pages.append("monitor")
    plots = variables.get("plots")
    if isinstance(plots, list):
        have = {p.get("url") for p in plots if isinstance(p, dict)}
        for path in PAGE_FACTORIES:
            url = path.strip("/")
            if url.startswith("individual-") and url not in have:
                name = " ".join(url.split("-")[1:]).title()  # Dask's naming
                plots.append({"url": url, "name": name})
        plots.sort(key=lambda p: str(p.get("name", "")) if isinstance(p, dict) else "")


def _list(first: Any, added: Any) -> bool:
    """Move ``added``'s application contexts into ``first``'s, so that
    ``first.app_paths`` includes the pages; return whether it does.

    Dask's ``/individual-plots.json`` (dask-labextension's list) reads the
    ``app_paths`` of the dashboard's first Bokeh server only. Routes keep
    serving the pages from ``added`` (each route holds its context); ``first``
    then cleans their sessions up and unloads them, as for its own pages, so
    that no context is managed twice. Relies on Bokeh's private
    ``_applications`` dict (Bokeh 3.x): if that changes, the pages are still
    served, just not listed.
    """
    try:
        mine = getattr(added, "_applications", None)
        theirs = getattr(first, "_applications", None)
        if not isinstance(mine, dict) or not isinstance(theirs, dict):
            return False
        # New dicts, not updates: a Bokeh coroutine iterating over either
        # (session cleanup awaits inside its loop) keeps the one it started on.
        first._applications = {**theirs, **mine}
        added._applications = {}
        return set(mine) <= set(first.app_paths)
    except Exception:
        logger.debug("dask-monitor: could not list the pages", exc_info=True)
        return False


def ensure_pages(scheduler: Any) -> bool:
    """Serve the pages on ``scheduler``'s dashboard if it does not yet.

    A second Bokeh application with the pages is added to
    ``scheduler.http_application``, under the dashboard's prefix; only this
    scheduler serves them. They are listed in ``/individual-plots.json`` (see
    :func:`_list`) and the dashboard's navbar links them.

    Idempotent; call it on the scheduler's event loop. Returns whether the pages
    are served; ``False`` (and nothing done) when the scheduler has no
    dashboard.
    """
    from bokeh.server.tornado import BokehTornado
    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    http = getattr(scheduler, "http_application", None)
    apps = [a for a in getattr(http, "applications", ()) if isinstance(a, BokehTornado)]
    if http is None or not apps:
        return False
    served: set[str] = set()
    for app in apps:
        served |= set(app.app_paths)
    missing = {p: f for p, f in PAGE_FACTORIES.items() if p not in served}
    # Memoized per scheduler by Dask and shared by its pages: changing it
    # changes this scheduler's navbar only.
    variables = template_variables(scheduler)
    _link(variables)
    if missing:
        prefix = getattr(apps[0], "_prefix", "") or ""
        app = BokehApplication(
            missing, scheduler, prefix=prefix, template_variables=variables
        )
        http.add_application(app)
        app.initialize(IOLoop.current())
        app.start()
        if not _list(apps[0], app):
            logger.info("dask-monitor: pages served but not in /individual-plots.json")
        logger.info(
            "dask-monitor: serving %s on the dashboard", ", ".join(sorted(missing))
        )
    return True
