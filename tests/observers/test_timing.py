"""Per prefix timing: compute, transfer and disk seconds and result bytes."""

from __future__ import annotations

import pytest

from dask_monitor.batch import Batch
from dask_monitor.observers.timing import PrefixTimesObserver
from dask_monitor.pipeline import Pipeline
from tests.observers.conftest import Stream


def _done(stream: Stream, key: str, **fields: object) -> object:
    return stream.task(key, "processing", "memory", worker="tcp://w:1", **fields)


class TestPrefixTimes:
    def test_sums_compute_transfer_disk_and_bytes_per_prefix(
        self, stream: Stream
    ) -> None:
        """Each completion adds its seconds and result size to its prefix."""
        obs = PrefixTimesObserver()
        obs.update_batch(
            [
                _done(stream, "a-1", duration=0.5, transfer=0.25, nbytes=100),
                _done(stream, "a-2", duration=1.0, disk=0.125, nbytes=50),
                _done(stream, "b-1", duration=2.0),
            ]
        )
        assert obs.seconds("a") == {"compute": 1.5, "transfer": 0.25, "disk": 0.125}
        assert obs.nbytes("a") == 150
        assert obs.seconds("b") == {"compute": 2.0, "transfer": 0.0, "disk": 0.0}
        assert obs.nbytes("b") == 0
        assert obs.seconds("unknown") == {"compute": 0.0, "transfer": 0.0, "disk": 0.0}

    def test_only_completions_count(self, stream: Stream) -> None:
        """Errors and retried attempts carry no seconds into the sums."""
        obs = PrefixTimesObserver()
        obs.update_batch(
            [
                stream.task(
                    "a-1", "processing", "erred", exception="E()", duration=3.0
                ),
                stream.task("a-2", "memory", "memory", duration=3.0, transfer=1.0),
                _done(stream, "a-3", duration=1.0, transfer=0.5),
            ]
        )
        assert obs.seconds("a") == {"compute": 1.0, "transfer": 0.5, "disk": 0.0}

    def test_prefixes_beyond_the_bound_are_folded(self, stream: Stream) -> None:
        """At most max_prefixes rows; the others are counted, not kept."""
        obs = PrefixTimesObserver(max_prefixes=2)
        obs.update_batch([_done(stream, f"p{i}-1", duration=1.0) for i in range(5)])
        assert len(obs.snapshot()) == 2
        assert obs.folded == 3
        assert obs.seconds("p4")["compute"] == 0.0

    def test_pipeline_puts_seconds_and_nbytes_in_each_prefix_row(
        self, stream: Stream
    ) -> None:
        """snapshot["prefixes"][p] has "seconds" and "nbytes", zeros if unknown."""
        pipeline = Pipeline(raise_errors=True)
        pipeline.process(
            Batch.from_events(
                [
                    stream.task("a-1", "new", "processing", worker="tcp://w:1"),
                    _done(
                        stream, "a-1", duration=0.5, transfer=0.2, disk=0.1, nbytes=8
                    ),
                    stream.task("b-1", "new", "waiting"),
                ]
            )
        )
        prefixes = pipeline.snapshot()["prefixes"]
        assert prefixes["a"]["seconds"] == pytest.approx(
            {"compute": 0.5, "transfer": 0.2, "disk": 0.1}
        )
        assert prefixes["a"]["nbytes"] == 8
        assert prefixes["b"]["seconds"] == {
            "compute": 0.0,
            "transfer": 0.0,
            "disk": 0.0,
        }
        assert prefixes["b"]["nbytes"] == 0
        Stream.assert_plain(prefixes)
