"""Alert rules with synthetic events and a fake clock; their configuration."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Sequence
from typing import Any

import dask
import pytest

from dask_monitor import ConfigError, MonitorConfig, Pipeline
from dask_monitor.alerts import (
    ERROR_BURST,
    STALL,
    STRAGGLER,
    WORKER_LOST,
    AlertLog,
    AlertRule,
    ErrorBurstRule,
    StallRule,
    StragglerRule,
    WorkerLostRule,
    topics,
)
from dask_monitor.batch import Batch
from dask_monitor.config import AlertsConfig
from dask_monitor.events import NEW, Alert, Event, TaskStatus, WorkerStatus
from dask_monitor.observers import DurationsObserver
from dask_monitor.testing import FakeClock


def task(key: str, start: str, finish: str, t: float, **kw: Any) -> TaskStatus:
    prefix = key.split("-")[0]
    return TaskStatus(key, prefix, f"{prefix}-g", start, finish, t, **kw)


def run(key: str, t0: float, duration: float, worker: str = "w1") -> list[TaskStatus]:
    """The events of one task that ran from t0 for ``duration`` seconds."""
    return [
        task(key, NEW, "released", t0),
        task(key, "released", "waiting", t0),
        task(key, "waiting", "processing", t0, worker=worker),
        task(
            key,
            "processing",
            "memory",
            t0 + duration,
            worker=worker,
            duration=duration,
            begin=t0,
            end=t0 + duration,
        ),
    ]


def fail(key: str, t: float) -> list[TaskStatus]:
    return [
        task(key, "waiting", "processing", t, worker="w1"),
        task(key, "processing", "erred", t, worker="w1", exception="ValueError('x')"),
    ]


def bound(rule: AlertRule) -> list[Alert]:
    out: list[Alert] = []
    rule.bind(out.append)
    return out


def feed(rule: AlertRule, events: Sequence[Event]) -> None:
    rule.update_batch(list(events))


class TestStallRule:
    """Tasks pending, none finishing for ``seconds``: one alert, then a cooldown."""

    def test_fires_once_after_seconds_without_progress(self) -> None:
        """Ticks past the threshold give exactly one alert; earlier ticks none."""
        rule = StallRule(seconds=10, cooldown=100)
        out = bound(rule)
        feed(rule, run("a-1", 0, 1)[:3])  # a-1 is processing from t=0
        for now in range(10):
            rule.tick(float(now))
        assert out == []
        for now in range(10, 50):
            rule.tick(float(now))
        assert [a.kind for a in out] == [STALL]
        assert out[0].details["active"] == 1
        assert out[0].timestamp == 10.0
        assert rule.suppressed == 0  # a lasting stall is not counted every tick

    def test_message_agrees_with_the_count(self) -> None:
        """One task waiting reads "1 task is", two read "2 tasks are"."""
        for n, words in ((1, "1 task is waiting"), (2, "2 tasks are waiting")):
            rule = StallRule(seconds=10, cooldown=100)
            out = bound(rule)
            for i in range(n):
                feed(rule, run(f"a-{i}", 0, 1)[:3])
            rule.tick(20.0)
            assert words in out[0].message

    def test_cooldown_then_again(self) -> None:
        """A stall that lasts past the cooldown is reported again."""
        rule = StallRule(seconds=10, cooldown=30)
        out = bound(rule)
        feed(rule, run("a-1", 0, 1)[:3])
        for now in range(0, 45):
            rule.tick(float(now))
        assert [a.timestamp for a in out] == [10.0, 40.0]

    def test_quiet_on_a_healthy_run(self) -> None:
        """Tasks finishing every few seconds never trigger it."""
        rule = StallRule(seconds=10, cooldown=30)
        out = bound(rule)
        for i in range(100):
            feed(rule, run(f"a-{i}", 3.0 * i, 2.0))
            rule.tick(3.0 * i + 2.5)
        assert out == []

    def test_idle_cluster_is_not_stalled(self) -> None:
        """Nothing pending: no alert however long it stays so."""
        rule = StallRule(seconds=10)
        out = bound(rule)
        feed(rule, run("a-1", 0, 1))
        rule.tick(1000.0)
        assert out == [] and rule.active == 0

    def test_clock_starts_when_work_appears(self) -> None:
        """After an idle hour, new work gets the full ``seconds`` first."""
        rule = StallRule(seconds=10)
        out = bound(rule)
        feed(rule, run("a-1", 0, 1))
        feed(rule, run("a-2", 3600, 1)[:3])
        rule.tick(3605.0)
        assert out == []
        rule.tick(3611.0)
        assert len(out) == 1


class TestErrorBurstRule:
    """``count`` errors within ``window``, or a prefix's error rate."""

    def test_burst_fires_once_with_cooldown(self) -> None:
        """The count-th error within the window fires; the next ones cool down."""
        rule = ErrorBurstRule(count=3, window=10, rate=1.0, min_tasks=1000, cooldown=60)
        out = bound(rule)
        for i in range(6):
            feed(rule, fail(f"f-{i}", float(i)))
        assert [a.kind for a in out] == [ERROR_BURST]
        assert out[0].details["errors"] == 3
        assert rule.suppressed == 3
        for i in range(6, 9):  # after the cooldown: again
            feed(rule, fail(f"f-{i}", 100.0 + i))
        assert len(out) == 2

    def test_errors_spread_out_are_not_a_burst(self) -> None:
        """Three errors a minute apart with a 10 s window: quiet."""
        rule = ErrorBurstRule(count=3, window=10, rate=1.0, min_tasks=1000)
        out = bound(rule)
        for i in range(10):
            feed(rule, fail(f"f-{i}", 60.0 * i))
        assert out == []

    def test_error_rate_of_a_prefix(self) -> None:
        """Half of a prefix's tasks failing fires for that prefix, once."""
        rule = ErrorBurstRule(count=1000, window=1, rate=0.5, min_tasks=10, cooldown=60)
        out = bound(rule)
        for i in range(10):
            feed(rule, run(f"ok-{i}", i, 0.1))
            feed(rule, run(f"bad-{i}", i, 0.1)[:2])
            feed(rule, fail(f"bad-{i}", i + 0.5))
        assert [(a.kind, a.prefix) for a in out] == [(ERROR_BURST, "bad")]
        assert out[0].details["rate"] >= 0.5

    def test_quiet_on_a_healthy_run(self) -> None:
        """A few scattered errors among many successes: quiet."""
        rule = ErrorBurstRule(count=5, window=10, rate=0.5, min_tasks=10)
        out = bound(rule)
        for i in range(200):
            feed(rule, run(f"a-{i}", i, 0.5))
            if i % 50 == 0:
                feed(rule, fail(f"a-x{i}", float(i)))
        assert out == []

    def test_dependents_of_a_failure_do_not_count(self) -> None:
        """``waiting -> erred`` (blamed on a dependency) is not an error of its own."""
        rule = ErrorBurstRule(count=2, window=10, rate=1.0, min_tasks=1000)
        out = bound(rule)
        feed(rule, fail("f-0", 0))
        feed(rule, [task(f"g-{i}", "waiting", "erred", 0.0) for i in range(10)])
        assert out == []


