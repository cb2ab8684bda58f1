"""Comparing two runs: which prefixes got slower, which errors are new.

:func:`compare` reads two runs (event logs, replayed, or snapshots) and
returns plain data: per prefix its counts, duration quantiles and their
ratios (b / a), compute seconds, errors and a ``verdict``; per run its wall
time, average throughput and peak memory; the error types and insights found
in one run only. :func:`format_diff` prints it as a table,
:func:`diff_html` as a page with the two runs side by side.

A verdict is not called on noise. Durations come from sketches whose
quantiles are within ``relative_error`` (relative) of the truth, so the p50
ratio of two runs is known only to within a factor ``(1 + e) / (1 - e)``
either way; a prefix is ``slower`` only when even the most favourable reading
of that ratio is beyond ``min_ratio``, the median grew by more than
``min_seconds`` (a 2 ms task taking 4 ms is not a regression anyone should
be paged for), and both runs finished at least ``min_count`` of its tasks.
``faster`` is the mirror image.

Examples
--------
>>> from dask_monitor import compare
>>> result = compare("monday.dmlog", "tuesday.dmlog")  # doctest: +SKIP
>>> result["verdicts"]["slower"]  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from dask_monitor.snapshot import Snapshot
from dask_monitor.text import average_rate, insights_of, run_seconds, safe_text

if TYPE_CHECKING:
    from dask_monitor.runs import RunIndex

__all__ = [
    "MIN_COUNT",
    "MIN_RATIO",
    "MIN_SECONDS",
    "VERDICTS",
    "compare",
    "diff_html",
    "format_diff",
    "load_run",
    "resolve_run",
]

#: A median this many times longer (or shorter), beyond the sketches' error,
#: is a change; less is the jitter of a loaded machine.
MIN_RATIO = 1.5
#: ... and it must also have moved by more than this many seconds.
MIN_SECONDS = 0.01
#: Finished tasks needed in both runs before a prefix is judged at all.
MIN_COUNT = 5

#: Verdicts, most significant first (the order of the table).
VERDICTS: tuple[str, ...] = ("slower", "new", "gone", "faster", "unchanged")

DIFF_VERSION = 1
_QUANTILES = ("p50", "p90", "p99")


def resolve_run(
    run: str | os.PathLike[str],
    directory: str | os.PathLike[str] | RunIndex | None = None,
) -> str | os.PathLike[str]:
    """The log ``run`` names: itself when it is a URL or a file that exists,
    else (given a ``directory``) the log there whose run name or file name is
    ``run`` (see :meth:`RunIndex.find <dask_monitor.runs.RunIndex.find>`).

    Raises
    ------
    LookupError
        Naming the directory and ``run`` when no log there, or several, have
        that name.
    """
    from dask_monitor.storage import is_url

    if directory is None or is_url(run) or os.path.exists(run):
        return run
    from dask_monitor.runs import RunIndex

    index = directory if isinstance(directory, RunIndex) else RunIndex(directory)
    return index.find(os.fspath(run))


def load_run(
    run: str | os.PathLike[str] | Mapping[str, Any],
    *,
    directory: str | os.PathLike[str] | RunIndex | None = None,
) -> Snapshot:
    """The snapshot of a run: a snapshot as such, or a log replayed.

    Parameters
    ----------
    run
        A snapshot, an event log's path or URL, or (with ``directory``) the
        name of a run recorded there: see :func:`resolve_run`.
    directory
        A history directory (local or a URL), or a
        :class:`~dask_monitor.runs.RunIndex` of one, where run names are
        looked up.
    """
    if isinstance(run, Mapping):
        return cast(Snapshot, run)
    from dask_monitor.replay import replay

    return replay(resolve_run(run, directory))


def _ratio(b: float | None, a: float | None) -> float | None:
    """``b / a``; ``None`` when either is unknown or ``a`` is not positive."""
    if a is None or b is None or not a > 0:
        return None
    r = b / a
    return r if math.isfinite(r) else None


def _compute_seconds(row: Mapping[str, Any]) -> float:
    """Compute seconds of a prefix's completions (``seconds["compute"]``, or
    mean duration times count for snapshots without it)."""
    seconds = row.get("seconds")
    if isinstance(seconds, Mapping) and isinstance(seconds.get("compute"), int | float):
        return float(seconds["compute"])
    d = row.get("durations") or {}
    mean = d.get("mean")
    return float(mean) * int(d.get("count") or 0) if mean is not None else 0.0


def _side(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a diff shows of one prefix in one run."""
    if row is None:
        return None
    d = row.get("durations") or {}
    return {
        "done": int(row.get("done") or 0),
        "completed": int(row.get("completed") or 0),
        "erred": int(row.get("erred") or 0),
        "total": int(row.get("total") or 0),
        "count": int(d.get("count") or 0),  # durations in the sketch
        "p50": d.get("p50"),
        "p90": d.get("p90"),
        "p99": d.get("p99"),
        "compute": _compute_seconds(row),
    }


