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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.config
import yaml
from dask.utils import parse_timedelta

__all__ = ["ConfigError", "MonitorConfig"]

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "monitor.yaml")

with open(_DEFAULTS_FILE) as _f:
    _DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(_DEFAULTS)


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


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Validated settings of one monitor (see ``monitor.yaml`` for each one).

    Build it with :meth:`from_config`; the constructor does not validate.
    """

    interval: float = 0.1
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

    @classmethod
    def from_config(cls, **overrides: Any) -> MonitorConfig:
        """Read ``monitor.*`` from Dask config, apply ``overrides`` and validate.

        Parameters
        ----------
        **overrides
            Settings by their Python name (``buffer_size=10_000``); ``None``
            values are ignored.

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
        checked: dict[str, Any] = {}
        for name, value in values.items():
            checked[name] = _check(name, value)
        return cls(**checked)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data."""
        return dataclasses.asdict(self)


#: Sections of ``monitor.*`` that belong to other parts (alerts, sinks).
_NESTED = frozenset({"alerts", "nats", "record", "prometheus"})

_DURATIONS = frozenset({"interval", "throughput_bin", "panel_interval"})


def _hyphen(name: str) -> str:
    return name.replace("_", "-")


def _check(name: str, value: Any) -> Any:
    label = _hyphen(name)
    if name in _DURATIONS:
        return _duration(label, value)
    if name == "relative_error":
        return _fraction(label, value, 0.02)
    return _count(label, value)