class TestStragglerRule:
    """Processing longer than factor x the prefix's p95 (and min_seconds)."""

    def make(self, **kw: Any) -> tuple[StragglerRule, DurationsObserver, list[Alert]]:
        durations = DurationsObserver()
        options = {"factor": 3, "min_seconds": 1, "min_samples": 5, "cooldown": 60}
        options.update(kw)
        rule = StragglerRule(durations, **options)
        out = bound(rule)
        history = [e for i in range(20) for e in run(f"s-{i}", float(i), 1.0)]
        durations.update_batch(history)
        feed(rule, history)
        return rule, durations, out

    def test_fires_once_per_task_and_prefix(self) -> None:
        """A task running 10x the p95 is reported once, naming it."""
        rule, _, out = self.make()
        feed(rule, run("s-slow", 100, 0)[:3])
        feed(rule, run("s-ok", 100, 0)[:3])
        rule.tick(102.0)  # 2 s: under 3 x 1 s
        assert out == []
        for now in range(104, 200):
            rule.tick(float(now))
        assert [(a.kind, a.prefix) for a in out] == [(STRAGGLER, "s")]
        assert out[0].key in ("s-slow", "s-ok")
        assert out[0].details["typical"] == pytest.approx(1.0, rel=0.05)
        assert out[0].details["stragglers"] == 2

    def test_finished_tasks_leave_the_table(self) -> None:
        """A slow task that finished before the check is not a straggler."""
        rule, _, out = self.make()
        feed(rule, run("s-slow", 100, 10))
        rule.tick(120.0)
        assert out == [] and rule.inflight == {}

    def test_unknown_prefix_is_not_judged(self) -> None:
        """Without min_samples durations there is no yardstick: quiet."""
        rule, _, out = self.make()
        feed(rule, run("new-1", 100, 0)[:3])
        rule.tick(10_000.0)
        assert out == []

    def test_min_seconds_and_check_interval(self) -> None:
        """Below min_seconds: quiet; ticks closer than check_interval are skipped."""
        rule, _, out = self.make(min_seconds=60, check_interval=5)
        feed(rule, run("s-slow", 100, 0)[:3])
        rule.tick(150.0)
        assert out == []
        rule.tick(161.0)
        rule.tick(162.0)  # skipped: 1 s after the last check
        assert len(out) == 1

    def test_table_is_bounded(self) -> None:
        """Beyond max_tasks, in-flight tasks are counted, not tracked."""
        rule = StragglerRule(DurationsObserver(), max_tasks=10)
        feed(rule, [e for i in range(30) for e in run(f"x-{i}", 0, 0)[:3]])
        assert len(rule.inflight) == 10 and rule.untracked == 20

    def test_quiet_on_a_healthy_run(self) -> None:
        """Tasks close to their usual duration never trigger it."""
        rule, _, out = self.make()
        for i in range(100):
            t0 = 100.0 + i
            feed(rule, run(f"s-h{i}", t0, 0)[:3])
            rule.tick(t0 + 1.2)
            feed(rule, run(f"s-h{i}", t0, 1.3)[3:])
        assert out == []


