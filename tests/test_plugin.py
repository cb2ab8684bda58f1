"""The scheduler plugin on real clusters: counts equal the scheduler's own."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import dask
import dask.array as da
import pytest
from distributed import Client, SchedulerPlugin, wait

from dask_monitor import ConfigError, Monitor, MonitorPlugin, get_plugin
from dask_monitor.events import NEW, TaskStatus, WorkerResources, WorkerStatus
from dask_monitor.pipeline import Pipeline
from dask_monitor.scheduler.plugin import HANDLERS
from tests.workloads import fail_if_odd, inc, slow_inc

from .conftest import make_cluster, prefix_states, snapshot_states

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")


def run_mixed_workload(client: Client) -> None:
    """client.map, an array reduction, a dataframe groupby and raising tasks."""
    futures = client.map(inc, range(50))
    client.gather(futures)
    da.ones((200, 200), chunks=(20, 20)).sum().compute()
    pdf = pd.DataFrame({"k": [i % 7 for i in range(2_000)], "x": range(2_000)})
    dd.from_pandas(pdf, npartitions=20).groupby("k").x.sum().compute()
    bad = client.map(fail_if_odd, range(6))
    wait(bad)
    del futures, bad


class _Pairs:
    """An observer: how many task events of each ``(start, finish)`` it got,
    and how many others (worker events; resource samples are no transitions:
    the monitor does not count them among its events)."""

    def __init__(self) -> None:
        self.count: Counter[tuple[str, str]] = Counter()
        self.others = 0

    def update(self, event: Any) -> None:
        self.update_batch([event])

    def update_batch(self, events: Any) -> None:
        tasks = [(e.start, e.finish) for e in events if isinstance(e, TaskStatus)]
        self.count.update(tasks)
        samples = sum(isinstance(e, WorkerResources) for e in events)
        self.others += len(events) - len(tasks) - samples


class TestCounts:
    """After a workload and one flush, the snapshot agrees with the scheduler."""

    def test_state_counts_equal_the_schedulers_own(self, client: Client) -> None:
        """Every prefix's state counts equal scheduler.task_prefixes[name].states."""
        with Monitor.attach(client) as monitor:
            futures = client.map(inc, range(100))
            client.gather(futures)
            bad = client.map(fail_if_odd, range(10))
            wait(bad)
            x = da.ones((100, 100), chunks=(10, 10)).sum().persist()
            wait(x)
            snap = monitor.snapshot(flush=True)
            scheduler = client.cluster.scheduler  # type: ignore[union-attr]
            assert snapshot_states(snap) == prefix_states(scheduler)
            assert snap["prefixes"]["inc"]["states"] == {"memory": 100}
            assert snap["prefixes"]["fail_if_odd"]["states"] == {
                "memory": 5,
                "erred": 5,
            }
            del futures, bad, x

    def test_counts_agree_after_mixed_workloads_are_released(
        self, client: Client
    ) -> None:
        """Map, array, dataframe and raising work; completed counts each task once."""
        with Monitor.attach(client) as monitor:
            run_mixed_workload(client)
            time.sleep(0.3)  # let the releases of the dropped futures arrive
            snap = monitor.snapshot(flush=True)
            scheduler = client.cluster.scheduler  # type: ignore[union-attr]
            assert snapshot_states(snap) == prefix_states(scheduler)
            totals = snap["totals"]
            assert snap["prefixes"]["inc"]["completed"] == 50
            assert snap["prefixes"]["fail_if_odd"]["completed"] == 3
            assert snap["prefixes"]["fail_if_odd"]["erred"] == 3
            assert totals["erred"] == 3
            assert totals["remaining"] == 0
            assert totals["done"] == totals["completed"] + totals["erred"]
            assert totals["completed"] >= 50 + 100 + 20 + 3
            # Nothing is remembered as processing once all is done.
            assert get_plugin(scheduler).buffer.where == {}  # type: ignore[union-attr]

    def test_errors_carry_the_exception_text(self, client: Client) -> None:
        """Erred tasks are grouped by prefix and type with their text and traceback."""
        with Monitor.attach(client) as monitor:
            bad = client.map(fail_if_odd, range(10, 20))
            wait(bad)
            snap = monitor.snapshot(flush=True)
            [row] = [r for r in snap["errors"] if r["prefix"] == "fail_if_odd"]
            assert row["type"] == "ValueError"
            assert row["count"] == 5
            assert "odd input" in row["exception"]
            assert "fail_if_odd" in row["traceback"]
            assert row["worker"] in snap["workers"]
            del bad

    def test_workers_and_samples_fill_in(self, client: Client) -> None:
        """Workers show their completed tasks and samples hold recent events."""
        with Monitor.attach(client) as monitor:
            client.gather(client.map(slow_inc, range(20)))
            snap = monitor.snapshot(flush=True)
            workers = snap["workers"]
            assert set(workers) == set(client.scheduler_info()["workers"])
            assert sum(w["completed"] for w in workers.values()) >= 20
            assert sum(w["busy"] for w in workers.values()) >= 20 * 0.04
            recent = snap["samples"]["recent"]
            assert any(e["prefix"] == "slow_inc" for e in recent)
            durations = snap["prefixes"]["slow_inc"]["durations"]
            assert durations["count"] == 20
            assert durations["p50"] == pytest.approx(0.05, rel=0.5)

    def test_restart_keeps_history_and_clears_live_states(self) -> None:
        """client.restart() drops tasks without transitions: live states start
        over, completions are history and stay."""
        with (
            make_cluster(n_workers=1, processes=True) as cluster,
            Client(cluster) as client,
            Monitor.attach(client) as monitor,
        ):
            futures = client.map(inc, range(20))
            client.gather(futures)
            assert monitor.snapshot(flush=True)["totals"]["completed"] == 20
            client.restart()
            snap = monitor.snapshot(flush=True)
            assert snap["totals"]["completed"] == 20
            assert snapshot_states(snap) == prefix_states(cluster.scheduler) == {}
            again = client.map(inc, range(100, 105))
            client.gather(again)
            snap = monitor.snapshot(flush=True)
            assert snap["totals"]["completed"] == 25
            assert snapshot_states(snap) == prefix_states(cluster.scheduler)
            del futures, again

    def test_killed_worker_still_ends_with_equal_counts(self) -> None:
        """A worker process killed mid-run: counts still equal the scheduler's."""
        with (
            make_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
            Monitor.attach(client) as monitor,
        ):
            futures = client.map(slow_inc, range(60))
            while sum(f.status == "finished" for f in futures) < 10:
                time.sleep(0.02)
            pids = list(client.run(os.getpid).values())
            os.kill(pids[0], signal.SIGKILL)
            client.gather(futures)
            snap = monitor.snapshot(flush=True)
            assert snapshot_states(snap) == prefix_states(cluster.scheduler)
            assert snap["prefixes"]["slow_inc"]["states"] == {"memory": 60}
            assert snap["prefixes"]["slow_inc"]["done"] == 60
            removed = [w for w in snap["workers"].values() if w["status"] == "removed"]
            assert len(removed) >= 1

    def test_queued_tasks_make_no_waiting_to_waiting_events(
        self, client: Client
    ) -> None:
        """Dask calls plugins with ``waiting -> waiting`` when it queues a
        task; the monitor's observers never see such a call, and its counts
        still equal the scheduler's."""
        seen: list[tuple[str, str]] = []

        class Calls(SchedulerPlugin):
            """What Dask calls plugins with."""

            name = "test-calls"

            def transition(
                self, key: Any, start: str, finish: str, *args: Any, **kw: Any
            ) -> None:
                seen.append((start, finish))

        async def add_calls() -> None:  # on the scheduler's loop
            scheduler.add_plugin(Calls())

        async def remove_calls() -> None:
            scheduler.remove_plugin("test-calls")

        pairs = _Pairs()  # what the monitor's observers get
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        with Monitor.attach(client) as monitor:
            plugin = get_plugin(scheduler)
            assert plugin is not None and plugin.pipeline is not None
            plugin.pipeline.add_observer(pairs)
            client.sync(add_calls)
            # Far more tasks than threads: Dask queues most of them.
            futures = client.map(inc, range(3000, 3400))
            client.gather(futures)
            snap = monitor.snapshot(flush=True)
            client.sync(remove_calls)
            assert ("waiting", "waiting") in seen  # Dask made such calls
            assert pairs.count["waiting", "queued"] > 0
            assert {(s, f) for s, f in pairs.count if s == f} == set()
            assert snapshot_states(snap) == prefix_states(scheduler)
            assert snap["prefixes"]["inc"]["states"] == {"memory": 400}
            del futures

    def test_a_tasks_creation_and_first_move_are_one_event(
        self, client: Client
    ) -> None:
        """Dask creates a task in ``released`` (``update_graph``) and moves it
        to ``waiting`` in the same tick: observers get one ``new -> waiting``
        event, the monitor counts both calls, and the counts still equal the
        scheduler's."""
        pairs = _Pairs()
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        with Monitor.attach(client) as monitor:
            plugin = get_plugin(scheduler)
            assert plugin is not None and plugin.pipeline is not None
            plugin.pipeline.add_observer(pairs)
            futures = client.map(inc, range(4000, 4100))
            client.gather(futures)
            snap = monitor.snapshot(flush=True)
            assert pairs.count[NEW, "waiting"] == 100
            assert pairs.count[NEW, "released"] == 0
            assert pairs.count["released", "waiting"] == 0
            m = snap["monitor"]
            assert m["merged"] == 100
            events = sum(pairs.count.values()) + pairs.others
            assert m["events"] == events
            assert snapshot_states(snap) == prefix_states(scheduler)
            assert snap["prefixes"]["inc"]["states"] == {"memory": 100}
            assert snap["totals"]["total"] == 100
            del futures

    def test_a_task_listed_again_by_a_new_graph_is_counted_once(
        self, client: Client
    ) -> None:
        """A graph that uses a task which exists already in ``released`` (its
        data released, a dependent keeps it) lists it again; its report is
        folded with its move to ``waiting``, and it is counted as moved (and
        recomputed), not created twice."""
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        with Monitor.attach(client) as monitor:
            x = client.submit(inc, 1, key="relist-1")
            y = client.submit(inc, x, key="relist-2")
            y.result()
            del x  # x's data goes; y depends on it: x stays, released
            deadline = time.monotonic() + 10
            while scheduler.tasks["relist-1"].state != "released":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            first = monitor.snapshot(flush=True)
            assert first["prefixes"]["relist"]["states"] == {
                "released": 1,
                "memory": 1,
            }
            graph = dask.delayed(inc)(
                dask.delayed(inc)(1, dask_key_name="relist-1"),
                dask_key_name="relist-3",
            )
            z = client.compute(graph)
            assert z.result() == 3
            snap = monitor.snapshot(flush=True)
            assert snapshot_states(snap) == prefix_states(scheduler)
            row = snap["prefixes"]["relist"]
            # x ran again, and is released again: z has its result.
            assert row["states"] == {"memory": 2, "released": 1}
            assert (row["completed"], row["recomputed"]) == (4, 1)
            assert snap["monitor"]["merged"] >= 3
            del y, z


