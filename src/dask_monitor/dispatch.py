"""User observers on threads of their own, so that none can block the scheduler.

The pipeline calls its built-in observers inline, in the flush on the
scheduler's event loop: they are ours, bounded and fast. An observer passed by
a user (``Monitor.attach(client, observers=[...])`` or
``MonitorPlugin(observers=...)``) is code we do not control: it may sleep,
block on I/O or raise on every call. The plugin's pipeline therefore subscribes
a :class:`Dispatched` proxy in its place. The proxy's ``update_batch`` only
appends the batch to a bounded queue (O(1), never blocks, never raises); a
daemon thread, one per user observer, takes batches off the queue and hands
them to the observer.

Policy, in one place:

* Queue bound: at most ``capacity`` events not yet delivered, the batch in
  progress included (the plugin passes its ``buffer_size``). A batch that
  does not fit is dropped whole and its events counted in ``dropped``;
  nothing else is ever dropped. Exact accounting:
  ``received == delivered + dropped + queued`` at all times.
* Failures: an exception raised by the observer is caught on its thread,
  counted in ``errors`` and logged (with its traceback) the first time only;
  the observer stays subscribed.
* Order: batches, ``reset()`` and ``name_spans()`` reach the observer in the
  order the pipeline issued them.
* Reports: an observer with a ``snapshot()`` method is asked for it on its
  own thread after each batch and reset it takes; the latest answer, made
  plain data (:func:`~dask_monitor.snapshot.observer_report`), is what the
  pipeline's snapshot shows under ``observers``. The scheduler never calls
  user code.
* Closing (detach, plugin stop): what is still queued is dropped and counted;
  the thread ends after the call in progress, if any.

Alert rules (:class:`~dask_monitor.alerts.rules.AlertRule`) and sinks
(``is_sink``) passed as observers still run inline: they emit alerts into the
pipeline or have their own bounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from dask_monitor.batch import Batch
from dask_monitor.events import Event
from dask_monitor.snapshot import observer_report
from dask_monitor.subject import Subject

__all__ = ["DispatchStats", "Dispatched", "dispatch_stats", "wait_idle"]

logger = logging.getLogger(__name__)

#: What :meth:`Dispatched.stats` returns (plain data, for the snapshot).
DispatchStats = dict[str, Any]

_BATCH = "batch"
_RESET = "reset"
_SPANS = "spans"


class Dispatched:
    """A user observer run on its own daemon thread, fed by a bounded queue.

    Parameters
    ----------
    observer
        Anything a :class:`~dask_monitor.subject.Subject` accepts (checked
        here, so a bad observer still fails at subscription).
    capacity
        Most events that may wait in the queue; a batch that would exceed it
        is dropped whole and counted.

    Notes
    -----
    Thread-safe: ``update_batch``, ``reset``, ``name_spans`` and ``close`` may
    be called from any thread (the plugin calls them on the scheduler's loop)
    and return at once; the observer itself is only ever called from the
    proxy's thread. Attributes the proxy lacks are read from the observer.
    """

    def __init__(self, observer: Any, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        inner = Subject(name="dask-monitor-dispatch")
        inner.subscribe(observer)  # validates: TypeError at subscription
        self.observer = observer
        self._inner = inner
        [self.name] = inner.errors  # the observer's display name
        self.capacity = capacity
        self._queue: deque[tuple[str, Any, int]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False
        self.received = 0
        self.delivered = 0
        self.dropped = 0
        self.queued = 0
        self.batches = 0
        self.max_call = 0.0
        self.version = 0  # bumped whenever the stats or the report change
        #: The observer's latest ``snapshot()`` as plain data (``None`` until
        #: it has one; an observer without the method never has).
        self.report: Any = None
        self._report_failed = False

    def __repr__(self) -> str:
        return f"<Dispatched {self.name!r} queued={self.queued} dropped={self.dropped}>"

    def __getattr__(self, attr: str) -> Any:
        if attr == "observer":  # not set yet (unpickling, copying)
            raise AttributeError(attr)
        return getattr(self.observer, attr)

    # -- the pipeline's side (scheduler loop): never blocks, never raises ----

    def update_batch(self, events: Sequence[Event]) -> None:
        """Queue a batch for the observer, or drop and count it if it does not fit."""
        n = len(events)
        if not n:
            return
        with self._cond:
            self.received += n
            self.version += 1
            if self._closed or self.queued + n > self.capacity:
                self.dropped += n
                return
            self.queued += n
            if isinstance(events, Batch):
                # Make the events here, on the caller's thread: a batch makes
                # them lazily and is not thread-safe.
                events = events.events
            self._queue.append((_BATCH, events, n))
            self._start()
            self._cond.notify()

    def update(self, event: Event) -> None:
        """Queue one event (the subject uses :meth:`update_batch`)."""
        self.update_batch((event,))

    def reset(self) -> None:
        """Queue a ``reset()`` of the observer, after the batches before it."""
        if callable(getattr(self.observer, "reset", None)):
            self._control(_RESET, None)

    def name_spans(self, names: dict[str, str]) -> None:
        """Queue a ``name_spans(names)`` call, if the observer has the method."""
        if callable(getattr(self.observer, "name_spans", None)):
            self._control(_SPANS, dict(names))

    def _control(self, kind: str, payload: Any) -> None:
        with self._cond:
            if self._closed:
                return
            # Calls queued since the last batch are merged by kind: one reset
            # does what two do, and span names add up. Between two batches
            # there is then at most one of each, so the queue stays bounded
            # by its batches (which ``capacity`` bounds).
            for queued, held, _ in reversed(self._queue):
                if queued == _BATCH:
                    break
                if queued == kind:
                    if kind == _SPANS:
                        held.update(payload)
                    return
            self._queue.append((kind, payload, 0))
            self._start()
            self._cond.notify()

    def _start(self) -> None:
        """Start the thread on first use (with the condition held)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"dask-monitor-dispatch-{self.name}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop: drop (and count) what is queued; the thread ends after its call."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            for kind, _, n in self._queue:
                if kind == _BATCH:
                    self.dropped += n
                    self.queued -= n
            self._queue.clear()
            self.version += 1
            self._cond.notify_all()

    # -- reading ---------------------------------------------------------------

    @property
    def errors(self) -> int:
        """Exceptions the observer raised (on the dispatcher thread)."""
        return sum(self._inner.errors.values())

    @property
    def idle(self) -> bool:
        """Nothing queued and no call in progress."""
        with self._cond:
            return not self._queue and not self._busy

    def stats(self) -> DispatchStats:
        """Counters, as plain data: ``received == delivered + dropped + queued``."""
        with self._cond:
            return {
                "received": self.received,
                "delivered": self.delivered,
                "dropped": self.dropped,
                "queued": self.queued,
                "capacity": self.capacity,
                "batches": self.batches,
                "errors": self.errors,
                "max_call": self.max_call,
                "busy": self._busy,
            }

    # -- the dispatcher thread -------------------------------------------------

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue and not self._closed:
                    cond.wait()
                if self._closed:
                    return
                kind, payload, n = self._queue.popleft()
                self._busy = True
            t0 = time.perf_counter()
            report = None
            try:
                self._call(kind, payload)
                report = self._report(kind)
            finally:
                seconds = time.perf_counter() - t0
                with cond:
                    self._busy = False
                    self.max_call = max(self.max_call, seconds)
                    if kind == _BATCH:
                        self.queued -= n
                        self.delivered += n
                        self.batches += 1
                    if report is not None:
                        self.report = report
                    self.version += 1
                    cond.notify_all()

    def _report(self, kind: str) -> Any:
        """The observer's ``snapshot()`` after a batch or a reset, as plain data."""
        snapshot = getattr(self.observer, "snapshot", None)
        if kind == _SPANS or not callable(snapshot):
            return None
        try:
            return observer_report(snapshot())
        except Exception as e:
            if not self._report_failed:
                self._report_failed = True
                logger.exception(
                    "dask-monitor: observer %s failed in snapshot", self.name
                )
            return {"error": f"snapshot() raised {type(e).__name__}"}

    def _call(self, kind: str, payload: Any) -> None:
        if kind == _BATCH:
            self._inner.notify_batch(payload)  # isolates, counts, logs once
            return
        method = getattr(self.observer, "reset" if kind == _RESET else "name_spans")
        try:
            method() if kind == _RESET else method(payload)
        except Exception:
            logger.exception(
                "dask-monitor: observer %s failed in %s", self.name, method.__name__
            )


def dispatch_stats(proxies: Iterable[Dispatched]) -> dict[str, DispatchStats]:
    """``stats()`` of each proxy, by observer name."""
    return {proxy.name: proxy.stats() for proxy in proxies}


async def wait_idle(proxies: Iterable[Dispatched], timeout: float) -> bool:
    """Wait, without blocking the event loop, until every proxy is idle.

    Returns whether they all were before ``timeout`` seconds passed.
    """
    proxies = list(proxies)
    deadline = time.monotonic() + timeout
    while not all(p.idle for p in proxies):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True
