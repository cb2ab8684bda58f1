"""Snapshot -> columns for the panel's data sources (plain Python, no Bokeh).

Every function here takes a snapshot and returns bounded columns: at most the
top ``n`` rows of a table, whatever the size of the snapshot. Strings that come
from users (task keys, prefixes, worker addresses, exception texts) are passed
through as text; the components render them only with Bokeh features that
show text (canvas text, table cells, ``PreText``, escaped tooltips), never as
HTML. The HTML built here is made of numbers, fixed words and escaped user
strings: the summary (:func:`summary_html`: escaped alert kinds) and the
insights (:func:`insight_strip_html`, :func:`insight_cards_html`: every field
of an insight escaped with ``html.escape``, links only ``http(s)``).
"""

from __future__ import annotations

import heapq
import html
import math
import time
from collections.abc import Iterable
from typing import Any, cast

from dask.utils import format_bytes

from dask_monitor.snapshot import (
    SNAPSHOT_VERSION,
    EventRecord,
    PrefixRow,
    Snapshot,
)
from dask_monitor.text import (
    average_rate,
    evidence_items,
    insights_of,
    is_finished,
    run_seconds,
    time_split,
)
from dask_monitor.units import format_duration, plural

from ._style import BLUE, ERRED, MUTED, REMOVED, color_of
from ._style import SEVERITY_COLORS as INSIGHT_COLORS

Columns = dict[str, list[Any]]

#: Bar segments of a prefix, left to right, with the states they add up.
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("done", "done, result released"),
    ("memory", "in memory"),
    ("erred", "erred"),
    ("processing", "processing"),
    ("waiting", "waiting / queued"),
)

#: Height of a bar, in rows.
BAR = 0.72

# Bokeh typesets text between these delimiters (axis labels, titles); a
# zero-width space inside each opening delimiter keeps user text literal.
_MATH_DEFUSE = (("$$", "$\u200b$"), ("\\[", "\\\u200b["), ("\\(", "\\\u200b("))


def display_text(value: Any, limit: int = 60) -> str:
    """A user string made safe for one line of canvas text.

    Truncated to ``limit`` characters with an ellipsis, newlines flattened, and
    TeX delimiters defused (Bokeh would typeset ``$$...$$`` in axis labels).
    """
    text = "" if value is None else str(value)
    text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    if len(text) > limit:
        text = text[: max(limit - 1, 1)] + "\u2026"
    for delimiter, defused in _MATH_DEFUSE:
        if delimiter in text:
            text = text.replace(delimiter, defused)
    return text


def fmt_seconds(seconds: float | None) -> str:
    """Durations down to microseconds: ``"850µs"``, ``"12ms"``, ``"3.2s"``
    (:func:`dask_monitor.units.format_duration`)."""
    return format_duration(seconds)


def fmt_eta(eta: float | None, low: float | None, high: float | None) -> str:
    """``"12s (8s-20s)"``, ``"12s"`` without a range, ``"-"`` when unknown."""
    if eta is None:
        return "-"
    if low is None or high is None or abs(high - low) < 1:
        return format_duration(eta)
    return (
        f"{format_duration(eta)} ({format_duration(low)}\u2013{format_duration(high)})"
    )


def fmt_rate(rate: float) -> str:
    """Tasks per second, with sensible precision."""
    if rate >= 100:
        return f"{rate:,.0f}"
    if rate >= 10:
        return f"{rate:.1f}"
    return f"{rate:.2f}"


def fmt_clock(timestamp: float | None) -> str:
    """Local wall-clock time ``HH:MM:SS``."""
    if not timestamp:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def empty_snapshot(now: float | None = None) -> Snapshot:
    """A snapshot of nothing: what the panel shows before the monitor starts."""
    now = time.time() if now is None else now
    return cast(
        Snapshot,
        {
            "version": SNAPSHOT_VERSION,
            "timestamp": now,
            "started": now,
            "elapsed": 0.0,
            "seq": 0,
            "live": True,
            "totals": {
                "states": {},
                "completed": 0,
                "erred": 0,
                "recomputed": 0,
                "retried": 0,
                "done": 0,
                "remaining": 0,
                "total": 0,
                "rate": 0.0,
                "eta": None,
                "eta_low": None,
                "eta_high": None,
            },
            "prefixes": {},
            "prefixes_folded": 0,
            "groups": {},
            "groups_folded": 0,
            "workers": {},
            "errors": [],
            "errors_folded": 0,
            "throughput": {
                "bin": 1.0,
                "start": now,
                "counts": [],
                "prefixes": {},
                "total": 0,
                "late": 0,
            },
            "samples": {"recent": [], "reservoir": [], "seen": 0},
            "alerts": {},
            "monitor": {
                "events": 0,
                "dropped": 0,
                "merged": 0,
                "flushes": 0,
                "flush_seconds": 0.0,
                "flush_last": 0.0,
                "flush_max": 0.0,
                "overhead": 0.0,
                "buffer_capacity": 0,
                "interval": 0.0,
                "observer_errors": {},
                "observers": [],
                "started": now,
            },
        },
    )


