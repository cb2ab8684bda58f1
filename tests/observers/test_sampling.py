"""SamplingObserver: recent task events and a uniform reservoir sample."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from typing import Any

import pytest

from dask_monitor.batch import Batch, Details
from dask_monitor.events import Alert, TaskStatus, WorkerStatus
from dask_monitor.observers import SamplingObserver


def _numbered(stream: Any, n: int) -> list[TaskStatus]:
    """Events whose key is their index."""
    return [
        stream.task(str(i), "waiting", "processing", float(i), prefix="x")
        for i in range(n)
    ]


def _indices(sampling: SamplingObserver) -> list[int]:
    return [int(e.key) for e in sampling.reservoir()]


class TestSamplingObserver:
    def test_recent_events(self, stream: Any) -> None:
        """The last ``recent`` task events are kept, oldest first."""
        sampling = SamplingObserver(recent=5)
        events = _numbered(stream, 12)
        sampling.update_batch(events[:7])
        sampling.update_batch(events[7:])
        assert [e.key for e in sampling.recent()] == ["7", "8", "9", "10", "11"]

    def test_other_events_are_not_sampled(self, stream: Any) -> None:
        """Worker events and alerts are neither recent nor counted as seen."""
        sampling = SamplingObserver(recent=3, reservoir=10)
        events = _numbered(stream, 4)
        sampling.update_batch(
            [
                events[0],
                WorkerStatus("tcp://w:1", "added", 0.0, 1),
                *events[1:3],
                Alert("stall", "warning", "quiet", 0.0),
                events[3],
            ]
        )
        assert [e.key for e in sampling.recent()] == ["1", "2", "3"]
        assert sorted(_indices(sampling)) == [0, 1, 2, 3]
        assert sampling.seen == 4

    def test_reservoir_keeps_everything_until_full(self, stream: Any) -> None:
        """Fewer events than the reservoir size: all are in the sample."""
        sampling = SamplingObserver(reservoir=100, seed=0)
        for e in _numbered(stream, 60):
            sampling.update(e)
        assert sorted(_indices(sampling)) == list(range(60))

    def test_reservoir_is_uniform(self, stream: Any) -> None:
        """Over 100k events each decile holds about a tenth of the sample."""
        n, k = 100_000, 1_000
        sampling = SamplingObserver(recent=10, reservoir=k, seed=42)
        events = _numbered(stream, n)
        for batch in stream.chunks(events, [1, 37, 5_000]):
            sampling.update_batch(batch)
        indices = _indices(sampling)
        assert len(indices) == k == len(set(indices))
        assert sampling.seen == n
        mean = sum(indices) / k
        assert abs(mean - n / 2) < 4 * (n / 12**0.5) / k**0.5  # 4 standard errors
        deciles = Counter(i * 10 // n for i in indices)
        chi2 = sum((deciles[d] - k / 10) ** 2 / (k / 10) for d in range(10))
        assert chi2 < 27.9  # 9 degrees of freedom, p = 0.001

    def test_sample_does_not_depend_on_batching(self, stream: Any) -> None:
        """With one seed, the same events give the same sample however batched."""
        events = _numbered(stream, 20_000)
        samples = []
        for sizes in ([1], [999], [20_000]):
            sampling = SamplingObserver(reservoir=50, seed=7)
            for batch in stream.chunks(events, sizes):
                sampling.update_batch(batch)
            samples.append(_indices(sampling))
        assert samples[0] == samples[1] == samples[2]

    def test_snapshot_records(self, stream: Any) -> None:
        """Events come out as plain dicts of every TaskStatus field, texts cut."""
        sampling = SamplingObserver(recent=2, reservoir=2, max_text=50)
        event = stream.task(
            "a-1", "processing", "erred", 5.0, exception="E" * 500, traceback="T" * 500
        )
        sampling.update(event)
        snap = sampling.snapshot()
        record = snap["recent"][0]
        assert list(record) == [f.name for f in dataclasses.fields(TaskStatus)]
        assert record["key"] == "a-1" and record["timestamp"] == 5.0
        assert len(record["exception"]) <= 50 and len(record["traceback"]) <= 50
        assert snap["reservoir"] == [record]
        assert snap["seen"] == 1
        stream.assert_plain(snap)

    def test_tuple_keys_become_text_when_read(self) -> None:
        """Keys as Dask gives them (tuples of collections) come out as ``str``,
        in the reservoir and in the recent events alike."""
        keys: list[object] = [("getitem-a1", i) for i in range(5)] + ["x-1"]
        n = len(keys)
        batch = Batch(
            keys=keys,
            prefixes=["getitem"] * (n - 1) + ["x"],
            groups=["getitem-a1"] * (n - 1) + ["x-1"],
            starts=["waiting"] * n,
            finishes=["processing"] * n,
            workers=["tcp://w:1"] * n,
            spans=[None] * n,
            time=7.0,
            details={0: Details(1.5, 5.5, 7.0, 8)},
        )
        sampling = SamplingObserver(recent=n, reservoir=n, seed=0)
        sampling.update_batch(batch)
        texts = [str(k) for k in keys]
        for events in (sampling.reservoir(), sampling.recent()):
            assert sorted(e.key for e in events) == sorted(texts)
            assert all(type(e.key) is str for e in events)
        first = next(e for e in sampling.reservoir() if e.key == "('getitem-a1', 0)")
        assert (first.duration, first.begin, first.end, first.nbytes) == (
            1.5,
            5.5,
            7.0,
            8,
        )
        assert first.worker == "tcp://w:1" and first.timestamp == 7.0
        assert sampling.snapshot()["reservoir"][0]["key"] in texts

    def test_snapshot_follows_new_events(self, stream: Any) -> None:
        """A later snapshot shows the events that arrived since."""
        sampling = SamplingObserver(recent=2, reservoir=2)
        events = _numbered(stream, 4)
        sampling.update_batch(events[:2])
        sampling.snapshot()
        sampling.update_batch(events[2:])
        assert [r["key"] for r in sampling.snapshot()["recent"]] == ["2", "3"]

    def test_reset(self, stream: Any) -> None:
        """reset() empties both samples and restarts the seeded sequence."""
        sampling = SamplingObserver(reservoir=10, seed=3)
        events = _numbered(stream, 1_000)
        sampling.update_batch(events)
        first = _indices(sampling)
        sampling.reset()
        assert sampling.snapshot() == {"recent": [], "reservoir": [], "seen": 0}
        sampling.update_batch(events)
        assert _indices(sampling) == first

    @pytest.mark.parametrize(
        "kwargs", [{"recent": 0}, {"reservoir": 0}, {"max_text": 0}]
    )
    def test_rejects_bad_settings(self, kwargs: dict[str, int]) -> None:
        """Sizes must be positive."""
        with pytest.raises(ValueError):
            SamplingObserver(**kwargs)


class TestSamplingBatches:
    def test_batch_and_list_give_the_same_samples(self, stream: Any) -> None:
        """A columnar Batch samples exactly like the equivalent list."""
        from dask_monitor.batch import Batch

        events: list[Any] = list(stream.workload(3_000, seed=1))
        events.insert(500, WorkerStatus("tcp://w:1", "added", 0.0, 1))
        got = []
        for wrap in (list, Batch.from_events):
            sampling = SamplingObserver(recent=300, reservoir=50, seed=5)
            for batch in stream.chunks(events, [1, 250, 1_000]):
                b = wrap(batch)
                if isinstance(b, Batch):
                    b._events = None  # columns only, as from the plugin
                sampling.update_batch(b)
            got.append((sampling.recent(), sampling.reservoir(), sampling.snapshot()))
        assert got[0] == got[1]

    def test_large_batch_and_reads_between_batches(self, stream: Any) -> None:
        """A batch far larger than ``recent`` keeps its tail; reads interleave."""
        sampling = SamplingObserver(recent=5)
        events = _numbered(stream, 40)
        sampling.update_batch(events[:3])
        assert [e.key for e in sampling.recent()] == ["0", "1", "2"]
        sampling.update_batch(events[3:5])
        sampling.update_batch(events[5:30])
        assert [e.key for e in sampling.recent()] == ["25", "26", "27", "28", "29"]
        sampling.update_batch(events[30:32])
        assert [r["key"] for r in sampling.snapshot()["recent"]] == [
            "27",
            "28",
            "29",
            "30",
            "31",
        ]
        sampling.update_batch(events[32:])
        assert [e.key for e in sampling.recent()] == ["35", "36", "37", "38", "39"]
        assert sampling.recent() == events[35:]


def _algorithm_l(n: int, k: int, seed: int) -> list[int]:
    """Indices of Li's Algorithm L over ``n`` events, drawn event by event
    with the sampler's draws (the reference the sampler must match)."""
    rng = random.Random(seed)
    sample = list(range(min(n, k)))
    if n <= k:
        return sample
    w = math.exp(math.log(1.0 - rng.random()) / k)
    i = k - 1 + math.floor(math.log(1.0 - rng.random()) / math.log1p(-w)) + 1
    while i < n:
        sample[int(rng.random() * k)] = i
        w *= math.exp(math.log(1.0 - rng.random()) / k)
        i += (
            1
            if w >= 1.0
            else math.floor(math.log(1.0 - rng.random()) / math.log1p(-w)) + 1
        )
    return sample


