"""The history server: ``dask-monitor history serve DIR_OR_URL``.

One Bokeh server, like Dask's dashboard, serves:

- ``/``: the runs recorded in the directory (a :class:`~dask_monitor.runs.RunIndex`),
  newest first, ``?page=N`` of ``?size=M`` runs, asked again of the index on
  each load (and the page reloads itself every ``refresh`` seconds, so new
  logs appear);
- ``/run?log=<file name>``: one run's replayed panel and report, under a bar
  that links back to the list and says whether the run is still being written;
- ``/report?log=<file name>``: the standalone HTML report ``dask-monitor
  report`` writes;
- ``/panel?log=<file name>``: the Bokeh application ``/run`` embeds.

Only file names the index lists are opened: anything else, a path with
``..`` or a name made up, is a 404. Replays are cached per log identity (its
segments' sizes and modification times), so reopening a run is cheap and a
run still being written is replayed again once it has grown.

Everything read from a log (run names, tags, cluster addresses, file names,
exception text) is untrusted: the list is plain HTML built with
``html.escape``, served with a Content-Security-Policy that allows no script;
the panel escapes its own texts.
"""

from __future__ import annotations

import datetime
import html
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from dask_monitor.config import MonitorConfig
from dask_monitor.runs import RunIndex, RunSummary
from dask_monitor.snapshot import Snapshot
from dask_monitor.units import format_duration

from ._style import THEME
from .serve import free_port

__all__ = [
    "CACHED_RUNS",
    "MAX_PAGE_SIZE",
    "PAGE_SIZE",
    "REFRESH_SECONDS",
    "History",
    "Replayed",
    "list_html",
    "serve_history",
]

#: Runs on a page of the list, unless ``?size=`` says otherwise.
PAGE_SIZE = 25
#: The largest ``?size=`` taken.
MAX_PAGE_SIZE = 500
#: Seconds between the list's own reloads (new logs appear); 0 for none.
REFRESH_SECONDS = 30
#: Replayed runs kept in memory.
CACHED_RUNS = 8


def log_name(path: str) -> str:
    """The file name of a log's path or URL: what links name a run by."""
    return path.rstrip("/").rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]


@dataclass(frozen=True, slots=True)
class Replayed:
    """One run replayed: what its pages show.

    Attributes
    ----------
    summary
        The run's line in the list when it was replayed.
    snapshot, config
        The snapshot at the end of the log (at its last complete record for
        a log still being written) and the settings it was recorded with.
    info
        ``source`` and ``versions`` for the report's heading
        (:func:`dask_monitor.replay.run_info`).
    """

    summary: RunSummary
    snapshot: Snapshot
    config: MonitorConfig
    info: dict[str, Any]

    @property
    def title(self) -> str:
        """The run's name, or its file's when it has none."""
        return self.summary.run or log_name(self.summary.path)

    @property
    def label(self) -> str:
        """:attr:`title`, and whether the run is in progress (a page's title)."""
        done = self.summary.complete
        return self.title if done else f"{self.title} (in progress)"


