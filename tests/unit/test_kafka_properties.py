"""Kafka client properties from the environment (SYNCTEC_KAFKA_*), a client.properties
file and `_FILE` secrets: what passes, what is refused and why, and that a secret never
shows in a repr, an error or a log line."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from synctec_webhooks.config import ConfigError, Settings
from synctec_webhooks.kafka import base_config, consumer_config, producer_config
from synctec_webhooks.kafka_properties import (
    KafkaProperties,
    Secret,
    key_of,
    parse_properties,
    variable_of,
)
from synctec_webhooks.ops import logs

PASSWORD = "pa55-w0rd-that-must-not-show"
SASL = {
    "SYNCTEC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "SYNCTEC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "SYNCTEC_KAFKA_SASL_USERNAME": "synctec-fanout",
}


def props(env: dict[str, str]) -> dict[str, str]:
    return KafkaProperties.from_env(env).librdkafka()


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("SYNCTEC_KAFKA_SECURITY_PROTOCOL", "security.protocol"),
        ("SYNCTEC_KAFKA_SASL_MECHANISM", "sasl.mechanism"),
        ("SYNCTEC_KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
        (
            "SYNCTEC_KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
            "ssl.endpoint.identification.algorithm",
        ),
        # A literal underscore is doubled.
        ("SYNCTEC_KAFKA_SSL_CERTIFICATE_VERIFY__CB", "ssl.certificate.verify_cb"),
    ],
)
def test_variable_names_map_to_librdkafka_keys(variable: str, key: str) -> None:
    assert key_of(variable) == key
    assert variable_of(key) == variable


def test_nothing_set_is_nothing_passed() -> None:
    assert Settings.from_env({}).kafka == KafkaProperties()
    assert props({}) == {}


def test_pass_through_of_the_security_settings() -> None:
    env = {
        **SASL,
        "SYNCTEC_KAFKA_SASL_PASSWORD": PASSWORD,
        "SYNCTEC_KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.crt",
        "SYNCTEC_KAFKA_CLIENT_RACK": "eu-west-1a",
    }
    assert props(env) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "synctec-fanout",
        "sasl.password": PASSWORD,
        "ssl.ca.location": "/etc/kafka/ca.crt",
        "client.rack": "eu-west-1a",
    }


def test_own_settings_under_the_prefix_are_not_properties() -> None:
    settings = Settings.from_env(
        {"SYNCTEC_KAFKA_DEBUG": "eos", "SYNCTEC_KAFKA_SSL_CA_LOCATION": ""}
    )
    assert settings.kafka_debug == "eos"
    assert settings.kafka == KafkaProperties()  # an empty value is "not set"


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("enable.idempotence", "exactly-once"),
        ("isolation.level", "exactly-once"),
        ("enable.auto.offset.store", "at-least-once"),
        ("enable.auto.commit", "at-least-once"),
        ("acks", "exactly-once"),
        ("transactional.id", "SYNCTEC_INSTANCE_ID"),
        ("group.id", "topic prefix"),
        ("client.id", "topic prefix"),
        ("bootstrap.servers", "KAFKA_BOOTSTRAP_SERVERS"),
        ("session.timeout.ms", "SYNCTEC_SESSION_TIMEOUT_MS"),
    ],
)
def test_what_the_code_relies_on_cannot_be_overridden(key: str, reason: str) -> None:
    variable = variable_of(key)
    with pytest.raises(ConfigError, match=rf"{variable}: {key} cannot be set here: .*{reason}"):
        Settings.from_env({variable: "x"})


def test_an_unknown_key_is_refused_with_the_closest_name() -> None:
    with pytest.raises(
        ConfigError, match=r"did you mean sasl.mechanism \(SYNCTEC_KAFKA_SASL_MECHANISM\)"
    ):
        props({"SYNCTEC_KAFKA_SASL_MECHANISMZ": "PLAIN"})
    with pytest.raises(ConfigError, match="not a property the platform passes to librdkafka"):
        props({"SYNCTEC_KAFKA_FETCH_MAX_BYTES": "1"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNCTEC_KAFKA_SECURITY_PROTOCOL": "TLS"}, "use one of"),
        ({**SASL, "SYNCTEC_KAFKA_SASL_MECHANISM": "SCRAM"}, "use one of"),
        # SASL settings librdkafka would ignore, connecting without them.
        ({"SYNCTEC_KAFKA_SASL_USERNAME": "u"}, "SYNCTEC_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
        (
            {"SYNCTEC_KAFKA_SECURITY_PROTOCOL": "SSL", "SYNCTEC_KAFKA_SASL_PASSWORD": PASSWORD},
            "security.protocol is SSL",
        ),
    ],
)
def test_values_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        props(env)
    assert PASSWORD not in str(caught.value)


# --- secrets from files -----------------------------------------------------------------


def test_a_secret_is_read_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env = {**SASL, "SYNCTEC_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    assert props(env)["sasl.password"] == PASSWORD
    assert KafkaProperties.from_env(env).get("sasl.password") == Secret(PASSWORD)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), ("", "the file is empty"), ("\n", "the file is empty")],
)
def test_a_secret_file_that_cannot_be_used(
    tmp_path: Path, content: str | None, message: str
) -> None:
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError, match=f"SYNCTEC_KAFKA_SASL_PASSWORD_FILE={secret}: {message}"):
        props({**SASL, "SYNCTEC_KAFKA_SASL_PASSWORD_FILE": str(secret)})


def test_a_secret_set_twice_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    env = {
        **SASL,
        "SYNCTEC_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "SYNCTEC_KAFKA_SASL_PASSWORD": "other",
    }
    with pytest.raises(ConfigError, match=r"both set sasl\.password: keep one"):
        props(env)


def test_only_secrets_have_a_file_form(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ssl.ca.location.file .* did you mean ssl.ca.location"):
        props({"SYNCTEC_KAFKA_SSL_CA_LOCATION_FILE": str(tmp_path)})
    # A librdkafka key that itself ends in ".file" is an ordinary property.
    key = "sasl.oauthbearer.assertion.file"
    env = {"SYNCTEC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", variable_of(key): "/jwt"}
    assert props(env)[key] == "/jwt"


# --- a Java client.properties -----------------------------------------------------------

CLIENT_PROPERTIES = f"""\
# as Kafka's own tools take it
! another comment
security.protocol = SASL_SSL
sasl.mechanism: SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
    username="synctec-admin" \\
    password="{PASSWORD}";
