"""``dask-monitor watch``: a live terminal view of a cluster's monitor.

Draws from the snapshot only (see :mod:`dask_monitor.text`): the progress line,
the busiest prefixes with bars, errors and recent alerts, redrawn in place
(ANSI) when the output is a terminal, one frame after another otherwise.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from dask_monitor.snapshot import Snapshot
from dask_monitor.text import _error_text, format_duration, format_line

__all__ = ["render", "watch"]

_HOME_CLEAR = "\x1b[H\x1b[2J"


def _bar(done: int, total: int, width: int) -> str:
    if width <= 0:
        return ""
    filled = int(width * done / total) if total else width
    return "█" * filled + "·" * (width - filled)


def render(snapshot: Snapshot, *, top: int = 10, width: int = 100) -> str:
    """One frame of the terminal view, as text."""
    lines = [format_line(snapshot), ""]
    rows = sorted(
        snapshot["prefixes"].items(),
        key=lambda kv: (-kv[1]["remaining"], -kv[1]["last_active"], kv[0]),
    )[:top]
    name_w = min(max((len(n) for n, _ in rows), default=6), 28)
    bar_w = max(width - name_w - 48, 10)
    for name, row in rows:
        label = name if len(name) <= name_w else name[: name_w - 1] + "…"
        lines.append(
            f"{label:<{name_w}} {_bar(row['done'], row['total'], bar_w)} "
            f"{row['done']:>7,}/{row['total']:<7,} {row['rate']:>6.1f}/s "
            f"ETA {format_duration(row['eta']):>6}"
            + (f" err {row['erred']:,}" if row["erred"] else "")
            + (f" retried {row['retried']:,}" if row.get("retried") else "")
        )
    more = len(snapshot["prefixes"]) - len(rows) + snapshot["prefixes_folded"]
    if more > 0:
        lines.append(f"... {more:,} more prefixes")
    if snapshot["errors"]:
        lines += ["", "Errors:"]
        for err in snapshot["errors"][:5]:
            text = " ".join(_error_text(err).split())[: width - 20]
            lines.append(f"  {err['count']:>5,} x {err['prefix']}: {text}")
    alerts = (snapshot.get("alerts") or {}).get("recent") or []
    if alerts:
        lines += ["", "Alerts:"]
        for alert in alerts[-5:]:
            lines.append(
                f"  [{alert.get('severity', '?')}] {alert.get('kind', '?')}: "
                f"{alert.get('message', '')}"[:width]
            )
    spans = snapshot.get("spans") or {}
    if len(spans) > 1:
        lines += ["", "Spans:"]
        for srow in list(spans.values())[:5]:
            lines.append(f"  {srow['name']:<30} {srow['done']:>7,}/{srow['total']:<7,}")
    return "\n".join(lines)


def watch(
    address: str,
    *,
    interval: float = 1.0,
    once: bool = False,
    top: int = 10,
    span: str | None = None,
    out: IO[str] | None = None,
    until: Callable[[], bool] | None = None,
) -> Snapshot:
    """Connect to the scheduler at ``address`` and show the monitor's view.

    Attaches the monitor if it is not running (and detaches on leaving). With
    ``once``, prints one frame and returns; else redraws every ``interval``
    seconds until Ctrl+C. Returns the last snapshot.
    """
    from distributed import Client

    from dask_monitor.client import Monitor

    out = out if out is not None else sys.stdout
    live = out.isatty() and not once
    snapshot: Any = None
    with (
        Client(address, set_as_default=False) as client,
        Monitor.attach(client) as monitor,
    ):
        try:
            while True:
                snapshot = monitor.snapshot(flush=True, span=span)
                width = shutil.get_terminal_size((100, 30)).columns
                frame = render(snapshot, top=top, width=width)
                out.write((_HOME_CLEAR if live else "") + frame + "\n")
                out.flush()
                if once or (until is not None and until()):
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    result: Snapshot = snapshot
    return result
