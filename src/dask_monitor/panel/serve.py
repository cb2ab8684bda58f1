"""A Bokeh server showing a snapshot's panel: ``dask-monitor replay --serve``."""

from __future__ import annotations

from typing import Any

from dask_monitor.config import MonitorConfig
from dask_monitor.snapshot import Snapshot

from ._style import THEME
from .report import report_root

__all__ = ["free_port", "serve_snapshot"]


def free_port(address: str) -> int:
    """A port free on ``address`` now (for a server that must know its port
    before it listens: Bokeh's websocket origins name it)."""
    import socket

    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def serve_snapshot(
    snapshot: Snapshot,
    *,
    config: MonitorConfig | None = None,
    port: int = 0,
    address: str = "127.0.0.1",
    title: str = "dask-monitor replay",
    source: str | None = None,
    versions: dict[str, str] | None = None,
) -> Any:
    """A started Bokeh server showing the panel for ``snapshot`` at ``/``,
    under the heading of a report (``title``, run date, ``source``,
    ``versions``: see :func:`run_info`).

    No cluster is needed. Run its loop with ``server.io_loop.start()``; the
    URL is ``http://{address}:{server.port}/``.
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.document import Document
    from bokeh.server.server import Server

    def make_doc(doc: Document) -> None:
        root = report_root(
            snapshot, title=title, config=config, source=source, versions=versions
        )
        doc.title = title
        doc.theme = THEME
        doc.add_root(root)

    port = port or free_port(address)  # Bokeh wants the real port for its origins
    server = Server(
        {"/": Application(FunctionHandler(make_doc))},
        port=port,
        address=address,
        allow_websocket_origin=[f"{address}:{port}", f"localhost:{port}"],
    )
    server.start()
    return server
