"""WorkersObserver: load and utilisation per worker."""

from __future__ import annotations

from typing import Any

import pytest

from dask_monitor.batch import Batch
from dask_monitor.events import WorkerStatus
from dask_monitor.observers import WorkersObserver

A = "tcp://10.0.0.1:8786"
B = "tcp://10.0.0.2:8786"


def _start(stream: Any, key: str, worker: str, t: float = 1_000.0) -> Any:
    return stream.task(key, "waiting", "processing", t, worker=worker)


def _finish(
    stream: Any, key: str, worker: str | None, t: float = 1_001.0, duration: float = 0.5
) -> Any:
    return stream.task(key, "processing", "memory", t, worker=worker, duration=duration)


class TestWorkersObserver:
    def test_worker_lifecycle(self, stream: Any, clock: Any) -> None:
        """Added workers run; removed ones are kept with their last time."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch(stream.workers(1_000.0, nthreads=4))
        workers.update(WorkerStatus(B, "removed", 1_010.0))
        snap = workers.snapshot()
        assert list(snap) == [A, B]
        assert (snap[A]["status"], snap[A]["nthreads"]) == ("running", 4)
        assert (snap[B]["status"], snap[B]["last_seen"]) == ("removed", 1_010.0)
        assert snap[B]["first_seen"] == 1_000.0

    def test_processing_completed_and_busy(self, stream: Any, clock: Any) -> None:
        """Tasks count as processing on their worker until they leave it."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch(
            [
                *stream.workers(1_000.0),
                _start(stream, "x-1", A),
                _start(stream, "x-2", A),
                _start(stream, "x-3", B),
            ]
        )
        assert workers.snapshot()[A]["processing"] == 2
        workers.update_batch(
            [
                _finish(stream, "x-1", A, duration=2.0),
                stream.task("x-2", "processing", "erred", 1_001.0, worker=A),
                _finish(stream, "x-3", B, duration=1.5),
            ]
        )
        snap = workers.snapshot()
        assert (snap[A]["processing"], snap[A]["completed"], snap[A]["erred"]) == (
            0,
            1,
            1,
        )
        assert (snap[A]["busy"], snap[B]["busy"]) == (2.0, 1.5)
        assert snap[A]["last_seen"] == 1_001.0

    def test_start_and_finish_in_one_batch(self, stream: Any, clock: Any) -> None:
        """A task that starts and ends within one batch leaves nothing processing."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch(
            [
                _start(stream, "x-1", A),
                _finish(stream, "x-1", A),
                _start(stream, "x-2", A),
            ]
        )
        row = workers.snapshot()[A]
        assert (row["processing"], row["completed"]) == (1, 1)

    def test_lost_worker(self, stream: Any, clock: Any) -> None:
        """Tasks released from a lost worker leave it; the worker is removed."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch(
            [
                *stream.workers(1_000.0),
                _start(stream, "x-1", A),
                _start(stream, "x-2", A),
            ]
        )
        workers.update_batch(
            [
                stream.task("x-1", "processing", "released", 1_005.0, worker=A),
                stream.task("x-1", "released", "waiting", 1_005.0),
                _start(stream, "x-1", B, 1_005.0),
                WorkerStatus(A, "removed", 1_005.0, processing=2),
            ]
        )
        snap = workers.snapshot()
        assert (snap[A]["status"], snap[A]["processing"]) == ("removed", 0)
        assert snap[B]["processing"] == 1

    def test_utilisation_run(self, stream: Any, clock: Any) -> None:
        """Busy time over thread time of the worker's run (its first task to its
        latest task event), clipped to [0, 1]; idle time after it does not count."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch(stream.workers(1_000.0, nthreads=2))
        workers.update_batch([_start(stream, "x-1", A, 1_000.0)])
        workers.update_batch([_finish(stream, "x-1", A, 1_010.0, duration=5.0)])
        clock.now = 1_100.0
        assert workers.snapshot()[A]["utilisation_run"] == pytest.approx(0.25)
        assert workers.utilisation_run(A) == pytest.approx(0.25)
        assert workers.snapshot()[B]["utilisation_run"] == 0.0
        workers.update_batch(
            [_start(stream, "x-2", A, 1_010.0), _finish(stream, "x-2", A, 1_011.0, 500)]
        )
        assert workers.utilisation_run(A) == 1.0
        workers.update(WorkerStatus(A, "removed", 1_020.0))
        clock.now = 2_000.0
        assert workers.utilisation_run(A) == 1.0
        assert workers.utilisation(A) == 0.0  # a removed worker is busy no more
        assert workers.utilisation_run("tcp://nope:1") == 0.0

    def test_utilisation_now_counts_running_tasks(
        self, stream: Any, clock: Any
    ) -> None:
        """Threads held by tasks still running count: saturated reads 1.0 before
        any task finished, one task on two threads 0.5."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch(stream.workers(1_000.0, nthreads=2))
        workers.update_batch(
            [_start(stream, f"x-{i}", A, 1_000.0) for i in range(3)]
            + [_start(stream, "y-1", B, 1_000.0)]
        )
        clock.now = 1_030.0
        snap = workers.snapshot()
        assert snap[A]["utilisation"] == 1.0  # 3 tasks on 2 threads: all held
        assert snap[B]["utilisation"] == pytest.approx(0.5)
        assert workers.utilisation(A) == 1.0

    def test_utilisation_now_looks_back_a_window(self, stream: Any, clock: Any) -> None:
        """Busy then idle: the figure covers the last ``window`` seconds only
        (or the time since the worker appeared), not the worker's lifetime."""
        workers = WorkersObserver(clock=clock, window=10.0)
        workers.update_batch(stream.workers(1_000.0, nthreads=2, n=1))
        workers.update_batch([_start(stream, f"x-{i}", A, 1_000.0) for i in range(2)])
        workers.update_batch(
            [_finish(stream, f"x-{i}", A, 1_005.0, duration=5.0) for i in range(2)]
        )
        clock.now = 1_008.0  # busy 5 s of the 8 since it appeared
        assert workers.utilisation(A) == pytest.approx(5 / 8)
        clock.now = 1_012.0  # the window [1002, 1012]: busy 3 s of 10
        assert workers.utilisation(A) == pytest.approx(0.3)
        clock.now = 1_020.0
        assert workers.utilisation(A) == 0.0
        assert workers.utilisation_run(A) == 1.0  # the run itself was saturated

    def test_unknown_threads(self, stream: Any, clock: Any) -> None:
        """A worker first seen in task events has no threads and zero utilisation."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch([_start(stream, "x-1", A), _finish(stream, "x-1", A)])
        clock.now = 1_010.0
        row = workers.snapshot()[A]
        assert (row["status"], row["nthreads"], row["utilisation"]) == (
            "running",
            None,
            0.0,
        )
        assert row["completed"] == 1

    def test_worker_added_again(self, stream: Any, clock: Any) -> None:
        """An address added again after its removal is a new worker."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch([*stream.workers(1_000.0, n=1), _start(stream, "x-1", A)])
        workers.update_batch(
            [_finish(stream, "x-1", A), WorkerStatus(A, "removed", 1_002.0)]
        )
        workers.update(WorkerStatus(A, "added", 1_003.0, nthreads=8))
        row = workers.snapshot()[A]
        assert (row["status"], row["nthreads"], row["completed"]) == ("running", 8, 0)
        assert row["first_seen"] == 1_003.0

    def test_departure_without_worker(self, stream: Any, clock: Any) -> None:
        """Once a departure lacks a worker, later ones are attributed by key."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch([_start(stream, "x-1", A), _start(stream, "x-2", A)])
        workers.update(stream.task("x-1", "processing", "erred", 1_001.0))
        assert workers.unattributed == 1
        assert workers.snapshot()[A]["processing"] == 2
        workers.update(_start(stream, "x-3", B))
        workers.update(stream.task("x-3", "processing", "erred", 1_002.0))
        assert workers.unattributed == 1
        row = workers.snapshot()[B]
        assert (row["processing"], row["erred"]) == (0, 1)

    def test_removal_forgets_its_tasks(self, stream: Any, clock: Any) -> None:
        """Tasks remembered on a removed worker are forgotten with it."""
        workers = WorkersObserver(clock=clock)
        workers.update(stream.task("x-0", "processing", "erred", 999.0))  # track keys
        workers.update_batch([_start(stream, "x-1", A), _start(stream, "x-2", B)])
        workers.update(WorkerStatus(A, "removed", 1_001.0))
        assert workers._where == {"x-2": B}

    def test_remembered_tasks_are_bounded(self, stream: Any, clock: Any) -> None:
        """Beyond max_tasks the oldest remembered tasks are forgotten."""
        workers = WorkersObserver(clock=clock, max_tasks=3)
        workers.update(stream.task("x-0", "processing", "erred", 999.0))  # track keys
        workers.update_batch([_start(stream, f"x-{i}", A) for i in range(1, 6)])
        assert list(workers._where or {}) == ["x-3", "x-4", "x-5"]
        assert workers.forgotten == 2

    def test_cap_drops_the_oldest_removed(self, stream: Any, clock: Any) -> None:
        """Beyond max_workers the longest-removed worker makes room."""
        workers = WorkersObserver(max_workers=2, clock=clock)
        workers.update_batch(
            [
                WorkerStatus("w1", "added", 1.0, 1),
                WorkerStatus("w2", "added", 2.0, 1),
                WorkerStatus("w1", "removed", 3.0),
                WorkerStatus("w3", "added", 4.0, 1),
            ]
        )
        assert list(workers.snapshot()) == ["w2", "w3"]
        workers.update(WorkerStatus("w4", "added", 5.0, 1))
        assert list(workers.snapshot()) == ["w2", "w3"]
        assert workers.untracked == 1

    def test_reset(self, stream: Any, clock: Any) -> None:
        """reset() forgets every worker."""
        workers = WorkersObserver(clock=clock)
        workers.update_batch([*stream.workers(), _start(stream, "x-1", A)])
        workers.reset()
        assert workers.snapshot() == {}

    @pytest.mark.parametrize("kwargs", [{"max_workers": 0}, {"max_tasks": 0}])
    def test_rejects_bad_settings(self, kwargs: dict[str, int]) -> None:
        """Caps must be positive."""
        with pytest.raises(ValueError):
            WorkersObserver(**kwargs)  # type: ignore[arg-type]


class TestColumns:
    """A Batch and the equivalent list of events give the same result."""

    def test_batch_and_list_agree(self, stream: Any, clock: Any) -> None:
        """Mixed runs, worker events between them, times that differ, no worker."""
        events = [
            *stream.workers(1_000.0, nthreads=2),
            _start(stream, "x-1", A),
            _start(stream, "x-2", B, 1_000.5),
            _finish(stream, "x-1", A, 1_001.0, duration=0.25),
            stream.task("x-2", "processing", "erred", 1_002.0),  # no worker
            WorkerStatus(B, "removed", 1_003.0, processing=1),
            _start(stream, "x-3", A, 1_004.0),
            _start(stream, "x-4", A, 1_004.0),
            _finish(stream, "x-3", A, 1_005.0, duration=1.0),
            stream.task("x-4", "processing", "memory", 1_005.0, worker=A),
        ]
        from_list = WorkersObserver(clock=clock)
        from_list.update_batch(list(events))
        from_batch = WorkersObserver(clock=clock)
        batch = Batch.from_events(events)
        batch._events = None  # columns only, as the plugin's flush makes them
        from_batch.update_batch(batch)
        assert batch._events is None  # no event object was made
        assert from_batch.snapshot() == from_list.snapshot()
        assert (from_batch.unattributed, from_batch._where) == (
            from_list.unattributed,
            from_list._where,
        )
        row = from_batch.snapshot()[A]
        assert (row["completed"], row["busy"], row["processing"]) == (3, 1.25, 0)


class TestRestart:
    """A restart drops the workers that left and those it shuts down."""

    def test_restart_lists_the_workers_the_cluster_has(self, stream: Any) -> None:
        """Removed rows go at the restart; workers running then go when the
        restart removes them; workers joining after are listed as running."""
        old = stream.workers_addresses[:3]
        new = stream.workers_addresses[3:5]
        workers = WorkersObserver()
        workers.update_batch([WorkerStatus(a, "added", 1.0, 2) for a in old])
        workers.update_batch([WorkerStatus(old[0], "removed", 2.0)])
        workers.update_batch(stream.lifecycle("inc-1", 3.0, worker=old[1]))
        workers.restart()
        assert set(workers.snapshot()) == set(old[1:])
        workers.update_batch(
            [WorkerStatus(a, "removed", 10.0) for a in old[1:]]
            + [WorkerStatus(a, "added", 11.0, 2) for a in new]
        )
        snap = workers.snapshot()
        assert set(snap) == set(new)
        assert all(row["status"] == "running" for row in snap.values())
        # A worker removed later, with no restart in between, stays listed.
        workers.update_batch([WorkerStatus(new[0], "removed", 12.0)])
        assert workers.snapshot()[new[0]]["status"] == "removed"

    def test_threads_are_free_after_a_restart(self, stream: Any) -> None:
        """Tasks Dask forgot at a restart no longer hold threads: utilisation
        now falls to 0 once the window has passed the restart."""
        now = [1_000.0]
        address = stream.workers_addresses[0]
        workers = WorkersObserver(clock=lambda: now[0])
        workers.update_batch([WorkerStatus(address, "added", 1_000.0, 2)])
        workers.update_batch(
            [
                stream.task(
                    f"inc-{i}", "waiting", "processing", 1_000.0, worker=address
                )
                for i in range(2)
            ]
        )
        now[0] = 1_004.0
        assert workers.snapshot()[address]["utilisation"] > 0.5
        workers.restart()
        now[0] = 1_020.0
        assert workers.snapshot()[address]["utilisation"] == 0.0
