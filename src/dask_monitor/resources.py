"""Sampling the workers' resources on the scheduler (the plugin's side).

Every worker's heartbeat brings the scheduler its process memory, CPU,
network and spill figures (``WorkerState.metrics``), from which Dask derives
managed and unmanaged memory (``WorkerState.memory``); the scheduler also
knows the worker's memory limit and whether it is paused. :func:`sample`
reads them, with no message to any worker, into
:class:`~dask_monitor.events.WorkerResources` events; :class:`ResourceSampler`
does it about once a second from the plugin's flush and hands the samples to
the pipeline as a batch of their own (so the event log records them).

This module reads scheduler objects; observers only see the events.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dask_monitor.batch import Batch
from dask_monitor.events import WorkerResources
from dask_monitor.observers.resources import INTERVAL

if TYPE_CHECKING:
    from distributed import Scheduler

    from dask_monitor.pipeline import Pipeline

__all__ = ["ResourceSampler", "sample"]


def sample(scheduler: Scheduler, now: float) -> list[WorkerResources]:
    """One sample of every worker that sent a heartbeat, stamped ``now``.

    Workers not heard from yet (no metrics) are left out.
    """
    out: list[WorkerResources] = []
    for address, ws in scheduler.workers.items():
        metrics: dict[str, Any] = ws.metrics
        if "memory" not in metrics or "spilled_bytes" not in metrics:
            continue  # no heartbeat yet: WorkerState.memory would raise
        memory = ws.memory
        net = metrics.get("host_net_io")
        if not isinstance(net, dict):
            net = {}
        status = getattr(ws.status, "name", ws.status)
        out.append(
            WorkerResources(
                address,
                now,
                int(memory.process),
                int(memory.managed),
                int(memory.unmanaged),
                int(memory.spilled),
                int(ws.memory_limit) if ws.memory_limit else None,
                _number(metrics.get("cpu")),
                _number(net.get("read_bps")),
                _number(net.get("write_bps")),
                status == "paused",
            )
        )
    return out


def _number(value: Any) -> float:
    """A metric as a finite ``float``; ``0.0`` if missing or not a number."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


class ResourceSampler:
    """Samples the workers every ``interval`` seconds, at most, into a pipeline.

    Called from the plugin's flush, which runs more often: a call less than
    ``interval`` after the last sample costs one comparison.
    """

    __slots__ = ("_last", "interval")

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._last = -math.inf

    def feed(self, scheduler: Scheduler, pipeline: Pipeline, now: float) -> int:
        """Sample if ``interval`` passed since the last sample; the samples made."""
        if now - self._last < self.interval:
            return 0
        self._last = now
        samples = sample(scheduler, now)
        if samples:
            pipeline.process(Batch.empty(now, [(0, s) for s in samples]))
        return len(samples)