class TestAttach:
    """Attaching, detaching, preloading and options."""

    def test_attaching_twice_does_not_double_count(self, client: Client) -> None:
        """Two handles share one plugin; each task is counted once."""
        with Monitor.attach(client) as first, Monitor.attach(client) as second:
            client.gather(client.map(inc, range(1000, 1030)))
            a = first.snapshot(flush=True)
            b = second.snapshot()
            assert a["prefixes"]["inc"]["completed"] == 30
            assert b["prefixes"]["inc"]["completed"] == 30

    def test_detach_removes_the_plugin_handlers_and_flush(self, client: Client) -> None:
        """The last detach removes the plugin, its RPC handlers and its callback."""
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        monitor = Monitor.attach(client)
        assert get_plugin(scheduler) is not None
        assert "dask-monitor-flush" in scheduler.periodic_callbacks
        monitor.detach()
        assert get_plugin(scheduler) is None
        assert not set(HANDLERS) & set(scheduler.handlers)
        assert "dask-monitor-flush" not in scheduler.periodic_callbacks

    def test_registering_again_replaces_cleanly(self, client: Client) -> None:
        """A plugin registered over another stops the old flush and handlers."""
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]
        with Monitor.attach(client):
            old = get_plugin(scheduler)
            assert old is not None
            replacement = MonitorPlugin()
            replacement.idempotent = False  # type: ignore[misc]
            with pytest.warns(UserWarning, match="overwriting"):  # Dask's own warning
                client.register_plugin(replacement)
            new = get_plugin(scheduler)
            assert new is not None and new is not old
            assert old._pc is None
            handler = scheduler.handlers["dask_monitor_snapshot"]
            assert handler.__self__ is new
            client.gather(client.map(inc, range(2000, 2010)))
            new.flush()
            assert new.snapshot()["prefixes"]["inc"]["completed"] >= 10
            new._rpc_detach("none")  # no attachments left: removes itself

    def test_user_observers_run_on_the_scheduler(self, client: Client) -> None:
        """Observers passed to attach see the events; detach unsubscribes them."""
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]

        class Collect:
            name = "collect"

            def __init__(self) -> None:
                self.events: list[Any] = []

            def update_batch(self, events: list[Any]) -> None:
                self.events.extend(events)

            def update(self, event: Any) -> None:
                self.events.append(event)

        with Monitor.attach(client, observers=[Collect()]) as monitor:
            client.gather(client.map(inc, range(3000, 3010)))
            monitor.snapshot(flush=True)
            plugin = get_plugin(scheduler)
            assert plugin is not None
            [collect] = [
                o
                for o in plugin.pipeline.subject.observers
                if getattr(o, "name", "") == "collect"
            ]  # type: ignore[union-attr]
            done = [
                e
                for e in collect.events
                if isinstance(e, TaskStatus) and e.finish == "memory"
            ]
            assert len(done) == 10
            assert all(e.worker and e.duration is not None for e in done)

    def test_a_raising_observer_does_not_break_the_computation(
        self, client: Client
    ) -> None:
        """An observer that always raises is isolated and counted."""

        def explode(event: Any) -> None:
            raise RuntimeError("observer bug")

        with Monitor.attach(client, observers=[explode]) as monitor:
            assert client.gather(client.map(inc, range(4000, 4010))) == list(
                range(4001, 4011)
            )
            snap = monitor.snapshot(flush=True)
            assert snap["prefixes"]["inc"]["completed"] == 10
            errors = snap["monitor"]["observer_errors"]
            assert sum(errors.values()) >= 10

    def test_preload_installs_the_plugin(self) -> None:
        """scheduler_kwargs preload=["dask_monitor"] installs it; detach keeps it."""
        with (
            make_cluster(
                n_workers=1, scheduler_kwargs={"preload": ["dask_monitor"]}
            ) as cluster,
            Client(cluster) as client,
        ):
            plugin = get_plugin(cluster.scheduler)
            assert plugin is not None and plugin.preloaded
            monitor = Monitor.attach(client)
            client.gather(client.map(inc, range(10)))
            assert monitor.snapshot(flush=True)["prefixes"]["inc"]["completed"] == 10
            monitor.detach()
            assert get_plugin(cluster.scheduler) is plugin

    def test_invalid_options_fail_at_attach_naming_the_setting(
        self, client: Client
    ) -> None:
        """Bad values from keywords or Dask config raise ConfigError before sending."""
        with pytest.raises(ConfigError, match=r"monitor\.interval"):
            Monitor.attach(client, interval=-5)
        with pytest.raises(ConfigError, match=r"monitor\.buffer-size"):
            Monitor.attach(client, buffer_size=0)
        with pytest.raises(ConfigError, match="nonsense"):
            Monitor.attach(client, nonsense=1)
        with (
            dask.config.set({"monitor.max-groups": "many"}),
            pytest.raises(ConfigError, match=r"monitor\.max-groups"),
        ):
            Monitor.attach(client)
        with (
            dask.config.set({"monitor.bogus-setting": 1}),
            pytest.raises(ConfigError, match=r"monitor\.bogus-setting"),
        ):
            Monitor.attach(client)
        assert get_plugin(client.cluster.scheduler) is None  # type: ignore[union-attr]

    def test_asynchronous_client(self) -> None:
        """attach, snapshot and detach are awaitable with an asynchronous client."""

        async def main() -> int:
            async with (
                make_cluster(n_workers=1, asynchronous=True) as cluster,
                Client(cluster, asynchronous=True) as client,
            ):
                monitor = await Monitor.attach(client)  # type: ignore[misc]
                await client.gather(client.map(inc, range(5000, 5007)))
                snap = await monitor.snapshot(flush=True)  # type: ignore[misc]
                await monitor.detach()
                return int(snap["prefixes"]["inc"]["completed"])

        assert asyncio.run(main()) == 7


