"""Untrusted text reaches terminals as visible characters, never as commands."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dask_monitor import Pipeline
from dask_monitor.alerts.cli import format_alert
from dask_monitor.events import Alert, TaskStatus, WorkerStatus
from dask_monitor.testing import make_insight
from dask_monitor.text import format_line, format_summary, safe_text
from dask_monitor.watch import render

#: OSC 0 (window title), OSC 52 (clipboard write), CSI (clear screen), a
#: forged log line, C1 CSI, DEL and a right-to-left override.
HOSTILE = [
    "\x1b]0;PWNED\x07",
    "\x1b]52;c;cm0gLXJmIH4=\x07",
    "\x1b[2J",
    "ok\n2026-12-03 ERROR forged line",
    "\x9b31m",
    "del\x7f",
    "\u202eevil",
]

#: What a terminal would act on: C0/C1 controls, DEL, bidi controls.
ACTIVE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_snapshot() -> Any:
    """A snapshot whose prefixes, keys, exceptions, spans and alerts are hostile."""
    clock = lambda: 1_010.0  # noqa: E731
    pipeline = Pipeline(clock=clock)
    events: list[Any] = [WorkerStatus("tcp://w:1", "added", 1_000.0, nthreads=2)]
    for i, text in enumerate(HOSTILE):
        prefix = f"p{i}{text}"
        key = f"{prefix}-{i}"
        events += [
            TaskStatus(key, prefix, prefix, "new", "processing", 1_000.0, span=text),
            TaskStatus(
                key, prefix, prefix, "processing", "erred", 1_001.0, "tcp://w:1",
                exception=f"ValueError({text!s})", traceback=text,
            ),
        ]  # fmt: skip
    pipeline.process(events)
    pipeline.name_spans({text: f"name{text}" for text in HOSTILE})
    for text in HOSTILE:
        pipeline.alerts.notify(Alert("custom" + text, "warning", "msg" + text, 1_005.0))
    return pipeline.snapshot()


class TestSafeText:
    """safe_text makes every control character visible."""

    @pytest.mark.parametrize("text", HOSTILE)
    def test_controls_become_visible_escapes(self, text: str) -> None:
        """Nothing a terminal acts on is left, and nothing is silently removed."""
        out = safe_text(text)
        assert not ACTIVE.search(out) and "\n" not in out
        assert len(out) >= len(text)

    def test_plain_and_unicode_text_is_unchanged(self) -> None:
        """Ordinary text, accents and emoji pass as they are."""
        assert safe_text("ключ-λ-🚀 x") == "ключ-λ-🚀 x"

    def test_width_cuts_with_an_ellipsis(self) -> None:
        """With a width the text ends in … when cut."""
        assert safe_text("\x1b" * 10, 6) == "\\x1b\\…"


class TestTerminalViews:
    """Every terminal view of a hostile snapshot is inert."""

    def test_summary_line_and_watch_frame_are_inert(self) -> None:
        """format_line, format_summary and watch's frame hold no control."""
        snap = hostile_snapshot()
        for text in (
            format_line(snap),
            format_summary(snap),
            render(snap, width=200),
        ):
            for line in text.split("\n"):
                assert not ACTIVE.search(line), repr(line)
        frame = render(snap, width=400)
        assert "\\x1b]0;PWNED\\x07" in frame or "\\x1b]0;PWNED\\x07" in format_summary(
            snap
        )

    def test_hostile_insights_are_inert(self) -> None:
        """An insight's subject, message, evidence and advice reach watch's
        frame and the summary as visible escapes, each insight cut short."""
        snap = dict(hostile_snapshot())
        snap["insights"] = [
            make_insight(
                "tiny-tasks",
                "critical",
                text,
                message=f"Tasks of {text} are tiny" + "!" * 5_000,
                evidence={f"n{text}": text},
                advice=f"Batch {text}",
            )
            for text in HOSTILE
        ]
        frame = render(snap, width=200)  # type: ignore[arg-type]
        summary = format_summary(snap)  # type: ignore[arg-type]
        for text in (frame, summary):
            for line in text.split("\n"):
                assert not ACTIVE.search(line), repr(line)
                assert len(line) < 400
        assert "Insight: [critical] tiny-tasks (\\x1b]0;PWNED\\x07)" in frame
        assert "ok\\n2026-12-03 ERROR forged line" in summary

    def test_forged_alerts_print_as_one_inert_line(self) -> None:
        """An alert anyone can log prints as one line with its fields escaped."""
        alert = Alert(
            "stall\x1b]52;c;AAAA\x07",
            "warning",
            "line one\nline two\x1b[2J",
            1_000.0,
            prefix="\u202eevil",
            key="k" * 5_000,
            worker="tcp://w:1\r",
        )
        line = format_alert(alert)
        assert "\n" not in line and not ACTIVE.search(line)
        assert "\\x1b]52;c;AAAA\\x07" in line and "line one\\nline two" in line
        assert len(line) < 2_000

    @pytest.mark.parametrize("stamp", [float("nan"), 1e300, -1e300])
    def test_an_impossible_timestamp_still_prints(self, stamp: float) -> None:
        """NaN or 1e300 as a time is shown, not an error that loses the alert."""
        assert "msg" in format_alert(Alert("x", "info", "msg", stamp))
