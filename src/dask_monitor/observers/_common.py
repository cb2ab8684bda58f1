"""Helpers shared by the observers (private)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dask_monitor.events import Event, TaskStatus

__all__ = [
    "CHUNK",
    "ERRED",
    "FORGOTTEN",
    "MEMORY",
    "PROCESSING",
    "RELEASED",
    "BatchObserver",
    "Clock",
    "check_count",
    "check_positive",
    "task_events",
]

#: Returns wall-clock seconds (``time.time`` or a fake clock in tests).
Clock = Callable[[], float]

#: Events an observer with several passes over a batch takes at a time: a
#: chunk this size stays in the CPU cache from one pass to the next, while
#: a batch of 100,000 events does not (each pass would read it from memory).
CHUNK = 16_384

MEMORY = "memory"
ERRED = "erred"
PROCESSING = "processing"
FORGOTTEN = "forgotten"
RELEASED = "released"


class BatchObserver:
    """Base of the built-in observers: they take batches, read as columns
    (:func:`~dask_monitor.batch.as_batch`); one event is a batch of one.

    Subclasses set :attr:`name` and implement :meth:`update_batch` and
    :meth:`reset`. Not thread-safe: feed and read one from one thread (the
    pipeline's, which holds its lock).
    """

    #: The name in the snapshot's monitor section (observer errors ...).
    name = "observer"

    def update(self, event: Event) -> None:
        """Take one event."""
        self.update_batch([event])

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take a batch of events, in the order they happened."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything."""
        raise NotImplementedError


def task_events(events: Sequence[Event]) -> list[TaskStatus]:
    """The task events of a mixed batch, in order.

    Observers read task attributes straight off every event of a batch and
    call this only when that raised ``AttributeError`` (a worker event or an
    alert is in the batch): the common all-task batch pays nothing for it.
    """
    return [e for e in events if type(e) is TaskStatus]


def check_count(name: str, value: int) -> int:
    """``value`` if it is a positive ``int``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """``value`` as a float if it is a positive number, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)
