"""Helpers shared by the observers (``observers._common``)."""

from __future__ import annotations

from typing import Any

import pytest

from dask_monitor.events import Alert, WorkerStatus
from dask_monitor.observers._common import check_count, check_positive, task_events


class TestCommon:
    def test_task_events(self, stream: Any) -> None:
        """task_events keeps the task events of a mixed batch, in order."""
        a, b = (
            stream.task("a-1", "released", "waiting"),
            stream.task("a-2", "new", "released"),
        )
        worker = WorkerStatus("tcp://w:1", "added", 0.0)
        alert = Alert("stall", "warning", "quiet", 0.0)
        assert task_events([a, worker, alert, b]) == [a, b]

    @pytest.mark.parametrize("value", [0, -1, 1.5, True, "3", None])
    def test_check_count_rejects(self, value: Any) -> None:
        """A count must be a positive int (not a bool)."""
        with pytest.raises(ValueError, match="size must be a positive integer"):
            check_count("size", value)

    def test_check_count_accepts(self) -> None:
        """A positive int comes back unchanged."""
        assert check_count("size", 3) == 3

    @pytest.mark.parametrize("value", [0, -0.5, float("nan"), True, "1"])
    def test_check_positive_rejects(self, value: Any) -> None:
        """A width must be a positive number."""
        with pytest.raises(ValueError, match="width must be a positive number"):
            check_positive("width", value)

    def test_check_positive_accepts(self) -> None:
        """A positive int or float comes back as a float."""
        assert check_positive("width", 2) == 2.0
