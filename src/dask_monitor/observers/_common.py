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
