"""Subjects hand events to observers: the specification of ``dask_monitor.subject``."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dask_monitor.events import Event, TaskStatus
from dask_monitor.subject import AsyncSubject, Subject


def make_event(i: int = 0) -> TaskStatus:
    """A synthetic task transition, told apart by ``i``."""
    return TaskStatus(
        key=f"inc-{i}",
        prefix="inc",
        group="inc-0",
        start="processing",
        finish="memory",
        timestamp=float(i),
    )


def make_events(n: int) -> list[Event]:
    return [make_event(i) for i in range(n)]


class Recorder:
    """Records every event it is given through ``update``."""

    def __init__(self, log: list[tuple[str, Any]] | None = None) -> None:
        self.events: list[Event] = []
        self.log = log

    def update(self, event: Event) -> None:
        self.events.append(event)
        if self.log is not None:
            self.log.append((type(self).__name__, event))


class BatchRecorder(Recorder):
    """Records batches given through ``update_batch`` and events through ``update``."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Sequence[Event]] = []

    def update_batch(self, events: Sequence[Event]) -> None:
        self.batches.append(events)


class Named(Recorder):
    """A recorder with a ``name`` attribute."""

    name = "progress"


class Broken:
    """Raises on every event."""

    def update(self, event: Event) -> None:
        raise ValueError(f"cannot handle {getattr(event, 'key', event)}")


class Counter:
    """Counts events; safe to call from several threads at once."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def update(self, event: Event) -> None:
        with self._lock:
            self.count += 1

    def update_batch(self, events: Sequence[Event]) -> None:
        with self._lock:
            self.count += len(events)


class TestSubscribe:
    def test_subscribed_observer_is_notified(self) -> None:
        """A subscribed observer's ``update`` receives each notified event."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec)
        event = make_event()
        subject.notify(event)
        assert rec.events == [event]
        assert subject.observers == (rec,)
        assert len(subject) == 1

    def test_unsubscribe_stops_notifications(self) -> None:
        """``unsubscribe(observer)`` returns True and the observer hears no more."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec)
        assert subject.unsubscribe(rec) is True
        subject.notify(make_event())
        assert rec.events == []
        assert len(subject) == 0
        assert not subject

    def test_unsubscribe_unknown_observer_returns_false(self) -> None:
        """Unsubscribing an observer that is not subscribed is no error."""
        subject = Subject()
        assert subject.unsubscribe(Recorder()) is False
        assert subject.unsubscribe(print) is False

    def test_unsubscribe_callable_is_idempotent(self) -> None:
        """The undo callable from ``subscribe`` works once; later calls do nothing."""
        subject = Subject()
        rec = Recorder()
        unsubscribe = subject.subscribe(rec)
        assert unsubscribe() is True
        assert unsubscribe() is False
        assert len(subject) == 0

    def test_stale_unsubscribe_callable_leaves_new_subscription(self) -> None:
        """An old unsubscribe callable does not remove a later re-subscription."""
        subject = Subject()
        rec = Recorder()
        old = subject.subscribe(rec)
        old()
        subject.subscribe(rec)
        assert old() is False
        assert subject.observers == (rec,)

    def test_subscribing_twice_is_a_no_op(self) -> None:
        """A second subscription of the same observer adds nothing and still undoes."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec)
        unsubscribe = subject.subscribe(rec)
        subject.notify(make_event())
        assert len(rec.events) == 1
        assert len(subject) == 1
        assert unsubscribe() is True
        assert len(subject) == 0

    def test_same_bound_method_is_one_observer(self) -> None:
        """Two ``obj.method`` bound methods count as the same observer."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec.update)
        subject.subscribe(rec.update)
        assert len(subject) == 1
        assert subject.unsubscribe(rec.update) is True
        assert len(subject) == 0

    def test_context_manager_subscribes_for_the_block(self) -> None:
        """``subscribed()`` yields the observer and unsubscribes it on exit."""
        subject = Subject()
        with subject.subscribed(Recorder()) as rec:
            subject.notify(make_event())
            assert len(subject) == 1
        subject.notify(make_event(1))
        assert len(rec.events) == 1
        assert len(subject) == 0

    def test_context_manager_unsubscribes_on_error(self) -> None:
        """``subscribed()`` unsubscribes even when the block raises."""
        subject = Subject()
        with pytest.raises(KeyError), subject.subscribed(Recorder()):
            raise KeyError("boom")
        assert len(subject) == 0

    def test_context_manager_keeps_earlier_subscription(self) -> None:
        """``subscribed()`` leaves an observer subscribed that was subscribed before."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec)
        with subject.subscribed(rec):
            pass
        assert subject.observers == (rec,)

    def test_repr_names_the_subject(self) -> None:
        """The repr shows the subject's name and how many observers it has."""
        subject = Subject(name="flush")
        subject.subscribe(Recorder())
        assert repr(subject) == "<Subject 'flush' with 1 observers>"
        assert Subject().name == "Subject"


