"""The error-burst rule: many tasks erred at once, or a prefix errs too often."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Sequence

from dask_monitor.alerts.rules.base import ERROR_BURST, AlertRule
from dask_monitor.batch import Batch, as_batch, pick, uniform
from dask_monitor.config import ErrorBurstSettings
from dask_monitor.events import NEW, Alert, Event, TaskStatus
from dask_monitor.observers._common import ERRED, MEMORY, PROCESSING
from dask_monitor.observers.errors import CAUSE_TAG

__all__ = ["ErrorBurstRule"]

#: The rule's defaults are its settings' defaults: one place for them.
_BURST = ErrorBurstSettings()

#: States an error from is no error of the task itself: a dependent erring
#: (``waiting``), an error reported again, a task that erred before the
#: monitor saw it.
_NOT_AN_ERROR_SOURCE = frozenset({"waiting", "erred", NEW})


def _caused(batch: Batch, i: int) -> bool:
    """Whether event ``i`` erred because a dependency did (the plugin names
    the root cause at the head of its traceback)."""
    details = batch.details.get(i)
    traceback = details.traceback if details is not None else None
    return traceback is not None and traceback.startswith(CAUSE_TAG)


class ErrorBurstRule(AlertRule):
    """Many tasks erred within a window, or a prefix's error rate is too high.

    Counts tasks that erred themselves (from ``processing``, ``released``,
    ``no-worker``, ...), not dependents that erred because of them.

    Parameters
    ----------
    count, window
        Alert when ``count`` tasks erred within ``window`` seconds
        (subject: the whole cluster).
    rate, min_tasks
        Alert when at least ``rate`` of a prefix's finished tasks erred, once
        it has at least ``min_tasks`` finished (subject: the prefix).
    max_prefixes
        Prefixes whose error rate is tracked.
    """

    kind = ERROR_BURST

    @classmethod
    def from_settings(cls, settings: ErrorBurstSettings) -> ErrorBurstRule:
        """The rule as ``monitor.alerts.error-burst`` sets it up."""
        return cls(
            count=settings.count,
            window=settings.window,
            rate=settings.rate,
            min_tasks=settings.min_tasks,
            cooldown=settings.cooldown,
        )

    def __init__(
        self,
        *,
        count: int = _BURST.count,
        window: float = _BURST.window,
        rate: float = _BURST.rate,
        min_tasks: int = _BURST.min_tasks,
        cooldown: float = _BURST.cooldown,
        max_prefixes: int = 10_000,
    ) -> None:
        super().__init__(cooldown=cooldown)
        if count < 1 or not window > 0 or not 0 < rate <= 1 or min_tasks < 1:
            raise ValueError(
                "need count >= 1, window > 0, 0 < rate <= 1 and min_tasks >= 1, "
                f"got {count!r}, {window!r}, {rate!r}, {min_tasks!r}"
            )
        self.count = count
        self.window = float(window)
        self.rate = float(rate)
        self.min_tasks = min_tasks
        self.max_prefixes = max_prefixes
        self.reset()

    def restart(self) -> None:
        """Keep the recent errors and the per-prefix counts: they are history
        (errors just before a restart still make a burst)."""

    def reset(self) -> None:
        """Forget the recent errors and the per-prefix counts."""
        #: (timestamp, prefix) of the latest errors.
        self._recent: deque[tuple[float, str]] = deque(maxlen=self.count)
        #: Tasks finished in memory, by tracked prefix (every one is a key).
        self._done: Counter[str] = Counter()
        #: Tasks that erred, by tracked prefix.
        self._failed: dict[str, int] = {}

    def update_batch(self, events: Sequence[Event]) -> None:
        """Count finished and erred tasks; check both conditions on each error.

        Read as columns (see :func:`~dask_monitor.batch.as_batch`): the
        completions between two errors are counted by prefix in one
        ``Counter`` update (a rate checked at an error counts the completions
        before it); each error is then taken in turn.
        """
        batch = as_batch(events)
        if not batch.keys:
            return
        if not batch.has_finish(ERRED):
            self._count_completions(batch)
            return
        starts = batch.starts
        prefixes = batch.prefixes
        completions = batch.completions()
        done = 0  # completions counted so far
        for i in batch.where_finish(ERRED):
            before = bisect_left(completions, i, done)
            if before > done:
                self._count(pick(prefixes, completions[done:before]))
                done = before
            if starts[i] not in _NOT_AN_ERROR_SOURCE and not _caused(batch, i):
                self._erred(batch, i)
        if len(completions) > done:
            self._count(pick(prefixes, completions[done:]))

    def _count_completions(self, batch: Batch) -> None:
        """Count the completions of a batch without errors.

        From the counts of moves per ``(group, prefix, start, finish)`` when
        an observer made them (the progress observer does), or from a batch
        of one prefix: work per distinct prefix, not per completion. The
        order of the completions matters only when there is no room for
        every new prefix (the first ones seen are tracked): then they are
        counted in order.
        """
        counts = batch.counted()
        prefixes = batch.prefixes
        if counts is not None:
            per_prefix: dict[str, int] = {}
            for (_, prefix, s0, f), c in counts.items():
                if f == MEMORY and s0 == PROCESSING:
                    per_prefix[prefix] = per_prefix.get(prefix, 0) + c
        elif prefixes[0] == prefixes[-1] and uniform(prefixes):
            n = len(batch.completions())
            per_prefix = {prefixes[0]: n} if n else {}
        else:
            self._count(pick(prefixes, batch.completions()))
            return
        done = self._done
        if len(done) + len(per_prefix) > self.max_prefixes and any(
            p not in done for p in per_prefix
        ):
            self._count(pick(prefixes, batch.completions()))
            return
        for prefix, c in per_prefix.items():
            done[prefix] += c

    def _count(self, prefixes: list[str]) -> None:
        """Count completions of ``prefixes`` (tracking new prefixes if room)."""
        done = self._done
        room = self.max_prefixes - len(done)
        if room >= len(prefixes):
            done.update(prefixes)
        elif room <= 0:
            done.update(filter(done.__contains__, prefixes))
        else:
            for prefix, c in Counter(prefixes).items():  # in order of appearance
                if prefix in done:
                    done[prefix] += c
                elif len(done) < self.max_prefixes:
                    done[prefix] = c

    def _erred(self, batch: Batch, i: int) -> None:
        """Take the error of task event ``i``."""
        t = batch.timestamp(i)
        prefix = batch.prefixes[i]
        recent = self._recent
        recent.append((t, prefix))
        done = self._done
        tracked = prefix in done
        if not tracked and len(done) < self.max_prefixes:
            done[prefix] = 0
            tracked = True
        if tracked:
            self._failed[prefix] = self._failed.get(prefix, 0) + 1
        e: TaskStatus | None = None
        if len(recent) == self.count and t - recent[0][0] <= self.window:
            e = batch.task(i)
            span = t - recent[0][0]
            prefixes = Counter([p for _, p in recent])
            self.emit(
                Alert(
                    kind=ERROR_BURST,
                    severity="error",
                    message=(
                        f"{self.count} tasks erred within {span:.1f} s "
                        f"(last: {e.key!r}: {e.exception_type or 'error'})"
                    ),
                    timestamp=t,
                    prefix=prefix if len(prefixes) == 1 else None,
                    key=e.key,
                    worker=e.worker,
                    details={
                        "errors": len(recent),
                        "seconds": span,
                        "window": self.window,
                        "prefixes": dict(prefixes.most_common(10)),
                        "exception": e.exception,
                    },
                )
            )
        if tracked:
            erred = self._failed[prefix]
            finished = done[prefix] + erred
            if finished >= self.min_tasks and erred / finished >= self.rate:
                if e is None:
                    e = batch.task(i)
                self.emit(
                    Alert(
                        kind=ERROR_BURST,
                        severity="error",
                        message=(
                            f"{erred} of {finished} finished {prefix!r} tasks "
                            f"erred ({100 * erred / finished:.0f}%)"
                        ),
                        timestamp=t,
                        prefix=prefix,
                        key=e.key,
                        worker=e.worker,
                        details={
                            "erred": erred,
                            "finished": finished,
                            "rate": erred / finished,
                            "threshold": self.rate,
                            "exception": e.exception,
                        },
                    ),
                    subject=prefix,
                )
