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

Times are the CPU time of the benchmark's thread (``time.thread_time``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from common import Report, interleave, parse_args
from dask_monitor.batch import Details
from dask_monitor.scheduler.buffer import _completion

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


def timed(body: Callable[[int], None], n: int) -> Callable[[], float]:
    """A variant for :func:`interleave`: ns per iteration of ``body``."""

    def run() -> float:
        t0 = time.thread_time_ns()
        body(n)
        return (time.thread_time_ns() - t0) / n

    return run


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv)
    rounds = 3 if args.quick else max(args.rounds, 15)
    n = 10_000 if args.quick else N
    report = Report("details", args.quick)
    cases: list[Callable[[int], None]] = [
        plain, new, named, completion_before, completion, completion_transfer, empty,
    ]  # fmt: skip
    results = interleave({f.__name__: timed(f, n) for f in cases}, rounds)
    loop = results["empty"]
    for name, values in results.items():
        if name != "empty":
            above = [v - e for v, e in zip(values, loop, strict=True)]
            report.add(name, above, "ns/completion", "timing loop removed")
    added = [
        a - b
        for a, b in zip(
            results["completion"], results["completion_before"], strict=True
        )
    ]
    report.add("completion: added by transfer/disk and Details", added, "ns/completion")
    return report.finish(args)


if __name__ == "__main__":
    main()
