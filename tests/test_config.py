"""Settings come from Dask config and keywords; invalid ones name themselves."""

from __future__ import annotations

from typing import Any

import dask
import pytest

from dask_monitor.config import (
    ConfigError,
    MonitorConfig,
    PrometheusSettings,
    RecordSettings,
)


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


class TestBounds:
    """Every setting has bounds; a value outside them names the setting."""

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"throughput_bin": "1ns"}, r"monitor\.throughput-bin must be between"),
            ({"throughput_bins": 10**12}, r"monitor\.throughput-bins must be between"),
            ({"relative_error": 1e-17}, r"monitor\.relative-error must be between"),
            ({"interval": "1ns"}, r"monitor\.interval must be between 0.01 and 60"),
            ({"interval": "3650 days"}, r"monitor\.interval must be between"),
            ({"panel_interval": "1ns"}, r"monitor\.panel-interval must be between"),
            ({"buffer_size": 10**12}, r"monitor\.buffer-size must be between"),
            ({"max_error_text": 1}, r"monitor\.max-error-text must be between"),
            (
                {"alerts": {"straggler": {"check_interval": "1ns"}}},
                r"monitor\.alerts\.straggler\.check-interval must be between",
            ),
            (
                {"alerts": {"stall": {"seconds": "3650 days"}}},
                r"monitor\.alerts\.stall\.seconds must be between",
            ),
            ({"nats": {"backlog": 10**9}}, r"monitor\.nats\.backlog must be between"),
        ],
    )
    def test_out_of_bounds_values_are_refused(
        self, options: dict[str, Any], message: str
    ) -> None:
        """Values that would exhaust memory, spin the loop or divide by zero fail."""
        with pytest.raises(ConfigError, match=message):
            MonitorConfig.from_config(**options)

    def test_the_bounds_admit_the_defaults_and_the_edges(self) -> None:
        """The shipped defaults and the bounds themselves are accepted."""
        from dask_monitor.config import BOUNDS

        MonitorConfig.from_config()
        low = {n: lo for n, (lo, _) in BOUNDS.items() if n != "relative_error"}
        MonitorConfig.from_config(**low, relative_error=1e-4)
        high = {n: hi for n, (_, hi) in BOUNDS.items()}
        MonitorConfig.from_config(**high)

    def test_every_numeric_setting_has_bounds(self) -> None:
        """A setting added without bounds fails here, not in a user's cluster."""
        import dataclasses

        from dask_monitor.config import BOUNDS, SECTION_BOUNDS, _Section

        def numeric(cls: type[Any]) -> set[str]:
            names = set()
            for f in dataclasses.fields(cls):
                default = f.default
                if f.default_factory is not dataclasses.MISSING:
                    default = f.default_factory()
                if isinstance(default, _Section):
                    names |= numeric(type(default))
                elif isinstance(default, int | float) and not isinstance(default, bool):
                    names.add(f.name)
            return names

        top = {f.name for f in dataclasses.fields(MonitorConfig)}
        missing = {
            n
            for n in numeric(MonitorConfig)
            if n not in (BOUNDS if n in top else SECTION_BOUNDS)
        }
        # Checked by rules of their own: (0, 1) and (0, 1].
        assert missing == {"quantile", "rate"}


class TestSecrets:
    """Credentials in settings never leave the process that was given them."""

    URL = "nats://alice:s3cret@127.0.0.1:4222"

    def test_to_dict_and_repr_redact_the_nats_password(self) -> None:
        """What travels to clients, headers and logs has no password."""
        config = MonitorConfig.from_config(nats={"url": self.URL})
        assert config.nats.url == self.URL  # the publisher needs it
        assert config.to_dict()["nats"]["url"] == "nats://***@127.0.0.1:4222"
        assert config.to_dict(secrets=True)["nats"]["url"] == self.URL
        assert "s3cret" not in repr(config)
        assert "alice" not in str(config)

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("nats://u:p@h:4222", "nats://***@h:4222"),
            ("nats://h:4222", "nats://h:4222"),
            ("nats://u:p@h:notaport", "nats://***@h:notaport"),
            ("nats://u:p@a:1,nats://v:q@b:2", "nats://***@a:1,nats://***@b:2"),
            ("tok@h", "***@h"),
            ("nats://h/with@inpath", "nats://h/with@inpath"),
        ],
    )
    def test_redact_url_takes_any_string_and_never_raises(
        self, url: str, expected: str
    ) -> None:
        """Bad ports and server lists are redacted, not errors."""
        from dask_monitor.config import redact_url

        assert redact_url(url) == expected


