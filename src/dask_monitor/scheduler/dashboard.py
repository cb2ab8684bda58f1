"""Where the scheduler plugin meets the panel: the one module that knows both.

The plugin asks for its pages here when it starts; the panel never imports
the plugin (its pages find the running monitor through ``scheduler.plugins``
by name, :data:`~dask_monitor.config.PLUGIN_NAME`), so imports point one
way: plugin -> dashboard -> panel.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["add_pages"]

logger = logging.getLogger(__name__)


def add_pages(scheduler: Any) -> bool:
    """Serve the panel's pages on ``scheduler``'s dashboard if it lacks them.

    Returns whether they are served. Never raises: the dashboard is
    optional, and a broken panel must not stop the plugin (logged instead).
    """
    try:
        from dask_monitor.panel import ensure_pages

        return ensure_pages(scheduler)
    except Exception:
        logger.warning("dask-monitor: could not add the panel pages", exc_info=True)
        return False
