"""Resources: bounded rings per worker, the cluster's sum per round of samples."""

from __future__ import annotations

from dask_monitor.batch import Batch
from dask_monitor.events import WorkerResources, WorkerStatus
from dask_monitor.observers.resources import HISTORY_FIELDS, ResourcesObserver
from dask_monitor.pipeline import Pipeline
from tests.observers.conftest import Stream

MB = 2**20


def sample(
    address: str, t: float, memory: int = 100 * MB, *, managed: int = 40 * MB,
    spilled: int = 0, limit: int | None = 1000 * MB, cpu: float = 50.0,
    net: float = 1000.0, paused: bool = False,
) -> WorkerResources:  # fmt: skip
    return WorkerResources(
        address, t, memory, managed, memory - managed, spilled, limit, cpu,
        net, 2 * net, paused,
    )  # fmt: skip


def feed(obs: ResourcesObserver, samples: list[WorkerResources]) -> None:
    obs.update_batch(Batch.empty(samples[-1].timestamp, [(0, s) for s in samples]))


class TestResources:
    def test_empty_before_the_first_sample(self) -> None:
        """No sample yet: no workers, an empty cluster."""
        snap = ResourcesObserver().snapshot()
        assert snap == {"interval": 1.0, "workers": {}, "cluster": {}, "folded": 0}

    def test_latest_sample_per_worker_with_its_history(self) -> None:
        """Each worker shows its latest figures and its samples, oldest first."""
        obs = ResourcesObserver()
        for t in (1.0, 2.0, 3.0):
            feed(obs, [sample("a", t, memory=int(t) * 100 * MB, paused=t == 3.0)])
        row = obs.snapshot()["workers"]["a"]
        assert row["time"] == 3.0 and row["memory"] == 300 * MB
        assert row["unmanaged"] == 260 * MB and row["paused"] is True
        assert row["history"]["time"] == [1.0, 2.0, 3.0]
        assert row["history"]["memory"] == [100 * MB, 200 * MB, 300 * MB]
        assert set(row["history"]) == set(HISTORY_FIELDS)
        Stream.assert_plain(obs.snapshot())

    def test_rings_are_bounded(self) -> None:
        """A worker keeps `history` samples, the cluster `cluster_history` rounds."""
        obs = ResourcesObserver(history=5, cluster_history=7)
        for t in range(100):
            feed(obs, [sample("a", float(t)), sample("b", float(t))])
        snap = obs.snapshot()
        assert snap["workers"]["a"]["history"]["time"] == [95.0, 96.0, 97.0, 98.0, 99.0]
        assert len(snap["cluster"]["history"]["time"]) == 7
        assert snap["cluster"]["history"]["time"][-1] == 99.0

    def test_history_only_of_the_workers_using_the_most_memory(self) -> None:
        """With more workers than `history_workers`, every worker shows its
        latest figures and only those using the most memory their history."""
        obs = ResourcesObserver(history_workers=3)
        for t in (1.0, 2.0):
            feed(obs, [sample(f"w{i}", t, memory=(i + 1) * MB) for i in range(10)])
        workers = obs.snapshot()["workers"]
        assert len(workers) == 10
        assert all(workers[f"w{i}"]["memory"] == (i + 1) * MB for i in range(10))
        shown = {a for a, row in workers.items() if row["history"]}
        assert shown == {"w7", "w8", "w9"}
        assert workers["w9"]["history"]["time"] == [1.0, 2.0]
        assert workers["w0"]["history"] == {}
        # w0 now uses the most memory: it gets its history, w7 loses its.
        feed(obs, [sample("w0", 3.0, memory=100 * MB)])
        workers = obs.snapshot()["workers"]
        assert {a for a, row in workers.items() if row["history"]} == {
            "w0",
            "w8",
            "w9",
        }
        assert workers["w0"]["history"]["time"] == [1.0, 2.0, 3.0]
        assert workers["w0"]["time"] == 3.0 and workers["w7"]["history"] == {}

    def test_a_row_is_made_again_only_after_a_new_sample(self) -> None:
        """Snapshots share the row of a worker without a new sample, and show
        the new sample of one that has."""
        obs = ResourcesObserver()
        feed(obs, [sample("a", 1.0), sample("b", 1.0)])
        first = obs.snapshot()["workers"]
        feed(obs, [sample("b", 2.0, memory=200 * MB)])
        second = obs.snapshot()["workers"]
        assert second["a"] is first["a"]
        assert second["b"]["memory"] == 200 * MB
        assert second["b"]["history"]["time"] == [1.0, 2.0]
        assert first["b"]["history"]["time"] == [1.0]

    def test_cluster_sums_the_workers_of_a_round(self) -> None:
        """Memory, CPU, network and limits add up over the round's workers."""
        obs = ResourcesObserver()
        feed(
            obs,
            [
                sample("a", 1.0, 100 * MB, cpu=50.0),
                sample("b", 1.0, 300 * MB, cpu=150.0, spilled=5),
            ],
        )
        cluster = obs.snapshot()["cluster"]
        assert cluster["memory"] == 400 * MB and cluster["managed"] == 80 * MB
        assert cluster["unmanaged"] == 320 * MB and cluster["spilled"] == 5
        assert cluster["cpu"] == 200.0 and cluster["network_in"] == 2000.0
        assert cluster["network_out"] == 4000.0
        assert cluster["limit"] == 2000 * MB and cluster["workers"] == 2
        assert cluster["history"]["memory"] == [400 * MB]

    def test_a_round_cut_across_batches_is_one_point(self) -> None:
        """Samples of one round in two batches still make one cluster point."""
        obs = ResourcesObserver()
        feed(obs, [sample("a", 1.0)])
        feed(obs, [sample("b", 1.0)])
        feed(obs, [sample("a", 2.0), sample("b", 2.0)])
        history = obs.snapshot()["cluster"]["history"]
        assert history["time"] == [1.0, 2.0]
        assert history["memory"] == [200 * MB, 200 * MB]

    def test_limit_is_none_if_any_worker_has_none(self) -> None:
        """One worker without a memory limit: the cluster has none either."""
        obs = ResourcesObserver()
        feed(obs, [sample("a", 1.0), sample("b", 1.0, limit=None)])
        assert obs.snapshot()["cluster"]["limit"] is None

    def test_workers_beyond_the_bound_are_folded_but_summed(self) -> None:
        """A full table keeps its workers; the new one counts in the cluster sum."""
        obs = ResourcesObserver(max_workers=2)
        feed(obs, [sample(w, 1.0) for w in ("a", "b", "c")])
        snap = obs.snapshot()
        assert set(snap["workers"]) == {"a", "b"} and snap["folded"] == 1
        assert snap["cluster"]["memory"] == 300 * MB

    def test_a_worker_that_left_makes_room(self) -> None:
        """The worker removed longest ago gives its row to a new one."""
        obs = ResourcesObserver(max_workers=2)
        feed(obs, [sample("a", 1.0), sample("b", 1.0)])
        obs.update_batch([WorkerStatus("a", "removed", 1.5)])
        feed(obs, [sample("b", 2.0), sample("c", 2.0)])
        assert set(obs.snapshot()["workers"]) == {"b", "c"}

    def test_the_pipeline_snapshot_has_resources(self) -> None:
        """snapshot["resources"] is the observer's, through the pipeline."""
        pipeline = Pipeline(raise_errors=True)
        assert pipeline.snapshot()["resources"]["workers"] == {}
        pipeline.process([sample("a", 1.0), sample("b", 1.0)])
        res = pipeline.snapshot()["resources"]
        assert set(res["workers"]) == {"a", "b"}
        assert res["cluster"]["memory"] == 200 * MB