# -- progress --------------------------------------------------------------------------


def _segments(
    states: dict[str, int], done: int, total: int, erred: int
) -> tuple[int, ...]:
    """Counts of (done-released, memory, erred, processing, waiting), and the total.

    ``erred`` is the cumulative count of erred tasks, not those in ``erred``
    now: an erred task stays erred on its bar once Dask forgets it.
    """
    memory = states.get("memory", 0)
    erred = max(min(erred, done), states.get("erred", 0))
    processing = states.get("processing", 0)
    waiting = (
        states.get("waiting", 0) + states.get("queued", 0) + states.get("no-worker", 0)
    )
    released = max(done - memory - erred, 0)
    whole = max(total, released + memory + erred + processing + waiting, 1)
    return released, memory, erred, processing, waiting, whole


def _edges(counts: tuple[int, ...]) -> list[float]:
    """Cumulative fractions of the whole: the segment boundaries, 0..1."""
    *parts, whole = counts
    edges = [0.0]
    for part in parts:
        edges.append(edges[-1] + part / whole)
    return edges


class _Ranking:
    """The top prefixes of one snapshot by activity and by compute time.

    One pass over the prefixes for both orders, cached for the last snapshot
    seen: the components of a page, and all the pages open on a dashboard,
    share the work (they run on one thread, the scheduler's event loop).
    """

    snapshot: Snapshot | None = None
    n = 0
    active: list[str] = []
    slow: list[str] = []

    @classmethod
    def of(cls, snapshot: Snapshot, n: int) -> type[_Ranking]:
        if cls.snapshot is snapshot and cls.n == n:
            return cls
        activity: list[tuple[int, float, int, str]] = []
        compute: list[tuple[float, str]] = []
        add_activity = activity.append
        add_compute = compute.append
        for name, row in snapshot["prefixes"].items():
            add_activity(
                (
                    0 if row["remaining"] else 1,  # work ahead of it first
                    -(row["last_active"] // 10.0),  # then recently active (10 s)
                    -row["total"],
                    name,
                )
            )
            d = row["durations"]
            count = d["count"]
            if count and d["p50"] is not None:
                add_compute((-(d["mean"] or d["p50"]) * count, name))
        cls.active = [k[-1] for k in heapq.nsmallest(n, activity)]
        cls.slow = [k[-1] for k in heapq.nsmallest(n, compute)]
        cls.snapshot, cls.n = snapshot, n
        return cls


def top_prefixes(snapshot: Snapshot, n: int) -> list[tuple[str, PrefixRow]]:
    """The ``n`` most active prefixes: with work left first, then the latest."""
    prefixes = snapshot["prefixes"]
    return [(name, prefixes[name]) for name in _Ranking.of(snapshot, n).active]


def slowest_prefixes(snapshot: Snapshot, n: int) -> list[tuple[str, PrefixRow]]:
    """The ``n`` measured prefixes with the most compute time (count x mean)."""
    prefixes = snapshot["prefixes"]
    return [(name, prefixes[name]) for name in _Ranking.of(snapshot, n).slow]


def overall_columns(snapshot: Snapshot) -> Columns:
    """The one-row source of the overall progress bar."""
    t = snapshot["totals"]
    counts = _segments(t["states"], t["done"], t["total"], t["erred"])
    edges = _edges(counts)
    data: Columns = {
        "y": [0.0],
        "top": [BAR / 2],
        "bottom": [-BAR / 2],
        "total": [f"{t['total']:,}"],
    }
    for i, (field, _) in enumerate(SEGMENTS):
        data[f"{field}_left"] = [edges[i]]
        data[f"{field}_right"] = [edges[i + 1]]
        data[field] = [f"{counts[i]:,}"]
    return data


def prefix_columns(snapshot: Snapshot, n: int) -> tuple[Columns, Columns]:
    """Rows of the per-prefix bars (top ``n``) and the one-row "N more" line."""
    rows = top_prefixes(snapshot, n)
    data: Columns = {
        k: []
        for k in (
            "y",
            "top",
            "bottom",
            "name",
            "label",
            "color",
            "counts",
            "retried",
            "rate",
            "eta",
            "p50",
            *(f"{f}_left" for f, _ in SEGMENTS),
            *(f"{f}_right" for f, _ in SEGMENTS),
            *(f for f, _ in SEGMENTS),
        )
    }
    shown_done = shown_total = 0
    for i, (name, row) in enumerate(rows):
        counts = _segments(row["states"], row["done"], row["total"], row["erred"])
        edges = _edges(counts)
        data["y"].append(-float(i))
        data["top"].append(-i + BAR / 2)
        data["bottom"].append(-i - BAR / 2)
        data["name"].append(display_text(name, 200))
        data["label"].append(display_text(name, 32))
        data["color"].append(color_of(name))
        counts_text = f"{row['done']:,} / {row['total']:,}"
        retried = row.get("retried", 0)
        if retried:  # attempts that raised and were retried: beside the bar
            counts_text += f" \u21bb{retried:,}"
        data["counts"].append(counts_text)
        data["retried"].append(f"{retried:,}")
        data["rate"].append(f"{fmt_rate(row['rate'])}/s")
        data["eta"].append(fmt_eta(row["eta"], row["eta_low"], row["eta_high"]))
        data["p50"].append(fmt_seconds(row["durations"]["p50"]))
        for j, (field, _) in enumerate(SEGMENTS):
            data[f"{field}_left"].append(edges[j])
            data[f"{field}_right"].append(edges[j + 1])
            data[field].append(f"{counts[j]:,}")
        shown_done += row["done"]
        shown_total += row["total"]
    hidden = len(snapshot["prefixes"]) - len(rows) + snapshot["prefixes_folded"]
    totals = snapshot["totals"]
    more_text = ""
    if hidden > 0:
        rest_done = max(totals["done"] - shown_done, 0)
        rest_total = max(totals["total"] - shown_total, 0)
        more_text = (
            f"\u2026 {hidden:,} more prefix{'es' if hidden != 1 else ''}: "
            f"{rest_done:,} / {rest_total:,} done"
        )
    more: Columns = {"y": [-float(len(rows))], "text": [more_text]}
    return data, more


# -- throughput ------------------------------------------------------------------------


def throughput_points(snapshot: Snapshot, after: float) -> Columns:
    """Complete throughput bins later than ``after`` (ms): time (ms) and tasks/s.

    The newest bin is still filling, so it is left for the next update.
    """
    tp = snapshot["throughput"]
    width = tp["bin"] or 1.0
    now = snapshot["timestamp"]
    times: list[float] = []
    rates: list[float] = []
    start = tp["start"]
    first = snapshot["started"] - width
    for i, count in enumerate(tp["counts"]):
        begin = start + i * width
        if begin + width > now:
            break
        if begin < first:
            continue
        t_ms = (begin + width / 2) * 1000.0
        if t_ms > after:
            times.append(t_ms)
            rates.append(count / width)
    return {"time": times, "rate": rates}


def throughput_title(snapshot: Snapshot) -> str:
    """The current pace while work runs; a finished run's average, labelled so."""
    if is_finished(snapshot):
        average = average_rate(snapshot)
        if average is None:
            return "Throughput (tasks/s)"
        return (
            f"Throughput: average {fmt_rate(average)} tasks/s over "
            f"{format_duration(run_seconds(snapshot))}"
        )
    return f"Throughput: {fmt_rate(snapshot['totals']['rate'])} tasks/s now"


# -- durations -------------------------------------------------------------------------


def duration_columns(snapshot: Snapshot, n: int) -> Columns:
    """p50/p90/p99/max per prefix, the ``n`` prefixes with most compute time."""
    rows = slowest_prefixes(snapshot, n)
    data: Columns = {
        k: []
        for k in (
            "y",
            "name",
            "color",
            "p50",
            "p90",
            "p99",
            "max",
            "count",
            "p50_text",
            "p90_text",
            "p99_text",
            "max_text",
            "mean_text",
            *TIME_FIELDS,
        )
    }
    for i, (name, row) in enumerate(rows):
        for field, text in zip(TIME_FIELDS, time_texts(row), strict=True):
            data[field].append(text)
        d = row["durations"]
        p50 = max(d["p50"] or 0.0, 1e-6)
        p90 = max(d["p90"] or p50, p50)
        p99 = max(d["p99"] or p90, p90)
        top = max(d["max"] or p99, p99)
        data["y"].append(-float(i))
        data["name"].append(display_text(name, 200))
        data["color"].append(color_of(name))
        data["p50"].append(p50)
        data["p90"].append(p90)
        data["p99"].append(p99)
        data["max"].append(top)
        data["count"].append(f"{d['count']:,}")
        data["p50_text"].append(fmt_seconds(d["p50"]))
        data["p90_text"].append(fmt_seconds(d["p90"]))
        data["p99_text"].append(fmt_seconds(d["p99"]))
        data["max_text"].append(fmt_seconds(d["max"]))
        data["mean_text"].append(fmt_seconds(d["mean"]))
    return data


#: Columns of :func:`duration_columns` that tell where a prefix's time went.
TIME_FIELDS = ("compute_text", "transfer_text", "disk_text", "nbytes_text", "where")
#: The share of a prefix's time fetching inputs or on spilled data from which
#: the durations chart says so beside its row (below: in its tooltip only).
VISIBLE_SHARE = 0.1


def time_texts(row: PrefixRow) -> tuple[str, str, str, str, str]:
    """A prefix's total compute, transfer and disk seconds and output bytes
    as texts, and the label beside its row (``"60% fetching data"`` when
    transfer or disk take at least :data:`VISIBLE_SHARE` of its time).

    Empty texts where the row has no time split (a span's view, an older
    snapshot): nothing is shown rather than zeros.
    """
    split = time_split(row)
    if split is None:
        return "", "", "", "", ""
    transfer = fmt_seconds(split.transfer)
    disk = fmt_seconds(split.disk)
    label = []
    share = split.transfer_share
    if share is not None and split.transfer > 0:
        transfer += f" ({share:.0%} of its time)"
        if share >= VISIBLE_SHARE:
            label.append(f"{share:.0%} fetching data")
    share = split.disk_share
    if share is not None and split.disk > 0:
        disk += f" ({share:.0%} of its time)"
        if share >= VISIBLE_SHARE:
            label.append(f"{share:.0%} on spilled data")
    return (
        fmt_seconds(split.compute),
        transfer,
        disk,
        format_bytes(split.nbytes),
        ", ".join(label),
    )


def duration_ticks(
    low: float, high: float, most: int = 10
) -> tuple[float, float, list[float]]:
    """Ticks of a log axis of durations from ``low`` to ``high`` (seconds).

    Returns ``(start, end, ticks)``: round values (1, 2 and 5 per decade, or
    fewer over a wide range, at most ``most`` ticks) and an axis range that
    starts and ends on one, so that every bar has a tick at or below it and
    another at or above it. Bokeh's own log ticker labels only powers of ten
    (none under two decades apart: bars from 10 ms to 50 ms had no tick).
    """
    low = max(low, 1e-9)
    high = max(high, low)
    first = math.floor(math.log10(low)) - 1
    last = math.ceil(math.log10(high)) + 1
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        values = [float(f"{m}e{e}") for e in range(first, last + 1) for m in mantissas]
        start = max(v for v in values if v <= low / 1.02)
        end = min(v for v in values if v >= high * 1.02)
        ticks = [v for v in values if start <= v <= end]
        if len(ticks) <= most:
            return start, end, ticks
    # Many decades: every k-th power of ten, the range ending on ticks.
    step = math.ceil((len(ticks) - 1) / (most - 1))
    ticks = ticks[::step]
    while ticks[-1] < high * 1.02:
        ticks.append(ticks[-1] * 10.0**step)
    return ticks[0], ticks[-1], ticks


def duration_labels(data: Columns) -> dict[float, str]:
    """y tick -> prefix label for the durations chart."""
    return {
        y: display_text(name, 28)
        for y, name in zip(data["y"], data["name"], strict=True)
    }


# -- workers ---------------------------------------------------------------------------


def worker_title(snapshot: Snapshot) -> str:
    """The utilisation view's title: workers running, and their mean
    utilisation now (work under way) or over the run (finished)."""
    workers = snapshot["workers"].values()
    running = [w for w in workers if w["status"] == "running"]
    if is_finished(snapshot):
        shown = list(workers)
        if not shown:
            return "Worker utilisation: no workers"
        total = 0.0
        for w in shown:
            total += w.get("utilisation_run", w["utilisation"])
        mean = total / len(shown)
        return (
            f"Worker utilisation over the run: {len(shown):,} workers, mean {mean:.0%}"
        )
    if not running:
        return "Worker utilisation: no workers"
    mean = sum(w["utilisation"] for w in running) / len(running)
    return f"Worker utilisation now: {len(running):,} running, mean {mean:.0%}"


def worker_columns(snapshot: Snapshot, n: int) -> tuple[Columns, int]:
    """Utilisation bars of up to ``n`` workers (running first, by address):
    threads busy now while work is under way, over the whole run once it
    is finished.

    With more than ``n`` workers, the running ones least busy now come first
    (then by address): on a large cluster the title's mean tells how busy
    it is, and the idle workers are the ones worth a look.

    Returns the columns and how many workers were left out.
    """
    workers = snapshot["workers"]
    if len(workers) > n:
        ordered = sorted(
            workers.items(),
            key=lambda kv: (
                kv[1]["status"] != "running",
                kv[1]["utilisation"],
                kv[0],
            ),
        )
    else:
        ordered = sorted(
            workers.items(), key=lambda kv: (kv[1]["status"] != "running", kv[0])
        )
    shown = ordered[:n]
    data: Columns = {
        k: []
        for k in (
            "y",
            "name",
            "label",
            "utilisation",
            "color",
            "text",
            "status",
            "nthreads",
            "processing",
            "completed",
            "erred",
            "busy",
            "now",
            "run",
        )
    }
    finished = is_finished(snapshot)
    for i, (address, w) in enumerate(shown):
        running = w["status"] == "running"
        now = min(max(w["utilisation"], 0.0), 1.0)
        run = min(max(w.get("utilisation_run", now), 0.0), 1.0)
        data["y"].append(-float(i))
        data["name"].append(display_text(address, 200))
        data["label"].append(display_text(short_address(address), 28))
        # A finished run's threads are idle now: what they did over the run
        # is what means something then.
        data["utilisation"].append(run if finished else now)
        data["color"].append(BLUE if running else REMOVED)
        if finished:
            text = f"{run:.0%} \u00b7 {w['completed']:,} done"
        elif running:
            text = f"{now:.0%} \u00b7 {w['processing']:,} processing"
        else:
            text = w["status"]
        data["text"].append(text)
        data["now"].append(f"{now:.0%}")
        data["run"].append(f"{run:.0%}")
        data["status"].append(display_text(w["status"], 40))
        data["nthreads"].append("-" if w["nthreads"] is None else str(w["nthreads"]))
        data["processing"].append(f"{w['processing']:,}")
        data["completed"].append(f"{w['completed']:,}")
        data["erred"].append(f"{w['erred']:,}")
        data["busy"].append(fmt_seconds(w["busy"]))
    return data, len(ordered) - len(shown)


def short_address(address: str) -> str:
    """A worker address without its scheme: ``127.0.0.1:40000``."""
    for scheme in ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://"):
        if address.startswith(scheme):
            return address[len(scheme) :]
    return address


# -- errors ----------------------------------------------------------------------------


def error_columns(snapshot: Snapshot, n: int) -> Columns:
    """The ``n`` most frequent error rows, texts as they are (shown as text)."""
    data: Columns = {
        k: []
        for k in (
            "prefix",
            "type",
            "count",
            "retried",
            "exception",
            "worker",
            "key",
            "last",
            "traceback",
        )
    }
    for row in snapshot["errors"][:n]:
        data["prefix"].append(display_text(row["prefix"], 200))
        data["type"].append(display_text(row["type"], 200))
        data["count"].append(row["count"])
        data["retried"].append(row.get("retried", 0))
        data["exception"].append(display_text(row["exception"], 500))
        data["worker"].append(display_text(short_address(row["worker"] or "-"), 100))
        data["key"].append(display_text(row["key"], 300))
        data["last"].append(fmt_clock(row["last"]))
        data["traceback"].append(_detail(row))
    return data


def _detail(row: Any) -> str:
    """The text shown below the table for one error row."""
    head = (
        f"{row['type']} in {row['prefix']} ({row['count']:,}x), e.g. key {row['key']}"
    )
    retried = row.get("retried", 0)
    if retried:
        head += f"; {retried:,} of them raised and were retried"
    cause = row.get("caused_by")
    if cause:
        head += f"\ncaused by {cause['type']} in {cause['prefix']}, task {cause['key']}"
    exception = row["exception"] or ""
    traceback = row["traceback"] or "(no traceback)"
    return f"{head}\n{exception}\n\n{traceback}"


def errors_title(snapshot: Snapshot, shown: int) -> str:
    """Title of the error table: erred tasks and rows not shown."""
    erred = snapshot["totals"]["erred"]
    more = len(snapshot["errors"]) - shown
    text = f"Errors: {plural(erred, 'erred task')}"
    retried = snapshot["totals"].get("retried", 0)
    if retried:
        text += f", {plural(retried, 'retried attempt')}"
    if more > 0:
        text += f" ({more:,} more kinds not shown)"
    if snapshot["errors_folded"]:
        text += f", {snapshot['errors_folded']:,} not tabulated"
    return text


# -- task stream -----------------------------------------------------------------------


def new_events(snapshot: Snapshot, after: float, limit: int) -> list[EventRecord]:
    """Sampled events with a compute interval, stamped later than ``after``.

    At most the ``limit`` newest ones, oldest first.
    """
    fresh = [
        e
        for e in snapshot["samples"]["recent"]
        if e["timestamp"] > after and e["begin"] is not None and e["end"] is not None
    ]
    fresh.sort(key=lambda e: (e["timestamp"], e["end"] or 0.0))
    return fresh[-limit:] if limit else []


def event_color(event: EventRecord) -> str:
    """Prefix colour; black for an erred task, as in Dask's task stream."""
    return ERRED if event["finish"] == "erred" else color_of(event["prefix"])


# -- summary and health ----------------------------------------------------------------


def _stat(label: str, value: str, cls: str = "", small: str = "") -> str:
    label = html.escape(label)
    value = html.escape(value)
    small_html = f" <small>{html.escape(small)}</small>" if small else ""
    cls_attr = f" {cls}" if cls else ""
    return (
        f'<div class="dm-stat"><span class="dm-label">{label}</span>'
        f'<span class="dm-value{cls_attr}">{value}{small_html}</span></div>'
    )


def summary_html(snapshot: Snapshot, attached: bool = True) -> str:
    """The header: done/total, rate, elapsed, ETA, errors, workers, health.

    Built from numbers and fixed words, and alert kinds (user strings for
    users' own rules), each escaped with ``html.escape``.
    """
    if not attached:
        return (
            '<div class="dm-note">dask-monitor is not running on this scheduler: '
            "attach it with <code>Monitor.attach(client)</code> or preload it "
            "(<code>dask scheduler --preload dask_monitor</code>).</div>"
        )
    t = snapshot["totals"]
    total = t["total"]
    workers = sum(w["status"] == "running" for w in snapshot["workers"].values())
    m = snapshot["monitor"]
    finished = is_finished(snapshot)
    if not total and not t["done"]:
        done = _stat("tasks", "no tasks yet")
    else:
        pct = 100.0 * t["done"] / total if total else 100.0
        done = (
            '<div class="dm-stat"><span class="dm-label">done</span>'
            f'<span class="dm-value"><span class="dm-done">{t["done"]:,}</span>'
            f' <small>/ <span class="dm-total">{total:,}</span>'
            f" ({pct:.0f}%)</small></span></div>"
        )
    if finished:
        # A finished run: what it took, not its (now meaningless) pace and ETA.
        average = average_rate(snapshot)
        parts = [
            done,
            _stat("average tasks/s", "-" if average is None else fmt_rate(average)),
            _stat("run time", format_duration(run_seconds(snapshot))),
            _stat(
                "status",
                "finished" if not t["remaining"] else f"{t['remaining']:,} not done",
            ),
        ]
    else:
        parts = [
            done,
            _stat("tasks/s now", fmt_rate(t["rate"])),
            _stat("elapsed", format_duration(snapshot["elapsed"])),
            _stat(
                "eta",
                "-" if t["eta"] is None else format_duration(t["eta"]),
                small=_eta_range(t["eta"], t["eta_low"], t["eta_high"]),
            ),
        ]
    if not finished:  # none is processing once the run is over
        parts.append(_stat("processing", f"{t['states'].get('processing', 0):,}"))
    parts += [
        _stat(
            "erred", f"{t['erred']:,}", "dm-bad dm-erred" if t["erred"] else "dm-erred"
        ),
        _stat("workers", f"{workers:,}"),
    ]
    alerts_total = int(snapshot.get("alerts", {}).get("total") or 0)
    if alerts_total:
        kinds = ", ".join(
            f"{display_text(k, 24)} {v:,}" for k, v in alert_counts(snapshot, 3)
        )
        parts.append(_stat("alerts", f"{alerts_total:,}", "dm-bad dm-alerts", kinds))
    observer_errors = sum(m["observer_errors"].values())
    mean_flush = m["flush_seconds"] / m["flushes"] if m["flushes"] else 0.0
    dropped = (
        f"<b{' class=dm-bad' if m['dropped'] else ''}>{m['dropped']:,}</b> dropped"
    )
    if not snapshot.get("live", True):
        # The flush cost was the live run's; a replay does not reproduce it.
        health = f"recorded run: <b>{m['events']:,}</b> events \u00b7 {dropped}"
    elif finished:
        health = f"monitor: <b>{m['events']:,}</b> events \u00b7 {dropped}"
    else:
        health = (
            f"monitor: <b>{m['events']:,}</b> events \u00b7 {dropped}"
            f" \u00b7 <b>{m['flushes']:,}</b> flushes \u00b7 flush "
            f"<b>{html.escape(fmt_seconds(mean_flush))}</b> mean, "
            f"<b>{html.escape(fmt_seconds(m['flush_max']))}</b> max \u00b7 overhead "
            f"<b>{m['overhead']:.2%}</b> of the scheduler loop"
        )
    if observer_errors:
        health += f" \u00b7 <b class=dm-bad>{observer_errors:,}</b> observer errors"
    slow_drops = sum(d["dropped"] for d in m.get("dispatch", {}).values())
    if slow_drops:
        health += (
            f" \u00b7 <b class=dm-bad>{slow_drops:,}</b> events dropped "
            "by slow observers"
        )
    return (
        f'<div class="dm-summary">{"".join(parts)}</div>'
        f'<div class="dm-health">{health}</div>'
    )


def _eta_range(eta: float | None, low: float | None, high: float | None) -> str:
    if eta is None or low is None or high is None or abs(high - low) < 1:
        return ""
    return f"{format_duration(low)}\u2013{format_duration(high)}"


def health_columns(snapshot: Snapshot) -> Columns:
    """The monitor accounting for itself, as (metric, value) text rows."""
    m = snapshot["monitor"]
    mean_flush = m["flush_seconds"] / m["flushes"] if m["flushes"] else 0.0
    rows: list[tuple[str, str]] = [
        ("events seen", f"{m['events']:,}"),
        ("events dropped (buffer full)", f"{m['dropped']:,}"),
    ]
    if not snapshot.get("live", True):
        rows.append(("flush cost", "not recorded (a replayed run)"))
        return {"metric": [r[0] for r in rows], "value": [r[1] for r in rows]}
    rows += [
        ("flushes", f"{m['flushes']:,}"),
        (
            "flush time: last / mean / max",
            " / ".join(
                fmt_seconds(v) for v in (m["flush_last"], mean_flush, m["flush_max"])
            ),
        ),
        ("overhead (flush share of wall time)", f"{m['overhead']:.3%}"),
        ("flush interval", fmt_seconds(m["interval"])),
        ("buffer capacity", f"{m['buffer_capacity']:,}"),
        ("observers", f"{len(m['observers']):,}"),
    ]
    for name, count in sorted(m["observer_errors"].items()):
        rows.append((f"errors in observer {display_text(name, 80)}", f"{count:,}"))
    for name, d in sorted(m.get("dispatch", {}).items()):
        rows.append(
            (
                f"observer {display_text(name, 80)}: queued / dropped",
                f"{d['queued']:,} / {d['dropped']:,}",
            )
        )
    return {"metric": [r[0] for r in rows], "value": [r[1] for r in rows]}


def columns_equal(a: dict[str, Iterable[Any]], b: Columns) -> bool:
    """Whether two sets of columns hold the same values."""
    if a.keys() != b.keys():
        return False
    return all(list(a[k]) == b[k] for k in b)


# -- alerts ----------------------------------------------------------------------------

#: Text colour of an alert row by severity (unknown severities: muted).
SEVERITY_COLORS: dict[str, str] = {
    "error": "#c62828",
    "warning": "#b26a00",
    "info": "#1f5f99",
}


def alert_columns(snapshot: Snapshot, n: int) -> Columns:
    """The ``n`` most recent alerts, newest first, texts as they are (shown as text).

    ``snapshot["alerts"]["recent"]`` is oldest first (see
    :class:`~dask_monitor.alerts.rules.AlertLog`); malformed entries are skipped.
    """
    data: Columns = {
        k: []
        for k in (
            "time",
            "severity",
            "kind",
            "message",
            "prefix",
            "worker",
            "key",
            "details",
            "color",
        )
    }
    recent = snapshot.get("alerts", {}).get("recent") or []
    rows = 0
    for alert in reversed(recent):
        if rows >= n:
            break
        if not isinstance(alert, dict):
            continue
        rows += 1
        severity = str(alert.get("severity") or "")
        timestamp = alert.get("timestamp")
        data["time"].append(
            fmt_clock(timestamp) if isinstance(timestamp, int | float) else "-"
        )
        data["severity"].append(display_text(severity, 20))
        data["kind"].append(display_text(alert.get("kind"), 60))
        data["message"].append(display_text(alert.get("message"), 500))
        data["prefix"].append(display_text(alert.get("prefix") or "-", 200))
        data["worker"].append(
            display_text(short_address(str(alert.get("worker") or "-")), 100)
        )
        data["key"].append(display_text(alert.get("key") or "-", 300))
        data["details"].append(_details_text(alert.get("details")))
        data["color"].append(SEVERITY_COLORS.get(severity, MUTED))
    return data


#: Details an alert table row leaves out: said by the insights page and the
#: message, or a timestamp that reads as a bare number.
_DETAILS_SKIPPED = frozenset({"advice", "link", "since", "subject_type"})


def _details_text(details: Any) -> str:
    """An alert's details as one line of ``name=value`` text; a nested mapping
    (an insight's ``evidence``) is spread into the line, figures rounded."""
    if not isinstance(details, dict) or not details:
        return ""
    parts: list[str] = []

    def add(name: str, value: Any) -> None:
        if value is None or name in _DETAILS_SKIPPED or len(parts) >= 12:
            return
        if isinstance(value, dict):
            for key, inner in list(value.items())[:12]:
                add(str(key), inner)
            return
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{name}={value}")

    for name, value in list(details.items())[:12]:
        add(str(name), value)
    return display_text(", ".join(parts), 300)


def alert_counts(snapshot: Snapshot, n: int = 4) -> list[tuple[str, int]]:
    """Alerts per kind, most frequent first: the first ``n`` kinds."""
    counts = snapshot.get("alerts", {}).get("counts") or {}
    ranked = sorted(
        ((str(k), int(v)) for k, v in counts.items() if isinstance(v, int)),
        key=lambda kv: (-kv[1], kv[0]),
    )
    return ranked[:n]


def alerts_title(snapshot: Snapshot, shown: int) -> str:
    """Title of the alerts table: total, counts per kind, suppressed (plain text)."""
    alerts = snapshot.get("alerts", {})
    total = int(alerts.get("total") or 0)
    if not total:
        return "Alerts: none"
    kinds = alert_counts(snapshot, 8)
    text = f"Alerts: {total:,} \u00b7 " + ", ".join(
        f"{display_text(k, 40)} {v:,}" for k, v in kinds
    )
    more = len(alerts.get("counts") or {}) - len(kinds)
    if more > 0:
        text += f" (+{more:,} more kinds)"
    suppressed = int(alerts.get("suppressed") or 0)
    if suppressed:
        text += f" \u00b7 {suppressed:,} suppressed by cooldown"
    if total > shown:
        text += f" \u00b7 newest {shown:,} shown"
    return text


# -- insights --------------------------------------------------------------------------

#: Icon of each insight severity (unknown severities: a dot).
INSIGHT_ICONS: dict[str, str] = {
    "critical": "\u2716",  # heavy multiplication x
    "warning": "\u25b2",  # black up-pointing triangle
    "info": "\u25cf",  # black circle
}
#: The strip's line when insights were evaluated and none holds.
NO_INSIGHTS = "No insights: nothing in this run needs attention so far."
_DOT = " \u00b7 "


def _esc(value: Any, limit: int) -> str:
    """A user string as escaped HTML text of one line, cut to ``limit``."""
    return html.escape(display_text(value, limit), quote=True)


def _severity_class(severity: str) -> str:
    return f"sev-{severity}" if severity in INSIGHT_COLORS else "sev-other"


def _subject_html(insight: dict[str, Any], limit: int = 60) -> str:
    """``prefix <code>inc</code>``, ``worker <code>127.0.0.1:40000</code>``."""
    subject = insight["subject"]
    if not subject:
        return ""
    kind = insight["subject_type"]
    if kind == "worker":
        subject = short_address(subject)
    if kind == "cluster" or not kind:
        return _esc(subject, limit)
    return f"{_esc(kind, 20)} <code>{_esc(subject, limit)}</code>"


def insight_strip_lines(snapshot: Snapshot, n: int = 3) -> list[str] | None:
    """The top ``n`` insights as HTML, one line each: icon, severity, message,
    subject (each line its own piece: one that changes is sent alone).

    ``None`` when the snapshot has no insights field (a monitor that computes
    none: the strip is hidden); one quiet line when the list is empty.
    """
    insights = insights_of(snapshot)
    return None if insights is None else insight_lines(insights[:n])


def insight_lines(insights: list[dict[str, Any]]) -> list[str]:
    """Insights (from :func:`~dask_monitor.text.insights_of`) as strip lines,
    or the quiet line when there are none."""
    if not insights:
        return [f'<div class="dm-ins-none">\u2713 {html.escape(NO_INSIGHTS)}</div>']
    lines = []
    for insight in insights:
        severity = insight["severity"]
        cls = _severity_class(severity)
        icon = INSIGHT_ICONS.get(severity, "\u2022")
        lines.append(
            f'<div class="dm-ins"><div class="dm-ins-line">'
            f'<span class="dm-ins-icon {cls}">{icon}</span>'
            f'<span class="dm-ins-sev {cls}">{_esc(severity, 10)}</span>'
            f'<span class="dm-ins-msg">{_esc(insight["message"], 240)}</span>'
            f'<span class="dm-ins-subject">{_subject_html(insight, 40)}</span>'
            "</div></div>"
        )
    return lines


def insight_strip_html(snapshot: Snapshot, n: int = 3) -> str | None:
    """:func:`insight_strip_lines` as one piece of HTML."""
    lines = insight_strip_lines(snapshot, n)
    return None if lines is None else "".join(lines)


def _link_html(link: str | None) -> str:
    if not link:
        return ""
    host = link.split("://", 1)[-1].split("/", 1)[0]
    label = "Dask docs" if host.endswith("dask.org") else display_text(host, 40)
    return (
        f'<a href="{html.escape(link, quote=True)}" target="_blank" '
        f'rel="noopener noreferrer">{html.escape(label)} \u2197</a>'
    )


def insight_cards_html(insights: list[dict[str, Any]]) -> str:
    """Every insight (from :func:`~dask_monitor.text.insights_of`) as a card:
    severity, kind, subject, since; message; evidence; advice and the docs
    link (opened in a new tab)."""
    if not insights:
        return f'<div class="dm-ins-none">{html.escape(NO_INSIGHTS)}</div>'
    cards = []
    for insight in insights:
        severity = insight["severity"]
        cls = _severity_class(severity)
        icon = INSIGHT_ICONS.get(severity, "\u2022")
        head = [
            f'<span class="{cls}">{icon} '
            f"<b class={cls}>{_esc(severity, 10)}</b></span>",
            f"<b>{_esc(insight['kind'], 40)}</b>",
        ]
        subject = _subject_html(insight, 120)
        if subject:
            head.append(subject)
        if insight["since"] is not None:
            head.append(f"since {html.escape(fmt_clock(insight['since']))}")
        evidence = "".join(
            f"<span>{_esc(name, 40)} <b>{_esc(value, 80)}</b></span>"
            for name, value in evidence_items(insight["evidence"])
        )
        advice = _esc(insight["advice"], 600)
        cards.append(
            f'<div class="dm-ins-card {cls}">'
            f'<div class="dm-ins-head">{_DOT.join(head)}</div>'
            f'<div class="dm-ins-msg">{_esc(insight["message"], 600)}</div>'
            + (f'<div class="dm-ins-evidence">{evidence}</div>' if evidence else "")
            + (
                f'<div class="dm-ins-advice">{advice}{_link_html(insight["link"])}'
                "</div>"
                if advice or insight["link"]
                else ""
            )
            + "</div>"
        )
    return f'<div class="dm-ins-list">{"".join(cards)}</div>'


def insights_title(insights: list[dict[str, Any]] | None) -> str:
    """``"Insights: 1 critical, 2 warning"`` (plain text)."""
    if insights is None:
        return "Insights: not computed by this monitor"
    if not insights:
        return "Insights: none"
    counts: dict[str, int] = {}
    for insight in insights:
        counts[insight["severity"]] = counts.get(insight["severity"], 0) + 1
    return "Insights: " + ", ".join(
        f"{n:,} {display_text(severity, 12)}" for severity, n in counts.items()
    )