class TestWorkerLostRule:
    """A worker that leaves with tasks in flight."""

    def test_fires_for_a_busy_worker_only(self) -> None:
        """Removed with 3 tasks: alert; removed idle, or added: nothing."""
        rule = WorkerLostRule(cooldown=60)
        out = bound(rule)
        feed(
            rule,
            [
                WorkerStatus("w1", "added", 0.0, 2),
                WorkerStatus("w2", "removed", 1.0, processing=0),
                WorkerStatus("w1", "removed", 2.0, processing=3),
                WorkerStatus("w1", "removed", 3.0, processing=3),  # cooldown
            ],
        )
        assert [(a.kind, a.worker) for a in out] == [(WORKER_LOST, "w1")]
        assert out[0].details["processing"] == 3
        assert rule.suppressed == 1

    def test_an_expected_removal_is_no_loss(self) -> None:
        """Retired (Dask expected it) with tasks in flight: no alert; lost: one."""
        rule = WorkerLostRule(cooldown=60)
        out = bound(rule)
        feed(
            rule,
            [
                WorkerStatus("w1", "removed", 1.0, processing=2, expected=True),
                WorkerStatus("w2", "removed", 2.0, processing=1, expected=False),
            ],
        )
        assert [(a.worker, a.severity) for a in out] == [("w2", "error")]
        assert rule.suppressed == 0


