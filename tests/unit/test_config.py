"""Settings from the environment: defaults, each variable, and refusals that name it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from synctec_webhooks.config import ConfigError, Settings
from synctec_webhooks.retry_policy import DEFAULT_DELAYS, RetryPolicy


def test_defaults() -> None:
    settings = Settings.from_env({"SYNCTEC_INSTANCE_ID": "0"})
    assert settings == Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_prefix == "synctec"
    assert settings.schema_registry_url is None
    assert settings.retry == RetryPolicy(delays=DEFAULT_DELAYS, retry_after_max=3600.0)
    assert settings.http_timeout == 10.0
    assert settings.max_in_flight == 1000
    assert settings.max_in_flight_per_endpoint == 20
    assert settings.response_body_limit == 64 * 1024
    assert settings.events_partitions == 6
    assert settings.delivery_partitions == 3
    assert settings.metadata_refresh_ms == 2000
    assert settings.state_dir == ".state"
    assert (settings.fanout_batch_max, settings.fanout_batch_ms) == (500, 50)
    assert settings.transaction_timeout_ms == 10_000


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SYNCTEC_INSTANCE_ID": "fanout-2"}, "fanout-2"),
        ({"SYNCTEC_INSTANCE_ID": "pod.eu-west.3"}, "pod-eu-west-3"),  # made plain
        ({"SYNCTEC_INSTANCE_ID": "..."}, "0"),
    ],
)
def test_instance_id(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env(env).instance_id == expected


def test_instance_id_defaults_to_the_host_name() -> None:
    import socket

    assert Settings.from_env({}).instance_id.startswith(socket.gethostname().split(".")[0])


def test_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCTEC_TOPIC_PREFIX", "from_os")
    assert Settings.from_env({}).topic_prefix == "synctec"
    assert Settings.from_env().topic_prefix == "from_os"


def _get(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("SYNCTEC_BOOTSTRAP_SERVERS", "k1:9092,k2:9092", "bootstrap_servers", "k1:9092,k2:9092"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092", "bootstrap_servers", "kafka:29092"),
        ("SYNCTEC_TOPIC_PREFIX", "t1a2b3c4", "topic_prefix", "t1a2b3c4"),
        ("SYNCTEC_TOPIC_PREFIX", "Shop_EU-2", "topic_prefix", "Shop_EU-2"),
        ("SYNCTEC_TOPIC_PREFIX", "p" * 81, "topic_prefix", "p" * 81),
        ("SYNCTEC_SCHEMA_REGISTRY_URL", "http://sr:8081", "schema_registry_url", "http://sr:8081"),
        ("SYNCTEC_SCHEMA_REGISTRY_URL", "", "schema_registry_url", None),
        ("SYNCTEC_RETRY_DELAYS", "1,2.5,0", "retry.delays", (1.0, 2.5, 0.0)),
        ("SYNCTEC_RETRY_DELAYS", " 60 ", "retry.delays", (60.0,)),
        ("SYNCTEC_RETRY_DELAYS", "", "retry.delays", DEFAULT_DELAYS),
        ("SYNCTEC_RETRY_AFTER_MAX", "600", "retry.retry_after_max", 600.0),
        ("SYNCTEC_HTTP_TIMEOUT", "2.5", "http_timeout", 2.5),
        ("SYNCTEC_HTTP_TIMEOUT", "30", "http_timeout", 30.0),
        ("SYNCTEC_HTTP_TIMEOUT", "", "http_timeout", 10.0),
        ("SYNCTEC_MAX_IN_FLIGHT", "50", "max_in_flight", 50),
        ("SYNCTEC_MAX_IN_FLIGHT", "", "max_in_flight", 1000),
        ("SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT", "4", "max_in_flight_per_endpoint", 4),
        ("SYNCTEC_RESPONSE_BODY_LIMIT", "1024", "response_body_limit", 1024),
        ("SYNCTEC_EVENTS_PARTITIONS", "12", "events_partitions", 12),
        ("SYNCTEC_DELIVERY_PARTITIONS", "1", "delivery_partitions", 1),
        ("SYNCTEC_METADATA_REFRESH_MS", "500", "metadata_refresh_ms", 500),
        ("SYNCTEC_STATE_DIR", "/var/lib/synctec", "state_dir", "/var/lib/synctec"),
        ("SYNCTEC_INSTANCE_ID", "fanout-1", "instance_id", "fanout-1"),
        ("SYNCTEC_FANOUT_BATCH_MAX", "100", "fanout_batch_max", 100),
        ("SYNCTEC_FANOUT_BATCH_MS", "20", "fanout_batch_ms", 20),
        ("SYNCTEC_TRANSACTION_TIMEOUT_MS", "5000", "transaction_timeout_ms", 5000),
        ("SYNCTEC_SESSION_TIMEOUT_MS", "6000", "session_timeout_ms", 6000),
        ("SYNCTEC_MAX_UNCOMMITTED", "50", "max_uncommitted", 50),
    ],
)
def test_each_variable(variable: str, value: str, attribute: str, expected: object) -> None:
    settings = Settings.from_env({"SYNCTEC_INSTANCE_ID": "0", variable: value})
    assert _get(settings, attribute) == expected
    top = attribute.split(".")[0]
    assert settings == Settings().with_(**{top: getattr(settings, top)}), "nothing else moves"


def test_retry_variables_combine() -> None:
    settings = Settings.from_env({"SYNCTEC_RETRY_DELAYS": "1,2", "SYNCTEC_RETRY_AFTER_MAX": "90"})
    assert settings.retry == RetryPolicy(delays=(1.0, 2.0), retry_after_max=90.0)
    assert settings.retry.max_attempts == 3


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "127.0.0.1:9092"),
        ({"SYNCTEC_BOOTSTRAP_SERVERS": "ours:9092"}, "ours:9092"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "theirs:9092"}, "theirs:9092"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "theirs:9092", "SYNCTEC_BOOTSTRAP_SERVERS": "ours:9092"},
            "theirs:9092",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "", "SYNCTEC_BOOTSTRAP_SERVERS": "ours:9092"}, "ours:9092"),
    ],
)
def test_bootstrap_servers_precedence(env: dict[str, str], expected: str) -> None:
    assert Settings.from_env(env).bootstrap_servers == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNCTEC_HTTP_TIMEOUT", "abc"),
        ("SYNCTEC_HTTP_TIMEOUT", "0"),
        ("SYNCTEC_HTTP_TIMEOUT", "-1.5"),
        ("SYNCTEC_RETRY_AFTER_MAX", "0"),
        ("SYNCTEC_RETRY_AFTER_MAX", "an hour"),
        ("SYNCTEC_RETRY_DELAYS", "1,x"),
        ("SYNCTEC_RETRY_DELAYS", "1,,2"),
        ("SYNCTEC_RETRY_DELAYS", "5,-1"),
        ("SYNCTEC_RETRY_DELAYS", "nan"),
        ("SYNCTEC_RETRY_DELAYS", " "),
        ("SYNCTEC_TOPIC_PREFIX", "a.b"),
        ("SYNCTEC_TOPIC_PREFIX", "a b"),
        ("SYNCTEC_TOPIC_PREFIX", " synctec"),
        ("SYNCTEC_TOPIC_PREFIX", ""),
        ("SYNCTEC_TOPIC_PREFIX", "_synctec"),
        ("SYNCTEC_TOPIC_PREFIX", "p" * 82),
        ("SYNCTEC_TOPIC_PREFIX", "shop/eu"),
        ("SYNCTEC_MAX_IN_FLIGHT", "-1"),
        ("SYNCTEC_MAX_IN_FLIGHT", "0"),
        ("SYNCTEC_MAX_IN_FLIGHT", "1.5"),
        ("SYNCTEC_MAX_IN_FLIGHT", "many"),
        ("SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT", "0"),
        ("SYNCTEC_RESPONSE_BODY_LIMIT", "64k"),
        ("SYNCTEC_EVENTS_PARTITIONS", "-6"),
        ("SYNCTEC_DELIVERY_PARTITIONS", "three"),
        ("SYNCTEC_METADATA_REFRESH_MS", "0"),
    ],
)
def test_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(variable)):
        Settings.from_env({variable: value})


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="SYNCTEC_HTTP_TIMEOUT='abc'"):
        Settings.from_env({"SYNCTEC_HTTP_TIMEOUT": "abc"})


def test_prefix_with_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="SYNCTEC_TOPIC_PREFIX"):
        Settings.from_env({"SYNCTEC_TOPIC_PREFIX": "synctec\n"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SYNCTEC_HTTP_TIMEOUT", "nan"),
        ("SYNCTEC_HTTP_TIMEOUT", "inf"),
        ("SYNCTEC_RETRY_AFTER_MAX", "nan"),
        ("SYNCTEC_RETRY_AFTER_MAX", "inf"),
    ],
)
def test_non_finite_number_is_refused(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})
