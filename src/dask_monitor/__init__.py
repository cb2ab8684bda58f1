"""dask-monitor: watch Dask pipelines live, understand them, keep the record.

Attach it from a client::

    from dask_monitor import Monitor
    monitor = Monitor.attach(client)
    monitor.snapshot()["totals"]

or preload it on the scheduler: ``dask scheduler --preload dask_monitor``.
"""

from __future__ import annotations

import logging
from typing import Any

from dask_monitor.client import Monitor
from dask_monitor.config import ConfigError, MonitorConfig
from dask_monitor.diff import compare
from dask_monitor.events import NEW, Alert, TaskStatus, WorkerStatus
from dask_monitor.pipeline import Pipeline, UnknownSpanError
from dask_monitor.replay import replay
from dask_monitor.scheduler.dashboard import add_pages
from dask_monitor.scheduler.plugin import MonitorPlugin, get_plugin
from dask_monitor.subject import AsyncSubject, Subject

__all__ = [
    "NEW",
    "Alert",
    "AsyncSubject",
    "ConfigError",
    "Monitor",
    "MonitorConfig",
    "MonitorPlugin",
    "Pipeline",
    "Subject",
    "TaskStatus",
    "UnknownSpanError",
    "WorkerStatus",
    "__version__",
    "compare",
    "get_plugin",
    "replay",
]

__version__ = "0.1.0"

logger = logging.getLogger(__name__)


def dask_setup(server: Any) -> None:
    """Preload hook: ``dask scheduler --preload dask_monitor`` installs the plugin.

    Settings come from the scheduler's Dask config (``monitor.*``). The panel's
    pages are added to this scheduler's dashboard only: importing the package
    changes nothing in the process.
    """
    from distributed import Scheduler

    if not isinstance(server, Scheduler):
        logger.warning(
            "dask_monitor is a scheduler preload; ignoring it on %s",
            type(server).__name__,
        )
        return
    if get_plugin(server) is None:
        server.add_plugin(MonitorPlugin(preloaded=True))
    add_pages(server)
