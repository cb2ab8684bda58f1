"""A progress bar around a block of Dask work, driven by the monitor's snapshot.

::

    with monitor.progress():
        df.compute()

The block runs inside a Dask span of its own (``distributed.span``): the tasks
submitted in it (``compute``, ``persist``, ``client.map`` ...) carry that span,
and a background thread polls ``monitor.snapshot(span=...)`` to move a tqdm bar
(``tqdm.auto``: a widget in notebooks, text in terminals). Spans opened inside
the block are nested in it, so their tasks count too. Tasks that existed before
the block (already persisted, submitted elsewhere) are not counted.

dask-expr's warning that it ignores annotations is silenced inside the block
(spans work with dataframes all the same); ``warnings.catch_warnings`` is not
thread-safe, so other threads' warning filters may be affected meanwhile.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from dask_monitor.pipeline import UnknownSpanError
from dask_monitor.snapshot import Snapshot

if TYPE_CHECKING:
    from dask_monitor.client import Monitor

__all__ = ["ProgressBar", "progress"]


class ProgressBar:
    """The state of one :func:`progress` block.

    Attributes
    ----------
    span
        Name of the Dask span the block runs in.
    bar
        The tqdm bar (closed on leaving the block, kept for inspection).
    snapshot
        The last snapshot of the span, or ``None`` before the first one.
    """

    def __init__(self, monitor: Monitor, span: str, bar: Any, interval: float) -> None:
        self.monitor = monitor
        self.span = span
        self.bar = bar
        self.interval = interval
        self.snapshot: Snapshot | None = None
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="dask-monitor-progress", daemon=True
        )

    @property
    def done(self) -> int:
        """Tasks of the block finished so far (completed or erred)."""
        return 0 if self.snapshot is None else self.snapshot["totals"]["done"]

    @property
    def total(self) -> int:
        """Tasks of the block known so far."""
        return 0 if self.snapshot is None else self.snapshot["totals"]["total"]

    def refresh(self, *, flush: bool = False) -> None:
        """Read the span's snapshot and move the bar."""
        try:
            snapshot = self.monitor.snapshot(flush=flush, span=self.span)
        except UnknownSpanError:  # none of the block's tasks reached the monitor yet
            return
        self.snapshot = snapshot
        totals = snapshot["totals"]
        bar = self.bar
        if bar.total != totals["total"]:
            bar.total = totals["total"]
        bar.n = totals["done"]
        erred = totals["erred"]
        bar.set_postfix_str(f"errors {erred}" if erred else "", refresh=False)
        bar.refresh()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # the cluster went away ...: keep quiet, stop
                self.errors += 1
                if self.errors >= 3:
                    return

    def _start(self) -> None:
        self._thread.start()

    def _finish(self, ok: bool) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5 * self.interval, 5.0))
        try:
            if ok:
                self.refresh(flush=True)
        except Exception:
            self.errors += 1
        finally:
            self.bar.close()


@contextmanager
def progress(
    monitor: Monitor,
    *,
    desc: str | None = None,
    interval: float = 0.2,
    file: IO[str] | None = None,
    notebook: bool | None = None,
    **tqdm_options: Any,
) -> Iterator[ProgressBar]:
    """Show a progress bar for the Dask work submitted inside the block.

    Parameters
    ----------
    monitor
        An attached :class:`~dask_monitor.client.Monitor` (synchronous client).
    desc
        Label of the bar; also the span's name prefix.
    interval
        Seconds between refreshes.
    file
        Where a text bar goes (``sys.stderr`` by default).
    notebook
        ``True``: a notebook widget (``tqdm.notebook``); ``False``: text;
        ``None``: ``tqdm.auto`` decides.
    **tqdm_options
        Passed to the tqdm bar.

    Yields a :class:`ProgressBar`. On leaving, the bar shows the final counts
    (100% when everything finished); on an exception, ``KeyboardInterrupt``
    included, the bar is closed where it stands and the exception propagates.
    """
    import distributed

    if notebook is None and file is None:
        from tqdm.auto import tqdm
    elif notebook:
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm

    label = desc or "dask"
    name = f"{label}-progress-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"desc": label, "total": 0, "unit": "task"}
    if file is not None:
        options["file"] = file
    options.update(tqdm_options)
    bar = tqdm(**options)
    state = ProgressBar(monitor, name, bar, interval)
    ok = False
    try:
        with distributed.span(name), warnings.catch_warnings():
            # dask-expr warns that it ignores annotations; spans work all the
            # same (the client sends them with the graph).
            warnings.filterwarnings(
                "ignore", message="Dask annotations .*'span'", category=UserWarning
            )
            state._start()
            yield state
        ok = True
    finally:
        state._finish(ok)
