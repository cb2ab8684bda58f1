"""The transition buffer on its own: what the hooks record, and the batch a
drain makes of it, with synthetic task states (no scheduler)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dask_monitor.events import NEW, WorkerStatus
from dask_monitor.scheduler.buffer import TransitionBuffer

GROUP = SimpleNamespace(name="inc-g", prefix=SimpleNamespace(name="inc"), span_id=None)


def task(state: str, worker: str | None = None) -> Any:
    """A stand-in for Dask's ``TaskState``: what the buffer reads of one."""
    on = None if worker is None else SimpleNamespace(address=worker)
    return SimpleNamespace(state=state, group=GROUP, processing_on=on)


def completion(worker: str) -> dict[str, Any]:
    return {
        "stimulus_id": "s",
        "worker": worker,
        "nbytes": 8,
        "startstops": [{"action": "compute", "start": 1.0, "stop": 1.25}],
    }


class TestFilling:
    """What the hooks put in, and what is counted instead."""

    def test_the_capacity_bounds_transitions_and_creations_alike(self) -> None:
        """Past ``capacity`` task records, transitions and creations are
        dropped and counted; worker records are always kept."""
        tasks = {f"inc-{i}": task("released") for i in range(4)}
        buffer = TransitionBuffer(capacity=3, tasks=tasks)
        buffer.create(["inc-0", "inc-1"])
        buffer.append("inc-2", "released", "waiting", stimulus_id="s")
        buffer.append("inc-3", "released", "waiting", stimulus_id="s")
        buffer.create(["inc-3"])
        buffer.add_worker("tcp://w:1", 2)
        assert (len(buffer), buffer.dropped) == (4, 2)

    def test_a_worker_record_takes_the_room_of_a_task_record(self) -> None:
        """The capacity bounds all records until the next drain: after a
        worker joined, one transition fewer fits; a drain frees the room."""
        buffer = TransitionBuffer(capacity=2)
        buffer.add_worker("tcp://w:1", 1)
        buffer.append("a", "waiting", "processing", stimulus_id="s", worker="w")
        buffer.append("b", "waiting", "processing", stimulus_id="s", worker="w")
        assert (len(buffer), buffer.dropped) == (2, 1)
        buffer.drain(1.0)
        buffer.append("c", "waiting", "processing", stimulus_id="s", worker="w")
        buffer.append("d", "waiting", "processing", stimulus_id="s", worker="w")
        assert (len(buffer), buffer.dropped) == (2, 0)

    def test_a_creation_folds_its_first_move_and_counts_it(self) -> None:
        """``new -> released`` then ``released -> waiting`` before a drain
        are one event ``new -> waiting``, counted as merged."""
        buffer = TransitionBuffer(capacity=10, tasks={"inc-1": task("released")})
        buffer.create(["inc-1"])
        buffer.append("inc-1", "released", "waiting", stimulus_id="s")
        assert buffer.merged == 1
        pending = buffer.take()
        assert pending.merged == 1 and buffer.merged == 0
        batch = buffer.convert(pending, 1.0)
        assert list(zip(batch.keys, batch.starts, batch.finishes, strict=True)) == [
            ("inc-1", NEW, "waiting")
        ]

    def test_a_drain_empties_the_buffer_and_its_counts(self) -> None:
        """After a drain nothing is buffered, dropped or merged; drops alone
        are something to tell."""
        buffer = TransitionBuffer(capacity=1)
        buffer.append("a", "waiting", "processing", stimulus_id="s", worker="w")
        buffer.append("b", "waiting", "processing", stimulus_id="s", worker="w")
        assert buffer and buffer.dropped == 1
        assert len(buffer.drain(1.0)) == 1
        assert not buffer
        assert (len(buffer), buffer.dropped, buffer.merged) == (0, 0, 0)


