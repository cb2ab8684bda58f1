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
