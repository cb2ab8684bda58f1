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

from typing import Any, Protocol

from dask_monitor.alerts.rules import AlertRule
from dask_monitor.config import InsightsSettings
from dask_monitor.events import Alert

__all__ = ["INSIGHT", "InsightRule"]

#: Prefix of the kind of every insight alert: ``insight.<kind>``.
INSIGHT = "insight"


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
    """

    kind = INSIGHT

    @classmethod
    def from_settings(
        cls, settings: InsightsSettings, engine: _Critical
    ) -> InsightRule:
        """The rule as ``monitor.insights`` sets it up."""
        return cls(engine, cooldown=settings.cooldown)

    def __init__(self, engine: _Critical, *, cooldown: float = 600.0) -> None:
        super().__init__(cooldown=cooldown)
        self.engine = engine

    def tick(self, now: float) -> None:
        """Alert on the insights that turned critical since the last tick."""
        for item in self.engine.take_critical():
            kind = f"{INSIGHT}.{item['kind']}"
            subject = str(item["subject"])
            if self.cooling(subject, now, kind):
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