class TestCompletions:
    """What a completion's report gives its event."""

    def test_a_completion_takes_its_figures_from_its_report(self) -> None:
        """Compute interval, duration and size come from the report's
        ``startstops`` and ``nbytes``; transfer and disk seconds sum theirs."""
        buffer = TransitionBuffer(capacity=10)
        kwargs = completion("w1")
        kwargs["startstops"] = [
            {"action": "transfer", "start": 0.5, "stop": 0.75},
            {"action": "compute", "start": 1.0, "stop": 1.25},
            {"action": "disk-write", "start": 1.5, "stop": 2.0},
        ]
        buffer.append("a", "processing", "memory", **kwargs)
        d = buffer.drain(3.0).detail(0)
        assert (d.duration, d.begin, d.end, d.nbytes) == (0.25, 1.0, 1.25, 8)
        assert (d.transfer, d.disk) == (0.25, 0.5)

    def test_a_report_of_another_shape_is_counted_without_figures(self) -> None:
        """A completion whose ``startstops`` lacks its times raises nowhere
        (not in Dask's hook, not in the flush): the event is there, on its
        worker, without figures, and so is the rest of the batch."""
        buffer = TransitionBuffer(capacity=10)
        buffer.append(
            "a", "processing", "memory", worker="w1", startstops=[{"action": "compute"}]
        )
        buffer.append("b", "processing", "memory", **completion("w2"))
        batch = buffer.drain(1.0)
        assert batch.workers == ["w1", "w2"]
        assert batch.detail(0).duration is None
        assert batch.detail(1).duration == 0.25


class TestTracker:
    """The one key -> worker tracker, across drains."""

    def test_a_task_is_tracked_from_entering_to_leaving_processing(self) -> None:
        """A completion in a later drain is put on the worker the task entered
        on, or the one its kwargs name; then the task is forgotten."""
        buffer = TransitionBuffer(capacity=10, tasks={"a": task("processing", "w1")})
        buffer.append("a", "waiting", "processing", stimulus_id="s")
        buffer.append("b", "waiting", "processing", stimulus_id="s", worker="w2")
        assert buffer.drain(1.0).workers == ["w1", "w2"]
        assert buffer.where == {"a": "w1", "b": "w2"}
        buffer.append("a", "processing", "released", stimulus_id="s")
        buffer.append("b", "processing", "memory", **completion("w3"))
        batch = buffer.drain(2.0)
        assert batch.workers == ["w1", "w3"]
        assert batch.details[1][0] == pytest.approx(0.25)
        assert buffer.where == {}

    def test_drops_make_the_tracker_forget_tasks_no_longer_processing(self) -> None:
        """A departure may have been dropped: after drops, only the tasks the
        task table says are processing stay tracked, then the drained
        records are applied."""
        tasks = {"a": task("processing", "w1"), "b": task("processing", "w1")}
        buffer = TransitionBuffer(capacity=2, tasks=tasks)
        buffer.append("a", "waiting", "processing", stimulus_id="s")
        buffer.append("b", "waiting", "processing", stimulus_id="s")
        buffer.drain(1.0)
        tasks["a"] = task("memory")
        buffer.append("c", "waiting", "processing", stimulus_id="s", worker="w2")
        buffer.append("d", "waiting", "processing", stimulus_id="s", worker="w2")
        buffer.append("a", "processing", "memory", **completion("w1"))  # dropped
        buffer.drain(2.0)
        assert buffer.where == {"b": "w1", "c": "w2", "d": "w2"}

    def test_a_worker_that_left_counts_the_tasks_lost_before_it_left(self) -> None:
        """A removal counts the tasks that left ``processing`` on that worker
        for ``released``, ``waiting`` or ``no-worker`` before it, in order:
        not those lost after it, not completions, not other workers'."""
        buffer = TransitionBuffer(capacity=100)
        for key, worker in [("a", "w1"), ("b", "w1"), ("c", "w1"), ("d", "w2")]:
            buffer.append(key, "waiting", "processing", stimulus_id="s", worker=worker)
        buffer.drain(1.0)
        buffer.append("a", "processing", "released", stimulus_id="s")
        buffer.append("e", "waiting", "processing", stimulus_id="s", worker="w1")
        buffer.append("e", "processing", "no-worker", stimulus_id="s")
        buffer.append("b", "processing", "memory", **completion("w1"))
        buffer.append("d", "processing", "waiting", stimulus_id="s")
        buffer.remove_worker("w1", expected=False)
        buffer.append("c", "processing", "released", stimulus_id="s")
        buffer.remove_worker("w2", expected=True)
        batch = buffer.drain(2.0)
        removed = [(pos, e) for pos, e in batch.others if type(e) is WorkerStatus]
        assert removed == [
            (5, WorkerStatus("w1", "removed", 2.0, None, 2, False)),
            (6, WorkerStatus("w2", "removed", 2.0, None, 1, True)),
        ]
        assert batch.workers == ["w1", "w1", "w1", "w1", "w2", "w1"]
        assert buffer.where == {}

    def test_worker_records_alone_make_a_batch_of_worker_events(self) -> None:
        """A drain with worker records and no task record: their events."""
        buffer = TransitionBuffer(capacity=10)
        buffer.add_worker("tcp://w:1", 4)
        assert list(buffer.drain(3.0)) == [WorkerStatus("tcp://w:1", "added", 3.0, 4)]


