"""Settings come from Dask config and keywords; invalid ones name themselves."""

from __future__ import annotations

from typing import Any

import dask
import pytest

from dask_monitor.config import ConfigError, MonitorConfig


class TestMonitorConfig:
    """MonitorConfig.from_config validates every setting once."""

    def test_defaults_come_from_the_yaml(self) -> None:
        """Without overrides the shipped defaults apply."""
        config = MonitorConfig.from_config()
        assert config.interval == pytest.approx(0.25)
        assert config.buffer_size == 100_000

    def test_dask_config_and_keywords(self) -> None:
        """Dask config overrides defaults; keywords override Dask config."""
        with dask.config.set({"monitor.interval": "20ms", "monitor.buffer-size": 7}):
            config = MonitorConfig.from_config(buffer_size=9)
        assert config.interval == pytest.approx(0.02)
        assert config.buffer_size == 9

    @pytest.mark.parametrize(
        ("options", "setting"),
        [
            ({"interval": 0}, "monitor.interval"),
            ({"interval": -1}, "monitor.interval"),
            ({"interval": "soon"}, "monitor.interval"),
            ({"interval": True}, "monitor.interval"),
            ({"buffer_size": 0}, "monitor.buffer-size"),
            ({"buffer_size": -3}, "monitor.buffer-size"),
            ({"buffer_size": 1.5}, "monitor.buffer-size"),
            ({"buffer_size": "10"}, "monitor.buffer-size"),
            ({"max_prefixes": None}, None),
            ({"relative_error": 0.5}, "monitor.relative-error"),
            ({"relative_error": 0}, "monitor.relative-error"),
            ({"reservoir_size": False}, "monitor.reservoir-size"),
            ({"panel_interval": "-1s"}, "monitor.panel-interval"),
            ({"no_such_thing": 1}, "no_such_thing"),
        ],
    )
    def test_invalid_keywords_name_the_setting(
        self, options: dict[str, Any], setting: str | None
    ) -> None:
        """Each invalid keyword raises ConfigError naming it (None is 'unset')."""
        if setting is None:
            MonitorConfig.from_config(**options)
            return
        with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
            MonitorConfig.from_config(**options)

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("monitor.interval", "-100ms"),
            ("monitor.throughput-bins", 0),
            ("monitor.max-errors", "lots"),
            ("monitor.unknown-option", 3),
        ],
    )
    def test_invalid_dask_config_names_the_setting(self, key: str, value: Any) -> None:
        """Invalid values from Dask config raise ConfigError naming the key."""
        with (
            dask.config.set({key: value}),
            pytest.raises(ConfigError, match=key.replace(".", r"\.")),
        ):
            MonitorConfig.from_config()

    def test_config_error_is_a_value_error(self) -> None:
        """ConfigError can be caught as ValueError."""
        assert issubclass(ConfigError, ValueError)
