"""Alert rules: observers of task events that emit :class:`~dask_monitor.events.Alert`.

* :mod:`~dask_monitor.alerts.rules.base`: :class:`AlertRule` (the base class
  of every rule: cooldowns, binding) and :class:`AlertLog`;
* one module per built-in rule: :mod:`~dask_monitor.alerts.rules.stall`,
  :mod:`~dask_monitor.alerts.rules.error_burst`,
  :mod:`~dask_monitor.alerts.rules.straggler`,
  :mod:`~dask_monitor.alerts.rules.worker_lost`, and
  :mod:`~dask_monitor.alerts.rules.insight` (insights turned critical).

The built-in rules read a batch through its selectors
(:meth:`~dask_monitor.batch.Batch.entering`,
:meth:`~dask_monitor.batch.Batch.completions`, ...), computed once per batch
and shared with the observers; they make a
:class:`~dask_monitor.events.TaskStatus` only for an alert that names a task.
Where the order of the events within a batch changes the outcome (the count of
active tasks dropping to zero, a task entering ``processing`` twice, a full
table) they follow it event by event.

This package does not import Dask.
"""

from __future__ import annotations

from dask_monitor.alerts.rules.base import (
    ERROR_BURST,
    STALL,
    STRAGGLER,
    TOPIC,
    WORKER_LOST,
    AlertLog,
    AlertRule,
    topics,
)
from dask_monitor.alerts.rules.error_burst import ErrorBurstRule
from dask_monitor.alerts.rules.insight import InsightRule
from dask_monitor.alerts.rules.stall import StallRule
from dask_monitor.alerts.rules.straggler import StragglerRule, _Sketches
from dask_monitor.alerts.rules.worker_lost import WorkerLostRule
from dask_monitor.config import AlertsConfig

__all__ = [
    "ERROR_BURST",
    "STALL",
    "STRAGGLER",
    "TOPIC",
    "WORKER_LOST",
    "AlertLog",
    "AlertRule",
    "ErrorBurstRule",
    "InsightRule",
    "StallRule",
    "StragglerRule",
    "WorkerLostRule",
    "default_rules",
    "topics",
]


def default_rules(config: AlertsConfig, durations: _Sketches) -> list[AlertRule]:
    """The built-in rules enabled by ``config`` (``monitor.alerts.*``)."""
    if not config.enabled:
        return []
    rules: list[AlertRule] = []
    if config.stall.enabled:
        rules.append(StallRule.from_settings(config.stall))
    if config.error_burst.enabled:
        rules.append(ErrorBurstRule.from_settings(config.error_burst))
    if config.straggler.enabled:
        rules.append(StragglerRule.from_settings(config.straggler, durations))
    if config.worker_lost.enabled:
        rules.append(WorkerLostRule.from_settings(config.worker_lost))
    return rules
