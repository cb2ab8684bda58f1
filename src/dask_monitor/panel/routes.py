"""Make the panel's pages known to Dask schedulers started in this process.

Importing this module (``dask_monitor`` does, at import) is cheap and safe: it
imports neither Bokeh nor Dask's dashboard. It adds itself to Dask's config
``distributed.scheduler.http.routes``; a scheduler reads that list while it
sets up its HTTP server, right before it builds the dashboard, and then asks
this module for ``routes``: that is when the pages are registered in
``distributed.dashboard.scheduler.applications`` (only if the dashboard module
is loaded, i.e. the scheduler has a dashboard). If Dask's dashboard module is
loaded already at import, the pages are registered at once.

Pages registered that way are listed in ``/individual-plots.json`` (which
dask-labextension reads) and in the dashboard's navbar. For schedulers started
earlier, :func:`dask_monitor.panel.ensure_pages` adds them later.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["install"]

logger = logging.getLogger(__name__)

_MODULE = __name__
_DASHBOARD = "distributed.dashboard.scheduler"
_failed = False


def _register() -> None:
    """Register the pages if Dask's dashboard is loaded; never raise."""
    global _failed
    if _DASHBOARD not in sys.modules or _failed:
        return
    try:
        from ._pages import register_pages

        register_pages()
    except Exception:  # a broken panel must not stop a scheduler
        _failed = True
        logger.exception("dask-monitor: could not register the dashboard pages")


def install() -> None:
    """Register now if possible, and at every scheduler start from now on."""
    try:
        import dask.config

        routes = dask.config.get("distributed.scheduler.http.routes", default=None)
        if isinstance(routes, list) and _MODULE not in routes:
            dask.config.set({"distributed.scheduler.http.routes": [*routes, _MODULE]})
    except Exception:  # pragma: no cover - config broken: ensure_pages remains
        logger.debug("dask-monitor: could not hook into the scheduler's routes")
    _register()


def __getattr__(name: str) -> Any:
    # Dask reads ``routes`` from each module of distributed.scheduler.http.routes
    # while a scheduler starts, after importing its dashboard module.
    if name == "routes":
        _register()
        return []
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


install()