class _CountingBatch(Batch):
    """A batch that counts the rows made of it."""

    __slots__ = ("rows",)

    def row(self, i: int) -> tuple[Any, ...]:
        self.rows += 1
        return super().row(i)


class TestReservoirCost:
    """The reservoir costs per kept pick, and picks what Algorithm L draws."""

    def test_picks_are_algorithm_l_draws(self, stream: Any) -> None:
        """A seeded sample holds exactly the events Algorithm L's draws pick."""
        events = _numbered(stream, 30_000)
        for sizes in ([30_000], [7, 993, 4_000]):
            sampling = SamplingObserver(reservoir=100, seed=3)
            for batch in stream.chunks(events, sizes):
                sampling.update_batch(batch)
            assert _indices(sampling) == _algorithm_l(30_000, 100, 3)

    def test_a_row_per_slot_kept_from_a_batch(self, stream: Any) -> None:
        """Picks replaced within their batch are never made: one row per slot."""
        plain = Batch.from_events(_numbered(stream, 50_000))
        batch = _CountingBatch(
            keys=plain.keys,
            prefixes=plain.prefixes,
            groups=plain.groups,
            starts=plain.starts,
            finishes=plain.finishes,
            workers=plain.workers,
            spans=plain.spans,
            time=plain.time,
            times=plain.times,
        )
        batch.rows = 0
        sampling = SamplingObserver(reservoir=100, seed=1)
        sampling.update_batch(batch)
        assert batch.rows == 100
        assert _indices(sampling) == _algorithm_l(50_000, 100, 1)
