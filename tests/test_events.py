"""Events are immutable, slotted, plain data."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from dask_monitor.events import Alert, TaskStatus, WorkerStatus, make_task_status

ARGS = (
    "('x-1', 0)", "x", "x-1", "processing", "memory", 10.0,
    "tcp://w:1", 0.5, 9.5, 10.0, 28, None, None, "span-1",
)  # fmt: skip


class TestTaskStatus:
    """TaskStatus is a frozen, slotted dataclass."""

    def test_is_frozen_and_slotted(self) -> None:
        """Fields cannot be set and instances have no __dict__."""
        event = TaskStatus(*ARGS)
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.key = "other"  # type: ignore[misc]
        assert not hasattr(event, "__dict__")

    def test_fast_constructor_makes_the_same_object(self) -> None:
        """make_task_status returns a real, frozen TaskStatus equal to the class's."""
        fast = make_task_status(*ARGS)
        assert type(fast) is TaskStatus
        assert fast == TaskStatus(*ARGS)
        assert hash(fast) == hash(TaskStatus(*ARGS))
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.key = "other"  # type: ignore[misc]
        assert pickle.loads(pickle.dumps(fast)) == fast

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("ValueError('odd input 3')", "ValueError"),
            ("KilledWorker: ('x', 'tcp://...')", "KilledWorker"),
            ("ZeroDivisionError division by zero", "ZeroDivisionError"),
            ("", None),
            (None, None),
        ],
    )
    def test_exception_type_is_parsed_from_the_text(
        self, text: str | None, expected: str | None
    ) -> None:
        """The exception's class name is the text before '(', ':' or a space."""
        event = TaskStatus("k", "k", "k", "processing", "erred", 1.0, exception=text)
        assert event.exception_type == expected


class TestOtherEvents:
    """WorkerStatus and Alert."""

    def test_worker_status_is_frozen(self) -> None:
        """WorkerStatus cannot be changed."""
        event = WorkerStatus("tcp://w:1", "added", 1.0, 4)
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.address = "x"  # type: ignore[misc]

    def test_alert_round_trips_through_a_dict(self) -> None:
        """Alert.to_dict and from_dict are inverse; unknown fields are ignored."""
        alert = Alert("stall", "warning", "no progress", 5.0, details={"seconds": 30})
        data = alert.to_dict() | {"extra": 1}
        assert Alert.from_dict(data) == alert

    @pytest.mark.parametrize(
        "data",
        [
            [],
            {"kind": "x"},
            {"kind": "x", "severity": "loud", "message": "m", "timestamp": 1.0},
            {"kind": 1, "severity": "info", "message": "m", "timestamp": 1.0},
            {"kind": "x", "severity": "info", "message": "m", "timestamp": "now"},
        ],
    )
    def test_alert_from_bad_data_is_a_clear_error(self, data: object) -> None:
        """Anything that is not an alert raises ValueError."""
        with pytest.raises(ValueError, match="alert"):
            Alert.from_dict(data)  # type: ignore[arg-type]
