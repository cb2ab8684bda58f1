"""ETA: time until the remaining tasks are done, at the recent rate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypedDict

from dask_monitor.events import Event
from dask_monitor.observers._common import Clock
from dask_monitor.observers.progress import ProgressObserver
from dask_monitor.observers.throughput import ThroughputObserver

__all__ = ["Estimate", "EtaObserver", "EtaSnapshot"]

#: ``(eta, low, high)`` in seconds; see :meth:`EtaObserver.estimate`.
Estimate = tuple[float | None, float | None, float | None]


class EtaSnapshot(TypedDict):
    """What :meth:`EtaObserver.snapshot` returns (seconds)."""

    eta: float | None
    eta_low: float | None
    eta_high: float | None


class EtaObserver:
    """Estimated time to completion, from progress and throughput.

    ``remaining / rate``, with the range ``remaining / high`` to
    ``remaining / low`` from :meth:`ThroughputObserver.rate_range`. The rate
    is averaged over the throughput's window (30 s by default), not taken from
    the last bin, so that the estimate holds still when task durations vary.

    Parameters
    ----------
    progress
        Gives the remaining tasks.
    throughput
        Gives the recent rate and its range.
    clock
        Returns the current time, at which the rate is read.

    Notes
    -----
    Needs no events of its own (:meth:`update_batch` does nothing) and keeps
    no state; subscribe it after ``progress`` and ``throughput`` all the same,
    so that it is listed and reset with them.
    """

    name = "eta"

    def __init__(
        self,
        progress: ProgressObserver,
        throughput: ThroughputObserver,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.progress = progress
        self.throughput = throughput
        self.clock = clock

    def update(self, event: Event) -> None:
        """Take one event (nothing to do)."""

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events (nothing to do)."""

    def reset(self) -> None:
        """Forget everything (there is nothing to forget)."""

    def estimate(self, prefix: str | None = None) -> Estimate:
        """``(eta, low, high)`` in seconds, for all tasks or one prefix.

        ``(0.0, 0.0, 0.0)`` when nothing remains; ``(None, None, None)`` when
        tasks remain but none finished recently; ``high`` is ``None`` when the
        low end of the rate range is zero.
        """
        remaining = self.progress.remaining(prefix)
        if remaining <= 0:
            return 0.0, 0.0, 0.0
        now = self.clock()
        rate = self.throughput.rate(prefix, now=now)
        if rate <= 0:
            return None, None, None
        low, high = self.throughput.rate_range(prefix, now=now)
        return (
            remaining / rate,
            remaining / high if high > 0 else None,
            remaining / low if low > 0 else None,
        )

    def snapshot(self) -> EtaSnapshot:
        """The overall estimate, as plain data."""
        eta, low, high = self.estimate()
        return {"eta": eta, "eta_low": low, "eta_high": high}
