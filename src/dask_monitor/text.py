"""Plain-text views of a snapshot, for terminals and logs.

Task keys, prefixes, span names, exception texts and alert fields come from
users' code and from the network. Every one of them goes through
:func:`safe_text` before it reaches a terminal: a key holding
``"\\x1b]52;..."`` (a clipboard write), ``"\\x1b]0;..."`` (a window title) or a
newline (a forged log line) is shown as those characters, never acted on.
"""

from __future__ import annotations

from typing import Any, cast

from dask_monitor.snapshot import ErrorRow, Snapshot
from dask_monitor.units import format_duration, plural

__all__ = [
    "average_rate",
    "format_duration",
    "format_line",
    "format_summary",
    "is_finished",
    "run_seconds",
    "safe_text",
]


def _escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    # Bidirectional overrides and isolates reorder what follows them on screen.
    for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F):
        table[c] = f"\\u{c:04x}"
    return table


#: Characters a terminal acts on (C0 and C1 controls, DEL, bidi controls),
#: each mapped to its visible escape.
_ESCAPES = _escapes()


def safe_text(value: Any, width: int | None = None) -> str:
    """``value`` as one line of text that a terminal shows and does not obey.

    Control characters (C0, C1, DEL) and bidirectional controls become
    visible escapes (``\\x1b``, ``\\n``, ``\\u202e``); with ``width``,
    the result is cut to that many characters, ending in ``…`` when cut.
    """
    text = str(value).translate(_ESCAPES)
    if width is not None and len(text) > width:
        return text[: max(0, width - 1)] + "\u2026"
    return text


def is_finished(snapshot: Snapshot) -> bool:
    """Whether ``snapshot`` shows a finished run rather than work under way.

    A replayed run (``live`` false) is finished; so is a live one with nothing
    left to do and something done. Current-pace figures (tasks/s now, ETA,
    the monitor's flush cost) mean nothing then: views show the run's totals.
    """
    t = snapshot["totals"]
    if not snapshot.get("live", True):
        return True
    return not t["remaining"] and t["done"] > 0


def run_seconds(snapshot: Snapshot) -> float:
    """How long the run took: ``totals["run_seconds"]`` (first task event to
    last finish) when the snapshot has it, else the monitor's ``elapsed``."""
    # run_seconds and average_rate are newer than some snapshots: read loosely
    seconds = cast(dict[str, Any], snapshot["totals"]).get("run_seconds")
    return float(seconds) if seconds is not None else float(snapshot["elapsed"])


def average_rate(snapshot: Snapshot) -> float | None:
    """Tasks finished per second over the whole run (``totals["average_rate"]``
    when the snapshot has it, else done / :func:`run_seconds`); ``None``
    before anything finished."""
    t = snapshot["totals"]
    rate = cast(dict[str, Any], t).get("average_rate")
    if rate is not None:
        return float(rate)
    seconds = run_seconds(snapshot)
    if not t["done"] or seconds <= 0:
        return None
    return t["done"] / seconds


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


def _eta(low: float | None, eta: float | None, high: float | None) -> str:
    if eta is None:
        return "ETA -"
    if low is None or high is None or abs(high - low) < 1:
        return f"ETA {format_duration(eta)}"
    return (
        f"ETA {format_duration(eta)} ({format_duration(low)}-{format_duration(high)})"
    )


def format_line(snapshot: Snapshot) -> str:
    """One compact progress line: done/total, rate, ETA, errors, drops.

    A finished run (see :func:`is_finished`) reads as tasks done, time taken
    and the average rate; a snapshot with no task reads "no tasks yet".
    """
    t = snapshot["totals"]
    total = t["total"]
    running = sum(w["status"] == "running" for w in snapshot["workers"].values())
    elapsed = f"[{format_duration(snapshot['elapsed']):>6}]"
    if not total and not t["done"]:
        parts = [elapsed, "no tasks yet"]
    elif is_finished(snapshot):
        parts = [
            f"[{format_duration(run_seconds(snapshot)):>6}]",
            f"{plural(t['done'], 'task')} done",
            f"average {_rate(average_rate(snapshot))} tasks/s",
        ]
        if t["remaining"]:  # a replay of a run stopped half-way
            parts.append(f"{t['remaining']:,} not done")
    else:
        pct = 100.0 * t["done"] / total
        parts = [
            elapsed,
            f"{t['done']:,}/{total:,} done ({pct:3.0f}%)",
            f"{t['rate']:,.1f} tasks/s",
            _eta(t["eta_low"], t["eta"], t["eta_high"]),
        ]
    parts += [f"errors {t['erred']:,}"]
    retried = t.get("retried", 0)
    if retried:  # attempts that raised and that Dask retried
        parts.append(f"retried {retried:,}")
    parts += [f"workers {running}"]
    dropped = snapshot["monitor"]["dropped"]
    if dropped:
        parts.append(f"DROPPED {dropped:,} events")
    return " | ".join(parts)