class TestNotify:
    def test_update_batch_is_preferred_for_batches(self) -> None:
        """``notify_batch`` calls ``update_batch`` once, when the observer has it."""
        subject = Subject()
        rec = BatchRecorder()
        subject.subscribe(rec)
        events = make_events(3)
        subject.notify_batch(events)
        assert rec.batches == [events]
        assert rec.events == []

    def test_update_is_used_for_single_events(self) -> None:
        """``notify`` calls ``update`` even on an observer with ``update_batch``."""
        subject = Subject()
        rec = BatchRecorder()
        subject.subscribe(rec)
        subject.notify(make_event())
        assert rec.batches == []
        assert rec.events == [make_event()]

    def test_batch_falls_back_to_update_per_event(self) -> None:
        """Without ``update_batch``, ``notify_batch`` calls ``update`` per event."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec)
        events = make_events(3)
        subject.notify_batch(events)
        assert rec.events == events

    def test_empty_batch_reaches_batch_observers(self) -> None:
        """An empty batch is passed to ``update_batch`` and costs others nothing."""
        subject = Subject()
        batch, single = BatchRecorder(), Recorder()
        subject.subscribe(batch)
        subject.subscribe(single)
        subject.notify_batch([])
        assert batch.batches == [[]]
        assert single.events == []

    def test_plain_callables_are_called_per_event(self) -> None:
        """A plain callable observer is called with each event."""
        subject = Subject()
        seen: list[Event] = []
        subject.subscribe(seen.append)
        events = make_events(2)
        subject.notify(events[0])
        subject.notify_batch(events)
        assert seen == [events[0], *events]

    def test_observers_are_notified_in_subscription_order(self) -> None:
        """Observers are called in the order they subscribed."""
        subject = Subject()
        log: list[tuple[str, Any]] = []

        class First(Recorder):
            pass

        class Second(Recorder):
            pass

        def third(event: Event) -> None:
            log.append(("third", event))

        subject.subscribe(First(log))
        subject.subscribe(Second(log))
        subject.subscribe(third)
        events = make_events(2)
        subject.notify_batch(events)
        names = [name for name, _ in log]
        assert names == ["First", "First", "Second", "Second", "third", "third"]

    def test_observer_may_unsubscribe_during_notify(self) -> None:
        """An observer unsubscribing itself mid-notify leaves the others notified."""
        subject = Subject()
        after = Recorder()

        class Once:
            def update(self, event: Event) -> None:
                subject.unsubscribe(self)

        once = Once()
        subject.subscribe(once)
        subject.subscribe(after)
        subject.notify(make_event())
        assert after.events == [make_event()]
        assert subject.observers == (after,)

    def test_observer_subscribed_during_notify_waits_for_the_next(self) -> None:
        """An observer subscribed during a notify gets the next notification only."""
        subject = Subject()
        late = Recorder()
        subject.subscribe(lambda event: subject.subscribe(late))
        subject.notify(make_event(0))
        assert late.events == []
        subject.notify(make_event(1))
        assert late.events == [make_event(1)]


class TestValidation:
    class NoArgument:
        def update(self) -> None:
            pass

    class TwoArguments:
        def update(self, event: Event, other: Event) -> None:
            pass

    class NotCallableUpdate:
        update = 3

    class NotCallableBatch:
        update_batch = "no"

        def update(self, event: Event) -> None:
            pass

    class AsyncUpdate:
        async def update(self, event: Event) -> None:
            pass

    class AsyncCall:
        async def __call__(self, event: Event) -> None:
            pass

    @pytest.mark.parametrize(
        ("observer", "match"),
        [
            (None, "must have an update"),
            (42, "must have an update"),
            (object(), "must have an update"),
            (Recorder, "subscribe an instance"),
            (NotCallableUpdate(), r"update attribute \(int\) is not callable"),
            (NotCallableBatch(), r"update_batch attribute \(str\) is not callable"),
            (NoArgument(), r"one positional argument \(the event\)"),
            (TwoArguments(), r"one positional argument \(the event\)"),
            (lambda: None, "one positional argument"),
            (AsyncUpdate(), "use an AsyncSubject"),
            (AsyncCall(), "use an AsyncSubject"),
        ],
        ids=[
            "None",
            "int",
            "object",
            "class",
            "update-not-callable",
            "update-batch-not-callable",
            "update-without-argument",
            "update-with-two-arguments",
            "callable-without-argument",
            "async-update",
            "async-call",
        ],
    )
    def test_invalid_observers_fail_at_subscribe(
        self, observer: Any, match: str
    ) -> None:
        """An observer that could not be notified raises TypeError at subscribe."""
        subject = Subject()
        with pytest.raises(TypeError, match=match):
            subject.subscribe(observer)
        assert len(subject) == 0

    def test_builtins_without_signature_are_accepted(self) -> None:
        """A builtin callable whose signature cannot be read is accepted."""
        subject = Subject()
        seen: list[Event] = []
        subject.subscribe(seen.append)
        assert len(subject) == 1

    def test_unreferenceable_observer_fails_weak_subscribe(self) -> None:
        """Subscribing weakly an object without weak reference support raises."""
        subject = Subject()

        class Slotted:
            __slots__ = ()

            def update(self, event: Event) -> None:
                pass

        with pytest.raises(TypeError, match="do not support weak references"):
            subject.subscribe(Slotted(), weak=True)
        assert len(subject) == 0
        subject.subscribe(Slotted())
        assert len(subject) == 1


class TestNames:
    def test_errors_are_keyed_by_observer_name(self) -> None:
        """``errors`` uses the ``name`` attribute, else the qualname or class name."""
        subject = Subject()

        def on_event(event: Event) -> None:
            pass

        subject.subscribe(Named())
        subject.subscribe(Recorder())
        subject.subscribe(on_event)
        assert subject.errors == {
            "progress": 0,
            "Recorder": 0,
            f"{on_event.__qualname__}": 0,
        }

    def test_duplicate_names_are_numbered(self) -> None:
        """Observers with the same name get ``#2``, ``#3`` appended."""
        subject = Subject()
        first, second, third = Recorder(), Recorder(), Recorder()
        for rec in (first, second, third):
            subject.subscribe(rec)
        assert list(subject.errors) == ["Recorder", "Recorder#2", "Recorder#3"]
        subject.unsubscribe(first)
        subject.subscribe(Recorder())
        assert sorted(subject.errors) == ["Recorder", "Recorder#2", "Recorder#3"]

    def test_errors_is_a_copy(self) -> None:
        """Changing the dict returned by ``errors`` changes nothing in the subject."""
        subject = Subject()
        subject.subscribe(Recorder())
        subject.errors["Recorder"] = 5
        assert subject.errors == {"Recorder": 0}


