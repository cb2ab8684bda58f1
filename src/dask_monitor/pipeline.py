"""The pipeline: a subject, the default observers, and the snapshot.

The live scheduler plugin and an offline replay both feed batches of events to
a :class:`Pipeline`; the default observers are assembled here and nowhere else,
so a live run and its replay compute the same snapshot by construction.

This module does not import Dask.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from dask_monitor.config import MonitorConfig
from dask_monitor.events import Event
from dask_monitor.observers import (
    DurationsObserver,
    ErrorsObserver,
    EtaObserver,
    ProgressObserver,
    SamplingObserver,
    ThroughputObserver,
    WorkersObserver,
)
from dask_monitor.snapshot import SNAPSHOT_VERSION, MonitorStats, Snapshot
from dask_monitor.subject import Subject

__all__ = ["Pipeline"]


class Pipeline:
    """Default observers behind one subject, and the snapshot they make.

    Parameters
    ----------
    config
        Validated settings; ``MonitorConfig.from_config()`` when omitted.
    clock
        Returns wall-clock seconds; replays pass the time of the last event.
    observers
        Extra observers subscribed after the built-in ones.
    raise_errors
        Re-raise observer exceptions instead of isolating them (for tests).

    Notes
    -----
    Not thread-safe by itself: the plugin calls it from the scheduler's event
    loop only. :meth:`snapshot` may be called from other threads; it takes a
    lock and returns a fresh copy-free plain dict that callers must not mutate.
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        observers: Iterable[Any] = (),
        raise_errors: bool = False,
    ) -> None:
        self.config = config if config is not None else MonitorConfig.from_config()
        self.clock = clock
        self.subject = Subject(name="dask-monitor", raise_errors=raise_errors)
        cfg = self.config
        self.progress = ProgressObserver(
            max_prefixes=cfg.max_prefixes, max_groups=cfg.max_groups
        )
        self.throughput = ThroughputObserver(
            bin_seconds=cfg.throughput_bin,
            bins=cfg.throughput_bins,
            top_prefixes=cfg.throughput_prefixes,
            clock=clock,
        )
        self.durations = DurationsObserver(
            relative_error=cfg.relative_error, max_prefixes=cfg.max_prefixes
        )
        self.workers = WorkersObserver(max_workers=cfg.max_workers, clock=clock)
        self.errors = ErrorsObserver(
            max_rows=cfg.max_errors, max_text=cfg.max_error_text
        )
        self.sampling = SamplingObserver(
            recent=cfg.recent_events, reservoir=cfg.reservoir_size
        )
        self.eta = EtaObserver(self.progress, self.throughput, clock=clock)
        self.builtin: tuple[Any, ...] = (
            self.progress,
            self.throughput,
            self.durations,
            self.workers,
            self.errors,
            self.sampling,
            self.eta,
        )
        for observer in self.builtin:
            self.subject.subscribe(observer)
        for observer in observers:
            self.subject.subscribe(observer)

        self.started = clock()
        self.events = 0
        self.dropped = 0
        self.flushes = 0
        self.flush_seconds = 0.0
        self.flush_last = 0.0
        self.flush_max = 0.0
        self._seq = 0
        self._cache: Snapshot | None = None
        self._lock = threading.Lock()

    # -- feeding -----------------------------------------------------------

    def process(self, events: Sequence[Event]) -> None:
        """Hand one batch of events to every observer."""
        if not events:
            return
        self.subject.notify_batch(events)
        self._changed()

    def account(self, *, events: int, dropped: int, seconds: float) -> None:
        """Record the cost of one flush (called by the plugin after each flush).

        Parameters
        ----------
        events
            Transitions taken out of the buffer by this flush.
        dropped
            Transitions dropped since the previous flush (buffer full).
        seconds
            Time the flush took, conversion and observers included.
        """
        self.events += events + dropped
        self.dropped += dropped
        self.flushes += 1
        self.flush_seconds += seconds
        self.flush_last = seconds
        self.flush_max = max(self.flush_max, seconds)
        self._changed()

    def reset(self) -> None:
        """Forget all aggregates (Dask's restart drops tasks without transitions).

        The monitor's own accounting (events, drops, flush cost) is kept.
        """
        for observer in self.builtin:
            observer.reset()
        for observer in self.subject.observers:
            reset = getattr(observer, "reset", None)
            if observer not in self.builtin and callable(reset):
                try:
                    reset()
                except Exception:  # user code: isolate like the subject does
                    pass
        self._changed()

    def _changed(self) -> None:
        self._seq += 1
        self._cache = None

    # -- reading -----------------------------------------------------------

    @property
    def seq(self) -> int:
        """Increases whenever the data behind the snapshot changed."""
        return self._seq

    def snapshot(self) -> Snapshot:
        """Everything the observers know, as plain data.

        Built lazily and cached until the next batch, so readers polling
        faster than the flush interval cost nothing.
        """
        cache = self._cache
        if cache is not None:
            return cache
        with self._lock:
            if self._cache is None or self._cache["seq"] != self._seq:
                self._cache = self._build()
            return self._cache

    def _build(self) -> Snapshot:
        cfg = self.config
        now = self.clock()
        seq = self._seq
        progress = self.progress.snapshot(
            top_prefixes=cfg.snapshot_prefixes, top_groups=cfg.snapshot_groups
        )
        prefixes = progress["prefixes"]
        durations = self.durations.snapshot(prefixes)
        for name, row in prefixes.items():
            row["durations"] = durations[name]
            row["rate"] = self.throughput.rate(name)
            row["eta"], row["eta_low"], row["eta_high"] = self.eta.estimate(name)
        totals = progress["totals"]
        totals["rate"] = self.throughput.rate()
        totals["eta"], totals["eta_low"], totals["eta_high"] = self.eta.estimate()
        errors = self.errors.snapshot()
        monitor: MonitorStats = {
            "events": self.events,
            "dropped": self.dropped,
            "flushes": self.flushes,
            "flush_seconds": self.flush_seconds,
            "flush_last": self.flush_last,
            "flush_max": self.flush_max,
            "overhead": self.flush_seconds / max(now - self.started, 1e-9),
            "buffer_capacity": cfg.buffer_size,
            "interval": cfg.interval,
            "observer_errors": self.subject.errors,
            "observers": [_name(o) for o in self.subject.observers],
            "started": self.started,
        }
        return cast(
            Snapshot,
            {
                "version": SNAPSHOT_VERSION,
                "timestamp": now,
                "started": self.started,
                "elapsed": now - self.started,
                "seq": seq,
                "totals": totals,
                "prefixes": prefixes,
                "prefixes_folded": progress["prefixes_folded"],
                "groups": progress["groups"],
                "groups_folded": progress["groups_folded"],
                "workers": self.workers.snapshot(),
                "errors": errors["errors"],
                "errors_folded": errors["errors_folded"],
                "throughput": self.throughput.snapshot(),
                "samples": self.sampling.snapshot(),
                "alerts": {},
                "monitor": monitor,
            },
        )


def _name(observer: Any) -> str:
    name = getattr(observer, "name", None)
    if isinstance(name, str):
        return name
    return getattr(observer, "__qualname__", type(observer).__name__)
