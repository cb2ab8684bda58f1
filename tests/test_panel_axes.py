"""Duration axes in a browser: units on every tick, no "0", ticks around the bars."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from dask_monitor import Pipeline
from dask_monitor.events import TaskStatus
from dask_monitor.panel import write_report
from dask_monitor.snapshot import Snapshot
from dask_monitor.testing import make_snapshot
from dask_monitor.units import format_duration

from .test_panel_live import Page

pytestmark = pytest.mark.slow

UNITS = ("ns", "\u00b5s", "ms", "s", "m", "h", "d")

#: Reads the durations axis as drawn: its ticks, their labels, its range.
FIND = """(() => [...Bokeh.documents[0].all_models].find(
  (m) => m.title != null && m.title.text != null
    && m.title.text.startsWith("Task durations")))()"""

READ_AXIS = f"""() => {{
  const fig = {FIND}
  const axis = fig.below[0]
  const view = Bokeh.index.find_one(axis)
  const ticks = view.tick_coords.major[0]
  const labels = axis.formatter.doFormat(ticks, view)
  return {{ticks, labels, start: fig.x_range.start, end: fig.x_range.end}}
}}"""


def _snapshot(durations: dict[str, list[float]]) -> Snapshot:
    """A snapshot of tasks of the given prefixes and compute durations."""
    pipeline = Pipeline(clock=lambda: 100.0)
    events = []
    for prefix, values in durations.items():
        for i, d in enumerate(values):
            key = f"{prefix}-{i}"
            events += [
                TaskStatus(key, prefix, prefix, "new", "processing", 50.0),
                TaskStatus(
                    key,
                    prefix,
                    prefix,
                    "processing",
                    "memory",
                    60.0,
                    worker="tcp://w:1",
                    duration=d,
                    begin=60.0 - d,
                    end=60.0,
                ),
            ]
    pipeline.process(events)
    return pipeline.snapshot()


def _axis(browser: Any, snapshot: Snapshot, tmp_path: Path) -> dict[str, Any]:
    path = write_report(snapshot, tmp_path / "report.html")
    page = Page(browser)
    try:
        page.open(path.as_uri())
        page.page.wait_for_function(
            f"Bokeh.index.find_one({FIND}.below[0]) != null", timeout=20_000
        )
        axis: dict[str, Any] = page.page.evaluate(READ_AXIS)
        assert page.errors == []
        return axis
    finally:
        page.close()


@pytest.mark.parametrize(
    "durations",
    [
        # sub-millisecond tasks beside 40 ms ones (the first tick read "0")
        {"fast": [1e-4, 1.2e-4, 2e-4, 3e-4], "slow": [0.02, 0.03, 0.04]},
        # all within one decade under 50 ms (the span view had no tick there)
        {"a": [0.011, 0.012, 0.015], "b": [0.02, 0.025, 0.03]},
        # microseconds to minutes
        {"tiny": [5e-6, 8e-6], "long": [90.0, 200.0]},
    ],
)
def test_durations_axis_reads_in_units_with_ticks_around_the_bars(
    browser: Any, durations: dict[str, list[float]], tmp_path: Path
) -> None:
    """The rendered ticks carry units, none is "0", and they span every bar
    with at most a decade between two of them."""
    snapshot = _snapshot(durations)
    axis = _axis(browser, snapshot, tmp_path)
    ticks, labels = axis["ticks"], axis["labels"]
    assert len(ticks) >= 2
    for label in labels:
        assert label != "0" and not label.startswith("0"), labels
        assert label.endswith(UNITS), labels
    assert len(set(labels)) == len(labels)  # no two ticks read the same
    low = min(v for vs in durations.values() for v in vs)
    high = max(v for vs in durations.values() for v in vs)
    assert min(ticks) <= low * (1 + 0.02) and max(ticks) >= high * (1 - 0.02)
    assert axis["start"] <= low and axis["end"] >= high
    steps = [b / a for a, b in itertools.pairwise(ticks)]
    assert max(steps) <= 10.0 + 1e-9
    # the tick labels are the text views' formatter, to the character
    assert labels == [format_duration(t) for t in ticks]


def test_the_axis_formatter_is_the_text_formatter(browser: Any, tmp_path: Path) -> None:
    """The JavaScript formatter writes what the Python one writes, from
    nanoseconds to days (values off rounding ties)."""
    values = [
        m * 10.0**e for e in range(-9, 7) for m in (1.0, 1.37, 2.5e0 + 0.013, 4.9, 9.96)
    ]
    values += [0.0, -0.0032, 59.94, 59.96, 3599.6, 2 * 86400 + 4 * 3600, 1e12]
    path = write_report(_snapshot({"p": [0.01]}), tmp_path / "report.html")
    page = Page(browser)
    try:
        page.open(path.as_uri())
        got = page.page.evaluate(
            f"(values) => {FIND}.below[0].formatter.doFormat(values, {{}})",
            values,
        )
    finally:
        page.close()
    expected = [format_duration(v) for v in values]
    mismatched = [
        (v, g, e)
        for v, g, e in zip(values, got, expected, strict=True)
        if g != e and not math.isclose(v, round(v))  # exact .5 ties may differ
    ]
    assert mismatched == []


#: The label glyph beside the durations rows: its texts, where each starts
#: (screen x, after the offset) and how wide it is, and the plot frame.
READ_WHERE = """() => {
  const models = [...Bokeh.documents[0].all_models]
  const where = models.find((m) => m.name == "dm-durations-where")
  const fig = models.find((m) => m.name == "dm-durations-plot")
  const view = Bokeh.index.find_one(where)
  const texts = Array.from(where.data_source.data["where"])
  const ctx = document.createElement("canvas").getContext("2d")
  ctx.font = `${where.glyph.text_font_size.value} helvetica`
  return {
    texts,
    starts: Array.from(view.glyph.sx).map((x) => x + where.glyph.x_offset.value),
    widths: texts.map((t) => ctx.measureText(t).width),
    right: Bokeh.index.find_one(fig).frame.bbox.right,
  }
}"""


def test_the_fetching_label_is_drawn_inside_the_chart(
    browser: Any, tmp_path: Path
) -> None:
    """A prefix fetching 1.5 s per compute second (the one with most compute
    time, whose bar reaches furthest right) has "60% fetching data" drawn
    beside its row, ending inside the plot."""
    snapshot = make_snapshot(n_prefixes=12, seed=11, transfer={"random_sample": 1.5})
    path = write_report(snapshot, tmp_path / "report.html")
    page = Page(browser)
    try:
        page.open(path.as_uri())
        page.page.wait_for_function(
            f"Bokeh.index.find_one({FIND}.below[0]) != null", timeout=20_000
        )
        where = page.page.evaluate(READ_WHERE)
        assert page.errors == []
    finally:
        page.close()
    row = where["texts"].index("60% fetching data")
    assert [t for t in where["texts"] if t] == ["60% fetching data"]
    assert where["starts"][row] + where["widths"][row] <= where["right"]
