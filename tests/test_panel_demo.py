"""The demo prints the panel's URL, lingers as asked and writes a report."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from dask_monitor.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_prints_the_panel_url_and_writes_a_report(tmp_path: Path) -> None:
    """A loopback /monitor URL is printed; linger=0 ends at once; the report exists."""
    lines: list[str] = []
    report = tmp_path / "report.html"
    t0 = time.monotonic()
    snapshot = run_demo(
        scale=0.05, workers=1, threads=2, echo=lines.append, linger=0.0, report=report
    )
    elapsed = time.monotonic() - t0
    urls = [m.group(0) for line in lines for m in [re.search(r"http://\S+", line)] if m]
    assert urls
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/monitor", urls[0])
    assert not any("stays up" in line for line in lines)
    assert any(line.startswith("report: ") for line in lines)
    text = report.read_text(encoding="utf-8")
    assert f"{snapshot['totals']['done']:,}" in text
    assert elapsed < 60