class TestHook:
    """The transition hook on its own, with synthetic arguments."""

    def test_hook_buffers_and_counts_drops_when_full(self) -> None:
        """Past the buffer size a transition is dropped and counted, never stored."""
        plugin = MonitorPlugin(buffer_size=3)
        for i in range(5):
            plugin.transition(f"x-{i}", "released", "waiting", stimulus_id="s")
        assert len(plugin.buffer) == 3
        assert plugin.buffer.dropped == 2

    def test_a_call_that_changes_no_state_is_no_event(self) -> None:
        """``waiting -> waiting`` (Dask queuing a task) is not buffered;
        ``erred -> erred`` is (the task erred again)."""
        plugin = MonitorPlugin()
        plugin.transition("x-1", "waiting", "waiting", stimulus_id="s")
        plugin.transition("x-1", "waiting", "queued", stimulus_id="s")
        plugin.transition("x-2", "erred", "erred", stimulus_id="s")
        events = plugin.buffer.drain(100.0)
        assert [(e.key, e.start, e.finish) for e in events] == [
            ("x-1", "waiting", "queued"),
            ("x-2", "erred", "erred"),
        ]

    def test_a_creation_is_folded_only_with_a_first_move_before_the_flush(
        self,
    ) -> None:
        """A creation and its ``released -> waiting`` in one flush make one
        event; a move to another state, or after the flush (or after a
        restart), is an event of its own; a restart flushes what is buffered
        first."""
        group = SimpleNamespace(
            name="inc-g", prefix=SimpleNamespace(name="inc"), span_id=None
        )
        keys = [f"inc-{i}" for i in range(5)]
        plugin = MonitorPlugin()
        plugin.pipeline = Pipeline(plugin.config)
        seen: list[tuple[str, str, str]] = []
        plugin.pipeline.add_observer(lambda e: seen.append((e.key, e.start, e.finish)))
        plugin.buffer.tasks = {
            k: SimpleNamespace(state="released", group=group, processing_on=None)
            for k in keys
        }
        tr = plugin.transition
        plugin.update_graph(None, tasks=keys[:3], keys=set(keys[:3]))  # type: ignore[arg-type]
        tr("inc-0", "released", "waiting", stimulus_id="s")
        tr("inc-1", "released", "forgotten", stimulus_id="s")
        plugin.flush()
        tr("inc-2", "released", "waiting", stimulus_id="s")
        plugin.flush()
        plugin.update_graph(None, tasks=keys[3:], keys=set(keys[3:]))  # type: ignore[arg-type]
        plugin.restart(None)  # type: ignore[arg-type]
        tr("inc-3", "released", "waiting", stimulus_id="s")
        plugin.flush()
        assert seen == [
            ("inc-0", NEW, "waiting"),
            ("inc-1", NEW, "released"),
            ("inc-2", NEW, "released"),
            ("inc-1", "released", "forgotten"),
            ("inc-2", "released", "waiting"),
            ("inc-3", NEW, "released"),
            ("inc-4", NEW, "released"),
            ("inc-3", "released", "waiting"),
        ]
        # Nine calls: eight events (the restart flushed the two creations
        # buffered before it), one call folded into one of them.
        m = plugin.snapshot()["monitor"]
        assert (m["events"], m["merged"], m["dropped"]) == (8, 1, 0)

    def test_convert_makes_task_status_events(self) -> None:
        """Buffered tuples become TaskStatus events with compute times."""
        plugin = MonitorPlugin()
        plugin.transition("inc-1", "waiting", "processing", stimulus_id="s")
        plugin.transition(
            "inc-1",
            "processing",
            "memory",
            stimulus_id="s",
            worker="tcp://w:1",
            nbytes=28,
            startstops=[{"action": "compute", "start": 10.0, "stop": 10.5}],
        )
        key = ("sum-aggregate-0123456789abcdef0123456789abcdef", 0)
        plugin.transition(
            key,
            "processing",
            "erred",
            stimulus_id="s",
            worker="tcp://w:1",
            exception_text="ValueError('no')",
            traceback_text="Traceback ...",
        )
        events = plugin.buffer.drain(100.0)
        assert [type(e) for e in events] == [TaskStatus] * 3
        done = events[1]
        assert (done.key, done.prefix, done.worker, done.nbytes) == (
            "inc-1",
            "inc",
            "tcp://w:1",
            28,
        )
        assert done.duration == pytest.approx(0.5)
        assert (done.begin, done.end) == (10.0, 10.5)
        err = events[2]
        assert err.key == str(key) and err.prefix == "sum-aggregate"
        assert err.exception_type == "ValueError"

    def test_no_task_is_remembered_as_processing_once_it_left(self) -> None:
        """Whatever the order of states in one flush, the workers of tasks
        entering and leaving processing are right and none stays remembered."""
        plugin = MonitorPlugin()
        memory = {"worker": "tcp://w:1", "nbytes": 1, "startstops": ()}
        plugin.transition(
            "a-1", "waiting", "processing", stimulus_id="s", worker="tcp://w:1"
        )
        plugin.buffer.drain(1.0)
        # A flush where a completion comes before the next task enters
        # processing, and that task completes and is forgotten in it too.
        plugin.transition("a-1", "processing", "memory", stimulus_id="s", **memory)
        plugin.transition("a-1", "memory", "forgotten", stimulus_id="s")
        plugin.transition(
            "a-2", "waiting", "processing", stimulus_id="s", worker="tcp://w:2"
        )
        plugin.transition("a-2", "processing", "released", stimulus_id="s")
        plugin.transition(
            "a-3", "waiting", "processing", stimulus_id="s", worker="tcp://w:3"
        )
        plugin.transition("a-3", "processing", "memory", stimulus_id="s", **memory)
        plugin.transition("a-3", "memory", "forgotten", stimulus_id="s")
        batch = plugin.buffer.drain(2.0)
        assert batch.workers == [
            "tcp://w:1",  # completions say where they ran
            None,
            "tcp://w:2",
            "tcp://w:2",  # a departure without a worker: where it entered
            "tcp://w:3",
            "tcp://w:1",
            None,
        ]
        assert plugin.buffer.where == {}

    def test_a_task_entering_again_in_one_flush_is_followed_in_order(self) -> None:
        """Released from one worker and sent to another within one flush."""
        plugin = MonitorPlugin()
        plugin.transition(
            "a-1", "waiting", "processing", stimulus_id="s", worker="tcp://w:1"
        )
        plugin.buffer.drain(1.0)
        plugin.transition("a-1", "processing", "released", stimulus_id="s")
        plugin.transition("a-1", "released", "waiting", stimulus_id="s")
        plugin.transition(
            "a-1", "waiting", "processing", stimulus_id="s", worker="tcp://w:2"
        )
        batch = plugin.buffer.drain(2.0)
        assert batch.workers == ["tcp://w:1", None, "tcp://w:2"]
        assert plugin.buffer.where == {"a-1": "tcp://w:2"}

    def test_worker_events(self) -> None:
        """Workers joining and leaving become WorkerStatus events."""
        plugin = MonitorPlugin()
        plugin.buffer.add_worker("tcp://w:1", 2)
        [event] = plugin.buffer.drain(1.0)
        assert event == WorkerStatus("tcp://w:1", "added", 1.0, 2)


