"""Batch: a flush's events as columns, and as a sequence of event objects."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dask_monitor.batch import Batch, Details, as_batch, key_text, positions, uniform
from dask_monitor.events import TaskStatus, WorkerStatus
from dask_monitor.observers import ErrorsObserver, SamplingObserver


def _events() -> list[TaskStatus | WorkerStatus]:
    return [
        TaskStatus("a-1", "a", "a-0", "new", "released", 1.0, span="s"),
        TaskStatus("a-1", "a", "a-0", "released", "waiting", 1.0, span="s"),
        WorkerStatus("tcp://w:1", "added", 1.5, nthreads=2),
        TaskStatus("a-1", "a", "a-0", "waiting", "processing", 2.0, "tcp://w:1"),
        TaskStatus(
            "a-1",
            "a",
            "a-0",
            "processing",
            "memory",
            2.0,
            "tcp://w:1",
            0.5,
            1.5,
            2.0,
            8,
        ),
        TaskStatus(
            "b-1",
            "b",
            "b-0",
            "processing",
            "erred",
            2.0,
            "tcp://w:1",
            exception="ValueError('x')",
            traceback="tb",
        ),
    ]


class TestColumns:
    def test_transfer_and_disk_ride_in_the_named_details(self) -> None:
        """A completion's transfer and disk seconds are Details fields by name,
        and come back in its event, through rows and taken batches too."""
        done = TaskStatus(
            "a-1", "a", "a-g", "processing", "memory", 3.0, worker="tcp://w:1",
            duration=0.5, nbytes=8, transfer=0.25, disk=0.125,
        )  # fmt: skip
        batch = Batch.from_events(
            [TaskStatus("b-1", "b", "b-g", "new", "waiting", 3.0), done]
        )
        d = batch.detail(1)
        assert (d.duration, d.nbytes, d.transfer, d.disk) == (0.5, 8, 0.25, 0.125)
        assert batch.detail(0) == Details() and batch.detail(0).transfer is None
        fresh = Batch.from_events(tuple(batch))
        fresh._events = None
        assert fresh.task(1) == done and list(fresh) == list(batch)
        assert fresh.take([1]).task(0) == done

    def test_from_events_round_trips_in_order(self) -> None:
        """Columns, details and other events give back the same events."""
        events = _events()
        batch = Batch.from_events(events)
        assert batch.tasks == 5 and len(batch) == 6
        assert batch.keys == ["a-1", "a-1", "a-1", "a-1", "b-1"]
        assert batch.details == {
            3: Details(0.5, 1.5, 2.0, 8),
            4: Details(exception="ValueError('x')", traceback="tb"),
        }
        assert batch.others == [(2, events[2])]
        assert batch.times == [1.0, 1.0, 2.0, 2.0, 2.0] and batch.time == 2.0
        fresh = Batch.from_events(tuple(events))  # no cached list: made anew
        assert list(fresh) == events and fresh == events

    def test_one_time_for_the_batch_drops_the_times(self) -> None:
        """Events stamped alike (what the plugin makes) keep one time only."""
        events = [e for e in _events() if isinstance(e, TaskStatus)][2:]
        batch = Batch.from_events(events)
        assert batch.times is None and batch.time == 2.0
        assert [batch.timestamp(i) for i in range(3)] == [2.0, 2.0, 2.0]

    def test_indices_by_state_are_shared(self) -> None:
        """where_finish and where_start are built once and agree with a scan."""
        batch = Batch.from_events(_events())
        assert batch.where_finish("memory") == [3]
        assert batch.where_finish("erred") == [4]
        assert batch.where_finish("queued") == []
        assert list(batch.where_start("processing")) == [3, 4]
        assert batch.where_start("processing") is batch.where_start("processing")
        assert batch.has_finish("waiting") and not batch.has_finish("queued")
        counts = batch.transitions()
        assert counts[("a-0", "a", "processing", "memory")] == 1
        assert batch.transitions() is counts

    def test_take_and_chunks_keep_events_and_order(self) -> None:
        """Chunks of a batch hold the same events in the same order."""
        events = _events()
        batch = Batch.from_events(events)
        parts = list(batch.chunks(2))
        assert [p.tasks for p in parts] == [2, 2, 1]
        assert [e for p in parts for e in p] == events
        assert list(batch.take([4, 0])) == [events[5], events[0]]

    @pytest.mark.parametrize(
        "column, value, expected",
        [
            (["a", "a", "a"], "a", [0, 1, 2]),
            (["a", "a", "a"], "b", []),
            (["a", "b", "a", "c"], "a", [0, 2]),
            (["b"] * 20 + ["a"], "a", [20]),
            ([], "a", []),
        ],
    )
    def test_positions(
        self, column: list[str], value: str, expected: list[int]
    ) -> None:
        """positions() finds every equal entry, in order, whatever the mix."""
        assert list(positions(column, value)) == expected
        if column:
            assert uniform(column) == (column.count(column[0]) == len(column))

    def test_as_batch_keeps_a_batch(self) -> None:
        batch = Batch.from_events(_events())
        assert as_batch(batch) is batch


class TestTupleKeys:
    """Dask collections' keys are tuples: the plugin keeps them as they are in
    the columns (their text costs ~1 µs each) and events carry their str."""

    def _batch(self) -> Batch:
        key = ("x-123", 0, 1)
        return Batch(
            keys=[key, key],
            prefixes=["x", "x"],
            groups=["x-123", "x-123"],
            starts=["processing", "processing"],
            finishes=["memory", "erred"],
            workers=["tcp://w:1", "tcp://w:1"],
            spans=[None, None],
            time=5.0,
            details={
                0: Details(0.1, 4.9, 5.0, 8),
                1: Details(exception="E('a')", traceback="tb"),
            },
        )

    def test_events_carry_the_key_text(self) -> None:
        batch = self._batch()
        assert [e.key for e in batch] == ["('x-123', 0, 1)"] * 2
        assert batch.task(1).key == "('x-123', 0, 1)"
        assert key_text("k") == "k" and key_text(("k", 1)) == "('k', 1)"

    def test_samples_and_errors_show_the_key_text(self) -> None:
        batch = self._batch()
        errors = ErrorsObserver()
        errors.update_batch(batch)
        assert errors.snapshot()["errors"][0]["key"] == "('x-123', 0, 1)"
        sampling = SamplingObserver(recent=5, reservoir=5, seed=0)
        sampling.update_batch(batch)
        samples = sampling.snapshot()
        keys = {r["key"] for r in samples["recent"] + samples["reservoir"]}
        assert keys == {"('x-123', 0, 1)"}


STATES = ("new", "released", "waiting", "processing", "memory", "erred", "forgotten")


def _random_batch(seed: int) -> Batch:
    """Random task events of a few states (some batches of one kind of move)."""
    rng = random.Random(seed)
    n = rng.randint(0, 40)
    starts_from = rng.sample(STATES, rng.randint(1, 3))
    finishes_from = rng.sample(STATES, rng.randint(1, 3))
    starts = [rng.choice(starts_from) for _ in range(n)]
    finishes = [rng.choice(finishes_from) for _ in range(n)]
    return Batch(
        keys=[f"k-{rng.randint(0, 9)}" for _ in range(n)],
        prefixes=["k"] * n,
        groups=["k-0"] * n,
        starts=starts,
        finishes=finishes,
        workers=[None] * n,
        spans=[None] * n,
        time=1.0,
    )


class TestSelectors:
    @pytest.mark.parametrize("seed", range(300))
    def test_selectors_agree_with_a_scan(self, seed: int) -> None:
        """Every selector names the events a scan of the columns finds."""
        batch = _random_batch(seed)
        moves = list(zip(batch.starts, batch.finishes, strict=True))
        n = len(moves)
        for state in STATES:
            assert list(batch.where_finish(state)) == [
                i for i, (_, f) in enumerate(moves) if f == state
            ]
            assert list(batch.entering(state)) == [
                i for i, (s, f) in enumerate(moves) if f == state != s
            ]
            assert list(batch.leaving(state)) == [
                i for i, (s, f) in enumerate(moves) if s == state != f
            ]
            for finish in STATES:
                assert list(batch.moved(state, finish)) == [
                    i for i, move in enumerate(moves) if move == (state, finish)
                ]
        assert list(batch.completions()) == [
            i for i, move in enumerate(moves) if move == ("processing", "memory")
        ]
        assert batch.state_pairs() == Counter(moves)
        same_start = batch.starts[0] if n and len(set(batch.starts)) == 1 else None
        same_finish = batch.finishes[0] if n and len(set(batch.finishes)) == 1 else None
        assert batch.same_start() == same_start
        assert batch.same_finish() == same_finish

    def test_selectors_are_computed_once(self) -> None:
        """A second question gets the first answer (shared by every observer)."""
        batch = Batch.from_events(_events())
        assert batch.entering("processing") is batch.entering("processing")
        assert batch.completions() is batch.completions()
        assert batch.state_pairs() is batch.state_pairs()

    def test_one_kind_of_transition_is_answered_by_a_range(self) -> None:
        """A batch of one move answers with a range (sliced, not indexed)."""
        events = [
            TaskStatus(f"a-{i}", "a", "a-0", "processing", "memory", 1.0)
            for i in range(5)
        ]
        batch = Batch.from_events(events)
        assert batch.same_start() == "processing"
        assert batch.same_finish() == "memory"
        assert batch.completions() == range(5)
        assert batch.entering("processing") == ()
        assert batch.where_finish("memory") == range(5)

    def test_repeats_tells_a_key_seen_twice(self) -> None:
        """The order of some events matters when a key is among them twice."""
        from dask_monitor.batch import repeats

        assert repeats(["a", "b", "a"])
        assert not repeats(["a", "b"])
        assert not repeats([])
