"""The worker-lost rule: a worker left unexpectedly while processing tasks."""

from __future__ import annotations

from collections.abc import Sequence

from dask_monitor.alerts.rules.base import WORKER_LOST, AlertRule
from dask_monitor.batch import as_batch
from dask_monitor.config import WorkerLostSettings
from dask_monitor.events import Alert, Event, WorkerStatus

__all__ = ["WorkerLostRule"]

#: The rule's defaults are its settings' defaults: one place for them.
_LOST = WorkerLostSettings()


class WorkerLostRule(AlertRule):
    """A worker left the cluster while it was processing tasks, unexpectedly.

    A removal Dask expected (a graceful ``retire_workers``: its tasks are
    rescheduled by design) is no loss and raises no alert.
    """

    kind = WORKER_LOST

    @classmethod
    def from_settings(cls, settings: WorkerLostSettings) -> WorkerLostRule:
        """The rule as ``monitor.alerts.worker-lost`` sets it up."""
        return cls(min_processing=settings.min_processing, cooldown=settings.cooldown)

    def __init__(
        self,
        *,
        min_processing: int = _LOST.min_processing,
        cooldown: float = _LOST.cooldown,
    ) -> None:
        super().__init__(cooldown=cooldown)
        self.min_processing = min_processing

    def update_batch(self, events: Sequence[Event]) -> None:
        """Look for ``removed`` worker events with tasks in flight.

        Only the batch's other events are read (see
        :attr:`~dask_monitor.batch.Batch.others`), never its task events.
        """
        for _, e in as_batch(events).others:
            if type(e) is not WorkerStatus or e.action != "removed":
                continue
            if e.expected or e.processing < self.min_processing:
                continue
            self.emit(
                Alert(
                    kind=WORKER_LOST,
                    severity="error",
                    message=(
                        f"Worker {e.address} left while processing "
                        f"{e.processing} task{'s' if e.processing != 1 else ''}"
                    ),
                    timestamp=e.timestamp,
                    worker=e.address,
                    details={"processing": e.processing},
                ),
                subject=e.address,
            )