def _error_types(snapshot: Snapshot) -> dict[tuple[str, str], dict[str, Any]]:
    """(prefix, type) -> its error row (counts summed over duplicates)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for err in snapshot.get("errors") or []:
        key = (str(err.get("prefix")), str(err.get("type")))
        row = out.get(key)
        if row is None:
            out[key] = {
                "prefix": key[0],
                "type": key[1],
                "count": int(err.get("count") or 0),
                "key": str(err.get("key") or ""),
                "exception": str(err.get("exception") or ""),
            }
        else:
            row["count"] += int(err.get("count") or 0)
    return out


def _peak_memory(snapshot: Snapshot) -> int | None:
    """The largest cluster memory (bytes) among the recorded resource samples;
    ``None`` when the run recorded none."""
    resources = cast(dict[str, Any], snapshot).get("resources")
    if not isinstance(resources, Mapping):
        return None
    cluster = resources.get("cluster") or {}
    values = [cluster.get("memory")]
    history = cluster.get("history")
    if isinstance(history, Mapping):
        values.extend(history.get("memory") or [])
    numbers = [int(v) for v in values if isinstance(v, int | float)]
    return max(numbers) if numbers else None


def _run(snapshot: Snapshot) -> dict[str, Any]:
    t = snapshot["totals"]
    return {
        "started": snapshot.get("started"),
        "run_seconds": run_seconds(snapshot),
        "average_rate": average_rate(snapshot),
        "done": int(t.get("done") or 0),
        "erred": int(t.get("erred") or 0),
        "peak_memory": _peak_memory(snapshot),
    }


def _insight_keys(snapshot: Snapshot) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for i in insights_of(snapshot) or []:
        out.setdefault(
            (i["kind"], i["subject"]),
            {
                "kind": i["kind"],
                "severity": i["severity"],
                "subject": i["subject"],
                "message": i["message"],
            },
        )
    return out


def _verdict(
    a: dict[str, Any] | None,
    b: dict[str, Any] | None,
    error: float,
    min_ratio: float,
    min_seconds: float,
    min_count: int,
) -> tuple[str, str]:
    """(verdict, reason) of one prefix."""
    if a is None or not a["done"]:
        return "new", "not in run a"
    if b is None or not b["done"]:
        return "gone", "not in run b"
    if a["count"] < min_count or b["count"] < min_count:
        return "unchanged", f"fewer than {min_count} timed tasks in a run"
    p50a, p50b = a["p50"], b["p50"]
    ratio = _ratio(p50b, p50a)
    if ratio is None or p50a is None or p50b is None:
        return "unchanged", "no durations to compare"
    # Each median is within a factor (1 +- e) of the truth: the true ratio
    # lies within `slack` of the reported one either way.
    slack = (1 + error) / (1 - error)
    if ratio / slack > min_ratio and p50b - p50a > min_seconds:
        return "slower", f"p50 x{ratio:.2f}"
    if ratio * slack < 1 / min_ratio and p50a - p50b > min_seconds:
        return "faster", f"p50 x{ratio:.2f}"
    return "unchanged", f"p50 x{ratio:.2f}"


def compare(
    a: str | os.PathLike[str] | Mapping[str, Any],
    b: str | os.PathLike[str] | Mapping[str, Any],
    *,
    min_ratio: float = MIN_RATIO,
    min_seconds: float = MIN_SECONDS,
    min_count: int = MIN_COUNT,
    directory: str | os.PathLike[str] | RunIndex | None = None,
) -> dict[str, Any]:
    """Compare run ``b`` against run ``a``: per prefix, per run, errors, insights.

    Parameters
    ----------
    a, b
        Event logs (paths or URLs, replayed with :func:`dask_monitor.replay`),
        snapshots, or (with ``directory``) names of runs recorded there.
    min_ratio
        Smallest p50 ratio (beyond the sketches' relative error) called
        ``slower`` (or, inverted, ``faster``).
    min_seconds
        Smallest change of the p50, in seconds, called a change.
    min_count
        Timed tasks each run must have of a prefix for it to be judged;
        fewer leave it ``unchanged``.
    directory
        A history directory (local or a URL, or its
        :class:`~dask_monitor.runs.RunIndex`) where ``a`` and ``b`` that are
        neither snapshots, URLs nor existing files are looked up by run name
        or file name.

    Returns
    -------
    dict
        Plain (JSON-able) data: ``runs`` (``a`` and ``b``: ``run_seconds``,
        ``average_rate``, ``done``, ``erred``, ``peak_memory``), ``ratios``
        (b / a of the run's figures), ``new_errors`` (error types of ``b``
        not in ``a``: listed first because they matter most),
        ``fixed_errors``, ``insights`` (``only_a``, ``only_b``),
        ``prefixes`` (a list, most significant first: ``prefix``,
        ``verdict``, ``reason``, ``a``, ``b``, ``ratios``,
        ``new_error_types``), ``verdicts`` (prefixes per verdict) and the
        ``thresholds`` used.

    Raises
    ------
    ValueError
        For thresholds out of range.
    LookupError
        For a run name that no log in ``directory`` has, or several have.
    """
    if not min_ratio > 1:
        raise ValueError(f"min_ratio must be above 1, got {min_ratio!r}")
    if not min_seconds >= 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds!r}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count!r}")
    if directory is not None:
        from dask_monitor.runs import RunIndex

        if not isinstance(directory, RunIndex):
            directory = RunIndex(directory)  # headers read once for both names
    sa, sb = load_run(a, directory=directory), load_run(b, directory=directory)
    pa, pb = sa.get("prefixes") or {}, sb.get("prefixes") or {}
    errors_a, errors_b = _error_types(sa), _error_types(sb)
    new_errors = [errors_b[k] for k in errors_b if k not in errors_a]
    new_errors.sort(key=lambda e: -e["count"])
    fixed_errors = [errors_a[k] for k in errors_a if k not in errors_b]
    error = 0.0
    for snap in (sa, sb):
        for row in (snap.get("prefixes") or {}).values():
            error = max(error, float(row["durations"].get("relative_error") or 0.0))
    rows: list[dict[str, Any]] = []
    for name in [*pa, *(n for n in pb if n not in pa)]:
        side_a, side_b = _side(pa.get(name)), _side(pb.get(name))
        verdict, reason = _verdict(
            side_a, side_b, error, min_ratio, min_seconds, min_count
        )
        ratios = {
            q: _ratio(
                side_b[q] if side_b else None,
                side_a[q] if side_a else None,
            )
            for q in (*_QUANTILES, "compute")
        }
        rows.append(
            {
                "prefix": name,
                "verdict": verdict,
                "reason": reason,
                "a": side_a,
                "b": side_b,
                "ratios": ratios,
                "new_error_types": [
                    e["type"] for e in new_errors if e["prefix"] == name
                ],
            }
        )

    def significance(row: dict[str, Any]) -> tuple[int, int, float, float]:
        r = row["ratios"]["p50"]
        change = abs(math.log(r)) if r else 0.0
        compute = max((row[s] or {}).get("compute", 0.0) for s in ("a", "b"))
        return (
            0 if row["new_error_types"] else 1,
            VERDICTS.index(row["verdict"]),
            -change,
            -compute,
        )

    rows.sort(key=significance)
    run_a, run_b = _run(sa), _run(sb)
    insights_a, insights_b = _insight_keys(sa), _insight_keys(sb)
    return {
        "version": DIFF_VERSION,
        "runs": {"a": run_a, "b": run_b},
        "ratios": {
            name: _ratio(run_b[name], run_a[name])
            for name in ("run_seconds", "average_rate", "peak_memory")
        },
        "new_errors": new_errors,
        "fixed_errors": fixed_errors,
        "insights": {
            "only_a": [v for k, v in insights_a.items() if k not in insights_b],
            "only_b": [v for k, v in insights_b.items() if k not in insights_a],
        },
        "prefixes": rows,
        "verdicts": {
            v: [r["prefix"] for r in rows if r["verdict"] == v] for v in VERDICTS
        },
        "thresholds": {
            "min_ratio": min_ratio,
            "min_seconds": min_seconds,
            "min_count": min_count,
            "relative_error": error,
        },
    }


# -- views -------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s"


def _times(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def _run_lines(result: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    a, b, r = result["runs"]["a"], result["runs"]["b"], result["ratios"]
    return [
        (
            "wall time",
            _seconds(a["run_seconds"]),
            _seconds(b["run_seconds"]),
            _times(r["run_seconds"]),
        ),
        (
            "throughput",
            _rate(a["average_rate"]),
            _rate(b["average_rate"]),
            _times(r["average_rate"]),
        ),
        ("tasks done", f"{a['done']:,}", f"{b['done']:,}", ""),
        ("erred", f"{a['erred']:,}", f"{b['erred']:,}", ""),
        (
            "peak memory",
            _bytes(a["peak_memory"]),
            _bytes(b["peak_memory"]),
            _times(r["peak_memory"]),
        ),
    ]


def _cells(row: Mapping[str, Any]) -> list[str]:
    """Text cells of a prefix row: tasks, p50, p90, p99 and compute of a and
    b, with the ratios."""
    a, b, r = row["a"] or {}, row["b"] or {}, row["ratios"]
    return [
        f"{a.get('done', 0):,}/{b.get('done', 0):,}",
        f"{_seconds(a.get('p50'))} -> {_seconds(b.get('p50'))}",
        _times(r["p50"]),
        _times(r["p90"]),
        _times(r["p99"]),
        f"{_seconds(a.get('compute'))} -> {_seconds(b.get('compute'))}",
        f"{a.get('erred', 0):,}/{b.get('erred', 0):,}",
    ]


_HEAD = ("prefix", "verdict", "tasks a/b", "p50 a -> b", "p50", "p90", "p99")
_HEAD2 = ("compute a -> b", "erred a/b")


def format_diff(result: Mapping[str, Any], *, width: int = 40) -> str:
    """The diff as text for a terminal: new errors, the runs, then a table of
    prefixes, most significant first. Names are made safe to print."""
    lines: list[str] = []
    if result["new_errors"]:
        lines.append("New errors in b:")
        for e in result["new_errors"]:
            lines.append(
                f"  {safe_text(e['prefix'], width)}: {safe_text(e['type'], 80)}"
                f" ({e['count']:,})"
            )
        lines.append("")
    lines.append(f"{'':14}{'a':>14}{'b':>14}{'b/a':>8}")
    for label, va, vb, ratio in _run_lines(result):
        lines.append(f"{label:14}{va:>14}{vb:>14}{ratio:>8}")
    lines.append("")
    table = [[*_HEAD, *_HEAD2]]
    for row in result["prefixes"]:
        table.append([safe_text(row["prefix"], width), row["verdict"], *_cells(row)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for label, key in (
        ("Insights only in a:", "only_a"),
        ("Insights only in b:", "only_b"),
    ):
        if result["insights"][key]:
            lines.append("")
            lines.append(label)
            for i in result["insights"][key]:
                lines.append(
                    f"  [{safe_text(i['severity'], 10)}] {safe_text(i['kind'], 30)}"
                    f" {safe_text(i['subject'], width)}: {safe_text(i['message'], 120)}"
                )
    counts = ", ".join(
        f"{len(names)} {v}" for v, names in result["verdicts"].items() if names
    )
    lines.append("")
    lines.append(f"Prefixes: {counts or 'none'}")
    return "\n".join(lines)


#: Figures of a prefix in the HTML diff: (heading, field, with a b/a column).
_HTML_FIGURES = (
    ("tasks done", "done", False),
    ("p50", "p50", True),
    ("p90", "p90", True),
    ("p99", "p99", True),
    ("compute", "compute", True),
    ("erred", "erred", False),
)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child,td:nth-child(2){text-align:left}
.slower{background:#fdd}.faster{background:#dfd}.new{background:#ffd}
.gone{background:#eee}.errors{color:#a00}
"""


def diff_html(
    result: Mapping[str, Any],
    *,
    label_a: str = "a",
    label_b: str = "b",
    title: str = "dask-monitor: run b against run a",
) -> str:
    """A standalone HTML page of the diff: the two runs side by side, then the
    prefixes with the figures of each run. Every name and text is escaped."""
    e = html.escape
    la, lb = e(label_a), e(label_b)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>a: <b>{la}</b><br>b: <b>{lb}</b> (b/a: the ratio of b to a)</p>",
    ]
    if result["new_errors"]:
        parts.append("<h2 class='errors'>New errors in b</h2><ul class='errors'>")
        for err in result["new_errors"]:
            parts.append(
                f"<li><b>{e(err['prefix'])}</b>: {e(err['type'])} "
                f"({err['count']:,}) <code>{e(err['exception'][:300])}</code></li>"
            )
        parts.append("</ul>")
    parts.append(f"<h2>Runs</h2><table><tr><th></th><th>{la}</th><th>{lb}</th>")
    parts.append("<th>b/a</th></tr>")
    for label, va, vb, ratio in _run_lines(result):
        parts.append(
            f"<tr><td>{label}</td><td>{e(va)}</td><td>{e(vb)}</td>"
            f"<td>{e(ratio)}</td></tr>"
        )
    # The prefixes: each figure of run a beside the same of run b, then b/a.
    parts.append("</table><h2>Prefixes</h2><table><tr>")
    parts.append("<th rowspan='2'>prefix</th><th rowspan='2'>verdict</th>")
    for label, _, with_ratio in _HTML_FIGURES:
        span = 3 if with_ratio else 2
        parts.append(f"<th colspan='{span}'>{e(label)}</th>")
    parts.append("</tr><tr>")
    for _, _, with_ratio in _HTML_FIGURES:
        parts.append("<th>a</th><th>b</th>" + ("<th>b/a</th>" if with_ratio else ""))
    parts.append("</tr>")
    for row in result["prefixes"]:
        verdict = row["verdict"]
        a, b = row["a"] or {}, row["b"] or {}
        cells = [e(row["prefix"]), e(verdict)]
        for _, name, with_ratio in _HTML_FIGURES:
            show = _seconds if name in ("p50", "p90", "p99", "compute") else _count
            cells += [e(show(a.get(name))), e(show(b.get(name)))]
            if with_ratio:
                cells.append(e(_times(row["ratios"][name])))
        parts.append(
            f"<tr class='{e(verdict)}' title='{e(row['reason'])}'>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    parts.append("</table>")
    for label, key in (
        ("Insights only in a", "only_a"),
        ("Insights only in b", "only_b"),
    ):
        if result["insights"][key]:
            parts.append(f"<h2>{label}</h2><ul>")
            for i in result["insights"][key]:
                parts.append(
                    f"<li>[{e(i['severity'])}] {e(i['kind'])} "
                    f"<b>{e(i['subject'])}</b>: {e(i['message'])}</li>"
                )
            parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
