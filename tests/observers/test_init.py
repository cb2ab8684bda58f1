"""The contract every observer keeps (``dask_monitor.observers``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

import dask_monitor.observers as observers
from dask_monitor.events import Alert, WorkerStatus
from dask_monitor.observers import (
    DurationsObserver,
    ErrorsObserver,
    EtaEstimator,
    ProgressObserver,
    SamplingObserver,
    ThroughputObserver,
    WorkersObserver,
)
from dask_monitor.subject import Subject


def _eta(clock: Callable[[], float]) -> EtaEstimator:
    return EtaEstimator(
        ProgressObserver(), ThroughputObserver(clock=clock), clock=clock
    )


FACTORIES: dict[str, Callable[[Callable[[], float]], Any]] = {
    "progress": lambda clock: ProgressObserver(),
    "throughput": lambda clock: ThroughputObserver(clock=clock),
    "durations": lambda clock: DurationsObserver(),
    "workers": lambda clock: WorkersObserver(clock=clock),
    "errors": lambda clock: ErrorsObserver(),
    "sampling": lambda clock: SamplingObserver(seed=0),
    "eta": _eta,
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest, clock: Any) -> Callable[[], Any]:
    """A factory of one observer kind, with the fake clock."""
    return lambda: FACTORIES[request.param](clock)


def _same(a: Any, b: Any) -> bool:
    """Equal plain data, floats to 1e-9 (sums depend on how events were batched)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _events(stream: Any) -> list[Any]:
    events = list(itertools.islice(stream.workload(300, 3, flush=0.1), 1_200))
    return [
        *stream.workers(events[0].timestamp),
        *events[:600],
        Alert("stall", "warning", "nothing moves", events[600].timestamp),
        WorkerStatus(stream.workers_addresses[0], "removed", events[600].timestamp),
        *events[600:],
    ]


class TestObserverContract:
    def test_exports(self) -> None:
        """The package re-exports every observer and the sketch."""
        assert set(observers.__all__) >= {
            "DurationsObserver",
            "ErrorsObserver",
            "EtaEstimator",
            "LogHistogram",
            "ProgressObserver",
            "SamplingObserver",
            "ThroughputObserver",
            "WorkersObserver",
        }

    def test_name(self, make: Callable[[], Any]) -> None:
        """Every observer has a fixed string name."""
        observer = make()
        assert isinstance(type(observer).name, str)
        assert observer.name == type(observer).name

    def test_subscribes(self, make: Callable[[], Any], stream: Any) -> None:
        """A subject accepts every observer and hands it batches."""
        subject = Subject(raise_errors=True)
        subject.subscribe(make())
        subject.notify_batch(_events(stream))

    def test_snapshot_is_plain(self, make: Callable[[], Any], stream: Any) -> None:
        """The snapshot survives JSON and msgpack, before and after events."""
        observer = make()
        stream.assert_plain(observer.snapshot())
        observer.update_batch(_events(stream))
        stream.assert_plain(observer.snapshot())

    def test_update_is_a_batch_of_one(
        self, make: Callable[[], Any], stream: Any
    ) -> None:
        """Events one at a time give the same snapshot as one batch."""
        one, batch = make(), make()
        events = _events(stream)
        for e in events:
            one.update(e)
        batch.update_batch(events)
        assert _same(one.snapshot(), batch.snapshot())

    def test_empty_batch(self, make: Callable[[], Any]) -> None:
        """An empty batch changes nothing."""
        observer = make()
        before = observer.snapshot()
        observer.update_batch([])
        assert observer.snapshot() == before

    def test_other_events_are_ignored(self, make: Callable[[], Any]) -> None:
        """A batch of alerts only changes nothing."""
        observer = make()
        before = observer.snapshot()
        observer.update_batch([Alert("stall", "warning", "quiet", 1_000.0)])
        assert observer.snapshot() == before

    def test_reset(self, make: Callable[[], Any], stream: Any) -> None:
        """After reset the observer is as good as new."""
        observer = make()
        fresh = observer.snapshot()
        observer.update_batch(_events(stream))
        observer.reset()
        assert observer.snapshot() == fresh
