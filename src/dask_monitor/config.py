"""Configuration: Dask config namespace ``monitor`` with validated values.

Settings come from Dask's configuration (``monitor.*``: YAML files, the
environment, ``dask.config.set``), overridden per attach by keyword arguments
with underscores (``buffer_size=...``). Every value is validated once, when a
monitor is set up; an invalid one raises :class:`ConfigError` naming the
setting.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import dask.config
import yaml
from dask.utils import parse_timedelta

__all__ = [
    "PLUGIN_NAME",
    "AlertsConfig",
    "ConfigError",
    "InsightsSettings",
    "MonitorConfig",
    "NatsConfig",
    "PrometheusSettings",
    "RecordSettings",
    "check_count",
    "check_duration",
    "redact_url",
]

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "monitor.yaml")

with open(_DEFAULTS_FILE) as _f:
    _DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(_DEFAULTS)


#: The name the monitor's plugin goes by on a scheduler (``scheduler.plugins``):
#: how the dashboard's pages find it without importing the plugin.
PLUGIN_NAME = "dask-monitor"


class ConfigError(ValueError):
    """An invalid dask-monitor setting; the message names the setting."""


def _duration(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"monitor.{name} must be a duration, got {value!r}")
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(
            f"monitor.{name} must be a duration such as '100ms' or 0.1, got {value!r}"
        ) from e
    if seconds is None or not seconds > 0:
        raise ConfigError(f"monitor.{name} must be a positive duration, got {value!r}")
    return float(seconds)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"monitor.{name} must be a positive integer, got {value!r} "
            f"({type(value).__name__})"
        )
    if value <= 0:
        raise ConfigError(f"monitor.{name} must be a positive integer, got {value!r}")
    return value


def _fraction(name: str, value: Any, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"monitor.{name} must be a number, got {value!r}")
    if not 0 < value <= high:
        raise ConfigError(f"monitor.{name} must be in (0, {high}], got {value!r}")
    return float(value)


def check_count(label: str, value: Any, *, high: int) -> int:
    """``value`` if an integer from 1 to ``high``, else a ConfigError naming
    ``label`` (the setting's full dotted name)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{label} must be a positive integer, got {value!r} "
            f"({type(value).__name__})"
        )
    result: int = _bounded(label, value, (1, high))
    return result


def check_duration(label: str, value: Any, *, low: float, high: float) -> float:
    """``value`` in seconds if a duration from ``low`` to ``high`` seconds,
    else a ConfigError naming ``label`` (the setting's full dotted name)."""
    seconds = _duration(label.removeprefix("monitor."), value)
    result: float = _bounded(label, seconds, (low, high))
    return result


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Validated settings of one monitor (see ``monitor.yaml`` for each one).

    Build it with :meth:`from_config`; the constructor does not validate.
    """

    interval: float = 0.25
    buffer_size: int = 100_000
    max_prefixes: int = 10_000
    max_groups: int = 1_000
    snapshot_prefixes: int = 200
    snapshot_groups: int = 50
    throughput_bin: float = 1.0
    throughput_bins: int = 300
    throughput_prefixes: int = 10
    relative_error: float = 0.01
    max_workers: int = 10_000
    max_errors: int = 100
    max_error_text: int = 2_000
    recent_events: int = 1_000
    reservoir_size: int = 1_000
    panel_interval: float = 0.25
    panel_prefixes: int = 15
    panel_workers: int = 50
    panel_errors: int = 20
    panel_tasks: int = 1_000
    alerts: AlertsConfig = dataclasses.field(default_factory=lambda: AlertsConfig())
    nats: NatsConfig = dataclasses.field(default_factory=lambda: NatsConfig())
    record: RecordSettings = dataclasses.field(default_factory=lambda: RecordSettings())
    prometheus: PrometheusSettings = dataclasses.field(
        default_factory=lambda: PrometheusSettings()
    )
    insights: InsightsSettings = dataclasses.field(
        default_factory=lambda: InsightsSettings()
    )

    def __post_init__(self) -> None:
        # ``MonitorConfig(**config.to_dict())`` gets the sections back as dicts.
        for name, section in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, section.from_dict(value))

    @classmethod
    def from_config(cls, **overrides: Any) -> MonitorConfig:
        """Read ``monitor.*`` from Dask config, apply ``overrides`` and validate.

        Parameters
        ----------
        **overrides
            Settings by their Python name (``buffer_size=10_000``); ``None``
            values are ignored. The nested sections take a mapping merged
            over Dask config (``alerts={"stall": {"seconds": 5}}``,
            ``nats={"url": "nats://127.0.0.1:4222"}``,
            ``record={"path": "/logs/run.dmlog"}``,
            ``prometheus={"enabled": False}``) or a ready section
            (:class:`AlertsConfig`, :class:`NatsConfig`,
            :class:`RecordSettings`, :class:`PrometheusSettings`).

        Raises
        ------
        ConfigError
            For an unknown setting name, a wrong type or an out-of-range value;
            the message names the setting.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        raw = dask.config.get("monitor", default={}) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"monitor must be a mapping of settings, got {raw!r}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            if name in _NESTED:
                continue
            if name not in names:
                raise ConfigError(
                    f"unknown setting monitor.{key} in Dask config; "
                    f"known settings: {', '.join(sorted(_hyphen(n) for n in names))}"
                )
            values[name] = value
        for name, value in overrides.items():
            if name not in names:
                raise ConfigError(
                    f"unknown setting {name!r}; known settings: "
                    f"{', '.join(sorted(names))}"
                )
            if value is not None:
                values[name] = value
        sections = {name: values.pop(name, None) for name in _SECTIONS}
        checked: dict[str, Any] = {}
        for name, value in values.items():
            checked[name] = _check(name, value)
        for name, section in _SECTIONS.items():
            checked[name] = section.from_config(raw.get(name), sections[name])
        return cls(**checked)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """The settings as plain data.

        Credentials in URLs (``nats://user:password@host``) are replaced by
        ``***`` unless ``secrets`` is true: this is what travels to clients,
        into event-log headers and into logs.
        """
        out = dataclasses.asdict(self)
        url = out["nats"]["url"]
        if url and not secrets:
            out["nats"]["url"] = redact_url(url)
        return out