#: Dask's moves between task states (those the fuzz below makes).
MOVES = {
    "released": ("waiting", "forgotten"),
    "waiting": ("processing", "queued", "no-worker", "released"),
    "queued": ("processing", "released"),
    "no-worker": ("processing", "released"),
    "processing": ("memory", "erred", "released", "waiting", "no-worker"),
    "memory": ("released", "forgotten"),
    "erred": ("released", "erred", "forgotten"),
    "forgotten": ("released",),
}


@pytest.mark.parametrize("seed", range(300))
def test_the_column_walk_and_the_ordered_walk_agree(seed: int) -> None:
    """The tracker's two walks (by columns when no task enters twice, in
    order otherwise) give every event the same worker and details, and
    leave the same tasks tracked, on random valid task life cycles."""
    import random

    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(rng.randint(1, 8))]
    tasks: dict[str, Any] = {}
    state = dict.fromkeys(keys, "released")
    columns = TransitionBuffer(capacity=10_000, tasks=tasks)
    ordered = TransitionBuffer(capacity=10_000, tasks=tasks)
    for flush in range(rng.randint(1, 8)):
        for _ in range(rng.randint(0, 30)):
            key = rng.choice(keys)
            start = state[key]
            finish = state[key] = rng.choice(MOVES[start])
            worker = rng.choice(["w1", "w2", "w3"])
            tasks[key] = task(finish, worker if finish == "processing" else None)
            kwargs: dict[str, Any] = {"stimulus_id": rng.choice(["s", "task-erred"])}
            if finish == "memory":
                kwargs = random_completion(rng, worker)
            elif finish == "erred":
                kwargs.update(worker=worker, exception_text="ValueError('x')")
            for buffer in (columns, ordered):
                buffer.append(key, start, finish, **kwargs)
        # A worker record after the last task record makes the walk ordered.
        ordered.add_worker("tcp://w:9", 1)
        a = columns.drain(float(flush))
        b = ordered.drain(float(flush))
        assert (a.keys, a.finishes, a.workers) == (b.keys, b.finishes, b.workers)
        assert a.details == b.details
        assert columns.where == ordered.where


def random_completion(rng: Any, worker: str) -> dict[str, Any]:
    """A completion's kwargs with ``startstops`` of a random shape (compute
    alone, or with transfers and spills around it, or none at all)."""
    kwargs = completion(worker)
    shape = rng.choice(
        [
            ("compute",),
            ("compute",),
            ("transfer", "compute"),
            ("compute", "disk-write"),
            ("disk-read", "compute", "compute"),
            ("transfer",),
            (),
            None,
        ]
    )
    if shape is None:
        del kwargs["startstops"]
    else:
        t = rng.random()
        kwargs["startstops"] = tuple(
            {"action": action, "start": t + i, "stop": t + i + rng.random()}
            for i, action in enumerate(shape)
        )
    if rng.random() < 0.2:
        del kwargs["nbytes"]
    return kwargs
