"""Where the panel's pages live on a dashboard, and an IFrame of one for Jupyter.

URL arithmetic only: no Bokeh, no panel import, so that the client
(``Monitor.panel()``) and the demo can point at the pages without loading the
panel. The pages themselves are served by :mod:`dask_monitor.panel`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["INDIVIDUAL", "PAGES", "dashboard_prefix", "panel_iframe", "panel_url"]

#: The views with a page of their own, ``individual-monitor-<name>``.
INDIVIDUAL: tuple[str, ...] = (
    "progress",
    "throughput",
    "durations",
    "workers",
    "errors",
    "task-stream",
    "health",
    "alerts",
    "resources",
    "insights",
)

#: Short page names accepted by :func:`panel_url`, and their paths.
PAGES: dict[str, str] = {
    "monitor": "monitor",
    **{name: f"individual-monitor-{name}" for name in INDIVIDUAL},
}


def panel_url(dashboard_link: str, page: str = "monitor", *, prefix: str = "") -> str:
    """URL of a panel page, from the dashboard link of a client or cluster.

    ``dashboard_link`` is what Dask shows (``client.dashboard_link``: made from
    the config ``distributed.dashboard.link``, ``.../status`` by default, maybe
    through a proxy); the page lives beside ``status``. ``prefix`` is the
    scheduler's dashboard prefix (``--dashboard-prefix``), added when the link
    does not carry it already.

    Examples
    --------
    >>> panel_url("http://127.0.0.1:8787/status")
    'http://127.0.0.1:8787/monitor'
    >>> panel_url("https://hub.example/user/me/proxy/8787/status", "progress")
    'https://hub.example/user/me/proxy/8787/individual-monitor-progress'
    >>> panel_url("http://10.0.0.5:8787/status", prefix="/dask")
    'http://10.0.0.5:8787/dask/monitor'
    """
    path_name = PAGES.get(page, page.strip("/"))
    parts = urlsplit(dashboard_link)
    base = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    if prefix and not base.endswith(prefix):
        base += prefix
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/{path_name}", "", ""))


def dashboard_prefix(dask_scheduler: Any) -> str:
    """The URL prefix of ``dask_scheduler``'s dashboard (``""`` for none).

    Runs on the scheduler (``client.run_on_scheduler(dashboard_prefix)``).
    """
    for app in getattr(dask_scheduler.http_application, "applications", ()):
        prefix = getattr(app, "_prefix", None)
        if isinstance(prefix, str) and hasattr(app, "app_paths"):
            return prefix
    return ""


def panel_iframe(
    client: Any,
    page: str = "monitor",
    *,
    height: int | str = 1000,
    width: int | str = "100%",
    link: str | None = None,
) -> Any:
    """An ``IPython.display.IFrame`` of a panel page of ``client``'s scheduler.

    ``link`` replaces ``client.dashboard_link`` (e.g. a URL reachable from your
    browser when the scheduler's own address is not).
    """
    from IPython.display import IFrame

    link = link or client.dashboard_link
    if not link:
        raise RuntimeError(
            "the scheduler has no dashboard (Bokeh missing or dashboard disabled)"
        )
    prefix = ""
    if not getattr(client, "asynchronous", False):
        try:
            prefix = client.run_on_scheduler(dashboard_prefix)
        except Exception:  # e.g. a scheduler that refuses pickled functions
            prefix = ""
    return IFrame(panel_url(link, page, prefix=prefix), width=width, height=height)
