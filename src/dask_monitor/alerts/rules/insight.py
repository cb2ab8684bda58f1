"""The insight rule: an alert whenever an insight turns ``critical``.

The insights engine (:mod:`dask_monitor.observers.insights`) decides what is
critical; this rule only raises the alert, through the same machinery as
every other rule: a cooldown per ``(kind, subject)``, the alert log of the
snapshot, Dask's event topics (``monitor.on``) and the NATS publisher. An
alert's kind is ``insight.<kind>`` (``insight.memory-pressure``), so a NATS
responder can take them all with ``insight.*``.

This module does not import Dask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from dask_monitor.alerts.rules.base import AlertRule
from dask_monitor.config import InsightsSettings
from dask_monitor.events import Alert

__all__ = ["INSIGHT", "InsightRule"]

#: Prefix of the kind of every insight alert: ``insight.<kind>``.
INSIGHT = "insight"

#: Insight kinds whose condition an alert rule of its own already reports
#: (with its own thresholds): the insight alerts only when that rule has not
#: alerted about the same prefix within the cooldown, so one failing prefix
#: does not page twice.
COVERED_BY = {"erroring": "error-burst", "skew": "straggler"}


class _Critical(Protocol):
    """What the rule needs of the insights engine."""

    def take_critical(self) -> list[dict[str, Any]]: ...


class InsightRule(AlertRule):
    """Raise ``insight.<kind>`` alerts for insights that turned critical.

    Parameters
    ----------
    engine
        The pipeline's :class:`~dask_monitor.observers.insights.InsightsEngine`.
    cooldown
        Seconds between two alerts about one ``(kind, subject)``.
    recent
        The alerts raised lately (the pipeline's alert log), to skip an insight
        that :data:`COVERED_BY` names a rule for when that rule just alerted
        about the same prefix.
    """

    kind = INSIGHT

    @classmethod
    def from_settings(
        cls,
        settings: InsightsSettings,
        engine: _Critical,
        recent: Callable[[], Iterable[Alert]] | None = None,
    ) -> InsightRule:
        """The rule as ``monitor.insights`` sets it up."""
        return cls(engine, cooldown=settings.cooldown, recent=recent)

    def __init__(
        self,
        engine: _Critical,
        *,
        cooldown: float = 600.0,
        recent: Callable[[], Iterable[Alert]] | None = None,
    ) -> None:
        super().__init__(cooldown=cooldown)
        self.engine = engine
        self.recent = recent

    def _covered(self, kind: str, subject: str, now: float) -> bool:
        """Whether the rule covering ``kind`` alerted about ``subject`` lately."""
        rule = COVERED_BY.get(kind)
        if rule is None or self.recent is None:
            return False
        return any(
            a.kind == rule and a.prefix == subject and now - a.timestamp < self.cooldown
            for a in self.recent()
        )

    def tick(self, now: float) -> None:
        """Alert on the insights that turned critical since the last tick."""
        for item in self.engine.take_critical():
            kind = f"{INSIGHT}.{item['kind']}"
            subject = str(item["subject"])
            if self._covered(item["kind"], subject, now) or self.cooling(
                subject, now, kind
            ):
                self.suppressed += 1
                continue
            where = item.get("subject_type")
            self.emit(
                Alert(
                    kind=kind,
                    severity="error",
                    message=str(item["message"]),
                    timestamp=now,
                    prefix=subject if where == "prefix" else None,
                    worker=subject if where == "worker" else None,
                    details={
                        "subject": subject,
                        "subject_type": where,
                        "evidence": dict(item.get("evidence") or {}),
                        "advice": item.get("advice"),
                        "link": item.get("link"),
                        "since": item.get("since"),
                    },
                ),
                subject=subject,
            )
