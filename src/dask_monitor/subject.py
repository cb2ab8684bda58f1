"""Subjects: hand events to observers.

A :class:`Subject` keeps a list of observers and calls them with each event or
batch of events it is given. The monitor's pipeline owns one and calls
:meth:`Subject.notify_batch` from its periodic flush on the scheduler; an
:class:`AsyncSubject` does the same for observers whose methods are
``async def`` (network sinks, for instance).

An observer is either

* an object with an ``update(event)`` method and, optionally, an
  ``update_batch(events)`` method (see :class:`Observer` and
  :class:`BatchObserver`), or
* a plain callable, called with one event at a time.

Observers are checked when they subscribe, so that a mistake fails there with a
:class:`TypeError` rather than later, quietly, in the scheduler's flush.

Examples
--------
>>> from dask_monitor.events import WorkerStatus
>>> subject = Subject(name="example")
>>> seen = []
>>> unsubscribe = subject.subscribe(seen.append)
>>> subject.notify(WorkerStatus("tcp://127.0.0.1:1234", "added", 0.0))
>>> len(seen)
1
>>> unsubscribe()
True
>>> len(subject)
0
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar, cast

from dask_monitor.events import Event

__all__ = ["AsyncSubject", "BatchObserver", "Observer", "ObserverLike", "Subject"]

logger = logging.getLogger("dask_monitor.subject")


class Observer(Protocol):
    """An object that receives events one at a time.

    With an :class:`AsyncSubject`, ``update`` may be ``async def``.
    """

    def update(self, event: Event, /) -> object:
        """Receive one event."""


class BatchObserver(Observer, Protocol):
    """An observer that also receives whole batches of events.

    :meth:`Subject.notify_batch` calls ``update_batch`` instead of calling
    ``update`` once per event. With an :class:`AsyncSubject`, either method may
    be ``async def``.
    """

    def update_batch(self, events: Sequence[Event], /) -> object:
        """Receive a batch of events, in the order they happened."""


#: What :meth:`Subject.subscribe` accepts: an :class:`Observer` (possibly a
#: :class:`BatchObserver`) or a callable taking one event.
ObserverLike: TypeAlias = Observer | Callable[[Event], object]

_O = TypeVar("_O", bound=ObserverLike)
_T = TypeVar("_T")

_SingleFn: TypeAlias = Callable[[Event], object]
_BatchFn: TypeAlias = Callable[[Sequence[Event]], object]
#: The bound methods to call for one observer: ``(update_batch or None, update)``.
_Bound: TypeAlias = tuple[_BatchFn | None, _SingleFn]
_Binder: TypeAlias = Callable[[Any], _Bound]
_Key: TypeAlias = int | tuple[int, int]


# How to find the methods to call on an observer; chosen once, at subscribe time.
def _bind_batch(observer: Any) -> _Bound:
    return observer.update_batch, observer.update


def _bind_update(observer: Any) -> _Bound:
    return None, observer.update


def _bind_callable(observer: Any) -> _Bound:
    return None, observer


class _Entry:
    """One subscription: the observer (or a weak reference to it) and its methods.

    A strong entry keeps the observer and its bound methods (``bound``); a weak
    entry keeps only ``ref`` and binds the methods again, with ``bind``, each
    time it is notified.
    """

    __slots__ = ("bind", "bound", "errors", "key", "name", "observer", "ref")

    def __init__(
        self,
        key: _Key,
        name: str,
        observer: object,
        ref: weakref.ref[Any] | None,
        bind: _Binder,
    ) -> None:
        self.key = key
        self.name = name
        self.observer = observer
        self.ref = ref
        self.bind = bind
        self.bound: _Bound | None = None if ref is not None else bind(observer)
        self.errors = 0

    def get(self) -> object | None:
        """The observer, or ``None`` if it was weakly referenced and is gone."""
        return self.observer if self.ref is None else self.ref()


def _key(observer: object) -> _Key:
    """Identity of an observer; equal for two ``obj.method`` bound methods."""
    if inspect.ismethod(observer):
        return id(observer.__self__), id(observer.__func__)
    return id(observer)


def _observer_name(observer: object) -> str:
    """``observer.name`` if a string, else its ``__qualname__``, else its class name."""
    name = getattr(observer, "name", None)
    if isinstance(name, str) and name:
        return name
    qualname = getattr(observer, "__qualname__", None)
    if isinstance(qualname, str) and qualname:
        return qualname
    return type(observer).__name__


def _is_async(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (``async def`` or ``__call__``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        type(fn).__call__
    )


def _on_collected(subject_ref: weakref.ref[_BaseSubject], key: _Key, ref: Any) -> None:
    """Weak reference callback: drop the subscription of a collected observer."""
    subject = subject_ref()
    if subject is not None:
        subject._collected(key, ref)


class _BaseSubject:
    """Subscriptions, validation and error accounting shared by both subjects."""

    __slots__ = (
        "__weakref__",
        "_by_key",
        "_entries",
        "_generation",
        "_lock",
        "_raise_errors",
        "name",
    )

    #: Whether observer methods may be ``async def``.
    _allow_async: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None, raise_errors: bool = False) -> None:
        self.name: str = type(self).__name__ if name is None else name
        self._raise_errors = raise_errors
        self._lock = threading.RLock()
        # Copy-on-write: replaced (never mutated) under the lock, read without it.
        self._entries: tuple[_Entry, ...] = ()
        self._by_key: dict[_Key, _Entry] = {}
        self._generation = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} with {len(self)} observers>"

    def __len__(self) -> int:
        """Number of subscribed observers that are still alive."""
        return sum(1 for entry in self._entries if entry.get() is not None)

    @property
    def generation(self) -> int:
        """Changes whenever the subscriptions change (to cache what depends
        on them)."""
        return self._generation

    @property
    def observers(self) -> tuple[ObserverLike, ...]:
        """The live observers, in subscription order (a snapshot)."""
        live = (entry.get() for entry in self._entries)
        return tuple(cast(ObserverLike, obs) for obs in live if obs is not None)

    @property
    def errors(self) -> dict[str, int]:
        """Failures per live observer, keyed by observer name (a copy).

        The name is the observer's ``name`` attribute if it has one, else the
        ``__qualname__`` of a function or method, else the class name; ``#2``,
        ``#3``, ... is appended to tell apart observers of the same name. An
        observer's count goes away when it unsubscribes.
        """
        return {e.name: e.errors for e in self._entries if e.get() is not None}

    def subscribe(
        self, observer: ObserverLike, weak: bool = False
    ) -> Callable[[], bool]:
        """Subscribe an observer to the events of this subject.

        Parameters
        ----------
        observer
            An object with an ``update(event)`` method, and optionally an
            ``update_batch(events)`` method, or a callable taking one event.
            Subscribing an observer that is already subscribed does nothing
            (it keeps its place and its ``weak`` setting).
        weak
            Hold the observer through a weak reference (``weakref.WeakMethod``
            for a bound method), so that subscribing does not keep it alive: it
            is unsubscribed when it is garbage-collected. Beware that a
            weakly subscribed lambda, or a function or object created inside a
            function and referenced nowhere else, disappears when that function
            returns, or at once.

        Returns
        -------
        unsubscribe : callable
            Unsubscribes this subscription. It returns ``True`` if it removed
            it and ``False`` if it was already gone, so calling it twice is
            harmless; it never removes a later subscription of the same observer.

        Raises
        ------
        TypeError
            If ``observer`` is neither an observer nor a callable taking one
            argument, if one of its methods cannot take one argument, if it is
            ``async def`` and this is not an :class:`AsyncSubject`, or if
            ``weak`` is true and the observer does not support weak references.
        """
        entry, _ = self._subscribe(observer, weak)
        return functools.partial(self._remove, entry)

    def unsubscribe(self, observer: ObserverLike) -> bool:
        """Unsubscribe an observer.

        Returns
        -------
        bool
            ``True`` if ``observer`` was subscribed and now is not, ``False`` if
            it was not subscribed (which is not an error).
        """
        entry = self._by_key.get(_key(observer))
        return entry is not None and self._remove(entry)

    @contextmanager
    def subscribed(self, observer: _O, weak: bool = False) -> Iterator[_O]:
        """Subscribe an observer for the duration of a ``with`` block.

        The observer is unsubscribed on exit unless it was already subscribed
        on entry. See :meth:`subscribe` for the parameters.

        Yields
        ------
        observer
            The ``observer`` argument, for ``with subject.subscribed(Obs()) as obs``.
        """
        entry, added = self._subscribe(observer, weak)
        try:
            yield observer
        finally:
            if added:
                self._remove(entry)

    # -- bookkeeping ---------------------------------------------------------

    def _subscribe(self, observer: ObserverLike, weak: bool) -> tuple[_Entry, bool]:
        """Subscribe ``observer``; return its entry and whether it is new."""
        bind = self._validate(observer)
        key = _key(observer)
        with self._lock:
            existing = self._by_key.get(key)
            if existing is not None and existing.get() is not None:
                return existing, False
            taken = {e.name for e in self._entries if e.get() is not None}
            base = _observer_name(observer)
            name = base
            for n in itertools.count(2):
                if name not in taken:
                    break
                name = f"{base}#{n}"
            ref: weakref.ref[Any] | None = None
            if weak:
                ref = self._weakref(observer, key)
            entry = _Entry(key, name, None if weak else observer, ref, bind)
            self._by_key[key] = entry
            self._replace((*self._entries, entry))
        return entry, True

    def _weakref(self, observer: ObserverLike, key: _Key) -> weakref.ref[Any]:
        callback = functools.partial(_on_collected, weakref.ref(self), key)
        try:
            if inspect.ismethod(observer):
                return weakref.WeakMethod(observer, callback)
            return weakref.ref(observer, callback)
        except TypeError:
            raise TypeError(
                f"cannot subscribe {observer!r} weakly: {type(observer).__name__} "
                "objects do not support weak references; subscribe it with "
                "weak=False"
            ) from None

    def _validate(self, observer: object) -> _Binder:
        """Check an observer; return how to find the methods to call on it."""
        if isinstance(observer, type):
            raise TypeError(
                f"cannot subscribe the class {observer.__qualname__}: "
                "subscribe an instance of it"
            )
        update = getattr(observer, "update", None)
        if update is not None:
            self._check_method(observer, update, "update", "event")
            update_batch = getattr(observer, "update_batch", None)
            if update_batch is None:
                return _bind_update
            self._check_method(observer, update_batch, "update_batch", "events")
            return _bind_batch
        if callable(observer):
            self._check_method(observer, observer, "", "event")
            return _bind_callable
        raise TypeError(
            f"cannot subscribe {observer!r}: an observer must have an "
            "update(event) method or be callable, and a "
            f"{type(observer).__name__} is neither"
        )

    def _check_method(self, observer: object, fn: object, attr: str, arg: str) -> None:
        what = f"{observer!r}.{attr}" if attr else repr(observer)
        if not callable(fn):
            raise TypeError(
                f"cannot subscribe {observer!r}: its {attr} attribute "
                f"({type(fn).__name__}) is not callable"
            )
        if not self._allow_async and _is_async(fn):
            raise TypeError(
                f"cannot subscribe {what}: it is async def, which a "
                f"{type(self).__name__} would never await; use an AsyncSubject"
            )
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no signature
            return
        try:
            signature.bind(None)
        except TypeError:
            raise TypeError(
                f"cannot subscribe {what}: it must accept one positional argument "
                f"(the {arg}), but its signature is {signature}"
            ) from None

    def _replace(self, entries: Sequence[_Entry]) -> None:
        """Publish a new entry tuple, dropping entries whose observer is gone.

        Call with the lock held. Dropping dead entries here also covers a weak
        reference callback that ran (reentrantly, through garbage collection)
        while the caller was building ``entries``.
        """
        live = []
        for entry in entries:
            if entry.get() is not None:
                live.append(entry)
            elif self._by_key.get(entry.key) is entry:
                del self._by_key[entry.key]
        self._entries = tuple(live)
        self._generation += 1

    def _remove(self, entry: _Entry) -> bool:
        with self._lock:
            if self._by_key.get(entry.key) is not entry:
                return False
            del self._by_key[entry.key]
            self._replace([e for e in self._entries if e is not entry])
            return True

    def _collected(self, key: _Key, ref: Any) -> None:
        with self._lock:
            entry = self._by_key.get(key)
            if entry is not None and entry.ref is ref:
                self._remove(entry)

    # -- dispatch ------------------------------------------------------------

    def _live(self) -> Iterator[tuple[_Entry, _Bound]]:
        """The entries to notify, with their methods; weak ones dereferenced once."""
        for entry in self._entries:  # one snapshot, read without the lock
            bound = entry.bound
            if bound is not None:
                yield entry, bound
            else:
                observer = entry.get()
                if observer is not None:
                    yield entry, entry.bind(observer)

    def _failed(self, entry: _Entry, exc: BaseException) -> None:
        """Count an observer's failure; log the first one, or raise if asked to."""
        with self._lock:
            entry.errors += 1
            count = entry.errors
        if self._raise_errors:
            raise exc
        if count == 1:
            logger.error(
                "%s: observer %s raised %s; it stays subscribed, and its later "
                "failures are only counted (see the subject's errors)",
                self.name,
                entry.name,
                type(exc).__name__,
                exc_info=exc,
            )
        else:
            logger.debug(
                "%s: observer %s failed again (%d failures): %r",
                self.name,
                entry.name,
                count,
                exc,
            )