class TestAlertRule:
    """The base class: cooldowns per (kind, subject), and user rules."""

    def test_each_rule_has_a_module_of_its_own(self) -> None:
        """The rules package re-exports the base and one module per rule."""
        from dask_monitor.alerts.rules import (
            base,
            error_burst,
            stall,
            straggler,
            worker_lost,
        )

        assert AlertRule is base.AlertRule and AlertLog is base.AlertLog
        assert StallRule is stall.StallRule
        assert ErrorBurstRule is error_burst.ErrorBurstRule
        assert StragglerRule is straggler.StragglerRule
        assert WorkerLostRule is worker_lost.WorkerLostRule

    def test_cooldown_is_per_subject(self) -> None:
        """Two subjects fire independently; a repeat within the cooldown does not."""

        class Rule(AlertRule):
            kind = "mine"

        rule = Rule(cooldown=10)
        out = bound(rule)
        alert = Alert("mine", "info", "m", 0.0)
        assert rule.emit(alert, "a") and rule.emit(alert, "b")
        assert not rule.emit(Alert("mine", "info", "m", 5.0), "a")
        assert rule.emit(Alert("mine", "info", "m", 10.0), "a")
        assert len(out) == 3 and rule.suppressed == 1

    def test_user_rule_in_a_pipeline(self) -> None:
        """A user rule passed as an observer is bound and ticked by the pipeline."""

        class Every(AlertRule):
            kind = "custom"

            def tick(self, now: float) -> None:
                self.emit(Alert("custom", "info", "tick", now))

        clock = FakeClock(0.0)
        pipeline = Pipeline(clock=clock, observers=[Every(cooldown=5)])
        for now in range(12):
            clock.now = float(now)
            pipeline.tick()
        alerts = pipeline.snapshot()["alerts"]
        assert alerts["counts"] == {"custom": 3}
        assert [a["timestamp"] for a in alerts["recent"]] == [0.0, 5.0, 10.0]

    def test_negative_cooldown_is_refused(self) -> None:
        """Fail loudly at setup."""
        with pytest.raises(ValueError, match="cooldown"):
            StallRule(cooldown=-1)


class TestPipelineAlerts:
    """The pipeline runs the built-in rules and shows alerts in its snapshot."""

    def test_snapshot_has_recent_alerts_and_counts(self) -> None:
        """A stall and a lost worker appear in recent, counts and rules."""
        clock = FakeClock(0.0)
        config = MonitorConfig.from_config(alerts={"stall": {"seconds": 5}})
        pipeline = Pipeline(config, clock=clock, raise_errors=True)
        seen: list[Event] = []
        pipeline.alerts.subscribe(seen.append)
        pipeline.process(run("a-1", 0, 1)[:3])
        for now in range(10):
            clock.now = float(now)
            pipeline.tick()
        pipeline.process([WorkerStatus("w1", "removed", 10.0, processing=1)])
        alerts = pipeline.snapshot()["alerts"]
        assert alerts["counts"] == {STALL: 1, WORKER_LOST: 1}
        assert alerts["total"] == 2
        assert [a["kind"] for a in alerts["recent"]] == [STALL, WORKER_LOST]
        assert alerts["rules"]["StallRule"]["fired"] == 1
        assert [type(e) for e in seen] == [Alert, Alert]

    def test_tick_invalidates_the_cached_snapshot_only_on_alerts(self) -> None:
        """A quiet tick keeps the snapshot's seq; an alert changes it."""
        clock = FakeClock(0.0)
        config = MonitorConfig.from_config(alerts={"stall": {"seconds": 5}})
        pipeline = Pipeline(config, clock=clock)
        pipeline.process(run("a-1", 0, 1)[:3])
        seq = pipeline.snapshot()["seq"]
        # Within a second: figures read against the clock (rate, ETA) are
        # refreshed at most once a second, see test_pipeline.
        clock.now = 0.5
        pipeline.tick()
        assert pipeline.snapshot()["seq"] == seq
        clock.now = 6.0
        pipeline.tick()
        assert pipeline.snapshot()["seq"] > seq

    def test_recent_alerts_are_bounded(self) -> None:
        """``recent`` keeps the last N; counts keep them all."""
        log = AlertLog(recent=3)
        for i in range(10):
            log.update(Alert("k", "info", str(i), float(i)))
        snap = log.snapshot()
        assert [a["message"] for a in snap["recent"]] == ["7", "8", "9"]
        assert snap["counts"] == {"k": 10}

    def test_alerts_disabled(self) -> None:
        """``monitor.alerts.enabled: false``: no rules at all."""
        config = MonitorConfig.from_config(alerts={"enabled": False})
        assert Pipeline(config).rules == []

    def test_failing_rule_is_isolated(self) -> None:
        """A rule raising in tick is counted, the others still run."""

        class Broken(AlertRule):
            def tick(self, now: float) -> None:
                raise RuntimeError("boom")

        pipeline = Pipeline(observers=[Broken()])
        pipeline.tick()
        pipeline.tick()
        assert pipeline.snapshot()["alerts"]["tick_errors"] == {"Broken": 2}

    def test_topics(self) -> None:
        """Each alert goes to the common topic and to its kind's topic."""
        assert topics("stall") == ["dask-monitor-alerts", "dask-monitor-alerts-stall"]