class TestThreads:
    def test_concurrent_subscribe_unsubscribe_notify_lose_nothing(self) -> None:
        """With 8 threads churning at once, a steady observer gets every event."""
        subject = Subject(raise_errors=True)
        rounds, churners, notifiers = 300, 4, 4
        # Observers ahead of the steady one, removed during the run, so that the
        # steady one moves in the list while it is being notified.
        early = [[Counter() for _ in range(rounds // 6)] for _ in range(churners)]
        for counter in (c for group in early for c in group):
            subject.subscribe(counter)
        steady = Counter()
        subject.subscribe(steady)
        barrier = threading.Barrier(churners + notifiers)
        event, batch = make_event(), make_events(5)

        def notifier() -> int:
            barrier.wait(timeout=30)
            for _ in range(rounds):
                subject.notify(event)
                subject.notify_batch(batch)
            return rounds * (1 + len(batch))

        def churner(k: int) -> int:
            weak = k % 2 == 0
            barrier.wait(timeout=30)
            for i in range(rounds):
                if i < len(early[k]):
                    assert subject.unsubscribe(early[k][i]) is True
                counter = Counter()
                if i % 3 == 0:
                    with subject.subscribed(counter, weak=weak):
                        subject.notify(event)
                elif i % 3 == 1:
                    unsubscribe = subject.subscribe(counter.update, weak=weak)
                    subject.notify(event)
                    assert unsubscribe() is True
                else:
                    subject.subscribe(counter, weak=weak)
                    subject.notify(event)
                    assert subject.unsubscribe(counter) is True
                # Its own notification, at least, reached it.
                assert counter.count >= 1
            return rounds

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible
        try:
            with ThreadPoolExecutor(max_workers=churners + notifiers) as pool:
                futures = [pool.submit(notifier) for _ in range(notifiers)]
                futures += [pool.submit(churner, k) for k in range(churners)]
                sent = sum(f.result() for f in futures)
        finally:
            sys.setswitchinterval(switch)
        assert steady.count == sent
        assert subject.observers == (steady,)
        assert list(subject.errors.values()) == [0]


class TestWeak:
    def test_weak_observer_vanishes_when_collected(self) -> None:
        """A weakly subscribed object is unsubscribed once it is garbage-collected."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec, weak=True)
        subject.notify(make_event())
        assert rec.events == [make_event()]
        assert subject.observers == (rec,)
        del rec
        gc.collect()
        assert len(subject) == 0
        assert not subject.observers
        assert subject.errors == {}
        subject.notify(make_event())

    def test_weak_bound_method_lives_as_long_as_its_object(self) -> None:
        """A weakly subscribed bound method stays until its object is collected."""
        subject = Subject()
        rec = Recorder()
        subject.subscribe(rec.update, weak=True)
        gc.collect()
        subject.notify(make_event())
        assert rec.events == [make_event()]
        assert subject.observers == (rec.update,)
        del rec
        gc.collect()
        assert len(subject) == 0

    def test_weak_function_vanishes_with_its_scope(self) -> None:
        """A function defined in a function vanishes with it if subscribed weakly."""
        subject = Subject()

        def subscribe_local() -> None:
            def on_event(event: Event) -> None:
                pass

            subject.subscribe(on_event, weak=True)
            assert len(subject) == 1

        subscribe_local()
        gc.collect()
        assert len(subject) == 0

    def test_weak_observer_in_a_cycle_vanishes(self) -> None:
        """A weakly subscribed observer kept only by a reference cycle goes too."""
        subject = Subject()
        rec = Recorder()
        rec.cycle = rec  # type: ignore[attr-defined]
        subject.subscribe(rec, weak=True)
        del rec
        gc.collect()
        assert len(subject) == 0

    def test_strong_observer_is_kept_alive(self) -> None:
        """A strongly subscribed observer (the default) is kept alive by the subject."""
        subject = Subject()
        subject.subscribe(Recorder())
        subject.subscribe(Recorder().update)
        subject.subscribe(lambda event: None)
        gc.collect()
        assert len(subject) == 3
        subject.notify(make_event())
        rec = subject.observers[0]
        assert isinstance(rec, Recorder)
        assert rec.events == [make_event()]

    def test_weak_observer_can_be_unsubscribed(self) -> None:
        """A weak subscription is undone like a strong one."""
        subject = Subject()
        rec = Recorder()
        unsubscribe = subject.subscribe(rec, weak=True)
        assert unsubscribe() is True
        assert subject.unsubscribe(rec) is False
        del rec
        gc.collect()
        assert len(subject) == 0


class TestErrors:
    def test_raising_observer_does_not_stop_the_others(self) -> None:
        """Observers after a raising one are still notified."""
        subject = Subject()
        before, after = Recorder(), BatchRecorder()
        subject.subscribe(before)
        subject.subscribe(Broken())
        subject.subscribe(after)
        events = make_events(3)
        subject.notify_batch(events)
        subject.notify(events[0])
        assert before.events == [*events, events[0]]
        assert after.batches == [events]
        assert after.events == [events[0]]

    def test_raising_observer_is_logged_once_and_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing observer is logged once with its traceback, then only counted."""
        caplog.set_level(logging.DEBUG, logger="dask_monitor.subject")
        subject = Subject(name="flush")
        subject.subscribe(Broken())
        subject.subscribe(Recorder())
        subject.notify_batch(make_events(3))
        subject.notify(make_event(3))
        assert subject.errors == {"Broken": 4, "Recorder": 0}
        records = [r for r in caplog.records if r.name == "dask_monitor.subject"]
        errors = [r for r in records if r.levelno >= logging.WARNING]
        assert len(errors) == 1
        (error,) = errors
        assert error.levelno == logging.ERROR
        assert error.exc_info is not None
        assert isinstance(error.exc_info[1], ValueError)
        assert "flush" in error.getMessage()
        assert "Broken" in error.getMessage()
        assert "cannot handle inc-0" in caplog.text
        assert sum(r.levelno == logging.DEBUG for r in records) == 3

    def test_each_failing_observer_is_logged_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two failing observers are logged once each."""
        subject = Subject()
        subject.subscribe(Broken())
        subject.subscribe(Broken())
        subject.notify_batch(make_events(2))
        assert subject.errors == {"Broken": 2, "Broken#2": 2}
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2

    def test_raise_errors_reraises(self) -> None:
        """With ``raise_errors=True`` an observer's exception propagates."""
        subject = Subject(raise_errors=True)
        subject.subscribe(Broken())
        with pytest.raises(ValueError, match="cannot handle inc-0"):
            subject.notify(make_event())
        with pytest.raises(ValueError, match="cannot handle inc-0"):
            subject.notify_batch(make_events(2))
        assert subject.errors == {"Broken": 2}

    def test_failing_batch_observer_is_counted_per_call(self) -> None:
        """A raising ``update_batch`` counts one failure per batch."""
        subject = Subject()

        class BrokenBatch(BatchRecorder):
            def update_batch(self, events: Sequence[Event]) -> None:
                raise RuntimeError("no batches")

        subject.subscribe(BrokenBatch())
        subject.notify_batch(make_events(5))
        subject.notify_batch(make_events(5))
        assert subject.errors == {"BrokenBatch": 2}


def run(coro: Any) -> Any:
    """Run a coroutine in a fresh event loop, failing rather than hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


class AsyncRecorder:
    """Records events through ``async def`` methods, yielding to the loop each time."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches: list[Sequence[Event]] = []

    async def update(self, event: Event) -> None:
        await asyncio.sleep(0)
        self.events.append(event)

    async def update_batch(self, events: Sequence[Event]) -> None:
        await asyncio.sleep(0)
        self.batches.append(events)


class AsyncBroken:
    """Raises, asynchronously, on every event."""

    async def update(self, event: Event) -> None:
        await asyncio.sleep(0)
        raise ValueError("async failure")


class TestAsyncSubject:
    def test_async_and_sync_observers_are_notified(self) -> None:
        """Async observers are awaited and sync ones called, batch or not."""
        subject = AsyncSubject()
        arec, srec, brec = AsyncRecorder(), Recorder(), BatchRecorder()
        seen: list[Event] = []

        async def on_event(event: Event) -> None:
            seen.append(event)

        for observer in (arec, srec, brec, on_event):
            subject.subscribe(observer)
        events = make_events(3)
        run(subject.notify(events[0]))
        run(subject.notify_batch(events))
        assert arec.events == [events[0]]
        assert arec.batches == [events]
        assert srec.events == [events[0], *events]
        assert brec.events == [events[0]]
        assert brec.batches == [events]
        assert seen == [events[0], *events]

    def test_observers_are_awaited_concurrently(self) -> None:
        """The awaitables of all observers are gathered, not awaited one by one."""
        subject = AsyncSubject()
        log: list[str] = []

        async def main() -> None:
            second_ran = asyncio.Event()

            async def first(event: Event) -> None:
                await second_ran.wait()  # would wait forever if awaited alone
                log.append("first")

            async def second(event: Event) -> None:
                log.append("second")
                second_ran.set()

            subject.subscribe(first)
            subject.subscribe(second)
            await subject.notify(make_event())

        run(main())
        assert log == ["second", "first"]

    def test_per_event_async_observer_sees_events_in_order(self) -> None:
        """An async observer without ``update_batch`` gets its updates one by one."""
        subject = AsyncSubject()

        class Slow:
            def __init__(self) -> None:
                self.events: list[Event] = []

            async def update(self, event: Event) -> None:
                for _ in range(3 - len(self.events) % 3):
                    await asyncio.sleep(0)
                self.events.append(event)

        slow = Slow()
        subject.subscribe(slow)
        events = make_events(6)
        run(subject.notify_batch(events))
        assert slow.events == events

    def test_raising_async_observer_is_isolated_and_counted(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A raising async observer is logged once and counted; the others still run."""
        subject = AsyncSubject(name="sinks")
        arec, srec = AsyncRecorder(), Recorder()
        subject.subscribe(AsyncBroken())
        subject.subscribe(arec)
        subject.subscribe(Broken())
        subject.subscribe(srec)
        events = make_events(3)
        run(subject.notify_batch(events))
        run(subject.notify(events[0]))
        assert arec.batches == [events]
        assert arec.events == [events[0]]
        assert srec.events == [*events, events[0]]
        assert subject.errors == {
            "AsyncBroken": 4,
            "AsyncRecorder": 0,
            "Broken": 4,
            "Recorder": 0,
        }
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2
        assert all(r.exc_info is not None for r in errors)

    def test_raise_errors_reraises_after_gathering(self) -> None:
        """With ``raise_errors=True`` the failure propagates once all are awaited."""
        subject = AsyncSubject(raise_errors=True)
        rec = AsyncRecorder()
        subject.subscribe(AsyncBroken())
        subject.subscribe(rec)
        with pytest.raises(ValueError, match="async failure"):
            run(subject.notify(make_event()))
        assert rec.events == [make_event()]

    def test_raise_errors_with_sync_failure_leaves_no_pending_coroutine(self) -> None:
        """A sync failure re-raised before gathering closes the coroutines started."""
        subject = AsyncSubject(raise_errors=True)
        subject.subscribe(AsyncRecorder())
        subject.subscribe(Broken())
        with pytest.raises(ValueError, match="cannot handle"):
            run(subject.notify(make_event()))
        # A coroutine left unawaited would warn here, and warnings are errors.
        gc.collect()

    def test_shares_subscription_bookkeeping(self) -> None:
        """An async subject subscribes, validates and holds weak references alike."""
        subject = AsyncSubject()
        rec = AsyncRecorder()
        unsubscribe = subject.subscribe(rec, weak=True)
        assert subject.observers == (rec,)
        assert unsubscribe() is True
        with subject.subscribed(rec):
            assert len(subject) == 1
        with pytest.raises(TypeError, match="must have an update"):
            subject.subscribe(object())  # type: ignore[arg-type]
        subject.subscribe(rec, weak=True)
        del rec
        gc.collect()
        assert len(subject) == 0


def test_public_names() -> None:
    """The module exports its public API, and nothing private."""
    from dask_monitor import subject as module

    assert sorted(module.__all__) == [
        "AsyncSubject",
        "BatchObserver",
        "Observer",
        "ObserverLike",
        "Subject",
    ]