def format_summary(snapshot: Snapshot, *, top: int = 15) -> str:
    """A multi-line report: prefixes with durations, errors, the monitor's cost."""
    t = snapshot["totals"]
    retried = t.get("retried", 0)
    counts = (
        f"({t['completed']:,} completed, {t['erred']:,} erred, "
        f"{t['recomputed']:,} recomputed"
        + (f", {retried:,} retried" if retried else "")
        + ")"
    )
    if not t["total"] and not t["done"]:
        head = f"No tasks yet ({format_duration(snapshot['elapsed'])} watched)"
    elif is_finished(snapshot):
        head = (
            f"Finished {plural(t['done'], 'task')} {counts} in "
            f"{format_duration(run_seconds(snapshot))}, average "
            f"{_rate(average_rate(snapshot))} tasks/s"
        )
    else:
        head = (
            f"{t['done']:,} of {plural(t['total'], 'task')} done {counts} "
            f"after {format_duration(snapshot['elapsed'])}"
        )
    lines = [
        head,
        "",
        f"{'prefix':<32} {'done':>8} {'total':>8} {'erred':>6} "
        f"{'p50':>7} {'p90':>7} {'max':>7}",
    ]
    rows = sorted(snapshot["prefixes"].items(), key=lambda kv: (-kv[1]["total"], kv[0]))
    for name, row in rows[:top]:
        d = row["durations"]
        lines.append(
            f"{_clip(name, 32):<32} {row['done']:>8,} {row['total']:>8,} "
            f"{row['erred']:>6,} {format_duration(d['p50']):>7} "
            f"{format_duration(d['p90']):>7} {format_duration(d['max']):>7}"
        )
    more = len(rows) - top + snapshot["prefixes_folded"]
    if more > 0:
        lines.append(f"... and {more:,} more prefixes")
    if snapshot["errors"]:
        lines += ["", "Errors:"]
        for err in snapshot["errors"][:top]:
            lines.append(
                f"  {err['count']:>5,} x {_clip(err['prefix'], 24)}: "
                f"{_clip(_error_text(err), 80)}"
            )
    restarts = snapshot.get("restarts") or []
    if restarts:
        lines += ["", f"Restarts: {len(restarts):,} (Dask forgot its tasks)"]
    m = snapshot["monitor"]
    if snapshot.get("live", True):
        monitor = (
            f"Monitor: {m['events']:,} events, {m['dropped']:,} dropped, "
            f"{m['flushes']:,} flushes, {format_duration(m['flush_seconds'])} "
            f"flushing ({m['overhead'] * 100:.3f}% of the time)"
        )
    else:  # the flush cost is the live run's, not replayed
        monitor = f"Recorded: {m['events']:,} events, {m['dropped']:,} dropped"
    lines += ["", monitor]
    errors = {k: v for k, v in m["observer_errors"].items() if v}
    if errors:
        lines.append(f"Observer errors: {errors}")
    return "\n".join(lines)


def _error_text(err: ErrorRow) -> str:
    """What an error row says: its exception, its root cause, its retries."""
    text = err["exception"]
    if err.get("caused_by"):
        text = f"{err['type']} ({text})" if text else err["type"]
    retried = err.get("retried", 0)
    if retried:
        text = f"{text} [{retried:,} retried]"
    return text


def _clip(text: str, width: int) -> str:
    return safe_text(text, width)