#: Sections of ``monitor.*`` that belong to other parts (alerts, sinks).
_NESTED = frozenset({"alerts", "nats", "record", "prometheus", "insights"})

_DURATIONS = frozenset({"interval", "throughput_bin", "panel_interval"})


def _hyphen(name: str) -> str:
    return name.replace("_", "-")


#: Bounds ``(low, high)`` of the top-level settings, in their unit (seconds,
#: items). A value outside would exhaust memory (a ring of 10**12 bins), spin
#: the scheduler's loop (a flush every nanosecond) or divide by zero, or is
#: a mistake (a flush every ten years); each bound leaves room for any real use.
BOUNDS: dict[str, tuple[float, float]] = {
    "interval": (0.01, 60.0),
    "panel_interval": (0.05, 60.0),
    "throughput_bin": (0.1, 3600.0),
    "throughput_bins": (1, 100_000),
    "throughput_prefixes": (1, 1_000),
    "relative_error": (1e-4, 0.02),
    "buffer_size": (1, 100_000_000),
    "max_prefixes": (1, 1_000_000),
    "max_groups": (1, 1_000_000),
    "snapshot_prefixes": (1, 100_000),
    "snapshot_groups": (1, 100_000),
    "max_workers": (1, 1_000_000),
    "max_errors": (1, 100_000),
    "max_error_text": (10, 1_000_000),
    "recent_events": (1, 1_000_000),
    "reservoir_size": (1, 1_000_000),
    "panel_prefixes": (1, 10_000),
    "panel_workers": (1, 100_000),
    "panel_errors": (1, 10_000),
    "panel_tasks": (1, 1_000_000),
}

#: Bounds of the fields of the nested sections, by field name.
SECTION_BOUNDS: dict[str, tuple[float, float]] = {
    "recent": (1, 100_000),
    "seconds": (0.01, 30 * 86400.0),
    "window": (0.01, 30 * 86400.0),
    "cooldown": (0.0, 30 * 86400.0),
    "min_seconds": (0.0, 30 * 86400.0),
    "check_interval": (0.01, 3600.0),
    "count": (1, 10_000_000),
    "min_tasks": (1, 10_000_000),
    "min_samples": (1, 10_000_000),
    "max_tasks": (1, 10_000_000),
    "min_processing": (1, 10_000_000),
    "factor": (1.0, 1_000_000.0),
    "backlog": (1, 1_000_000),
    "connect_timeout": (0.1, 300.0),
    # monitor.insights (see InsightsSettings)
    "hold": (0.0, 86400.0),
    "release": (0.0, 86400.0),
    "tiny_task": (1e-6, 3600.0),
    "tiny_count": (1, 10_000_000),
    "skew_factor": (1.0, 1_000.0),
    "skew_seconds": (0.0, 86400.0),
    "min_errors": (1, 10_000_000),
}


