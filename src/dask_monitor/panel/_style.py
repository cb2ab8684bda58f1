"""Colours, fonts and the Bokeh theme: Dask's dashboard look."""

from __future__ import annotations

from hashlib import md5

from bokeh.themes import Theme

# Dask's task colours (distributed.utils.palette: viridis(18)), so a prefix has
# the same colour here as in Dask's task stream and progress bars.
PALETTE: tuple[str, ...] = (
    "#440154",
    "#471669",
    "#472A79",
    "#433C84",
    "#3C4D8A",
    "#355D8C",
    "#2E6C8E",
    "#287A8E",
    "#23898D",
    "#1E978A",
    "#20A585",
    "#2EB27C",
    "#45BF6F",
    "#64CB5D",
    "#88D547",
    "#AFDC2E",
    "#D7E219",
    "#FDE724",
)

#: Colours of task states, as Dask's progress bars draw them.
ERRED = "#000000"
PROCESSING = "#808080"
WAITING = "#c8c8c8"
#: Dask's dashboard blue (worker bars, throughput).
BLUE = "#1f77b4"
REMOVED = "#bbbbbb"
MUTED = "#6b6b6b"
FONT = (
    "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', "
    "Arial, sans-serif"
)

_cache: dict[str, str] = {}


def color_of(name: str) -> str:
    """Dask's colour for a task prefix (same hash as ``distributed.utils.color_of``)."""
    color = _cache.get(name)
    if color is None:
        n = int(md5(name.encode(), usedforsecurity=False).hexdigest()[:8], 16)
        color = PALETTE[n % len(PALETTE)]
        if len(_cache) < 100_000:
            _cache[name] = color
    return color


#: The theme of Dask's dashboard (distributed/dashboard/theme.yaml), plus fonts.
THEME = Theme(
    json={
        "attrs": {
            "Plot": {
                "background_fill_color": None,
                "border_fill_color": None,
                "min_border_left": 10,
                "min_border_right": 10,
                "outline_line_color": None,
            },
            "Toolbar": {"logo": None},
            "Title": {"text_font_size": "11pt", "text_font_style": "bold"},
            "Axis": {
                "major_label_text_font_size": "9pt",
                "axis_line_color": "#bbbbbb",
                "major_tick_line_color": "#bbbbbb",
                "minor_tick_line_color": None,
            },
            "Grid": {"grid_line_color": "#eeeeee"},
        }
    }
)

#: CSS of the summary header (inside the Div's shadow root).
SUMMARY_CSS = f"""
:host {{ font-family: {FONT}; }}
.dm-summary {{ display: flex; flex-wrap: wrap; align-items: baseline;
  gap: 4px 28px; padding: 4px 12px 0 12px; color: #222; }}
.dm-stat {{ display: flex; flex-direction: column; }}
.dm-label {{ font-size: 11px; text-transform: uppercase; letter-spacing: .04em;
  color: {MUTED}; }}
.dm-value {{ font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }}
.dm-value small {{ font-size: 13px; font-weight: 400; color: {MUTED}; }}
.dm-bad {{ color: #c0392b; }}
.dm-note {{ font-size: 12px; color: {MUTED}; padding: 2px 12px; }}
.dm-health {{ font-size: 12px; color: {MUTED}; padding: 0 12px;
  font-variant-numeric: tabular-nums; }}
.dm-health b {{ color: #333; font-weight: 600; }}
"""

TABLE_CSS = """
.slick-cell { font-size: 12px; }
.slick-header-column { font-size: 12px; font-weight: 600; }
.bk-data-table { z-index: 0; }
"""

PRE_CSS = f"""
:host > div {{ width: 100%; height: 100%; }}
pre {{ font-size: 11px; line-height: 1.35; margin: 0; padding: 6px 8px;
  background: #f7f7f7; border: 1px solid #e3e3e3; border-radius: 3px;
  white-space: pre-wrap; word-break: break-word; height: 100%; width: 100%;
  box-sizing: border-box; overflow: auto; }}
:host {{ font-family: {FONT}; }}
"""

#: Colours of insight severities (text and left border); unknown ones: muted.
SEVERITY_COLORS: dict[str, str] = {
    "critical": "#c0392b",
    "warning": "#b26a00",
    "info": "#1f5f99",
}

#: CSS of the insights strip and list (inside the Divs' shadow roots).
INSIGHTS_CSS = f"""
:host {{ font-family: {FONT}; }}
.dm-ins {{ padding: 2px 12px; color: #222; font-size: 13px; }}
.dm-ins-none {{ color: {MUTED}; font-size: 12px; padding: 2px 12px; }}
.dm-ins-line {{ display: flex; gap: 8px; align-items: baseline; padding: 2px 0;
  line-height: 1.35; }}
.dm-ins-icon {{ font-weight: 700; width: 1.1em; text-align: center; flex: none; }}
.dm-ins-sev {{ font-size: 10px; font-weight: 700; text-transform: uppercase;
  letter-spacing: .04em; flex: none; width: 5.2em; }}
.dm-ins-msg {{ flex: 0 1 auto; overflow-wrap: anywhere; }}
.dm-ins-subject {{ color: {MUTED}; font-size: 12px; flex: none; max-width: 30%;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }}
.dm-ins-subject code, .dm-ins-head code {{ font-size: 11.5px; }}
.dm-ins-list {{ padding: 2px 12px 6px 12px; }}
.dm-ins-card {{ border-left: 4px solid {MUTED}; background: #fafafa;
  padding: 6px 10px; margin: 6px 0; font-size: 13px; color: #222;
  overflow-wrap: anywhere; }}
.dm-ins-head {{ font-size: 12px; color: {MUTED}; margin-bottom: 2px; }}
.dm-ins-head b {{ color: #333; }}
.dm-ins-card .dm-ins-msg {{ font-size: 14px; margin: 2px 0; }}
.dm-ins-evidence {{ font-size: 12px; color: #444;
  font-variant-numeric: tabular-nums; margin: 2px 0; }}
.dm-ins-evidence span {{ margin-right: 14px; white-space: nowrap; }}
.dm-ins-advice {{ font-size: 13px; margin-top: 2px; }}
.dm-ins-advice a {{ margin-left: 6px; white-space: nowrap; }}
.dm-ins-title {{ font-weight: bold; font-size: 11pt; color: #333;
  padding: 2px 12px; }}
""" + "".join(
    f".sev-{name} {{ color: {color}; }}\n"
    f".dm-ins-card.sev-{name} {{ border-left-color: {color}; color: #222; }}\n"
    for name, color in SEVERITY_COLORS.items()
)
