"""Batches change nothing: each built-in observer and alert rule, fed a random
stream event by event, ends where it ends when fed the same stream cut into
batches at random points.

The observers read batches as columns with fast paths for the common shapes
(one task group, no repeated key, completions only ...); this is the oracle
that keeps those paths honest. Streams are random but seeded: a failure names
its seed, and ``STREAMS`` more seeds can be tried locally.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import pytest

from dask_monitor.config import MonitorConfig
from dask_monitor.events import (
    NEW,
    Alert,
    Event,
    TaskStatus,
    WorkerResources,
    WorkerStatus,
)
from dask_monitor.pipeline import Pipeline

#: Streams per run; DASK_MONITOR_DIFFERENTIAL_STREAMS=20000 for a long hunt.
STREAMS = int(os.environ.get("DASK_MONITOR_DIFFERENTIAL_STREAMS", "1000"))
PREFIXES = ("inc", "add", "sum-agg", "load", "x")
SPANS = (None, "s1", "s2")


def random_stream(seed: int) -> list[Event]:
    """A plausible run: workers come and go; tasks are created, queued, run,
    finish, err, are retried, recomputed, released and forgotten, in an
    interleaved order with times that never go backwards."""
    rng = random.Random(seed)
    t = 1_000.0
    workers: list[str] = []
    events: list[Event] = []
    state: dict[str, str] = {}  # live tasks: key -> state
    where: dict[str, str] = {}
    begun: dict[str, float] = {}
    meta: dict[str, tuple[str, str, str | None]] = {}
    serial = 0

    def move(key: str, finish: str, **fields: Any) -> None:
        prefix, group, span = meta[key]
        start = state.get(key, NEW)
        events.append(
            TaskStatus(key, prefix, group, start, finish, t, span=span, **fields)
        )
        if finish == "forgotten":
            state.pop(key, None)
        else:
            state[key] = finish

    for _ in range(rng.randint(1, 120)):
        t += rng.choice((0.0, 0.0, 0.001, 0.05, 0.4, 2.0))
        if workers and rng.random() < 0.08:  # a round of resource samples
            for address in workers:
                memory = rng.randint(10**6, 10**9)
                managed = rng.randint(0, memory)
                limit = rng.choice((None, 2 * 10**9, 2 * 10**9))
                events.append(
                    WorkerResources(
                        address, t, memory, managed, memory - managed,
                        rng.choice((0, 0, 10**7)), limit, rng.uniform(0, 400),
                        rng.uniform(0, 1e6), rng.uniform(0, 1e6), rng.random() < 0.1,
                    )
                )  # fmt: skip
            continue
        roll = rng.random()
        if roll < 0.06 or not workers:
            address = f"tcp://w:{rng.randint(1, 4)}"
            if address in workers and len(workers) > 1 and rng.random() < 0.5:
                workers.remove(address)
                lost = [k for k, w in where.items() if w == address]
                events.append(WorkerStatus(address, "removed", t, None, len(lost)))
                for key in lost:  # the plugin names the worker of a departure
                    del where[key]
                    move(key, "released", worker=address)
            elif address not in workers:
                workers.append(address)
                events.append(WorkerStatus(address, "added", t, rng.choice((1, 2, 4))))
            continue
        if roll < 0.2 or not state:  # a graph: a task group, made at once
            serial += 1
            prefix = rng.choice(PREFIXES)
            group = f"{prefix}-{serial:04x}"
            span = rng.choice(SPANS)
            for j in range(rng.randint(1, 6)):
                key = f"{group}-{j}"
                meta[key] = (prefix, group, span)
                move(key, rng.choice(("released", "waiting", "waiting")))
            continue
        key = rng.choice(list(state))
        s = state[key]
        if s == "released":
            move(key, rng.choice(("waiting", "forgotten")))
        elif s in ("waiting", "queued", "no-worker"):
            nxt = rng.choice(("processing", "processing", "queued", "released"))
            if nxt == "processing":
                worker = rng.choice(workers)
                where[key] = worker
                begun[key] = t
                move(key, "processing", worker=worker)
            elif nxt != s:
                move(key, nxt)
        elif s == "processing":
            worker = where.pop(key)
            outcome = rng.random()
            if outcome < 0.7:
                duration = max(t - begun[key], 1e-4)
                move(
                    key, "memory", worker=worker, duration=duration,
                    begin=t - duration, end=t, nbytes=rng.randint(1, 10**6),
                    transfer=rng.choice((None, None, 0.01, 0.3)),
                    disk=rng.choice((None, None, None, 0.02)),
                )  # fmt: skip
            elif outcome < 0.85:
                error = rng.choice(("ValueError('x')", "KeyError('k')"))
                move(key, "erred", worker=worker, exception=error, traceback=error)
            elif outcome < 0.93:  # retried: back through released
                move(key, "released", worker=worker, exception="OSError('flaky')")
            else:  # its worker's data was lost, say
                move(key, "released", worker=worker)
        elif s == "memory":
            move(key, rng.choice(("released", "released", "forgotten")))
        elif s == "erred":
            move(key, rng.choice(("released", "erred")))
    return events


def cuts(events: list[Event], rng: random.Random) -> list[list[Event]]:
    """``events`` cut into batches at random points (empty batches too)."""
    out: list[list[Event]] = []
    i = 0
    while i < len(events):
        n = rng.choice((0, 1, 2, 3, 5, 8, 20, 200))
        out.append(events[i : i + n])
        i += n
    return out


def comparable(snapshot: Any) -> dict[str, Any]:
    """The parts of a snapshot that say what the observers know.

    Alerts raised by different rules within one batch come rule by rule, not
    in the order of their events: they are compared as a set (by time).
    """
    out = {k: v for k, v in snapshot.items() if k not in ("seq", "monitor")}
    alerts = dict(out.pop("alerts"))
    alerts.pop("sinks", None)
    alerts["recent"] = sorted(
        alerts["recent"], key=lambda a: (a["timestamp"], a["kind"], str(a))
    )
    out["alerts"] = alerts
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ; floats to a relative 1e-9 (the order of
    additions differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(a.keys() | b.keys(), key=str):
            out += differences(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [path]
    return [] if a == b else [path]


def run(events: list[Event], batches: list[list[Event]] | None) -> dict[str, Any]:
    end = max((e.timestamp for e in events), default=1_000.0)
    now = [end]
    config = MonitorConfig.from_config(
        alerts={"error_burst": {"count": 3, "min_tasks": 2}, "stall": {"seconds": 1}}
    )
    pipeline = Pipeline(config, clock=lambda: now[0], raise_errors=True)
    # Time-based rules look at the clock on ticks, which come with flushes:
    # one tick at the end, so that only the cut of the stream differs.
    for batch in [[e] for e in events] if batches is None else batches:
        pipeline.process(batch)
    now[0] = end + 1.0
    pipeline.tick(now[0])
    return comparable(pipeline.snapshot())


@pytest.mark.parametrize("block", range(4))
def test_batches_end_where_single_events_end(block: int) -> None:
    """STREAMS random streams (a quarter per block): same snapshot either way."""
    for seed in range(block, STREAMS, 4):
        events = random_stream(seed)
        one_by_one = run(events, None)
        batched = run(events, cuts(events, random.Random(seed)))
        diff = differences(one_by_one, batched)
        if diff:
            pytest.fail(f"seed {seed}: batches change {diff[:10]}")


def test_the_streams_cover_what_they_should() -> None:
    """The generator makes every kind of event the observers treat apart."""
    kinds: set[tuple[str, str]] = set()
    workers: set[str] = set()
    timed: set[str] = set()
    rounds: set[int] = set()  # workers per round of resource samples
    for seed in range(200):
        per_round: dict[float, int] = {}
        for e in random_stream(seed):
            if isinstance(e, TaskStatus):
                kinds.add((e.start, e.finish))
                timed.update(n for n in ("transfer", "disk") if getattr(e, n))
            elif isinstance(e, WorkerStatus):
                workers.add(e.action)
            elif isinstance(e, WorkerResources):
                per_round[e.timestamp] = per_round.get(e.timestamp, 0) + 1
            assert not isinstance(e, Alert)
        rounds.update(per_round.values())
    assert workers == {"added", "removed"}
    assert timed == {"transfer", "disk"}
    assert {1, 2} <= rounds  # rounds of one worker and of several
    for pair in (
        (NEW, "waiting"),
        ("waiting", "processing"),
        ("processing", "memory"),
        ("processing", "erred"),
        ("processing", "released"),
        ("memory", "released"),
        ("released", "forgotten"),
        ("erred", "erred"),
        ("waiting", "queued"),
    ):
        assert pair in kinds, pair