ssl.ca.location /etc/kafka/ca\\u002ecrt
ssl.endpoint.identification.algorithm=
"""


def test_a_client_properties_file(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(CLIENT_PROPERTIES)
    assert props({"SYNCTEC_KAFKA_CONFIG_FILE": str(path)}) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "synctec-admin",
        "sasl.password": PASSWORD,
        "ssl.ca.location": "/etc/kafka/ca.crt",
        "ssl.endpoint.identification.algorithm": "none",  # Java's empty value: off
    }


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(CLIENT_PROPERTIES)
    env = {"SYNCTEC_KAFKA_CONFIG_FILE": str(path), "SYNCTEC_KAFKA_SASL_USERNAME": "synctec-retry"}
    assert props(env)["sasl.username"] == "synctec-retry"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("enable.idempotence=false", "line 2: enable.idempotence cannot be set here"),
        ("ssl.truststore.location=/t.jks", "line 2: ssl.truststore.location is Java's; .*PEM"),
        ("ssl.keystore.type=JKS", "line 2: ssl.keystore.type=JKS: convert it to PKCS12"),
        (
            "sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required;",
            "only ScramLoginModule and PlainLoginModule",
        ),
        ("sasl.jaas.config=x.ScramLoginModule required;", 'no username="..." password'),
    ],
)
def test_file_entries_that_cannot_work_name_their_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "client.properties"
    path.write_text(f"sasl.password={PASSWORD}\n{line}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        props({"SYNCTEC_KAFKA_CONFIG_FILE": str(path)})
    assert str(path) in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ConfigError, match="SYNCTEC_KAFKA_CONFIG_FILE=/nope: cannot read it"):
        props({"SYNCTEC_KAFKA_CONFIG_FILE": "/nope"})


def test_properties_syntax() -> None:
    text = "a=1\n  b : 2\nc 3\nd=\\\n  4\\\\\ne\\=f=5\n\n#g=6\nh=tab\\there\n"
    assert [(k, v) for _, k, v in parse_properties(text)] == [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d", "4\\"),
        ("e=f", "5"),
        ("h", "tab\there"),
    ]


# --- out of sight -----------------------------------------------------------------------


def test_a_secret_never_prints() -> None:
    settings = Settings.from_env({**SASL, "SYNCTEC_KAFKA_SASL_PASSWORD": PASSWORD})
    for text in (repr(settings), str(settings), repr(settings.kafka), f"{Secret(PASSWORD)}"):
        assert PASSWORD not in text
    assert "sasl.username" in repr(settings.kafka)
    assert "Secret('***')" in repr(settings.kafka)


def test_every_client_gets_the_properties_and_keeps_the_code_s_own() -> None:
    settings = Settings.from_env(
        {**SASL, "SYNCTEC_KAFKA_SASL_PASSWORD": PASSWORD, "SYNCTEC_KAFKA_DEBUG": "security"}
    )
    for conf in (
        base_config(settings, "admin"),
        producer_config(settings, "p"),
        consumer_config(settings, "g", "c"),
    ):
        assert conf["sasl.password"] == PASSWORD
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["debug"] == "security"
    assert producer_config(settings, "p")["enable.idempotence"] is True
    assert consumer_config(settings, "g", "c")["isolation.level"] == "read_committed"


def test_a_secret_handed_to_librdkafka_is_masked_in_every_log_line() -> None:
    settings = Settings.from_env({**SASL, "SYNCTEC_KAFKA_SASL_PASSWORD": PASSWORD})
    base_config(settings, "admin")  # registers it with the redactor
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        handler.setFormatter(formatter)
        record = logging.LogRecord(
            "librdkafka", logging.ERROR, __file__, 1, "auth with %s failed", (PASSWORD,), None
        )
        handler.emit(record)
    assert PASSWORD not in stream.getvalue()
    assert stream.getvalue().count("auth with *** failed") == 2


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("sasl.password=hunter22 rest", "sasl.password=*** rest"),
        ("ssl.key.password: hunter22", "ssl.key.password: ***"),
        ("ssl.keystore.password=hunter22", "ssl.keystore.password=***"),
        ("sasl.oauthbearer.client.secret=abc", "sasl.oauthbearer.client.secret=***"),
        (
            'ScramLoginModule required username="u" password="p\\"w";',
            'ScramLoginModule required username="u" password="***";',
        ),
        ("sasl.username=synctec-fanout", "sasl.username=synctec-fanout"),  # not a secret
    ],
)
def test_redact_masks_secrets_written_as_properties(text: str, shown: str) -> None:
    assert logs.redact(text) == shown
