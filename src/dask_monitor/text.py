"""Plain-text views of a snapshot, for terminals and logs.

Task keys, prefixes, span names, exception texts and alert fields come from
users' code and from the network. Every one of them goes through
:func:`safe_text` before it reaches a terminal: a key holding
``"\\x1b]52;..."`` (a clipboard write), ``"\\x1b]0;..."`` (a window title) or a
newline (a forged log line) is shown as those characters, never acted on.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

from dask_monitor.snapshot import ErrorRow, PrefixRow, Snapshot
from dask_monitor.units import format_duration, plural

__all__ = [
    "INSIGHT_SEVERITIES",
    "TimeSplit",
    "average_rate",
    "evidence_items",
    "format_duration",
    "format_insight",
    "format_line",
    "format_split",
    "format_summary",
    "insights_of",
    "is_finished",
    "run_seconds",
    "safe_text",
    "time_split",
    "where_time_went",
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
    """A multi-line report: the insights (most severe first, with evidence,
    advice and link), prefixes with durations, where their time went
    (compute, transfer and disk seconds, output bytes: the ``top`` prefixes
    with the most), errors, the monitor's cost."""
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
    # What to do about the run comes first, right under how it went.
    lines = [head, *_insight_lines(snapshot, top)]
    lines += [
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
    lines += _time_lines(snapshot, top)
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


class TimeSplit(NamedTuple):
    """Where a prefix's time went (see :func:`time_split`)."""

    compute: float  # seconds computing, summed over its completions
    transfer: float  # seconds fetching its inputs from other workers
    disk: float  # seconds reading or writing spilled data
    nbytes: int  # bytes of its results

    @property
    def total(self) -> float:
        """Compute, transfer and disk seconds together."""
        return self.compute + self.transfer + self.disk

    @property
    def transfer_share(self) -> float | None:
        """The share of :attr:`total` spent fetching inputs (``None`` at 0 s)."""
        total = self.total
        return self.transfer / total if total > 0 else None

    @property
    def disk_share(self) -> float | None:
        """The share of :attr:`total` spent on spilled data (``None`` at 0 s)."""
        total = self.total
        return self.disk / total if total > 0 else None


def time_split(row: PrefixRow) -> TimeSplit | None:
    """A prefix's compute, transfer and disk seconds and output bytes, or
    ``None`` where its row has no ``seconds`` (a span's view, a snapshot of
    an older version): views then show nothing rather than zeros."""
    seconds = cast(dict[str, Any], row).get("seconds")
    if not isinstance(seconds, dict):
        return None
    return TimeSplit(
        _finite(seconds.get("compute")) or 0.0,
        _finite(seconds.get("transfer")) or 0.0,
        _finite(seconds.get("disk")) or 0.0,
        int(_finite(row.get("nbytes")) or 0),
    )


def where_time_went(
    snapshot: Snapshot, n: int
) -> tuple[list[tuple[str, TimeSplit]], TimeSplit | None, int]:
    """The ``n`` prefixes with the most time (compute + transfer + disk),
    most first, the rest of the snapshot's prefixes summed (``None`` when
    none is left) and how many those are. Prefixes without a split (see
    :func:`time_split`) or without any time are left out of both."""
    splits = []
    for name, row in snapshot["prefixes"].items():
        split = time_split(row)
        if split is not None and split.total > 0:
            splits.append((name, split))
    splits.sort(key=lambda kv: (-kv[1].total, kv[0]))
    top, rest = splits[:n], splits[n:]
    if not rest:
        return top, None, 0
    summed = TimeSplit(
        sum(s.compute for _, s in rest),
        sum(s.transfer for _, s in rest),
        sum(s.disk for _, s in rest),
        sum(s.nbytes for _, s in rest),
    )
    return top, summed, len(rest)


def format_split(split: TimeSplit) -> str:
    """``"compute 12s, fetching 8.1s (40%), disk 0s, output 1.2 MiB"``."""
    share = split.transfer_share
    fetching = format_duration(split.transfer)
    if share is not None and split.transfer > 0:
        fetching += f" ({share:.0%})"
    return (
        f"compute {format_duration(split.compute)}, fetching {fetching}, "
        f"disk {format_duration(split.disk)}, output {_bytes(split.nbytes)}"
    )


def _time_lines(snapshot: Snapshot, top: int) -> list[str]:
    """The "Where the time went" section of :func:`format_summary` (none when
    no prefix has a time split)."""
    rows, rest, n_rest = where_time_went(snapshot, top)
    if not rows:
        return []
    lines = ["", "Where the time went (compute, fetching inputs, spilled data):"]
    for name, split in rows:
        lines.append(f"  {_clip(name, 32):<32} {format_split(split)}")
    if rest is not None:
        lines.append(f"  {f'{n_rest:,} other prefixes':<32} {format_split(rest)}")
    return lines


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


# -- insights --------------------------------------------------------------------------

#: Severities of insights, most severe first.
INSIGHT_SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
_RANK = {name: i for i, name in enumerate(INSIGHT_SEVERITIES)}
#: Insights read from a snapshot at most (the engine keeps far fewer).
MAX_INSIGHTS = 100
#: Longest texts kept from an insight; views cut them shorter still.
_LIMITS = {"kind": 60, "subject": 300, "subject_type": 20, "message": 600}
_ADVICE_LIMIT = 1000
_LINK_LIMIT = 500
#: Evidence names read as durations when their value is a float.
_DURATION_NAMES = frozenset(
    {"p25", "p50", "p75", "p90", "p95", "p99", "max", "min", "mean", "median"}
)


def insights_of(snapshot: Snapshot) -> list[dict[str, Any]] | None:
    """The snapshot's insights, most severe first; ``None`` when it has none.

    ``None`` means the snapshot was made by a monitor that computes no
    insights (its ``"insights"`` field is missing): views then say nothing,
    rather than "nothing is wrong". An empty list means insights were
    evaluated and none holds.

    Each insight is a new dict with the fields of the snapshot's (see
    ``snapshot["insights"]``) made safe to read: strings cut to a bounded
    length (not escaped: each view escapes for its medium), ``evidence`` a
    dict, ``link`` an ``http(s)`` URL or ``None``, ``since`` a number or
    ``None``. Entries that are not dicts are skipped; at most
    :data:`MAX_INSIGHTS` are read. The order is the snapshot's, made stable
    by severity (critical, warning, info, then unknown severities).
    """
    raw = cast(dict[str, Any], snapshot).get("insights")
    if not isinstance(raw, list):
        return None
    out: list[dict[str, Any]] = []
    for item in raw[:MAX_INSIGHTS]:
        if not isinstance(item, dict):
            continue
        insight: dict[str, Any] = {
            name: _cut(item.get(name), limit) for name, limit in _LIMITS.items()
        }
        insight["severity"] = _cut(item.get("severity"), 20).lower() or "info"
        insight["advice"] = _cut(item.get("advice"), _ADVICE_LIMIT)
        evidence = item.get("evidence")
        insight["evidence"] = dict(evidence) if isinstance(evidence, dict) else {}
        link = _cut(item.get("link"), _LINK_LIMIT)
        insight["link"] = link if link.startswith(("https://", "http://")) else None
        insight["since"] = _finite(item.get("since"))
        out.append(insight)
    out.sort(key=lambda i: _RANK.get(i["severity"], len(_RANK)))
    return out


def _finite(value: Any) -> float | None:
    """A finite number as a float, anything else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _cut(value: Any, limit: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def evidence_items(evidence: dict[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """An insight's evidence as (name, value) texts, at most ``limit`` of them.

    Numbers named ``..._bytes`` read in bytes (``"1.4 GiB"``), integers with
    thousands separators, floats named like a duration
    (``p50``, ``max``, ``..._seconds``) as durations, floats named like a
    share (``..._share``, ``..._fraction``) as percentages, other floats with
    three significant digits. The texts are not escaped.
    """
    items: list[tuple[str, str]] = []
    for name, value in list(evidence.items())[:limit]:
        key = _cut(name, 40)
        items.append((key.replace("_", " "), _evidence_value(key.lower(), value)))
    return items


def _evidence_value(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int | float) and name.endswith("bytes"):
        return _bytes(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if name in _DURATION_NAMES or name.endswith(("seconds", "_s", "duration")):
            return format_duration(value)
        if name.endswith(("share", "fraction")) and 0.0 <= value <= 1.0:
            return f"{value:.0%}"
        return f"{value:,.3g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return _cut(value, 80)


def _bytes(value: float) -> str:
    """``"1.4 GiB"``, ``"512 B"``."""
    if not math.isfinite(value):
        return str(value)
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def format_insight(insight: dict[str, Any], width: int | None = None) -> str:
    """One insight (from :func:`insights_of`) as one safe terminal line:
    ``[warning] tiny-tasks (inc): <message>``, cut to ``width``."""
    subject = insight.get("subject")
    about = f" ({_cut(subject, 60)})" if subject else ""
    return safe_text(
        f"[{insight.get('severity')}] {insight.get('kind')}{about}: "
        f"{insight.get('message')}",
        width,
    )


def _insight_lines(snapshot: Snapshot, top: int) -> list[str]:
    """The "Insights:" section of :func:`format_summary` (none without insights)."""
    insights = insights_of(snapshot)
    if insights is None:
        return []
    if not insights:
        return ["", "Insights: none (nothing found that needs attention)"]
    lines = ["", f"Insights ({len(insights):,}, most severe first):"]
    for insight in insights[:top]:
        lines.append("  " + format_insight(insight, 160))
        evidence = ", ".join(f"{k} {v}" for k, v in evidence_items(insight["evidence"]))
        if evidence:
            lines.append("      evidence: " + safe_text(evidence, 150))
        if insight["advice"]:
            lines.append("      advice: " + safe_text(insight["advice"], 300))
        if insight["link"]:
            lines.append("      see " + safe_text(insight["link"], 200))
    if len(insights) > top:
        lines.append(f"  ... and {len(insights) - top:,} more")
    return lines