class History:
    """The runs of one directory (through a :class:`RunIndex`) and their
    replays, cached per log identity.

    Thread-safe: the server asks it from worker threads (a listing or a
    replay may read object storage) as well as from its event loop.

    Parameters
    ----------
    directory
        A local directory or a URL directory (``s3://bucket/runs``).
    cached
        Replayed runs kept, the least recently opened dropped first.
    """

    def __init__(self, directory: str | os.PathLike[str], cached: int = CACHED_RUNS):
        self.directory = os.fspath(directory)
        self.index = RunIndex(self.directory)
        self._cached = cached
        self._index_lock = threading.Lock()
        self._lock = threading.Lock()
        self._replays: OrderedDict[tuple[Any, ...], Replayed] = OrderedDict()

    def page(self, page: int, size: int) -> tuple[list[RunSummary], int]:
        """``(runs, total)``: page ``page`` (from 1) of ``size`` runs, newest
        first, and how many runs there are."""
        with self._index_lock:
            return self.index.page(limit=size, offset=(page - 1) * size)

    def find(self, name: str) -> str | None:
        """The path (or URL) of the listed log whose file name is ``name``,
        or ``None``.

        Only names the index lists resolve: a path, a ``..`` or a name made
        up is never opened. The index finds the log by its name (reading no
        other log's summary); when it finds none or several (a run *named*
        like another log's file), every listed log is looked at.
        """
        if not name:
            return None
        try:
            with self._index_lock:
                path = self.index.find(name)
        except LookupError:  # none, or several: the listing says which
            with self._index_lock:
                paths = self.index.refresh()  # the listing: no summary read
            return next((p for p in paths if log_name(p) == name), None)
        # find() also takes run names, and file names without ".dmlog"
        return path if log_name(path) == name else None

    def replayed(self, name: str) -> Replayed | None:
        """The replay of the run ``name`` (see :meth:`find`), from the cache
        while its log is unchanged; ``None`` for no such run.

        Raises what :func:`dask_monitor.replay.replay_pipeline` raises for a
        log that cannot be replayed (``EventLogError``, ``OSError``).
        """
        from dask_monitor.replay import replay_pipeline, run_info
        from dask_monitor.runs import run_summary
        from dask_monitor.sinks.eventlog import EventLogWarning

        path = self.find(name)
        if path is None:
            return None
        key = (path, *_identity(path))
        with self._lock:
            found = self._replays.get(key)
            if found is not None:
                self._replays.move_to_end(key)
                return found
        with warnings.catch_warnings():  # a torn tail: a run still being written
            warnings.simplefilter("ignore", EventLogWarning)
            summary = run_summary(path)
            pipeline = replay_pipeline(path)
            info = run_info(path)
        replayed = Replayed(summary, pipeline.snapshot(), pipeline.config, info)
        with self._lock:
            self._replays[key] = replayed
            while len(self._replays) > self._cached:
                self._replays.popitem(last=False)
        return replayed


def _identity(path: str) -> tuple[Any, ...]:
    """What changes when the log at ``path`` does: each segment's name, size
    and modification time (or what its store has in their place)."""
    from dask_monitor.sinks.eventlog import EventLog

    log = EventLog.open(path)
    out: list[Any] = []
    for f in log.files:
        if log.fs is None:
            st = os.stat(f)
            out.append((str(f), st.st_size, st.st_mtime_ns))
        else:
            info = log.fs.info(f)
            stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag")
            out.append((str(f), info.get("size"), str(stamp)))
    return tuple(out)