def _blocked(name: str) -> int:
    from distributed import Event

    Event(name).wait()
    return 1


def test_removals_say_whether_dask_expected_them() -> None:
    """retire_workers: ``expected``; a plain ``Scheduler.remove_worker``: not.

    Dask does not tell the ``remove_worker`` hook; the plugin reads it from
    the ``remove-worker`` event Dask logs just before (same stimulus id).
    """
    from distributed import Event

    with (
        make_cluster(n_workers=3, threads_per_worker=1) as cluster,
        Client(cluster) as client,
        Monitor.attach(client, interval="50ms") as monitor,
    ):
        plugin = get_plugin(cluster.scheduler)
        assert plugin is not None and plugin.pipeline is not None
        seen: list[WorkerStatus] = []

        def collect(event: Any) -> None:
            if type(event) is WorkerStatus and event.action == "removed":
                seen.append(event)

        plugin.pipeline.subject.subscribe(collect)
        gate = Event("dask-monitor-test-expected", client=client)
        futures = client.map(_blocked, [gate.name] * 6, pure=False)
        until = time.monotonic() + 15
        while not all(len(p) for p in client.processing().values()):
            assert time.monotonic() < until
            time.sleep(0.02)
        retired, removed = sorted(client.processing())[:2]
        client.retire_workers([retired])

        async def remove(dask_scheduler: Any) -> None:
            await dask_scheduler.remove_worker(removed, stimulus_id="test-remove")

        client.run_on_scheduler(remove)
        until = time.monotonic() + 15
        while len(seen) < 2:
            assert time.monotonic() < until
            monitor.snapshot(flush=True)
            time.sleep(0.02)
        flags = {(e.address, e.expected) for e in seen}
        assert flags == {(retired, True), (removed, False)}
        assert all(e.processing >= 1 for e in seen)
        assert plugin._leaving == {}
        gate.set()
        assert client.gather(futures) == [1] * 6