class TestAlertsConfig:
    """``monitor.alerts.*``: defaults, Dask config, per-attach overrides, errors."""

    def test_defaults(self) -> None:
        """Every rule on, with the documented defaults."""
        config = MonitorConfig.from_config().alerts
        assert config == AlertsConfig()
        assert config.stall.seconds == 300.0
        assert config.error_burst.count == 10
        assert config.straggler.factor == 3.0
        assert config.worker_lost.min_processing == 1

    def test_dask_config_and_override_merge(self) -> None:
        """Dask config sets one field, the override another; both apply."""
        with dask.config.set({"monitor.alerts.stall.seconds": "7s"}):
            config = MonitorConfig.from_config(
                alerts={"stall": {"cooldown": 0}, "error-burst": {"count": 2}}
            )
        assert config.alerts.stall.seconds == 7.0
        assert config.alerts.stall.cooldown == 0.0
        assert config.alerts.error_burst.count == 2

    def test_hashable_picklable_round_trip(self) -> None:
        """The config travels pickled and as a dict (attach RPC) unchanged."""
        config = MonitorConfig.from_config(alerts={"straggler": {"factor": 2}})
        assert pickle.loads(pickle.dumps(config)) == config
        assert MonitorConfig(**config.to_dict()) == config
        assert hash(config) == hash(MonitorConfig(**config.to_dict()))

    @pytest.mark.parametrize(
        ("override", "setting"),
        [
            ({"stall": {"sekonds": 5}}, "monitor.alerts.stall.sekonds"),
            ({"stall": {"seconds": "soon"}}, "monitor.alerts.stall.seconds"),
            ({"error_burst": {"rate": 1.5}}, "monitor.alerts.error-burst.rate"),
            ({"error_burst": {"count": 0}}, "monitor.alerts.error-burst.count"),
            ({"straggler": {"quantile": 1}}, "monitor.alerts.straggler.quantile"),
            ({"worker_lost": {"enabled": "yes"}}, "monitor.alerts.worker-lost.enabled"),
            ({"stall": 5}, "monitor.alerts.stall"),
        ],
    )
    def test_errors_name_the_setting(self, override: Any, setting: str) -> None:
        """An invalid value raises ConfigError naming it."""
        with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
            MonitorConfig.from_config(alerts=override)

    def test_nats_settings_and_environment(self, monkeypatch: Any) -> None:
        """``monitor.nats.url`` wins; else DASK_MONITOR_NATS_URL; else none."""
        assert MonitorConfig.from_config().nats.url is None
        monkeypatch.setenv("DASK_MONITOR_NATS_URL", "nats://127.0.0.1:1")
        assert MonitorConfig.from_config().nats.url == "nats://127.0.0.1:1"
        with dask.config.set({"monitor.nats.url": "nats://127.0.0.1:2"}):
            assert MonitorConfig.from_config().nats.url == "nats://127.0.0.1:2"
        with pytest.raises(ConfigError, match=r"monitor\.nats\.backlog"):
            MonitorConfig.from_config(nats={"backlog": -1})


