"""Pages on the scheduler's dashboard: doc factories, registration, late serving.

Imported only where a dashboard runs: it imports ``distributed.dashboard``.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column
from distributed.dashboard.components.scheduler import env
from distributed.dashboard.scheduler import applications, template_variables

from dask_monitor.config import MonitorConfig

from ._style import THEME
from .components import (
    Component,
    Composite,
    SchedulerFeed,
    SpanSelector,
    running_monitor,
)
from .views import full_view, individual_view

__all__ = ["PAGE_FACTORIES", "ensure_pages", "monitor_doc", "register_pages"]

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


def individual_doc(
    name: str, scheduler: Any, extra: dict[str, Any], doc: Document
) -> None:
    """``/individual-monitor-<name>``: one view filling the page (for panes)."""
    config = _config(scheduler)
    view = individual_view(name, SchedulerFeed(scheduler), config)
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
        for name in (
            "progress",
            "throughput",
            "durations",
            "workers",
            "errors",
            "task-stream",
            "health",
            "alerts",
            "insights",
        )
    },
}


def register_pages() -> None:
    """Add the pages to ``distributed.dashboard.scheduler.applications``.

    Schedulers created afterwards in this process serve them, list the
    individual ones in ``/individual-plots.json`` and in the navbar. Idempotent.
    """
    for path, factory in PAGE_FACTORIES.items():
        applications.setdefault(path, factory)


def ensure_pages(scheduler: Any) -> bool:
    """Serve the pages on ``scheduler``'s dashboard if it does not yet.

    For a scheduler started before the pages were registered (the monitor
    attached to a running cluster): a second Bokeh application with the missing
    pages is added to ``scheduler.http_application``, under the dashboard's
    prefix. Such pages are not listed in ``/individual-plots.json`` nor in the
    navbar's plot list (Dask reads those once). The dashboard's navbar gets a
    "Monitor" link either way.

    Idempotent; call it on the scheduler's event loop. Returns whether the pages
    are served; ``False`` (and nothing done) when the scheduler has no
    dashboard.
    """
    from bokeh.server.tornado import BokehTornado
    from distributed.dashboard.core import BokehApplication
    from tornado.ioloop import IOLoop

    register_pages()
    http = getattr(scheduler, "http_application", None)
    apps = [a for a in getattr(http, "applications", ()) if isinstance(a, BokehTornado)]
    if http is None or not apps:
        return False
    served: set[str] = set()
    for app in apps:
        served |= set(app.app_paths)
    missing = {p: f for p, f in PAGE_FACTORIES.items() if p not in served}
    variables = template_variables(scheduler)
    pages = variables.get("pages")
    if isinstance(pages, list) and "monitor" not in pages:
        pages.append("monitor")  # shared by Dask's pages: adds a navbar link
    if missing:
        prefix = getattr(apps[0], "_prefix", "") or ""
        app = BokehApplication(
            missing, scheduler, prefix=prefix, template_variables=variables
        )
        http.add_application(app)
        app.initialize(IOLoop.current())
        app.start()
        logger.info(
            "dask-monitor: serving %s on the running dashboard", ", ".join(missing)
        )
    return True
