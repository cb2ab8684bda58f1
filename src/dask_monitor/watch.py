"""``dask-monitor watch``: a live terminal view of a cluster's monitor.

Draws from the snapshot only (see :mod:`dask_monitor.text`): the progress line,
the most severe insight, the busiest prefixes with bars, errors and recent
alerts, redrawn in place
(ANSI) when the output is a terminal, one frame after another otherwise.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from dask_monitor.snapshot import Snapshot
from dask_monitor.text import (
    _error_text,
    format_duration,
    format_insight,
    format_line,
    insights_of,
    is_finished,
    safe_text,
)

__all__ = ["SchedulerGone", "render", "span_labels", "watch"]

_HOME_CLEAR = "\x1b[H\x1b[2J"


def _bar(done: int, total: int, width: int) -> str:
    if width <= 0:
        return ""
    filled = int(width * done / total) if total else width
    return "█" * filled + "·" * (width - filled)


def span_labels(spans: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A label per span id: its full name (``"etl/load"``), with the start of
    its id where two listed spans share a name (Dask opens a new ``default``
    span for each burst of work outside any span)."""
    names = {span_id: str(row.get("name") or span_id) for span_id, row in spans.items()}
    counts = Counter(names.values())
    return {
        span_id: name
        if counts[name] == 1 or name == span_id
        else f"{name} ({span_id[:8]})"
        for span_id, name in names.items()
    }


def render(snapshot: Snapshot, *, top: int = 10, width: int = 100) -> str:
    """One frame of the terminal view, as text."""
    lines = [format_line(snapshot)]
    insights = insights_of(snapshot)
    if insights:  # the most severe one, and how many more there are
        others = f" (+{len(insights) - 1:,} more)" if len(insights) > 1 else ""
        line = format_insight(insights[0], max(width - len(others) - 9, 20))
        lines.append(f"Insight: {line}{others}")
    lines.append("")
    finished = is_finished(snapshot)
    rows = sorted(
        snapshot["prefixes"].items(),
        key=lambda kv: (-kv[1]["remaining"], -kv[1]["last_active"], kv[0]),
    )[:top]
    names = {name: safe_text(name) for name, _ in rows}
    name_w = min(max((len(n) for n in names.values()), default=6), 28)
    bar_w = max(width - name_w - 48, 10)
    for name, row in rows:
        label = safe_text(names[name], name_w)
        if finished:  # no pace to speak of: how long its tasks took
            figures = f"p50 {format_duration(row['durations']['p50']):>7}"
        else:
            eta = format_duration(row["eta"]) if row["remaining"] else "done"
            figures = f"{row['rate']:>6.1f}/s ETA {eta:>6}"
        lines.append(
            f"{label:<{name_w}} {_bar(row['done'], row['total'], bar_w)} "
            f"{row['done']:>7,}/{row['total']:<7,} {figures}"
            + (f" err {row['erred']:,}" if row["erred"] else "")
            + (f" retried {row['retried']:,}" if row.get("retried") else "")
        )
    more = len(snapshot["prefixes"]) - len(rows) + snapshot["prefixes_folded"]
    if more > 0:
        lines.append(f"... {more:,} more prefixes")
    if snapshot["errors"]:
        lines += ["", "Errors:"]
        for err in snapshot["errors"][:5]:
            prefix = safe_text(err["prefix"], 32)
            text = safe_text(_error_text(err), max(width - 20 - len(prefix), 10))
            lines.append(f"  {err['count']:>5,} x {prefix}: {text}")
    alerts = (snapshot.get("alerts") or {}).get("recent") or []
    if alerts:
        lines += ["", "Alerts:"]
        for alert in alerts[-5:]:
            lines.append(
                safe_text(
                    f"  [{alert.get('severity', '?')}] {alert.get('kind', '?')}: "
                    f"{alert.get('message', '')}",
                    width,
                )
            )
    spans = dict(list((snapshot.get("spans") or {}).items())[:5])
    if len(snapshot.get("spans") or {}) > 1:
        lines += ["", "Spans (most recent first):"]
        labels = {k: safe_text(v) for k, v in span_labels(spans).items()}
        label_w = min(max(len(v) for v in labels.values()), 48)
        for span_id, srow in spans.items():
            label = _clip(labels[span_id], label_w)
            lines.append(
                f"  {label:<{label_w}} {srow['done']:>7,}/{srow['total']:<7,}"
                + (f" err {srow['erred']:,}" if srow.get("erred") else "")
            )
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return safe_text(text, width)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return safe_text(text[0] if text else type(exc).__name__, 200)


class SchedulerGone(ConnectionError):
    """The scheduler cannot be reached, or stopped answering."""


def watch(
    address: str,
    *,
    interval: float = 1.0,
    once: bool = False,
    top: int = 10,
    span: str | None = None,
    out: IO[str] | None = None,
    until: Callable[[], bool] | None = None,
    timeout: float = 5.0,
) -> Snapshot:
    """Connect to the scheduler at ``address`` and show the monitor's view.

    Attaches the monitor if it is not running (and detaches on leaving). With
    ``once``, prints one frame and returns; else redraws every ``interval``
    seconds until Ctrl+C. Returns the last snapshot.

    Raises
    ------
    SchedulerGone
        If the scheduler cannot be reached within ``timeout`` seconds, or
        stops answering for that long while watched.
    """
    from distributed import Client

    from dask_monitor.client import Monitor

    out = out if out is not None else sys.stdout
    live = out.isatty() and not once
    snapshot: Any = None
    from distributed.comm.addressing import resolve_address

    try:
        # Checked first: a Client made from a bad address fails, then stalls
        # in its finaliser.
        resolve_address(address)
        client = Client(address, set_as_default=False, timeout=timeout)
    except (OSError, ValueError, TypeError) as e:
        raise SchedulerGone(
            f"cannot connect to the scheduler at {address}: {_reason(e)}"
        ) from None
    try:
        monitor = Monitor.attach(client)
        try:
            while True:
                try:
                    if client.status != "running":
                        raise ConnectionError(f"the client is {client.status}")
                    snapshot = monitor.snapshot(flush=True, span=span, timeout=timeout)
                except (OSError, TimeoutError) as e:
                    monitor.attached = False  # nobody to detach from
                    raise SchedulerGone(
                        f"the scheduler at {address} is gone: {_reason(e)}"
                    ) from None
                width = shutil.get_terminal_size((100, 30)).columns
                frame = render(snapshot, top=top, width=width)
                out.write((_HOME_CLEAR if live else "") + frame + "\n")
                out.flush()
                if once or (until is not None and until()):
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            if monitor.attached:
                monitor.detach()
    finally:
        client.close(timeout=min(timeout, 2.0))
    result: Snapshot = snapshot
    return result