def _bounded(label: str, value: float, bounds: tuple[float, float] | None) -> Any:
    """``value`` if within ``bounds``, else a ConfigError naming ``label``."""
    if bounds is not None:
        low, high = bounds
        if not low <= value <= high:
            raise ConfigError(
                f"{label} must be between {_show(low)} and {_show(high)}, "
                f"got {_show(value)}"
            )
    return value


def _show(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _check(name: str, value: Any) -> Any:
    label = _hyphen(name)
    if name in _DURATIONS:
        checked: float = _duration(label, value)
    elif name == "relative_error":
        checked = _fraction(label, value, 0.02)
    else:
        checked = _count(label, value)
    return _bounded(f"monitor.{label}", checked, BOUNDS.get(name))


#: The user-information part of a URL (``scheme://user:password@``).
_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*://)?[^/@]*@")


def redact_url(url: str) -> str:
    """``url`` with any user and password replaced by ``***``; never raises.

    Takes comma-separated server lists (``nats://a:1,nats://u:p@b:2``) and
    URLs that :func:`urllib.parse.urlsplit` refuses (a port that is no
    number): it looks only for an ``...@`` before the first ``/`` of each.
    """
    return ",".join(_USERINFO.sub(r"\1***@", part) for part in str(url).split(","))


# -- nested sections: monitor.alerts.*, monitor.nats.* -------------------------

#: Fields given in seconds (durations such as ``"5s"``), of any section.
_SECTION_DURATIONS = frozenset(
    {"seconds", "window", "cooldown", "min_seconds", "check_interval"}
    | {"connect_timeout"}
    | {"hold", "release", "tiny_task", "skew_seconds"}
)
#: Durations that may be zero (no cooldown).
_MAY_BE_ZERO = frozenset({"cooldown", "min_seconds", "hold", "release", "skew_seconds"})


def _section_value(label: str, name: str, default: Any, value: Any) -> Any:
    """Validate one field of a section (type, then bounds); ``label`` is its
    full dotted name."""
    checked = _section_type(label, name, default, value)
    if isinstance(checked, int | float) and not isinstance(checked, bool):
        return _bounded(label, checked, SECTION_BOUNDS.get(name))
    return checked


def _section_type(label: str, name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{label} must be true or false, got {value!r}")
        return value
    if name in _SECTION_DURATIONS:
        if name in _MAY_BE_ZERO and not isinstance(value, bool) and value == 0:
            return 0.0
        return _duration(label.removeprefix("monitor."), value)
    if isinstance(default, int):
        return _count(label.removeprefix("monitor."), value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{label} must be a number, got {value!r}")
        if not value > 0 or (name == "rate" and value > 1):
            high = "1" if name == "rate" else "inf"
            raise ConfigError(f"{label} must be in (0, {high}], got {value!r}")
        return float(value)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{label} must be a string, got {value!r}")
    return value or None


def _parse_section(cls: type[Any], label: str, *layers: Any) -> Any:
    """Merge mappings (later ones win) into a validated ``cls`` instance."""
    merged: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, cls):
            layer = dataclasses.asdict(layer)
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{label} must be a mapping of settings, got {layer!r}")
        for key, value in layer.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                known = ", ".join(sorted(_hyphen(n) for n in fields))
                raise ConfigError(
                    f"unknown setting {label}.{key}; known settings: {known}"
                )
            old = merged.get(name)
            if isinstance(old, dict) and isinstance(value, Mapping | _Section):
                if isinstance(value, _Section):
                    value = dataclasses.asdict(cast(Any, value))
                merged[name] = {**old, **value}
            elif value is not None or name not in merged:
                merged[name] = value
    values: dict[str, Any] = {}
    for name, value in merged.items():
        sub = f"{label}.{_hyphen(name)}"
        default = _default(fields[name])
        if isinstance(default, _Section):
            values[name] = _parse_section(type(default), sub, value)
        elif value is None and not isinstance(default, str | type(None)):
            continue
        else:
            values[name] = _section_value(sub, name, default, value)
    return cls(**values)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _rebuild(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """``cls`` from its ``dataclasses.asdict`` form, without validation."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = _default(f)
        if isinstance(default, _Section) and isinstance(value, Mapping):
            value = _rebuild(type(default), value)
        values[f.name] = value
    return cls(**values)


class _Section:
    """Base of the nested settings sections (marker; adds nothing)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StallSettings(_Section):
    """``monitor.alerts.stall``: tasks wait or run, none completes."""

    enabled: bool = True
    seconds: float = 300.0  # without any task completing
    cooldown: float = 600.0


@dataclass(frozen=True, slots=True)
class ErrorBurstSettings(_Section):
    """``monitor.alerts.error-burst``: many errors at once, or a failing prefix."""

    enabled: bool = True
    count: int = 10  # erred tasks ...
    window: float = 60.0  # ... within this many seconds
    rate: float = 0.5  # or: share of a prefix's finished tasks that erred
    min_tasks: int = 20  # finished tasks of a prefix before its rate counts
    cooldown: float = 300.0


@dataclass(frozen=True, slots=True)
class StragglerSettings(_Section):
    """``monitor.alerts.straggler``: a task runs far longer than its prefix's p95."""

    enabled: bool = True
    factor: float = 3.0  # times the prefix's quantile
    quantile: float = 0.95
    min_seconds: float = 30.0  # and at least this long
    min_samples: int = 20  # durations of the prefix before it is judged
    check_interval: float = 1.0  # how often in-flight tasks are scanned
    max_tasks: int = 100_000  # in-flight tasks tracked
    cooldown: float = 300.0


@dataclass(frozen=True, slots=True)
class WorkerLostSettings(_Section):
    """``monitor.alerts.worker-lost``: a worker left while processing tasks."""

    enabled: bool = True
    min_processing: int = 1
    cooldown: float = 60.0


@dataclass(frozen=True, slots=True)
class AlertsConfig(_Section):
    """Validated ``monitor.alerts.*`` settings (see ``monitor.yaml``)."""

    enabled: bool = True
    recent: int = 100  # alerts kept in the snapshot
    stall: StallSettings = dataclasses.field(default_factory=StallSettings)
    error_burst: ErrorBurstSettings = dataclasses.field(
        default_factory=ErrorBurstSettings
    )
    straggler: StragglerSettings = dataclasses.field(default_factory=StragglerSettings)
    worker_lost: WorkerLostSettings = dataclasses.field(
        default_factory=WorkerLostSettings
    )

    @classmethod
    def from_config(cls, raw: Any = None, override: Any = None) -> AlertsConfig:
        """Validate Dask config ``monitor.alerts`` merged with an override."""
        result: AlertsConfig = _parse_section(cls, "monitor.alerts", raw, override)
        if not 0 < result.straggler.quantile < 1:
            raise ConfigError(
                "monitor.alerts.straggler.quantile must be in (0, 1), "
                f"got {result.straggler.quantile!r}"
            )
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertsConfig:
        """Rebuild from :func:`dataclasses.asdict` output (no validation)."""
        result: AlertsConfig = _rebuild(cls, data)
        return result


#: Environment variable naming the NATS server when ``monitor.nats.url`` is unset.
NATS_URL_ENV = "DASK_MONITOR_NATS_URL"


@dataclass(frozen=True, slots=True)
class NatsConfig(_Section):
    """Validated ``monitor.nats.*`` settings: the optional NATS alert publisher."""

    url: str | None = None  # no publisher when unset (and no DASK_MONITOR_NATS_URL)
    cluster: str | None = None  # subject token; the scheduler id when unset
    backlog: int = 1_000  # alerts kept while NATS is unreachable; more are dropped
    connect_timeout: float = 2.0

    def __repr__(self) -> str:
        # Settings get logged: never with the URL's credentials.
        url = None if self.url is None else redact_url(self.url)
        return (
            f"NatsConfig(url={url!r}, cluster={self.cluster!r}, "
            f"backlog={self.backlog!r}, connect_timeout={self.connect_timeout!r})"
        )

    @classmethod
    def from_config(cls, raw: Any = None, override: Any = None) -> NatsConfig:
        """Validate ``monitor.nats`` merged with an override; fall back to the env."""
        result: NatsConfig = _parse_section(cls, "monitor.nats", raw, override)
        if result.url is None and os.environ.get(NATS_URL_ENV):
            result = dataclasses.replace(result, url=os.environ[NATS_URL_ENV])
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NatsConfig:
        """Rebuild from :func:`dataclasses.asdict` output (no validation)."""
        result: NatsConfig = _rebuild(cls, data)
        return result


# -- the scheduler's sinks: monitor.record.*, monitor.prometheus.* ---------------

#: Bounds of an event log segment's size from settings
#: (``monitor.record.max-bytes``), in bytes: below 1 MiB a busy run would open
#: a new file every few batches.
SEGMENT_BYTES = (2**20, 2**40)


def _merge_fields(
    cls: type[Any], label: str, layers: tuple[Mapping[str, Any], ...]
) -> dict[str, Any]:
    """The fields of ``cls`` set in ``layers`` (later ones win; ``None`` is
    not set); an unknown name raises a ConfigError naming it."""
    fields = {f.name for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                known = ", ".join(sorted(_hyphen(n) for n in fields))
                raise ConfigError(
                    f"unknown setting {label}.{key}; known settings: {known}"
                )
            if value is not None:
                merged[name] = value
    return merged


def _layer(label: str, value: Any, cls: type[Any]) -> Mapping[str, Any]:
    """One layer of settings of the section ``cls``, as a mapping."""
    if value is None:
        return {}
    if isinstance(value, cls):
        return dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{label} must be a mapping of settings, got {value!r}")
    return value


def _over(mine: Any, base: Any) -> Any:
    """``mine``, with ``base``'s fields where ``mine``'s are ``None``."""
    return type(mine)(
        *(
            theirs if value is None else value
            for value, theirs in zip(_values(mine), _values(base), strict=True)
        )
    )


def _values(section: Any) -> list[Any]:
    return [getattr(section, f.name) for f in dataclasses.fields(section)]


@dataclass(frozen=True, slots=True)
class RecordSettings(_Section):
    """Validated ``monitor.record.*``: the event log the scheduler writes from
    the plugin's start (nothing is recorded without a ``path``).

    A field left ``None`` takes the scheduler's own Dask config (see
    :meth:`over`), then the writer's default: a whole run can be recorded by
    setting ``monitor.record`` on the scheduler, whichever client attaches.
    ``monitor.record.directory`` is no field: where logs may be written is the
    scheduler's own setting only, read there, never one that travels from a
    client (see docs/reliability.md).
    """

    path: str | None = None
    max_bytes: int | None = None  # size of a segment (default 256 MiB)
    queue_size: int | None = None  # events waiting to be written (default 1,000,000)
    flush_interval: float | None = None  # seconds between flushes (default 1 s)
    # A URL's open segment: seconds between uploads (default 10 s).
    upload_interval: float | None = None

    @classmethod
    def from_config(cls, raw: Any = None, override: Any = None) -> RecordSettings:
        """Validate Dask config ``monitor.record`` (a path, or a mapping whose
        ``directory`` is skipped: the scheduler reads it itself) merged with an
        override (a path or a mapping, which must not name a ``directory``)."""
        if raw is False or raw == "":
            raw = None
        if isinstance(raw, str | os.PathLike):
            raw = {"path": os.fspath(raw)}
        if isinstance(override, str | os.PathLike):
            override = {"path": os.fspath(override)}
        base = _layer("monitor.record", raw, cls)
        top = _layer("monitor.record", override, cls)
        if "directory" in top:
            raise ConfigError("monitor.record.directory is set on the scheduler only")
        base = {k: v for k, v in base.items() if k != "directory"}
        values = _merge_fields(cls, "monitor.record", (base, top))
        path = values.get("path")
        if path is not None:
            if not isinstance(path, str | os.PathLike):
                raise ConfigError(f"monitor.record.path must be a path, got {path!r}")
            values["path"] = os.fspath(path) or None
        if "max_bytes" in values:
            values["max_bytes"] = _size("monitor.record.max-bytes", values["max_bytes"])
        if "queue_size" in values:
            values["queue_size"] = check_count(
                "monitor.record.queue-size", values["queue_size"], high=100_000_000
            )
        if "flush_interval" in values:
            values["flush_interval"] = check_duration(
                "monitor.record.flush-interval",
                values["flush_interval"],
                low=0.01,
                high=3600.0,
            )
        if "upload_interval" in values:
            values["upload_interval"] = check_duration(
                "monitor.record.upload-interval",
                values["upload_interval"],
                low=1.0,
                high=3600.0,
            )
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordSettings:
        """Rebuild from :func:`dataclasses.asdict` output (no validation)."""
        result: RecordSettings = _rebuild(cls, data)
        return result

    def over(self, base: RecordSettings) -> RecordSettings:
        """These settings, with ``base``'s where a field is ``None``."""
        result: RecordSettings = _over(self, base)
        return result

    def writer_options(self) -> dict[str, Any]:
        """The fields set, but the path: keyword arguments of the writer."""
        return {
            name: value
            for name, value in zip(
                (f.name for f in dataclasses.fields(self)), _values(self), strict=True
            )
            if value is not None and name != "path"
        }


@dataclass(frozen=True, slots=True)
class PrometheusSettings(_Section):
    """Validated ``monitor.prometheus.*``: ``dask_monitor_*`` metrics on the
    scheduler's ``/metrics``.

    A field left ``None`` takes the scheduler's own Dask config (see
    :meth:`over`), then the default (:meth:`resolved`).
    """

    enabled: bool | None = None  # default true (needs prometheus_client)
    top_prefixes: int | None = None  # prefixes with their own label (default 20)

    @classmethod
    def from_config(cls, raw: Any = None, override: Any = None) -> PrometheusSettings:
        """Validate Dask config ``monitor.prometheus`` (a mapping, or a
        boolean: ``enabled``) merged with an override."""
        layers = tuple(
            {"enabled": value}
            if isinstance(value, bool)
            else _layer("monitor.prometheus", value, cls)
            for value in (raw, override)
        )
        values = _merge_fields(cls, "monitor.prometheus", layers)
        enabled = values.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ConfigError(
                f"monitor.prometheus.enabled must be true or false, got {enabled!r}"
            )
        if "top_prefixes" in values:
            values["top_prefixes"] = check_count(
                "monitor.prometheus.top-prefixes", values["top_prefixes"], high=10_000
            )
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrometheusSettings:
        """Rebuild from :func:`dataclasses.asdict` output (no validation)."""
        result: PrometheusSettings = _rebuild(cls, data)
        return result

    def over(self, base: PrometheusSettings) -> PrometheusSettings:
        """These settings, with ``base``'s where a field is ``None``."""
        result: PrometheusSettings = _over(self, base)
        return result

    def resolved(self) -> PrometheusSettings:
        """With the defaults where a field is ``None``."""
        return self.over(PrometheusSettings(enabled=True, top_prefixes=20))


def _size(label: str, value: Any) -> int:
    """A size in bytes (``"256 MiB"`` or an integer) within ``SEGMENT_BYTES``."""
    from dask.utils import parse_bytes

    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(type(value).__name__)
        size = int(parse_bytes(value))
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{label} must be a size such as '256 MiB', got {value!r}"
        ) from e
    low, high = SEGMENT_BYTES
    if not low <= size <= high:
        raise ConfigError(f"{label} must be between 1 MiB and 1 TiB, got {value!r}")
    return size


# -- monitor.insights.* ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InsightsSettings(_Section):
    """``monitor.insights``: what the insights engine reports, and when.

    The defaults follow Dask's own guidance (see
    :mod:`dask_monitor.observers.insights`, where each threshold's source is
    named); these are the ones a user may want to tune.
    """

    enabled: bool = True
    check_interval: float = 1.0  # evaluated at most this often
    hold: float = 10.0  # a live condition (low parallelism, imbalance) lasts this long
    release: float = 5.0  # an insight goes once clear for this long
    cooldown: float = 600.0  # between two alerts of one (kind, subject)
    tiny_task: float = 0.01  # median compute below this: tiny tasks ...
    tiny_count: int = 1_000  # ... over at least this many tasks of a prefix
    skew_factor: float = 1.5  # slowest task above this x the prefix's p75 ...
    skew_seconds: float = 1.0  # ... and at least this many seconds above it
    min_errors: int = 3  # failures of a prefix before it is "erroring"

    @classmethod
    def from_config(cls, raw: Any = None, override: Any = None) -> InsightsSettings:
        """Validate Dask config ``monitor.insights`` merged with an override."""
        result: InsightsSettings = _parse_section(
            cls, "monitor.insights", raw, override
        )
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InsightsSettings:
        """Rebuild from :func:`dataclasses.asdict` output (no validation)."""
        result: InsightsSettings = _rebuild(cls, data)
        return result


_SECTIONS: dict[str, Any] = {
    "alerts": AlertsConfig,
    "nats": NatsConfig,
    "record": RecordSettings,
    "prometheus": PrometheusSettings,
    "insights": InsightsSettings,
}
