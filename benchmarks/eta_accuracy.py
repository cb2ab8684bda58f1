"""ETA accuracy: the snapshot's ETA against the time that really remained.

Scenarios on a real ``LocalCluster`` (2 workers x 2 threads, in-process): a
burst after idle time, lognormal durations, two prefixes of very different
speeds submitted together, a multi-stage graph, and work queued far beyond the
threads. During each, the snapshot is read every second (a quarter second in
``--quick``); once the work is done, the client's clock gives the time that
really remained at each reading. The figure per scenario is the median
absolute percentage error of the readings taken from 20% of the way in, by
time (the scenario's duration, known at its end; a reading without an
estimate counts as 100%), beside two naive estimates read
at the same moments: ``remaining / rate`` (the snapshot's current pace) and
``remaining / (done / elapsed)`` (the average pace since the work started).

Goal (issue 15): median error <= 25% in every scenario.

Run: ``python benchmarks/eta_accuracy.py [--quick] [--rounds N] [--json FILE]
[--only NAME] [--trace]`` (one round by default; a full run takes about two
minutes, ``--quick`` under 30 s; ``--trace`` prints every reading).
"""

from __future__ import annotations

import logging
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, LocalCluster, wait

from common import Report, parse_args
from dask_monitor import Monitor

#: Readings from this share of the way in count.
FROM = 0.2
#: The goal: median absolute percentage error, in percent.
GOAL = 25.0


def nap(x: Any, seconds: float) -> Any:
    """Sleep ``seconds``; return the input (a task of a known duration)."""
    time.sleep(seconds)
    return x


def slow(x: Any, seconds: float) -> Any:
    """A second prefix of naps."""
    time.sleep(seconds)
    return x


def combine(*parts: Any, seconds: float = 0.0) -> int:
    """A task of a later stage: waits on its inputs, sleeps, returns a count."""
    time.sleep(seconds)
    return len(parts)


@dataclass
class Reading:
    """One reading of the snapshot during a scenario."""

    t: float
    fraction: float  # of the tasks done
    eta: float | None
    rate_eta: float | None
    average_eta: float | None


@dataclass
class Outcome:
    """What one run of a scenario gave."""

    t_start: float
    seconds: float = 0.0
    readings: list[Reading] = field(default_factory=list)

    def errors(self, t_end: float, pick: Callable[[Reading], float | None]) -> float:
        """Median absolute percentage error of the readings from ``FROM`` in.

        A run too short for any reading that late (``--quick`` on a loaded
        machine) counts its last reading; one without readings, 100%.
        """
        since = self.t_start + FROM * (t_end - self.t_start)
        usable = [r for r in self.readings if t_end - r.t > 0]
        late = [r for r in usable if r.t >= since] or usable[-1:]
        errors = []
        for r in late:
            left = t_end - r.t
            value = pick(r)
            errors.append(100.0 if value is None else abs(value - left) / left * 100)
        return statistics.median(errors) if errors else 100.0


# -- scenarios: each submits its work and returns the futures to wait for -----------


#: What a scenario submits: the futures to wait for, the tasks timed, and the
#: tasks it finished before those (not timed).
Work = tuple[list[Any], int, int]


def burst_after_idle(client: Client, scale: float) -> Work:
    client.gather(client.map(nap, range(100), [0.0] * 100))
    time.sleep(5.0 * scale)
    n = int(400 * scale)
    return client.map(nap, range(1000, 1000 + n), [0.1] * n), n, 100


def lognormal(client: Client, scale: float) -> Work:
    rng = random.Random(15)
    n = int(300 * scale)
    # Mean ~0.12 s, a tenth of the tasks above 0.3 s.
    durations = [min(rng.lognormvariate(-2.45, 0.8), 2.0) for _ in range(n)]
    return client.map(nap, range(2000, 2000 + n), durations), n, 0


def two_speeds(client: Client, scale: float) -> Work:
    fast = int(600 * scale)
    few = max(4, int(40 * scale))
    futures = client.map(nap, range(3000, 3000 + fast), [0.02] * fast)
    futures += client.map(slow, range(few), [1.0] * few)
    return futures, fast + few, 0


def multi_stage(client: Client, scale: float) -> Work:
    n = int(200 * scale) // 4 * 4
    first = client.map(nap, range(4000, 4000 + n), [0.1] * n)
    second = [
        client.submit(combine, *first[i : i + 4], seconds=0.3) for i in range(0, n, 4)
    ]
    last = client.submit(combine, *second, seconds=0.5)
    return [last], n + len(second) + 1, 0


