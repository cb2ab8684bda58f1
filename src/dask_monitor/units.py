"""Durations as people read them: ``"85µs"``, ``"3.2ms"``, ``"1.25s"``, ``"2m05s"``.

One formatter for every place a duration is shown as text (terminal views,
``watch``, reports, panel labels and tooltips), and its twin in JavaScript for
the panel's axes (:data:`DURATION_JS`), so that a tick and a tooltip of the
same value read the same. Standard library only: the panel, the CLI and the
text views import it; observers never need it.
"""

from __future__ import annotations

import math

__all__ = ["DURATION_JS", "format_duration", "plural"]


def format_duration(seconds: float | None) -> str:
    """A duration in seconds as short text with the unit that fits it.

    ``None`` (and NaN) read ``"-"``: unknown. Below a microsecond ``"ns"``,
    then ``"µs"``, ``"ms"`` and ``"s"`` with two or three significant digits,
    ``"2m05s"`` from a minute, ``"1h02m"`` from an hour, ``"3d04h"`` from
    two days and ``">999d"`` beyond. A negative duration (clocks of two
    machines) keeps its sign.

    Examples
    --------
    >>> [format_duration(s) for s in (0, 85e-6, 0.0032, 1.25, 125, 3720)]
    ['0s', '85µs', '3.2ms', '1.25s', '2m05s', '1h02m']
    """
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if math.isinf(seconds):
        return "\u221e"
    if seconds == 0:
        return "0s"
    # Each unit takes the value only if it still reads below its own limit
    # once rounded (999.7µs would print "1000µs": that is "1.0ms").
    for scale, unit in ((1e9, "ns"), (1e6, "\u00b5s"), (1e3, "ms"), (1.0, "s")):
        value = seconds * scale
        if unit == "s" and round(value, 1) >= 60:
            break
        text = _significant(value, 2 if unit == "s" else 1)
        if float(text) < 1000 or unit == "s":
            return text + unit
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    if seconds >= 1000 * 86400:  # an ETA from a rate near zero: "long"
        return ">999d"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days}d{hours:02d}h"


def _significant(value: float, decimals_below_10: int) -> str:
    """``value`` with ``decimals_below_10`` decimals under 10, one under 100,
    none above: ``"1.25"``, ``"3.2"``, ``"42.5"``, ``"850"``."""
    if round(value, decimals_below_10) < 10:
        text = f"{value:.{decimals_below_10}f}"
    elif round(value, 1) < 100:
        text = f"{value:.1f}"
    else:
        return f"{value:.0f}"
    # "3.20" and "3.0" say no more than "3.2" and "3"
    return text.rstrip("0").rstrip(".") if "." in text else text


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 task"``, ``"2 tasks"``, ``"1,000 tasks"``: a count and its noun."""
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {noun}"


#: :func:`format_duration` in JavaScript: the body of a Bokeh
#: ``CustomJSTickFormatter`` (``tick`` is the value in seconds).
DURATION_JS = """
function sig(v, d) {
  let t
  if (Number(v.toFixed(d)) < 10) t = v.toFixed(d)
  else if (Number(v.toFixed(1)) < 100) t = v.toFixed(1)
  else return v.toFixed(0)
  if (t.indexOf(".") >= 0) t = t.replace(/0+$/, "").replace(/\\.$/, "")
  return t
}
function fmt(s) {
  if (s == null || Number.isNaN(s)) return "-"
  if (s < 0) return "-" + fmt(-s)
  if (!Number.isFinite(s)) return "\\u221e"
  if (s == 0) return "0s"
  const units = [[1e9, "ns"], [1e6, "\\u00b5s"], [1e3, "ms"], [1, "s"]]
  for (const [scale, unit] of units) {
    const v = s * scale
    if (unit == "s" && Number(v.toFixed(1)) >= 60) break
    const t = sig(v, unit == "s" ? 2 : 1)
    if (Number(t) < 1000 || unit == "s") return t + unit
  }
  const m = Math.round(s), mm = Math.floor(m / 60), ss = m % 60
  if (mm < 60) return mm + "m" + String(ss).padStart(2, "0") + "s"
  const h = Math.round(s / 60), hh = Math.floor(h / 60), hm = h % 60
  if (hh < 48) return hh + "h" + String(hm).padStart(2, "0") + "m"
  if (s >= 1000 * 86400) return ">999d"
  const d = Math.round(s / 3600)
  return Math.floor(d / 24) + "d" + String(d % 24).padStart(2, "0") + "h"
}
return fmt(tick)
"""
