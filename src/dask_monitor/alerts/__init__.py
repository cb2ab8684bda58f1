"""Alerts: rules that watch the events, and delivery to subscribers.

* :mod:`dask_monitor.alerts.rules`: the built-in rules (stall, error burst,
  straggler, worker lost), the :class:`AlertRule` base class for your own,
  and the :class:`AlertLog` behind the snapshot's ``alerts`` section.
* :mod:`dask_monitor.alerts.client`: callbacks and async iteration on the
  client (``Monitor.on``, ``Monitor.alerts``).
* :mod:`dask_monitor.sinks.nats`: the optional NATS publisher.
* :mod:`dask_monitor.alerts.on`: :class:`On`, responders to the alerts
  published on NATS, with no Dask client.
"""

from __future__ import annotations

from dask_monitor.alerts.on import On
from dask_monitor.alerts.rules import (
    ERROR_BURST,
    STALL,
    STRAGGLER,
    TOPIC,
    WORKER_LOST,
    AlertLog,
    AlertRule,
    ErrorBurstRule,
    StallRule,
    StragglerRule,
    WorkerLostRule,
    default_rules,
    topics,
)

__all__ = [
    "ERROR_BURST",
    "KINDS",
    "STALL",
    "STRAGGLER",
    "TOPIC",
    "WORKER_LOST",
    "AlertLog",
    "AlertRule",
    "ErrorBurstRule",
    "On",
    "StallRule",
    "StragglerRule",
    "WorkerLostRule",
    "default_rules",
    "topics",
]

#: Kinds of the built-in rules.
KINDS = (STALL, ERROR_BURST, STRAGGLER, WORKER_LOST)