class TestColumns:
    """Built-in rules read batches as columns: same outcome as for a list."""

    def mixed(self) -> list[Event]:
        """Work appearing after an idle spell, errors among completions."""
        events: list[Event] = []
        for i in range(6):
            events += run(f"a-{i}", float(i), 0.5)
        events += fail("b-0", 7.0)
        events.append(WorkerStatus("w1", "removed", 7.5, processing=2))
        events += run("a-9", 8.0, 0.5)[:3]
        events += fail("b-1", 9.0)
        events += run("a-10", 9.5, 0.5)[:3]
        return events

    def test_batch_and_list_agree(self) -> None:
        """Each rule gives the same alerts and state from a Batch and a list."""
        events = self.mixed()
        durations = DurationsObserver()
        durations.update_batch(events)
        for make in (
            lambda: StallRule(seconds=1, cooldown=0),
            lambda: ErrorBurstRule(count=2, window=5, rate=0.2, min_tasks=1),
            lambda: StragglerRule(durations, min_samples=5, max_tasks=3),
            lambda: WorkerLostRule(cooldown=0),
        ):
            a, b = make(), make()
            out_a, out_b = bound(a), bound(b)
            a.update_batch(list(events))
            batch = Batch.from_events(events)
            batch._events = None  # columns only, as the plugin's flush makes them
            b.update_batch(batch)
            a.tick(100.0)
            b.tick(100.0)
            assert out_a, type(a).__name__
            assert [x.to_dict() for x in out_b] == [x.to_dict() for x in out_a]
            assert vars(b) == vars(a) | {"_sink": b._sink}

    def shuffled(self, seed: int) -> list[Event]:
        """Tasks of several prefixes in every order, with errors, retries,
        recomputations, keys submitted again and idle spells between waves
        of work."""
        rng = random.Random(seed)
        events: list[Event] = []
        t = 0.0
        for wave in range(4):
            lives: list[list[TaskStatus]] = []
            for i in range(rng.randrange(1, 30)):
                key = f"{rng.choice('abcde')}-{wave}-{i}"
                t0 = t + rng.random()
                life = [
                    task(key, NEW, "released", t0),
                    task(key, "released", rng.choice(["waiting", "queued"]), t0),
                    task(key, "waiting", "processing", t0 + 0.1, worker="w1"),
                ]
                end = rng.choice(["memory", "memory", "erred", "released"])
                extra: dict[str, Any] = {"worker": "w1"}
                if end == "memory":
                    extra.update(duration=0.5, begin=t0, end=t0 + 0.5)
                elif end == "erred":
                    extra.update(exception="ValueError('x')")
                life.append(task(key, "processing", end, t0 + 0.6, **extra))
                if end == "released" and rng.random() < 0.5:  # runs again
                    life.append(task(key, "released", "waiting", t0 + 0.6))
                    life.append(task(key, "waiting", "processing", t0 + 0.6))
                    life.append(task(key, "processing", "memory", t0 + 0.7))
                if end == "memory" and rng.random() < 0.3:  # recomputed
                    life.append(task(key, "memory", "released", t0 + 0.7))
                    life.append(task(key, "released", "waiting", t0 + 0.7))
                life.append(task(key, life[-1].finish, "forgotten", t0 + 0.8))
                if rng.random() < 0.2:  # the key submitted again
                    life += [
                        task(key, NEW, "released", t0 + 0.9),
                        task(key, "released", "waiting", t0 + 0.9),
                        task(key, "waiting", "processing", t0 + 0.9, worker="w1"),
                    ]
                lives.append(life)
            # Interleave the lives, each in its own order.
            while lives:
                life = rng.choice(lives)
                events.append(life.pop(0))
                if not life:
                    lives.remove(life)
            t += 100.0  # an idle spell: the stall clock starts again
        return events

    @pytest.mark.parametrize("seed", range(20))
    def test_any_cut_agrees_with_event_by_event(self, seed: int) -> None:
        """Batches cut anywhere, with the moves counted or not, leave the
        stall, error-burst and straggler rules as events taken one at a time
        do."""
        events = self.shuffled(seed)
        durations = DurationsObserver()
        durations.update_batch(events)
        cases: list[tuple[Callable[[], AlertRule], list[Event]]] = [
            (lambda: StallRule(seconds=1, cooldown=0), events),
            (
                lambda: ErrorBurstRule(
                    count=3, window=5, rate=0.3, min_tasks=2, cooldown=0
                ),
                events,
            ),
            (
                lambda: ErrorBurstRule(count=3, rate=0.3, min_tasks=2, max_prefixes=2),
                events,
            ),
        ]
        cases += [
            (lambda: StragglerRule(durations, min_seconds=0.1, min_samples=1), events),
            (lambda: StragglerRule(durations, min_samples=1, max_tasks=5), events),
        ]
        rng = random.Random(seed)
        for make, stream in cases:
            a, b = make(), make()
            out_a, out_b = bound(a), bound(b)
            i = 0
            while i < len(stream):
                j = i + rng.randrange(1, 40)
                for e in stream[i:j]:
                    a.update_batch([e])
                batch = Batch.from_events(stream[i:j])
                batch._events = None  # columns only, as the plugin's flush makes them
                if rng.random() < 0.5:
                    batch.transitions()  # what the progress observer counts first
                b.update_batch(batch)
                now = stream[min(j, len(stream)) - 1].timestamp + 2
                a.tick(now)
                b.tick(now)
                i = j
            assert [x.to_dict() for x in out_b] == [x.to_dict() for x in out_a]
            assert vars(b) == vars(a) | {"_sink": b._sink}, type(a).__name__

    def test_forgotten_in_flight_task_leaves_the_table(self) -> None:
        """A task whose departure from processing was dropped leaves the
        straggler table when it is forgotten, in a batch with others entering."""
        rule = StragglerRule(DurationsObserver())
        feed(rule, run("a-1", 0, 1)[:3])
        batch = Batch.from_events(
            [task("a-1", "memory", "forgotten", 2.0), *run("a-2", 2, 1)[:3]]
        )
        batch._events = None
        batch.transitions()
        rule.update_batch(batch)
        assert list(rule.inflight) == ["a-2"]

    def test_stall_clock_restarts_within_a_batch(self) -> None:
        """Work that drains then reappears in one batch: the clock starts there."""
        rule = StallRule(seconds=10)
        feed(rule, [*run("a-1", 0, 1), *run("a-2", 50, 1)[:3]])
        assert (rule.active, rule.since) == (1, 50.0)

    def test_error_alert_names_the_task(self) -> None:
        """An error among completions of one batch: the alert carries its fields."""
        rule = ErrorBurstRule(count=1000, rate=0.5, min_tasks=3, cooldown=0)
        out = bound(rule)
        events = [
            *run("f-1", 0, 1),
            *fail("f-2", 2),
            *fail("f-3", 3),
            *run("f-4", 4, 1),
        ]
        feed(rule, events)
        assert [(a.prefix, a.key, a.worker) for a in out] == [("f", "f-3", "w1")]
        assert out[0].details["exception"] == "ValueError('x')"
        assert out[0].details["finished"] == 3
