"""Durations read with their unit, whatever their size: one formatter for all views."""

from __future__ import annotations

import math

import pytest

from dask_monitor.text import format_duration as text_format_duration
from dask_monitor.units import format_duration, plural


class TestFormatDuration:
    """``format_duration``: seconds -> "85µs", "3.2ms", "1.25s", "2m05s", "1h02m"."""

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (85e-6, "85\u00b5s"),
            (0.0032, "3.2ms"),
            (1.25, "1.25s"),
            (125, "2m05s"),
            (3720, "1h02m"),
        ],
    )
    def test_the_issue_examples(self, seconds: float, text: str) -> None:
        """The examples the issue gives read as it says."""
        assert format_duration(seconds) == text

    def test_nothing_under_a_millisecond_reads_zero(self) -> None:
        """Every positive duration from 1ns to 1ms keeps a non-zero figure."""
        for exponent in range(-9, -2):
            for mantissa in (1, 2, 5):
                text = format_duration(mantissa * 10.0**exponent)
                assert text[0] != "0", text
                assert text.endswith(("ns", "\u00b5s", "ms")), text

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (999e-9, "999ns"),
            (1e-6, "1\u00b5s"),
            (999e-6, "999\u00b5s"),
            (0.0009996, "1ms"),  # 999.6µs rounds up into the next unit
            (0.001, "1ms"),
            (0.00999, "10ms"),
            (0.0999, "99.9ms"),
            (0.999, "999ms"),
            (0.99999, "1s"),
            (9.994, "9.99s"),
            (42.46, "42.5s"),
            (59.94, "59.9s"),
            (59.96, "1m00s"),  # would read "60.0s"
            (60, "1m00s"),
            (3599.6, "1h00m"),
            (47 * 3600, "47h00m"),
            (2 * 86400 + 4 * 3600, "2d04h"),
        ],
    )
    def test_boundaries_between_units(self, seconds: float, text: str) -> None:
        """A value that rounds up to the next unit is written in that unit."""
        assert format_duration(seconds) == text

    def test_zero_none_nan_negative_huge(self) -> None:
        """0 reads "0s"; unknown "-"; a negative keeps its sign; huge stays short."""
        assert format_duration(0) == "0s"
        assert format_duration(0.0) == "0s"
        assert format_duration(None) == "-"
        assert format_duration(math.nan) == "-"
        assert format_duration(-0.0032) == "-3.2ms"
        assert format_duration(-125) == "-2m05s"
        assert format_duration(math.inf) == "\u221e"
        assert format_duration(1e300) == ">999d"
        assert format_duration(1e9) == ">999d"

    def test_text_views_use_it(self) -> None:
        """The terminal views' formatter is this one (500µs was "0ms")."""
        assert text_format_duration(0.0005) == "500\u00b5s"
        assert text_format_duration(2e-5) == "20\u00b5s"


def test_plural_agrees_with_the_count() -> None:
    """One task, two tasks, no tasks."""
    assert plural(1, "task") == "1 task"
    assert plural(2, "task") == "2 tasks"
    assert plural(0, "task") == "0 tasks"
    assert plural(1_000, "prefix", "prefixes") == "1,000 prefixes"
