"""Resources: each worker's memory, CPU and network, and the cluster's sum.

The plugin samples what the scheduler already receives in the workers'
heartbeats about once a second (:mod:`dask_monitor.resources`) and hands the
samples over as :class:`~dask_monitor.events.WorkerResources` events among a
batch's other events, so that the event log and a replay see them as the
live pipeline does. Every worker of one round of sampling has the round's
timestamp: the cluster's figures are the sums over a round.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from dask_monitor.batch import as_batch
from dask_monitor.events import Event, WorkerResources, WorkerStatus
from dask_monitor.observers._common import BatchObserver, check_count, check_positive
from dask_monitor.snapshot import Resources, WorkerResourcesRow

__all__ = ["HISTORY_FIELDS", "INTERVAL", "ResourcesObserver"]

#: Seconds between rounds of samples taken by the plugin.
INTERVAL = 1.0

#: Workers whose history a snapshot shows (those using the most memory).
HISTORY_WORKERS = 100

#: The figures kept over time, per worker and for the cluster.
HISTORY_FIELDS = (
    "time",
    "memory",
    "managed",
    "spilled",
    "cpu",
    "network_in",
    "network_out",
)


class _Ring:
    """The recent values of :data:`HISTORY_FIELDS`, one deque each."""

    __slots__ = ("columns",)

    def __init__(self, size: int) -> None:
        self.columns: tuple[deque[Any], ...] = tuple(
            deque(maxlen=size) for _ in HISTORY_FIELDS
        )

    def append(self, values: Sequence[Any]) -> None:
        for column, value in zip(self.columns, values, strict=True):
            column.append(value)

    def replace_last(self, values: Sequence[Any]) -> None:
        for column, value in zip(self.columns, values, strict=True):
            column[-1] = value

    def plain(self) -> dict[str, list[Any]]:
        return {
            name: list(column)
            for name, column in zip(HISTORY_FIELDS, self.columns, strict=True)
        }


class _Worker:
    __slots__ = ("latest", "removed", "ring", "shown")

    def __init__(self, history: int) -> None:
        self.latest: WorkerResources | None = None
        self.ring = _Ring(history)
        #: When the worker left (a ``removed`` event), else ``None``.
        self.removed: float | None = None
        #: Its row as the last snapshot showed it, until a new sample comes:
        #: snapshots are built several times per round of samples, and
        #: copying a thousand workers' rings each time is what a build of a
        #: large cluster's snapshot spent most of its time on.
        self.shown: tuple[bool, WorkerResourcesRow] | None = None


class ResourcesObserver(BatchObserver):
    """A bounded ring of resource samples per worker, and the cluster's sum.

    Parameters
    ----------
    interval
        Seconds between rounds of samples (what the snapshot reports).
    history
        Samples kept per worker.
    cluster_history
        Rounds kept for the cluster's sum.
    max_workers
        Workers kept. Workers that left stay until the table is full, then
        the one that left longest ago makes room; a new worker that finds no
        room (all running) is not tracked, counted in :attr:`folded`, and
        still counts in the cluster's sum.
    history_workers
        Workers whose history a snapshot shows: those using the most memory
        (their latest sample); the others' ``history`` is ``{}``, so that a
        snapshot of a thousand workers stays small and quick to build.

    Notes
    -----
    Not thread-safe: feed and read it from one thread (the pipeline's).
    Kept through Dask's ``restart`` (the new workers join as new rows).
    """

    name = "resources"

    def __init__(
        self,
        *,
        interval: float = INTERVAL,
        history: int = 120,
        cluster_history: int = 600,
        max_workers: int = 1_000,
        history_workers: int = HISTORY_WORKERS,
    ) -> None:
        self.interval = check_positive("interval", interval)
        self.history = check_count("history", history)
        self.cluster_history = check_count("cluster_history", cluster_history)
        self.max_workers = check_count("max_workers", max_workers)
        self.history_workers = check_count("history_workers", history_workers)
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self._rows: dict[str, _Worker] = {}
        self._folded: set[str] = set()
        self.folded = 0
        self._cluster = _Ring(self.cluster_history)
        #: The latest round: its time and its sums (see :meth:`_add_to_round`).
        self._round_time: float | None = None
        self._round: dict[str, Any] = {}
        self.samples = 0

    # -- events ------------------------------------------------------------

    def update_batch(self, events: Sequence[Event]) -> None:
        """Take the samples (and worker departures) among a batch's other events."""
        if not events:
            return
        others = as_batch(events).others
        for _, e in others:
            if type(e) is WorkerResources:
                self._sample(e)
            elif type(e) is WorkerStatus:
                row = self._rows.get(e.address)
                if row is not None:
                    row.removed = e.timestamp if e.action == "removed" else None

    def _sample(self, s: WorkerResources) -> None:
        self.samples += 1
        row = self._row(s.address)
        if row is not None:
            row.latest = s
            row.removed = None
            row.shown = None
            row.ring.append(
                (
                    s.timestamp,
                    s.memory,
                    s.managed,
                    s.spilled,
                    _finite(s.cpu),
                    _finite(s.network_in),
                    _finite(s.network_out),
                )
            )
        self._add_to_round(s)

    def _row(self, address: str) -> _Worker | None:
        """The row of a worker, new if needed; ``None`` if there is no room."""
        rows = self._rows
        row = rows.get(address)
        if row is not None:
            return row
        if len(rows) >= self.max_workers:
            gone = [(r.removed, a) for a, r in rows.items() if r.removed is not None]
            if not gone:
                if address not in self._folded:
                    if len(self._folded) < 10 * self.max_workers:
                        self._folded.add(address)
                    self.folded += 1
                return None
            del rows[min(gone)[1]]
        row = rows[address] = _Worker(self.history)
        return row

    def _add_to_round(self, s: WorkerResources) -> None:
        """Add a sample to the cluster's sum of its round (a new round if its
        time is not the latest round's)."""
        r = self._round
        if s.timestamp != self._round_time:
            if self._round_time is not None and s.timestamp < self._round_time:
                return  # a late sample of a round already summed: ignored
            self._round_time = s.timestamp
            r = self._round = {
                "time": s.timestamp,
                "memory": 0,
                "managed": 0,
                "unmanaged": 0,
                "spilled": 0,
                "limit": 0,
                "cpu": 0.0,
                "network_in": 0.0,
                "network_out": 0.0,
                "workers": 0,
                "paused": 0,
            }
            new = True
        else:
            new = False
        r["memory"] += s.memory
        r["managed"] += s.managed
        r["unmanaged"] += s.unmanaged
        r["spilled"] += s.spilled
        r["limit"] = (
            None if r["limit"] is None or s.limit is None else r["limit"] + s.limit
        )
        r["cpu"] += s.cpu
        r["network_in"] += s.network_in
        r["network_out"] += s.network_out
        r["workers"] += 1
        r["paused"] += s.paused
        point = [r[name] for name in HISTORY_FIELDS]
        if new:
            self._cluster.append(point)
        else:
            self._cluster.replace_last(point)

    # -- reading -----------------------------------------------------------

    def latest(self, address: str) -> WorkerResources | None:
        """The latest sample of a worker, or ``None``."""
        row = self._rows.get(address)
        return None if row is None else row.latest

    def snapshot(self) -> Resources:
        """The latest sample of each worker, the history of those using the
        most memory (``history_workers`` of them), and the cluster's.

        A worker's row is made again only when it got a new sample (or moved
        into or out of the workers with a history): successive snapshots
        share the rows of the others, which readers must not change.
        """
        sampled = [(a, r) for a, r in self._rows.items() if r.latest is not None]
        if len(sampled) > self.history_workers:
            ranked = sorted(sampled, key=lambda ar: -ar[1].latest.memory)  # type: ignore[union-attr]
            keep = {a for a, _ in ranked[: self.history_workers]}
        else:
            keep = {a for a, _ in sampled}
        workers: dict[str, WorkerResourcesRow] = {}
        for address, row in sorted(sampled):
            with_history = address in keep
            shown = row.shown
            if shown is None or shown[0] != with_history:
                shown = row.shown = (with_history, _row(row, with_history))
            workers[address] = shown[1]
        cluster: dict[str, Any] = {}
        if self._round_time is not None:
            cluster = dict(self._round)
            for name in ("cpu", "network_in", "network_out"):
                cluster[name] = _finite(cluster[name])
            cluster["history"] = self._cluster.plain()
        return {
            "interval": self.interval,
            "workers": workers,
            "cluster": cluster,
            "folded": self.folded,
        }


def _row(row: _Worker, with_history: bool) -> WorkerResourcesRow:
    """A worker's latest sample as a snapshot's row (with its history)."""
    s = row.latest
    assert s is not None
    return {
        "time": s.timestamp,
        "memory": s.memory,
        "managed": s.managed,
        "unmanaged": s.unmanaged,
        "spilled": s.spilled,
        "limit": s.limit,
        "cpu": _finite(s.cpu),
        "network_in": _finite(s.network_in),
        "network_out": _finite(s.network_out),
        "paused": s.paused,
        "history": row.ring.plain() if with_history else {},
    }


def _finite(value: float) -> float:
    """``value``, or ``0.0`` for NaN or infinity (snapshots are JSON)."""
    return value if math.isfinite(value) else 0.0
