"""The local broker's SASL_SSL listener, rendered: no JVM, no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka import LocalBroker, SaslSslListener, ScramUser, config


def _properties(text: str) -> dict[str, str]:
    lines = (line.strip() for line in text.splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def listener(tmp_path: Path, authorizer: bool = False) -> SaslSslListener:
    users = (ScramUser("synctec-fanout", "fan-secret"), ScramUser("synctec-deliver", "del-secret"))
    return SaslSslListener(tmp_path / "broker.p12", "store-secret", users, authorizer=authorizer)


def test_a_node_with_a_sasl_ssl_listener_keeps_its_plaintext_one(tmp_path: Path) -> None:
    text = config.render_properties(1, 2, tmp_path, sasl_ssl=(listener(tmp_path), 3))
    props = _properties(text)
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2,SASL_SSL://127.0.0.1:3"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1,SASL_SSL://127.0.0.1:3"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(tmp_path / "broker.p12")
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PKCS12"
    assert "ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert "authorizer.class.name" not in props
    assert "$" not in "".join(props.values())


def test_the_authorizer_makes_the_node_s_own_principal_the_only_super_user(tmp_path: Path) -> None:
    props = _properties(
        config.render_properties(1, 2, tmp_path, sasl_ssl=(listener(tmp_path, True), 3))
    )
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:ANONYMOUS"
    assert props["allow.everyone.if.no.acl.found"] == "false"


def test_without_the_listener_nothing_changes(tmp_path: Path) -> None:
    props = _properties(config.render_properties(1, 2, tmp_path))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert not [key for key in props if key.startswith(("listener.name.", "sasl."))]


def test_users_are_formatted_in_and_their_passwords_masked(tmp_path: Path) -> None:
    secure = listener(tmp_path)
    assert secure.format_arguments() == [
        "--add-scram", "SCRAM-SHA-512=[name=synctec-fanout,password=fan-secret]",
        "--add-scram", "SCRAM-SHA-512=[name=synctec-deliver,password=del-secret]",
    ]  # fmt: skip
    assert secure.mask("bad fan-secret, store-secret") == "bad ***, ***"
    assert "secret" not in repr(secure)


@pytest.mark.parametrize("password", ["a,b", "a]b", 'a"b', "", "a b"])
def test_passwords_stay_within_what_needs_no_quoting(password: str) -> None:
    with pytest.raises(ValueError, match="no quoting"):
        ScramUser("u", password)


def test_a_listener_needs_a_user(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one SCRAM user"):
        SaslSslListener(tmp_path / "k.p12", "pw-1234", ())


def test_the_listener_address_is_there_once_started(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="no SASL_SSL listener"):
        _ = LocalBroker(tmp_path).sasl_ssl_bootstrap_servers
    with pytest.raises(BrokerError, match="not been started"):
        _ = LocalBroker(tmp_path, sasl_ssl=listener(tmp_path)).sasl_ssl_bootstrap_servers