# -- the list ------------------------------------------------------------------------

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { background: #1f77b4; color: white; padding: 8px 16px; }
header a { color: white; text-decoration: none; }
header h1 { font-size: 15pt; margin: 0; font-weight: 600; display: inline; }
header .dm-dir { margin-left: 14px; font-size: 10pt; opacity: 0.9; }
main { padding: 10px 16px; }
p.dm-note { color: #555; font-size: 10pt; margin: 6px 0 10px 0; }
table { border-collapse: collapse; font-size: 10pt; width: 100%; }
th, td { padding: 5px 10px 5px 0; text-align: left; vertical-align: top;
         border-bottom: 1px solid #eee; }
th { color: #555; font-weight: 600; border-bottom: 1px solid #ccc;
     white-space: nowrap; }
td.dm-num, th.dm-num { text-align: right; }
td.dm-when, td.dm-num { white-space: nowrap; }
td .dm-file { color: #888; font-size: 9pt; }
td.dm-erred { color: #c00; font-weight: 600; }
.dm-tag { display: inline-block; background: #eef3f8; border-radius: 3px;
          padding: 0 5px; margin: 0 3px 2px 0; font-size: 9pt; }
.dm-state { font-size: 9pt; border-radius: 3px; padding: 1px 6px; white-space: nowrap; }
.dm-complete { background: #e6f4ea; color: #1e6b34; }
.dm-progress { background: #fff4d6; color: #8a5a00; }
.dm-unreadable { background: #fde8e8; color: #a00; }
td.dm-reason { color: #a00; font-size: 9pt; }
nav.dm-pages { margin: 12px 0; font-size: 10pt; }
nav.dm-pages a { margin-right: 12px; }
a { color: #1f5fa0; }
div.dm-panel { padding: 0 6px; }
nav.dm-run-bar { font-size: 10pt; margin: 2px 0; }
nav.dm-run-bar a { margin-right: 16px; }
p.dm-progress-note { background: #fff4d6; color: #5c3c00; font-size: 10pt;
                     border-left: 4px solid #e0a800; padding: 6px 10px;
                     margin: 8px 0 0 0; }
"""

#: The list holds no script: the browser is told to run none.
LIST_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"


def _utc(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    try:
        when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    except (OverflowError, OSError, ValueError):  # a hostile header's number
        return "-"
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _query(**args: Any) -> str:
    """A query string, escaped for an HTML attribute."""
    return html.escape("?" + urlencode(args))


def _row(r: RunSummary) -> str:
    e = html.escape
    file = log_name(r.path)
    if r.error is not None:
        return (
            f"<tr class='dm-row dm-unreadable-row'><td>{e(file)}</td>"
            "<td class='dm-when'>-</td><td class='dm-num'>-</td>"
            "<td class='dm-num'>-</td><td class='dm-num'>-</td>"
            f"<td class='dm-reason' colspan='2'>{e(r.error)}</td>"
            "<td><span class='dm-state dm-unreadable'>unreadable</span></td>"
            "<td></td></tr>"
        )
    link = "run" + _query(log=file)
    name = e(r.run) if r.run else e(file)
    under = f"<br><span class='dm-file'>{e(file)}</span>" if r.run else ""
    tags = "".join(
        f"<span class='dm-tag'>{e(k)}={e(v)}</span>" for k, v in sorted(r.tags.items())
    )
    state = (
        "<span class='dm-state dm-complete'>complete</span>"
        if r.complete
        else "<span class='dm-state dm-progress'>in progress</span>"
    )
    erred = " dm-erred" if r.erred else ""
    return (
        f"<tr class='dm-row'><td><a class='dm-open' href='{link}'>{name}</a>"
        f"{under}</td>"
        f"<td class='dm-when'>{_utc(r.started)}</td>"
        f"<td class='dm-num'>{e(format_duration(r.seconds))}</td>"
        f"<td class='dm-num'>{r.tasks:,}</td>"
        f"<td class='dm-num{erred}'>{r.erred:,}</td>"
        f"<td>{e(r.cluster or '-')}</td><td>{tags or '-'}</td>"
        f"<td>{state}</td>"
        f"<td><a href='report{_query(log=file)}'>report</a></td></tr>"
    )


def _page_links(page: int, size: int, total: int) -> str:
    pages = max(1, -(-total // size))
    links = []
    if page > 1:
        links.append(f"<a href='{_query(page=page - 1, size=size)}'>&larr; newer</a>")
    links.append(f"page {page} of {pages}")
    if page < pages:
        links.append(f"<a href='{_query(page=page + 1, size=size)}'>older &rarr;</a>")
    return "<nav class='dm-pages'>" + " ".join(links) + "</nav>"


def _document(title: str, body: str, *, head: str = "") -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>{head}</head>"
        f"<body>{body}</body></html>"
    )


def _header(directory: str) -> str:
    from dask_monitor.storage import show

    return (
        "<header><a href='/'><h1>dask-monitor history</h1></a>"
        f"<span class='dm-dir'>{html.escape(show(directory))}</span></header>"
    )


def list_html(
    directory: str,
    runs: list[RunSummary],
    total: int,
    *,
    page: int = 1,
    size: int = PAGE_SIZE,
    refresh: float = REFRESH_SECONDS,
) -> str:
    """The list page: ``runs`` (page ``page`` of ``size`` out of ``total``)
    as one table, every text from a log escaped."""
    head = f"<meta http-equiv='refresh' content='{refresh:g}'>" if refresh > 0 else ""
    body = _header(directory) + "<main>"
    if total == 0:
        body += (
            "<p class='dm-empty'>No runs recorded here yet: event logs "
            "(<code>*.dmlog</code>) written by <code>Monitor.record</code> "
            "or <code>monitor.record.directory</code> appear here.</p>"
        )
    elif not runs:
        body += (
            f"<p class='dm-empty'>No runs on page {page} "
            f"(there are {total:,}). <a href='{_query(page=1, size=size)}'>"
            "Newest runs</a></p>"
        )
    else:
        first = (page - 1) * size + 1
        body += (
            f"<p class='dm-note'>Runs {first:,}&ndash;{first + len(runs) - 1:,} "
            f"of {total:,}, newest first. Times are UTC.</p>"
        )
        cols = (
            ("Run", ""),
            ("Start (UTC)", ""),
            ("Duration", "dm-num"),
            ("Tasks", "dm-num"),
            ("Errors", "dm-num"),
            ("Cluster", ""),
            ("Tags", ""),
            ("State", ""),
            ("", ""),
        )
        tips = {
            "Tasks": "tasks that finished (erred ones are counted apart)",
            "Duration": "from the first task event to the last",
        }
        heads = "".join(
            f"<th class='{c}' title='{tips[label]}'>{label}</th>"
            if label in tips
            else f"<th class='{c}'>{label}</th>"
            for label, c in cols
        )
        rows = "".join(_row(r) for r in runs)
        body += f"<table class='dm-runs'><tr>{heads}</tr>{rows}</table>"
    if total > size:
        body += _page_links(page, size, total)
    body += "</main>"
    return _document("dask-monitor history", body, head=head)


def _run_html(directory: str, replayed: Replayed, name: str, script: str) -> str:
    bar = (
        "<nav class='dm-run-bar'><a href='/'>&larr; all runs</a>"
        f"<a href='report{_query(log=name)}'>standalone report</a></nav>"
    )
    if not replayed.summary.complete:
        bar += (
            "<p class='dm-run-state dm-progress-note'><b>In progress</b>: this "
            "log has no footer yet (its run is still being written, or its "
            "writer stopped). It is shown up to its last complete record; "
            "reload the page to see more.</p>"
        )
    body = (
        _header(directory) + f"<main>{bar}</main><div class='dm-panel'>{script}</div>"
    )
    return _document(f"{replayed.label} - dask-monitor history", body)


#: Addresses only this machine reaches.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def websocket_origins(address: str, port: int) -> list[str]:
    """The pages whose panels may open the server's websocket: on a loopback
    address only its own; on another (``--address 0.0.0.0``, chosen to share
    the history) any, as Dask's dashboard allows, since browsers then reach
    it by names the server cannot know."""
    if address in _LOOPBACK:
        return [f"{host}:{port}" for host in ("127.0.0.1", "localhost")]
    return ["*"]


def _reason(exc: BaseException) -> str:
    """An exception as one short line (its text may come from a log)."""
    return f"{type(exc).__name__}: {exc}"[:2000]


# -- the server ----------------------------------------------------------------------


def serve_history(
    directory: str | os.PathLike[str],
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    page_size: int = PAGE_SIZE,
    refresh: float = REFRESH_SECONDS,
) -> Any:
    """A started Bokeh server browsing the runs in ``directory`` (see the
    module's docstring for its pages).

    Run its loop with ``server.io_loop.start()``; the list is at
    ``http://{address}:{server.port}/``. Call it in the thread whose event
    loop will run the server.
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.document import Document
    from bokeh.embed import server_document
    from bokeh.models.widgets import Div
    from bokeh.server.server import Server
    from tornado.ioloop import IOLoop
    from tornado.web import RequestHandler

    history = History(directory)
    shown = history.directory

    class _Handler(RequestHandler):
        def set_default_headers(self) -> None:
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Referrer-Policy", "no-referrer")

        def _int(self, name: str, default: int, high: int) -> int:
            try:
                value = int(self.get_argument(name, str(default)))
            except ValueError:
                return default
            return min(max(value, 1), high)

        def _missing(self, name: str) -> None:
            self.set_status(404)
            self.set_header("Content-Security-Policy", LIST_CSP)
            self.finish(
                _document(
                    "No such run",
                    _header(shown) + f"<main><p class='dm-empty'>No run "
                    f"<code>{html.escape(name)}</code> is listed here. "
                    "<a href='/'>All runs</a></p></main>",
                )
            )

        def _failed(self, name: str, exc: BaseException) -> None:
            """Say why the run ``name`` cannot be shown (a log is untrusted)."""
            self.set_status(422)
            self.set_header("Content-Security-Policy", LIST_CSP)
            reason = html.escape(_reason(exc))
            self.finish(
                _document(
                    "Run not shown",
                    _header(shown) + f"<main><p class='dm-reason'>"
                    f"{html.escape(name)} could not be shown: {reason}</p>"
                    "<p><a href='/'>All runs</a></p></main>",
                )
            )

        async def _replayed(self) -> tuple[str, Replayed | None]:
            name = self.get_argument("log", "")
            try:
                found = await IOLoop.current().run_in_executor(
                    None, history.replayed, name
                )
            except Exception as exc:  # a log that cannot be replayed: say why
                self._failed(name, exc)
                return name, None
            if found is None:
                self._missing(name)
            return name, found

    class ListHandler(_Handler):
        async def get(self) -> None:
            page = self._int("page", 1, 10**9)
            size = self._int("size", page_size, MAX_PAGE_SIZE)
            self.set_header("Content-Security-Policy", LIST_CSP)
            try:
                runs, total = await IOLoop.current().run_in_executor(
                    None, history.page, page, size
                )
            except Exception as exc:  # the directory is gone, unreachable...
                self.set_status(503)
                reason = html.escape(_reason(exc))
                self.finish(
                    _document(
                        "dask-monitor history",
                        _header(shown) + "<main><p class='dm-reason'>The runs "
                        f"could not be listed: {reason}</p></main>",
                    )
                )
                return
            self.finish(
                list_html(shown, runs, total, page=page, size=size, refresh=refresh)
            )

    class RunHandler(_Handler):
        async def get(self) -> None:
            name, replayed = await self._replayed()
            if replayed is None:
                return
            script = server_document(
                url="/panel", relative_urls=True, arguments={"log": name}
            )
            self.finish(_run_html(shown, replayed, name, script))

    class ReportHandler(_Handler):
        async def get(self) -> None:
            from .report import report_html

            name, replayed = await self._replayed()
            if replayed is None:
                return
            try:
                page = await IOLoop.current().run_in_executor(
                    None,
                    lambda: report_html(
                        replayed.snapshot,
                        title=replayed.title,
                        config=replayed.config,
                        finished=replayed.summary.complete,
                        **replayed.info,
                    ),
                )
            except Exception as exc:  # what a hostile log's values may do
                self._failed(name, exc)
                return
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(page)

    def make_doc(doc: Document) -> None:
        from .report import report_root

        context: Any = doc.session_context  # a BokehSessionContext: has the request
        request = context.request if context is not None else None
        raw = request.arguments.get("log", [b""]) if request is not None else [b""]
        name = raw[0].decode("utf-8", "replace") if raw else ""
        doc.theme = THEME
        try:
            replayed = history.replayed(name)
            if replayed is None:
                text = f"{html.escape(name)} is not listed here"
                doc.add_root(Div(text=text))
                return
            root = report_root(
                replayed.snapshot,
                title=replayed.title,
                config=replayed.config,
                finished=replayed.summary.complete,
                **replayed.info,
            )
        except Exception as exc:  # a log is untrusted input: say why, in the page
            text = (
                f"{html.escape(name)} could not be shown: {html.escape(_reason(exc))}"
            )
            doc.add_root(Div(text=text, name="dm-history-error"))
            return
        doc.title = replayed.label
        doc.add_root(root)

    port = port or free_port(address)  # Bokeh wants the real port for its origins
    server = Server(
        {"/panel": Application(FunctionHandler(make_doc))},
        port=port,
        address=address,
        allow_websocket_origin=websocket_origins(address, port),
        extra_patterns=[
            (r"/", ListHandler),
            (r"/run", RunHandler),
            (r"/report", ReportHandler),
        ],
        use_index=False,
    )
    server.start()
    return server
