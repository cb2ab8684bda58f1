"""Plain-text views of a snapshot, for terminals and logs."""

from __future__ import annotations

from dask_monitor.snapshot import ErrorRow, Snapshot

__all__ = ["format_duration", "format_line", "format_summary"]


def format_duration(seconds: float | None) -> str:
    """``"-"`` for unknown, else a short form: ``"850ms"``, ``"42s"``, ``"3m05s"``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _eta(low: float | None, eta: float | None, high: float | None) -> str:
    if eta is None:
        return "ETA -"
    if low is None or high is None or abs(high - low) < 1:
        return f"ETA {format_duration(eta)}"
    return (
        f"ETA {format_duration(eta)} ({format_duration(low)}-{format_duration(high)})"
    )


def format_line(snapshot: Snapshot) -> str:
    """One compact progress line: done/total, rate, ETA, errors, drops."""
    t = snapshot["totals"]
    total = t["total"]
    pct = 100.0 * t["done"] / total if total else 100.0
    running = sum(w["status"] == "running" for w in snapshot["workers"].values())
    parts = [
        f"[{format_duration(snapshot['elapsed']):>6}]",
        f"{t['done']:,}/{total:,} done ({pct:3.0f}%)",
        f"{t['rate']:,.1f} tasks/s",
        _eta(t["eta_low"], t["eta"], t["eta_high"]),
        f"errors {t['erred']:,}",
        f"workers {running}",
    ]
    retried = t.get("retried", 0)
    if retried:  # attempts that raised and that Dask retried
        parts.insert(5, f"retried {retried:,}")
    dropped = snapshot["monitor"]["dropped"]
    if dropped:
        parts.append(f"DROPPED {dropped:,} events")
    return " | ".join(parts)


def format_summary(snapshot: Snapshot, *, top: int = 15) -> str:
    """A multi-line report: prefixes with durations, errors, the monitor's cost."""
    t = snapshot["totals"]
    retried = t.get("retried", 0)
    lines = [
        f"Finished {t['done']:,} tasks ({t['completed']:,} completed, "
        f"{t['erred']:,} erred, {t['recomputed']:,} recomputed"
        + (f", {retried:,} retried" if retried else "")
        + f") in {format_duration(snapshot['elapsed'])}",
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
    lines += [
        "",
        f"Monitor: {m['events']:,} events, {m['dropped']:,} dropped, "
        f"{m['flushes']:,} flushes, {m['flush_seconds'] * 1000:.1f} ms flushing "
        f"({m['overhead'] * 100:.3f}% of the time)",
    ]
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
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