def queued(client: Client, scale: float) -> Work:
    n = max(8, int(60 * scale))
    return client.map(slow, range(5000, 5000 + n), [0.8] * n), n, 0


SCENARIOS: dict[str, Callable[[Client, float], Work]] = {
    "burst after idle": burst_after_idle,
    "lognormal durations": lognormal,
    "two prefixes, 0.02 s and 1 s": two_speeds,
    "multi-stage graph": multi_stage,
    "queued beyond threads": queued,
}


def run(
    client: Client,
    monitor: Monitor,
    scenario: Callable[[Client, float], Work],
    scale: float,
    every: float,
) -> tuple[Outcome, float]:
    """Run one scenario, reading the snapshot every ``every`` s; and its end."""
    done0 = monitor.snapshot(flush=True)["totals"]["done"]
    t_submit = time.time()
    futures, n, before = scenario(client, scale)
    done0 += before
    t_start = time.time()
    # The end of the work: when the client learnt of the last result (not
    # when the reading loop below noticed, up to a reading later).
    ends: list[float] = []
    for future in futures:
        future.add_done_callback(lambda _: ends.append(time.time()))
    outcome = Outcome(t_start)
    while not all(f.done() for f in futures):
        totals = monitor.snapshot()["totals"]
        now = time.time()
        done = totals["done"] - done0
        remaining = max(n - done, 0)
        rate = totals["rate"]
        average = done / (now - t_start) if done > 0 else 0.0
        outcome.readings.append(
            Reading(
                now,
                done / n,
                totals["eta"],
                remaining / rate if rate > 0 else None,
                remaining / average if average > 0 else None,
            )
        )
        time.sleep(every)
    wait(futures)
    deadline = time.time() + 5.0
    while len(ends) < len(futures) and time.time() < deadline:
        time.sleep(0.01)  # the callbacks run on the client's loop thread
    t_end = max(ends) if ends else time.time()
    outcome.seconds = t_end - t_submit
    del futures
    return outcome, t_end


def _trace(outcome: Outcome, t_end: float) -> None:
    def show(value: float | None) -> str:
        return "-" if value is None else f"{value:6.1f}"

    print("    t   done%   left    eta  rate-eta  avg-eta")
    for r in outcome.readings:
        print(
            f"{r.t - outcome.t_start:5.1f} {r.fraction:6.0%} {t_end - r.t:6.1f} "
            f"{show(r.eta)} {show(r.rate_eta)} {show(r.average_eta)}"
        )


def _options(parser: Any) -> None:
    parser.add_argument("--only", default=None, help="run the scenarios named so")
    parser.add_argument("--trace", action="store_true", help="print every reading")


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(__doc__.splitlines()[0], argv, _options)
    given = sys.argv[1:] if argv is None else argv
    rounds = args.rounds if "--rounds" in given else 1
    scale = 0.25 if args.quick else 1.0
    every = 0.25 if args.quick else 1.0
    report = Report("eta_accuracy", args.quick)
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=False,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    monitor = Monitor.attach(client, interval="100ms")
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    try:
        for _ in range(rounds):
            for name, scenario in SCENARIOS.items():
                if args.only and args.only not in name:
                    continue
                print(f"[eta accuracy] {name}", flush=True)
                outcome, t_end = run(client, monitor, scenario, scale, every)
                if args.trace:
                    _trace(outcome, t_end)
                results.setdefault(name, []).append(
                    (
                        outcome.errors(t_end, lambda r: r.eta),
                        outcome.errors(t_end, lambda r: r.rate_eta),
                        outcome.errors(t_end, lambda r: r.average_eta),
                        outcome.seconds,
                    )
                )
                time.sleep(6.0 * scale)  # let the rate decay to 0
    finally:
        monitor.detach()
        client.close()
        cluster.close()
    for name, rows in results.items():
        report.add(f"{name}: ETA error", [r[0] for r in rows], "%")
        report.add(f"{name}: remaining / rate error", [r[1] for r in rows], "%")
        report.add(f"{name}: remaining / average error", [r[2] for r in rows], "%")
        report.add(f"{name}: duration", [r[3] for r in rows], "s")
        report.goal(
            f"{name}: median ETA error from {FROM:.0%} in",
            statistics.median(r[0] for r in rows),
            GOAL,
            "%",
        )
    return report.finish(args)


if __name__ == "__main__":
    main()