class Subject(_BaseSubject):
    """Hand events to observers, synchronously, in subscription order.

    An exception raised by an observer is caught, counted in :attr:`errors` and
    logged with its traceback the first time only for that observer, and the
    other observers are notified all the same (with ``raise_errors=True`` it is
    re-raised instead). Subscribing and unsubscribing may happen from any thread
    at any time: they replace, under one lock, an immutable tuple of
    subscriptions that notifying reads without locking, and observers are called
    outside the lock, in the notifying thread.

    Parameters
    ----------
    name
        Name used in log messages; defaults to the class name.
    raise_errors
        Re-raise an observer's exception, stopping the notification there, rather
        than log and count it. Meant for tests.

    Notes
    -----
    A notification goes to the observers subscribed when it starts: an
    observer subscribed meanwhile waits for the next one, and an observer
    unsubscribed meanwhile may still receive it.

    An empty subject is falsy (it has a length), so ``if subject:`` asks
    whether anyone is listening; compare with ``None`` to test for a subject.
    """

    __slots__ = ()

    def notify(self, event: Event) -> None:
        """Call ``update(event)`` on every observer (or the observer itself)."""
        for entry, (_, update) in self._live():
            try:
                update(event)
            except Exception as exc:
                self._failed(entry, exc)

    def notify_batch(self, events: Sequence[Event]) -> None:
        """Hand a batch of events to every observer.

        An observer with an ``update_batch`` method gets the whole batch at once,
        even an empty one; the others get one ``update(event)`` call per event.
        If one of those calls raises, the observer still gets the next events.

        Parameters
        ----------
        events
            Events in the order they happened; a sequence, not an iterator, as
            each observer goes through it. Observers must not modify it.
        """
        for entry, (update_batch, update) in self._live():
            if update_batch is not None:
                try:
                    update_batch(events)
                except Exception as exc:
                    self._failed(entry, exc)
            else:
                for event in events:
                    try:
                        update(event)
                    except Exception as exc:
                        self._failed(entry, exc)


