"""Helpers for tests and benchmarks: realistic snapshots without a cluster.

:func:`make_snapshot` builds a :class:`~dask_monitor.snapshot.Snapshot` that has
the shape and the internal consistency of a live one (totals are the sums of
the prefixes, ``done + remaining == total``, throughput bins cover the last
minutes, sampled events carry ``begin``/``end`` on known workers), so views of
snapshots (the panel, reports, the terminal) can be developed and tested
against thousands of prefixes or workers in milliseconds.

It is deterministic: the same arguments give the same snapshot. Calling it again
with the same ``seed``, a later ``now``, a larger ``progress`` and a larger
``seq`` gives a plausible *next* snapshot of the same run (same prefixes and
workers, more tasks done, newer throughput bins and sampled events).

This module imports neither Dask nor Bokeh.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, cast

from dask_monitor.snapshot import (
    SNAPSHOT_VERSION,
    DurationStats,
    ErrorRow,
    EventRecord,
    GroupRow,
    MonitorStats,
    PrefixRow,
    Snapshot,
    Throughput,
    Totals,
    WorkerRow,
)

__all__ = ["make_snapshot"]

_NAMES = (
    "inc",
    "add",
    "work",
    "random_sample",
    "mean_chunk",
    "mean_combine",
    "mean_agg",
    "getitem",
    "sum-aggregate",
    "from_pandas",
    "groupby-chunk",
    "groupby-agg",
    "read_parquet",
    "assign",
    "rechunk-merge",
    "flaky",
)

_EXCEPTIONS = (
    ("ValueError", "ValueError('bad record {i}')"),
    ("KeyError", "KeyError('column_{i}')"),
    ("ZeroDivisionError", "ZeroDivisionError('division by zero')"),
    ("FileNotFoundError", "FileNotFoundError('s3://bucket/part-{i}.parquet')"),
    ("MemoryError", "MemoryError()"),
)


def _prefix_name(i: int) -> str:
    base = _NAMES[i % len(_NAMES)]
    return base if i < len(_NAMES) else f"{base}-{i // len(_NAMES)}"


def _durations(rng: random.Random, count: int) -> DurationStats:
    # Draw first, whatever the count, so later prefixes get the same numbers
    # in every snapshot of one run.
    median = rng.lognormvariate(-3.0, 1.2)
    p90 = median * rng.uniform(1.5, 3.0)
    p99 = p90 * rng.uniform(1.2, 2.5)
    top = p99 * rng.uniform(1.0, 1.8)
    if count == 0:
        return {
            "count": 0,
            "mean": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "max": None,
            "relative_error": 0.01,
        }
    return {
        "count": count,
        "mean": median * 1.3,
        "p50": median,
        "p90": p90,
        "p99": p99,
        "max": top,
        "relative_error": 0.01,
    }


def make_snapshot(
    n_prefixes: int = 12,
    n_workers: int = 4,
    n_errors: int = 3,
    seed: int = 0,
    *,
    progress: float = 0.6,
    now: float | None = None,
    elapsed: float = 120.0,
    seq: int = 1,
    n_events: int = 400,
    threads: int = 2,
    n_alerts: int = 0,
) -> Snapshot:
    """A realistic, internally consistent snapshot of a run in progress.

    Parameters
    ----------
    n_prefixes
        Task prefixes in ``snapshot["prefixes"]`` (all of them: nothing folded).
    n_workers
        Workers, all running, ``threads`` threads each.
    n_errors
        Rows of the error table (each one erred task or more).
    seed
        Fixes names, sizes, durations and texts; keep it to get the next
        snapshot of the same run.
    progress
        Share of the tasks finished, 0..1 (1.0: everything done, ETA 0).
    now
        The snapshot's timestamp; ``time.time()`` when omitted.
    elapsed
        Seconds since monitoring started.
    seq
        The snapshot's sequence number.
    n_events
        Sampled events (``samples["recent"]``) in the last seconds before ``now``.
    threads
        Threads per worker.
    n_alerts
        Alerts in ``snapshot["alerts"]["recent"]`` (oldest first, the last one
        at ``now``), cycling through the built-in kinds and severities, with
        ``total`` and ``counts`` per kind to match; ``0`` leaves the section
        empty (``{}``), as before any alert.

    Examples
    --------
    >>> snap = make_snapshot(n_prefixes=3, n_workers=2, seed=1)
    >>> t = snap["totals"]
    >>> t["done"] + t["remaining"] == t["total"]
    True
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress!r}")
    now = time.time() if now is None else now
    started = now - elapsed
    rng = random.Random(seed)
    workers = [f"tcp://127.0.0.1:{40000 + i}" for i in range(n_workers)]

    # Prefixes: sizes and durations fixed by the seed; progress decides the rest.
    prefixes: dict[str, PrefixRow] = {}
    # Error rows first: row i belongs to prefix (3 * i) % n_prefixes.
    error_counts = [max(1, n_errors - i) for i in range(n_errors)]
    erred_by_index: dict[int, int] = {}
    for i, count in enumerate(error_counts):
        index = (3 * i) % n_prefixes if n_prefixes else 0
        erred_by_index[index] = erred_by_index.get(index, 0) + count
    sums = dict.fromkeys(("memory", "erred", "processing", "waiting", "queued"), 0)
    completed_all = erred_all = 0
    for i in range(n_prefixes):
        name = _prefix_name(i)
        erred = erred_by_index.get(i, 0)
        total = max(1, int(rng.lognormvariate(4.0, 1.3))) + erred
        # Earlier prefixes are further along, like a pipeline's stages.
        share = min(1.0, max(0.0, progress * (1.6 - 1.2 * i / max(n_prefixes, 1))))
        done = min(total, max(erred, round(total * share)))
        remaining = total - done
        processing = min(remaining, rng.randint(0, max(1, n_workers * threads)))
        queued = (remaining - processing) // 2
        waiting = remaining - processing - queued
        completed = done - erred
        memory = min(completed, int(completed * rng.uniform(0.0, 0.4)))
        released = completed - memory
        states = {
            s: n
            for s, n in (
                ("released", released),
                ("waiting", waiting),
                ("queued", queued),
                ("processing", processing),
                ("memory", memory),
                ("erred", erred),
            )
            if n
        }
        durations = _durations(rng, completed)
        speed = rng.uniform(0.5, 2)
        idle = rng.uniform(1, max(elapsed, 1.0))
        rate = 0.0 if not remaining else total / max(elapsed, 1.0) * speed
        eta = remaining / rate if rate else (0.0 if not remaining else None)
        prefixes[name] = {
            "states": states,
            "completed": completed,
            "erred": erred,
            "recomputed": 0,
            "retried": 0,
            "done": done,
            "remaining": remaining,
            "total": total,
            "durations": durations,
            "rate": rate,
            "eta": eta,
            "eta_low": None if eta is None else eta * 0.7,
            "eta_high": None if eta is None else eta * 1.5,
            "last_active": now - (0.0 if remaining else idle),
        }
        sums["memory"] += memory
        sums["erred"] += erred
        sums["processing"] += processing
        sums["waiting"] += waiting
        sums["queued"] += queued
        completed_all += completed
        erred_all += erred

    done_all = completed_all + erred_all
    remaining_all = sums["processing"] + sums["waiting"] + sums["queued"]
    rate_all = done_all / max(elapsed, 1.0)
    eta_all = remaining_all / rate_all if rate_all else None
    totals: Totals = {
        "states": {s: n for s, n in sums.items() if n},
        "completed": completed_all,
        "erred": erred_all,
        "recomputed": 0,
        "retried": 0,
        "done": done_all,
        "remaining": remaining_all,
        "total": done_all + remaining_all,
        "rate": rate_all,
        "eta": 0.0 if not remaining_all else eta_all,
        "eta_low": None if eta_all is None else eta_all * 0.8,
        "eta_high": None if eta_all is None else eta_all * 1.4,
        "average_rate": rate_all if done_all else None,
        "run_seconds": elapsed if done_all else None,
    }

    # Groups: one per prefix for the first few prefixes.
    groups: dict[str, GroupRow] = {}
    for name, row in list(prefixes.items())[:50]:
        groups[f"{name}-{seed:08x}"] = {
            "prefix": name,
            "states": dict(row["states"]),
            "completed": row["completed"],
            "erred": row["erred"],
            "retried": 0,
            "done": row["done"],
            "remaining": row["remaining"],
            "total": row["total"],
            "last_active": row["last_active"],
        }

    # Workers.
    worker_rows: dict[str, WorkerRow] = {}
    per_worker = max(completed_all // max(n_workers, 1), 0)
    for i, address in enumerate(workers):
        utilisation = min(1.0, max(0.0, 0.35 + 0.6 * rng.random()))
        worker_rows[address] = {
            "status": "running",
            "nthreads": threads,
            "processing": min(threads * 2, sums["processing"]),
            "completed": per_worker + (i % 3),
            "erred": 0,
            "busy": utilisation * threads * elapsed,
            "utilisation": utilisation,
            "utilisation_run": utilisation,
            "first_seen": started,
            "last_seen": now,
        }

    # Errors: deduplicated rows, most frequent first.
    names = list(prefixes) or ["flaky"]
    errors: list[ErrorRow] = []
    for i, count in enumerate(error_counts):
        kind, text = _EXCEPTIONS[i % len(_EXCEPTIONS)]
        prefix = names[(3 * i) % len(names)]
        errors.append(
            {
                "prefix": prefix,
                "type": kind,
                "count": count,
                "key": f"{prefix}-{rng.getrandbits(64):016x}",
                "exception": text.format(i=i),
                "traceback": (
                    "Traceback (most recent call last):\n"
                    '  File "pipeline.py", line 42, in run\n'
                    f"    return process(record_{i})\n"
                    '  File "pipeline.py", line 17, in process\n'
                    f"    raise {text.format(i=i)}\n"
                ),
                "worker": workers[i % len(workers)] if workers else None,
                "first": started + i,
                "last": now - i,
                "retried": 0,
                "caused_by": None,
            }
        )

    # Throughput: one-second bins over the last five minutes; a bin's count
    # depends only on its time, so successive snapshots agree on old bins.
    bin_seconds = 1.0
    n_bins = 300
    base_rate = max(1.0, (done_all + remaining_all) / 300.0)
    end_bin = math.floor(now / bin_seconds)
    start_bin = end_bin - n_bins + 1
    counts = []
    for b in range(start_bin, end_bin + 1):
        t = b * bin_seconds
        if t < started:
            counts.append(0)
            continue
        wave = 1.0 + 0.4 * math.sin(t / 17.0) + 0.2 * math.sin(t / 5.0 + seed)
        counts.append(int(base_rate * bin_seconds * wave))
    top = list(prefixes)[:10]
    throughput: Throughput = {
        "bin": bin_seconds,
        "start": start_bin * bin_seconds,
        "counts": counts,
        "prefixes": {
            name: [c // (j + 2) for c in counts] for j, name in enumerate(top)
        },
        "total": done_all,
        "late": 0,
    }

    # Sampled events: compute intervals on worker threads, newest last.
    recent: list[EventRecord] = []
    ev_rng = random.Random(seed * 1_000_003 + int(now * 10))
    window = 10.0
    for j in range(n_events if workers else 0):
        end = now - window + window * (j + 1) / n_events
        duration = min(ev_rng.lognormvariate(-3.0, 0.8), 2.0)
        prefix = names[ev_rng.randrange(len(names))]
        worker = workers[ev_rng.randrange(len(workers))]
        failed = ev_rng.random() < 0.01
        recent.append(
            {
                "key": f"('{prefix}-{seed:04x}', {j})",
                "prefix": prefix,
                "group": f"{prefix}-{seed:08x}",
                "start": "processing",
                "finish": "erred" if failed else "memory",
                "timestamp": end + 0.05,
                "worker": worker,
                "duration": duration,
                "begin": end - duration,
                "end": end,
                "nbytes": None if failed else 8 * ev_rng.randint(1, 1 << 16),
                "exception": "ValueError('bad record')" if failed else None,
                "traceback": None,
                "span": None,
            }
        )

    monitor: MonitorStats = {
        "events": done_all * 5,  # six transitions a task, two folded into one
        "dropped": 0,
        "merged": done_all,
        "flushes": int(elapsed * 4),  # every 250 ms
        "flush_seconds": elapsed * 0.002,
        "flush_last": 0.0012,
        "flush_max": 0.0093,
        "overhead": 0.002,
        "buffer_capacity": 100_000,
        "interval": 0.25,
        "observer_errors": {},
        "observers": [
            "progress",
            "throughput",
            "durations",
            "workers",
            "errors",
            "sampling",
            "eta",
        ],
        "started": started,
    }
    snapshot: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "timestamp": now,
        "started": started,
        "elapsed": elapsed,
        "seq": seq,
        "live": True,
        "totals": totals,
        "prefixes": prefixes,
        "prefixes_folded": 0,
        "groups": groups,
        "groups_folded": max(0, n_prefixes - 50),
        "workers": worker_rows,
        "errors": errors,
        "errors_folded": 0,
        "throughput": throughput,
        "samples": {"recent": recent, "reservoir": recent[::4], "seen": done_all},
        "alerts": _alerts(n_alerts, now, names, workers, seed),
        "monitor": monitor,
    }
    return cast(Snapshot, snapshot)


_ALERTS = (
    ("error-burst", "error", "{n} tasks of {prefix} erred in the last 60s"),
    ("straggler", "warning", "task {key} of {prefix} has run 12.5s, 8x its p95"),
    ("stall", "warning", "no task completed for 45s; {n} waiting or processing"),
    ("worker-lost", "error", "worker {worker} left while processing {n} tasks"),
)


def _alerts(
    n: int, now: float, prefixes: list[str], workers: list[str], seed: int
) -> dict[str, Any]:
    """The snapshot's ``alerts`` section with ``n`` recent alerts, oldest first."""
    if n <= 0:
        return {}
    rng = random.Random(seed * 7 + n)
    recent: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for i in range(n):
        kind, severity, text = _ALERTS[i % len(_ALERTS)]
        prefix = prefixes[i % len(prefixes)]
        worker = workers[i % len(workers)] if workers else None
        key = f"('{prefix}-{rng.getrandbits(32):08x}', {i})"
        count = 2 + i % 5
        recent.append(
            {
                "kind": kind,
                "severity": severity,
                "message": text.format(n=count, prefix=prefix, key=key, worker=worker),
                "timestamp": now - (n - 1 - i) * 5.0,
                "prefix": None if kind == "stall" else prefix,
                "key": key if kind == "straggler" else None,
                "worker": worker if kind in ("straggler", "worker-lost") else None,
                "details": {"count": count, "window": 60.0},
            }
        )
        counts[kind] = counts.get(kind, 0) + 1
    return {
        "total": n,
        "counts": counts,
        "recent": recent,
        "suppressed": n // 3,
        "rules": {},
        "sinks": {},
        "tick_errors": {},
        "subscriber_errors": {},
    }
