"""Task functions shared by the tests (their names are the task prefixes)."""

from __future__ import annotations

import time


def inc(x: int) -> int:
    """Add one."""
    return x + 1


def fail_if_odd(x: int) -> int:
    """Raise ValueError for odd inputs, else return the input."""
    if x % 2:
        raise ValueError(f"odd input {x}")
    return x


def slow_inc(x: int) -> int:
    """Add one after 50 ms."""
    time.sleep(0.05)
    return x + 1


def flaky(x: int, marks: str) -> int:
    """Raise ValueError the first time it runs for ``x`` (a marker file in
    the directory ``marks`` remembers it), then return ``x``."""
    import os

    mark = os.path.join(marks, f"ran-{x}")
    if not os.path.exists(mark):
        with open(mark, "w"):
            pass
        raise ValueError(f"first attempt at {x}")
    return x