#: An awaitable an observer returned, with what to do after it: call ``update``
#: (if not ``None``) on the events from ``start`` on.
_Pending: TypeAlias = tuple[_Entry, Awaitable[object], _SingleFn | None, int]


class AsyncSubject(_BaseSubject):
    """Hand events to observers that may be ``async def``, concurrently.

    Same API as :class:`Subject`, except that :meth:`notify` and
    :meth:`notify_batch` are coroutines. They call every observer in
    subscription order; the awaitables returned by ``async def`` methods are
    then awaited together with :func:`asyncio.gather`. Plain (synchronous)
    observers may be mixed in; they are simply called.

    An exception raised by an observer, or by the awaitable it returned, is
    caught, counted in :attr:`errors` and logged with its traceback the first
    time only for that observer, and the other observers are notified all the
    same (with ``raise_errors=True`` it is re-raised, once every observer has
    been awaited). Subscribing and unsubscribing may happen from any thread at
    any time, as with :class:`Subject`, whereas ``notify`` runs in one event loop.

    Parameters
    ----------
    name
        Name used in log messages; defaults to the class name.
    raise_errors
        Re-raise an observer's exception rather than log and count it. Meant
        for tests.

    Notes
    -----
    An observer without ``update_batch`` gets a batch one ``update(event)`` at
    a time, each awaited before the next, so it sees the events in order.
    ``asyncio.CancelledError`` is not an observer failure: it propagates.
    """

    __slots__ = ()

    _allow_async = True

    async def notify(self, event: Event) -> None:
        """Call ``update(event)`` on every observer and await the results."""
        pending: list[_Pending] = []
        try:
            for entry, (_, update) in self._live():
                self._call(entry, update, event, pending)
        except BaseException:
            _discard(pending)
            raise
        await self._gather(pending, ())

    async def notify_batch(self, events: Sequence[Event]) -> None:
        """Hand a batch of events to every observer and await the results.

        See :meth:`Subject.notify_batch`.
        """
        pending: list[_Pending] = []
        try:
            for entry, (update_batch, update) in self._live():
                if update_batch is not None:
                    self._call(entry, update_batch, events, pending)
                    continue
                for i, event in enumerate(events):
                    try:
                        result = update(event)
                    except Exception as exc:
                        self._failed(entry, exc)
                        continue
                    if result is not None and inspect.isawaitable(result):
                        # Await it, then go on with the next events, in order.
                        pending.append((entry, result, update, i + 1))
                        break
        except BaseException:
            _discard(pending)
            raise
        await self._gather(pending, events)

    def _call(
        self,
        entry: _Entry,
        fn: Callable[[_T], object],
        arg: _T,
        pending: list[_Pending],
    ) -> None:
        try:
            result = fn(arg)
        except Exception as exc:
            self._failed(entry, exc)
            return
        if result is not None and inspect.isawaitable(result):
            pending.append((entry, result, None, 0))

    async def _gather(self, pending: list[_Pending], events: Sequence[Event]) -> None:
        if not pending:
            return
        results = await asyncio.gather(
            *(self._finish(*item, events) for item in pending),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _finish(
        self,
        entry: _Entry,
        awaitable: Awaitable[object],
        update: _SingleFn | None,
        start: int,
        events: Sequence[Event],
    ) -> None:
        try:
            await awaitable
        except Exception as exc:
            self._failed(entry, exc)
        if update is None:
            return
        for event in itertools.islice(events, start, None):
            try:
                result = update(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._failed(entry, exc)


def _discard(pending: list[_Pending]) -> None:
    """Close coroutines that will not be awaited, so they do not warn."""
    for _, awaitable, _, _ in pending:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
