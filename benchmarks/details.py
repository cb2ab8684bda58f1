"""Details: the cost of building one completion's rare fields, interleaved.

The plugin's flush builds a :class:`~dask_monitor.batch.Details` for every
``processing -> memory`` transition from its kwargs (``startstops``, ``nbytes``).
Four ways are timed in turn, round after round (interleaved: a loaded machine
slows them alike): a plain tuple, ``tuple.__new__(Details, ...)`` (what
``plugin._completion`` does), ``Details(...)`` positional, and the whole
``_completion`` on kwargs with a compute entry (and, apart, with a transfer
entry too), against a copy of ``_completion`` as it was before transfer and
disk seconds (a plain 6-tuple).

Run: ``python benchmarks/details.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from dask_monitor.batch import Details
from dask_monitor.plugin import _completion

N = 100_000
KW = {
    "worker": "tcp://127.0.0.1:1",
    "nbytes": 28,
    "startstops": ({"action": "compute", "start": 1.0, "stop": 1.5},),
}
KW_TRANSFER = {
    **KW,
    "startstops": (
        {"action": "transfer", "start": 0.5, "stop": 0.9, "source": "tcp://w:2"},
        {"action": "compute", "start": 1.0, "stop": 1.5},
    ),
}


def plain(n: int) -> None:
    a, b, c, d, t = 0.5, 1.0, 1.5, 28, None
    for _ in range(n):
        _ = (a, b, c, d, None, None, t, None)


def new(n: int) -> None:
    a, b, c, d, t = 0.5, 1.0, 1.5, 28, None
    for _ in range(n):
        _ = tuple.__new__(Details, (a, b, c, d, None, None, t, None))


def named(n: int) -> None:
    a, b, c, d, t = 0.5, 1.0, 1.5, 28, None
    for _ in range(n):
        _ = Details(a, b, c, d, None, None, t, None)


def completion(n: int) -> None:
    kw = KW
    for _ in range(n):
        _completion(kw)


def completion_transfer(n: int) -> None:
    kw = KW_TRANSFER
    for _ in range(n):
        _completion(kw)


def _completion_before(kw: dict[str, Any]) -> tuple[Any, ...]:
    """``plugin._completion`` before issue 18 (a plain 6-tuple, compute only)."""
    duration = begin = end = None
    for ss in kw.get("startstops") or ():
        if ss.get("action") == "compute":
            begin = ss["start"]
            end = ss["stop"]
            duration = end - begin
    return (duration, begin, end, kw.get("nbytes"), None, None)


def completion_before(n: int) -> None:
    kw = KW
    for _ in range(n):
        _completion_before(kw)


def empty(n: int) -> None:
    for _ in range(n):
        pass


def main() -> None:
    rounds = 5 if "--quick" in sys.argv else 15
    cases: list[Callable[[int], None]] = [
        plain, new, named, completion_before, completion, completion_transfer, empty,
    ]  # fmt: skip
    times: dict[str, list[float]] = {f.__name__: [] for f in cases}
    for _ in range(rounds):
        for f in cases:
            t0 = time.thread_time()
            f(N)
            times[f.__name__].append((time.thread_time() - t0) / N * 1e9)
    loop = statistics.median(times["empty"])
    print(f"ns per completion (median of {rounds} interleaved rounds, loop removed)")
    for name, values in times.items():
        if name != "empty":
            print(f"  {name:20s} {statistics.median(values) - loop:7.1f}")


if __name__ == "__main__":
    main()