class TestSubmissions:
    """Each graph submission is recorded and can be looked at on its own."""

    def test_submissions_are_recorded_with_their_span(self, client: Client) -> None:
        """update_graph calls appear with client, key count and span id."""
        from distributed import span

        with Monitor.attach(client) as monitor:
            with span("first"):
                a = client.map(inc, range(7000, 7004))
            with span("second"):
                b = client.map(slow_inc, range(8000, 8003))
            client.gather(a + b)
            snap = monitor.snapshot(flush=True)
            subs = snap["submissions"][-2:]
            assert [s["keys"] for s in subs] == [4, 3]
            assert all(s["client"] == client.id for s in subs)
            assert subs[0]["span"] != subs[1]["span"]
            second = monitor.snapshot(span=subs[1]["span"])
            assert second["totals"]["completed"] == 3
            assert set(second["prefixes"]) == {"slow_inc"}
            del a, b


class TestCompletionDetails:
    """What a completion's kwargs give: compute, transfer and disk seconds."""

    def test_startstops_are_split_by_action(self) -> None:
        """Transfers add up, disk reads and writes add up, the last compute counts."""
        from dask_monitor.scheduler.buffer import _completion

        kw = {
            "nbytes": 80,
            "startstops": (
                {"action": "transfer", "start": 1.0, "stop": 1.5, "source": "w"},
                {"action": "transfer", "start": 2.0, "stop": 2.25, "source": "v"},
                {"action": "disk-read", "start": 3.0, "stop": 3.125},
                {"action": "compute", "start": 4.0, "stop": 5.0},
                {"action": "disk-write", "start": 5.0, "stop": 5.5},
            ),
        }
        d = _completion(kw)
        assert (d.duration, d.begin, d.end, d.nbytes) == (1.0, 4.0, 5.0, 80)
        assert d.transfer == 0.75 and d.disk == 0.625
        assert d.exception is None and d.traceback is None
        plain = _completion(
            {"startstops": ({"action": "compute", "start": 0, "stop": 2},)}
        )
        assert plain.transfer is None and plain.disk is None and plain.nbytes is None