class TestOneSourceOfDefaults:
    """monitor.yaml, the settings classes and the rules agree on defaults."""

    def test_yaml_defaults_equal_the_dataclass_defaults(self) -> None:
        """What Dask config ships is what MonitorConfig() says."""
        assert MonitorConfig.from_config() == MonitorConfig()

    def test_rules_take_their_defaults_from_their_settings(self) -> None:
        """A rule built without arguments is the rule its settings build."""
        from dask_monitor.alerts import (
            ErrorBurstRule,
            StallRule,
            StragglerRule,
            WorkerLostRule,
        )
        from dask_monitor.config import AlertsConfig

        settings = AlertsConfig()
        pairs = [
            (StallRule(), StallRule.from_settings(settings.stall)),
            (ErrorBurstRule(), ErrorBurstRule.from_settings(settings.error_burst)),
            (WorkerLostRule(), WorkerLostRule.from_settings(settings.worker_lost)),
            (
                StragglerRule(None),  # type: ignore[arg-type]
                StragglerRule.from_settings(settings.straggler, None),  # type: ignore[arg-type]
            ),
        ]
        for plain, configured in pairs:
            fields = {
                k: v
                for k, v in vars(plain).items()
                if isinstance(v, int | float) and not k.startswith("_")
            }
            assert fields, type(plain)
            for name, value in fields.items():
                assert getattr(configured, name) == value, (type(plain), name)


class TestSinkSettings:
    """monitor.record and monitor.prometheus are MonitorConfig sections:
    validated where the config is built, carried to the scheduler with it."""

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"record": {"queue-size": 0}}, r"monitor\.record\.queue-size"),
            ({"record": {"max_bytes": 1}}, r"monitor\.record\.max-bytes"),
            ({"record": {"flush-interval": "1ns"}}, r"monitor\.record\.flush"),
            ({"record": {"size": 3}}, r"monitor\.record\.size"),
            ({"record": 3}, r"monitor\.record must be"),
            ({"prometheus": {"top-prefixes": 0}}, r"monitor\.prometheus\.top"),
            ({"prometheus": {"enabled": "yes"}}, r"monitor\.prometheus\.enabled"),
            ({"prometheus": {"port": 1}}, r"monitor\.prometheus\.port"),
        ],
    )
    def test_bad_sink_settings_fail_where_the_config_is_built(
        self, options: dict[str, Any], message: str
    ) -> None:
        """A bad record or prometheus setting raises ConfigError naming it,
        as a keyword and from Dask config, before anything is sent."""
        with pytest.raises(ConfigError, match=message):
            MonitorConfig.from_config(**options)
        [(section, value)] = options.items()
        with (
            dask.config.set({f"monitor.{section}": value}),
            pytest.raises(ConfigError, match=message),
        ):
            MonitorConfig.from_config()

    def test_sink_settings_travel_as_plain_data(self) -> None:
        """Set sink settings survive to_dict and back; unset ones stay None
        (the scheduler's own setting then applies)."""
        with dask.config.set({"monitor.record.max-bytes": "2 MiB"}):
            config = MonitorConfig.from_config(
                record="/logs/run.dmlog", prometheus={"enabled": False}
            )
        assert config.record == RecordSettings(
            path="/logs/run.dmlog", max_bytes=2 * 2**20
        )
        assert config.prometheus == PrometheusSettings(enabled=False)
        assert MonitorConfig(**config.to_dict()) == config

    def test_the_record_directory_never_travels(self) -> None:
        """monitor.record.directory is no field of the config (a client's is
        not sent), and asking for one at attach is refused."""
        with dask.config.set({"monitor.record.directory": "/anywhere"}):
            config = MonitorConfig.from_config()
        assert "directory" not in config.to_dict()["record"]
        with pytest.raises(ConfigError, match="on the scheduler only"):
            MonitorConfig.from_config(record={"path": "x", "directory": "/"})

    def test_unset_fields_take_the_base_then_the_defaults(self) -> None:
        """``over`` fills only what is unset; ``resolved`` the defaults."""
        mine = RecordSettings(queue_size=5)
        theirs = RecordSettings(path="/a", queue_size=9, flush_interval=2.0)
        assert mine.over(theirs) == RecordSettings("/a", None, 5, 2.0)
        assert PrometheusSettings(top_prefixes=3).resolved() == PrometheusSettings(
            True, 3
        )
