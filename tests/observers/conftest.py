"""Fixtures of the observer tests: a fake clock and synthetic event streams.

Observers see events, never the scheduler, so every test here builds its
events with :class:`dask_monitor.testing.EventStream` (fixture ``stream``)
and reads time from :class:`dask_monitor.testing.FakeClock` (fixture
``clock``): the helpers users' own tests get too.
"""

from __future__ import annotations

import json

import msgpack
import pytest

from dask_monitor.testing import EventStream, FakeClock


class Stream(EventStream):
    """:class:`EventStream` and a check that a snapshot is plain data."""

    @staticmethod
    def assert_plain(data: object) -> None:
        """Fail unless ``data`` survives JSON and msgpack unchanged (plain data)."""
        assert json.loads(json.dumps(data, allow_nan=False)) == data
        assert msgpack.unpackb(msgpack.packb(data), strict_map_key=True) == data


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at t = 1000 s."""
    return FakeClock()


@pytest.fixture
def stream() -> Stream:
    """Builders of synthetic task events and workloads."""
    return Stream()
