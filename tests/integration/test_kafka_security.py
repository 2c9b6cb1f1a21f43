"""Kafka that only the platform can use: the pipeline over SASL_SSL (SCRAM-SHA-512, TLS
with certificates made here by openssl), one user per role with the ACLs of
deploy/k8s/kafka-users.yaml enforced by Kafka's StandardAuthorizer; clients without
credentials, or with a wrong password, refused; no secret in any log.

The broker is this module's own (a LocalBroker with a SASL_SSL listener), so the
pipeline uses the manifests' topic prefix, `synctec`, and their ACLs apply verbatim.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import core_topics, producer_config
from synctec_webhooks.localkafka import LocalBroker, SaslSslListener, ScramUser
from synctec_webhooks.producers.events import EventProducer
from tests.integration.admin_client import AdminClient as AdminApi
from tests.integration.harness import ADMIN, Pipeline, Receiver, product_synced
from tests.integration.kafka_acls import acl_bindings, kafka_users

pytestmark = pytest.mark.broker

PREFIX = "synctec"  # the manifests' prefix: their ACLs name its topics
ROLES = ("fanout", "deliver", "retry", ADMIN)
CLI = [sys.executable, "-m", "synctec_webhooks.cli"]


def make_certificates(folder: Path, password: str) -> tuple[Path, Path]:
    """A CA, and the broker's key and certificate signed by it for 127.0.0.1 and
    localhost in a PKCS#12 keystore: (keystore, CA certificate in PEM)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=synctec-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=localhost",
    )  # fmt: skip
    (folder / "broker.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "broker.ext", "-out", "broker.pem",
    )  # fmt: skip
    openssl(
        "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
        "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{password}",
    )  # fmt: skip
    return folder / "broker.p12", folder / "ca.pem"


@dataclass(frozen=True)
class SecuredKafka:
    broker: LocalBroker
    ca: Path
    passwords: dict[str, str]  # user -> password
    folder: Path

    def env(self, user: str, password: str | None = None) -> dict[str, str]:
        """What a role's process gets, as in deploy/k8s: the password from a file."""
        secret = self.folder / f"{user}.{secrets.token_hex(4)}.password"
        secret.write_text((password or self.passwords[user]) + "\n")
        secret.chmod(0o600)
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.sasl_ssl_bootstrap_servers,
            "SYNCTEC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SYNCTEC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "SYNCTEC_KAFKA_SASL_USERNAME": user,
            "SYNCTEC_KAFKA_SASL_PASSWORD_FILE": str(secret),
            "SYNCTEC_KAFKA_SSL_CA_LOCATION": str(self.ca),
        }

    def all_secrets(self) -> list[str]:
        return list(self.passwords.values())


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    folder = tmp_path_factory.mktemp("kafka-security")
    keystore_password = secrets.token_urlsafe(16)
    keystore, ca = make_certificates(folder, keystore_password)
    users = kafka_users()
    passwords = {name: secrets.token_urlsafe(18) for name in users}
    listener = SaslSslListener(
        keystore,
        keystore_password,
        tuple(ScramUser(name, password) for name, password in passwords.items()),
        authorizer=True,
    )
    with LocalBroker(sasl_ssl=listener) as broker:
        set_up_as_an_operator(broker, users.values())
        yield SecuredKafka(broker, ca, passwords, folder)


def set_up_as_an_operator(broker: LocalBroker, users: Iterable[dict[str, Any]]) -> None:
    """What an operator does before the platform starts, over the node's own listener
    (its super user): the topics of deploy/k8s/topics.yaml, the ACLs of kafka-users.yaml."""
    operator = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    specs = core_topics(Settings(topic_prefix=PREFIX))
    topics = [NewTopic(t.name, t.partitions, 1, config=t.config) for t in specs]
    for future in operator.create_topics(topics).values():
        future.result(30)
    bindings = [binding for user in users for binding in acl_bindings(user)]
    for future in operator.create_acls(bindings).values():
        future.result(30)


def role_pipeline(secured: SecuredKafka, role: str, logs: Path, **env: str) -> Pipeline:
    return Pipeline(
        secured.broker.sasl_ssl_bootstrap_servers,
        PREFIX,
        logs,
        **{**secured.env(f"synctec-{role}"), **env},
    )


def test_the_pipeline_runs_over_sasl_ssl_with_one_user_per_role(
    secured: SecuredKafka, receiver: Receiver, tmp_path: Path
) -> None:
    shared = {
        "SYNCTEC_SECRET_KEY": Fernet.generate_key().decode(),
        "SYNCTEC_ADMIN_TOKEN": secrets.token_urlsafe(24),
        # librdkafka's own tracing of the handshakes, to show it never prints a secret.
        "SYNCTEC_KAFKA_DEBUG": "security",
        "SYNCTEC_LOG_LEVEL": "DEBUG",
    }
    pipelines = {role: role_pipeline(secured, role, tmp_path, **shared) for role in ROLES}
    # One role takes its password from the environment itself rather than a file (an
    # empty variable counts as unset).
    pipelines["retry"].env |= {
        "SYNCTEC_KAFKA_SASL_PASSWORD": secured.passwords["synctec-retry"],
        "SYNCTEC_KAFKA_SASL_PASSWORD_FILE": "",
    }
    try:
        for role, pipeline in pipelines.items():
            pipeline.start([role], timeout=90)
        admin = pipelines[ADMIN]
        api = AdminApi(admin.admin_url(), admin.admin_token)
        created = api.post("/webhooks", {"url": receiver.url("/secure"), "events": ["*"]})
        assert created.status == 201, created.body

        # A sync service, configured the way Kafka's Java tools are: a client.properties.
        properties = tmp_path / "client.properties"
        properties.write_text(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
            f"ssl.ca.location={secured.ca}\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule"
            ' required username="synctec-producer" password="'
            f'{secured.passwords["synctec-producer"]}";\n'
        )
        producer_env = {
            "KAFKA_BOOTSTRAP_SERVERS": secured.broker.sasl_ssl_bootstrap_servers,
            "SYNCTEC_TOPIC_PREFIX": PREFIX,
            "SYNCTEC_KAFKA_CONFIG_FILE": str(properties),
        }
        with EventProducer(Settings.from_env(producer_env)) as producer:
            event_id = producer.emit(product_synced(), account=DEFAULT_ACCOUNT)

        [got] = receiver.wait_for(1, "/secure", timeout=60)
        assert got.json["id"] == event_id
        Webhook(created.body["secret"]).verify(got.body, got.headers)  # signed, and by it
        # The admin's own write to a delivery topic (a test event to this webhook).
        assert api.post(f"/webhooks/{created.body['id']}/test").status == 202
        receiver.wait_for(2, "/secure", timeout=60)
        # A dead-letter replay (none to send): its transactional id is the admin's too.
        replay = api.post("/dead-letters/replay", {"webhook_id": created.body["id"]})
        assert replay.status == 200, replay.body

        # The CLI, as the admin user.
        listed = subprocess.run(
            [*CLI, "webhooks", "list", "--json"],
            env={**os.environ, **admin.env},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert created.body["id"] in listed.stdout
        for secret in secured.all_secrets():
            assert secret not in listed.stdout + listed.stderr
    finally:
        codes = {role: p.stop() for role, p in pipelines.items()}
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.log"))
    print(logs[-20000:])
    assert all(code == 0 for c in codes.values() for code in c.values()), codes
    assert "SASL" in logs  # librdkafka did trace the handshakes
    for secret in secured.all_secrets():
        assert secret not in logs


def errors_of(conf: dict[str, object]) -> tuple[AdminClient, list[KafkaError]]:
    seen: list[KafkaError] = []
    return AdminClient({**conf, "error_cb": seen.append}), seen


def refused(client: AdminClient) -> bool:
    try:
        client.list_topics(timeout=4)
    except KafkaException:
        return True
    return False


def test_clients_without_the_right_credentials_are_refused(secured: SecuredKafka) -> None:
    servers = secured.broker.sasl_ssl_bootstrap_servers
    tls = {
        "bootstrap.servers": servers,
        "security.protocol": "SSL",
        "ssl.ca.location": str(secured.ca),
        "log_level": 0,
    }
    # No TLS, no SASL: not a Kafka conversation the listener takes.
    assert refused(AdminClient({"bootstrap.servers": servers, "log_level": 0}))
    # TLS, but nobody: the listener wants a SASL handshake first.
    assert refused(AdminClient(tls))
    # A known user, the wrong password: told so.
    wrong, seen = errors_of(
        {
            **tls,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "synctec-deliver",
            "sasl.password": "not-" + secured.passwords["synctec-deliver"],
        }
    )
    assert refused(wrong)
    wrong.poll(1)  # error_cb is served from poll()
    assert any(e.code() == KafkaError._AUTHENTICATION for e in seen), seen
    # The right password, but a certificate nobody we trust signed: TLS fails first.
    other_ca = secured.folder / "other"
    other_ca.mkdir(exist_ok=True)
    _, untrusted = make_certificates(other_ca, "unused-password")
    assert refused(
        AdminClient(
            {
                **tls,
                "ssl.ca.location": str(untrusted),
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "synctec-deliver",
                "sasl.password": secured.passwords["synctec-deliver"],
            }
        )
    )


def test_a_worker_with_a_wrong_password_never_starts_and_never_logs_it(
    secured: SecuredKafka, tmp_path: Path
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    pipeline = Pipeline(
        secured.broker.sasl_ssl_bootstrap_servers,
        PREFIX,
        tmp_path,
        **secured.env("synctec-deliver", password=wrong),
    )
    pipeline._spawn("deliver")
    log = pipeline.log_path("deliver")
    try:
        # Refused at its first request (ensuring the core topics), it gives up and exits.
        code = pipeline.procs["deliver"].wait(90)
    finally:
        pipeline.kill("deliver")
    text = log.read_text()
    assert code != 0, text
    assert " consuming " not in text
    assert wrong not in text
    assert secured.passwords["synctec-deliver"] not in text


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        ("synctec-fanout", True),
        ("synctec-admin", True),  # test events and replays (kafka-users.yaml says why)
        ("synctec-deliver", False),
        ("synctec-retry", False),
        ("synctec-producer", False),
    ],
)
def test_only_the_fanout_and_the_admin_write_delivery_topics(
    secured: SecuredKafka, user: str, allowed: bool
) -> None:
    topic = f"{PREFIX}.deliveries.wh_acl_check"
    operator = AdminClient({"bootstrap.servers": secured.broker.bootstrap_servers})
    for future in operator.create_topics([NewTopic(topic, 1, 1)]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            assert exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    settings = Settings.from_env({**secured.env(user), "SYNCTEC_TOPIC_PREFIX": PREFIX})
    # Not idempotent: an idempotent producer's refusal is a fatal error, not a report.
    producer = Producer(
        {**producer_config(settings, "acl-check"), "enable.idempotence": False, "log_level": 0}
    )
    results: list[KafkaError | None] = []
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: results.append(err))
    deadline = time.monotonic() + 30
    while not results and time.monotonic() < deadline:
        producer.poll(0.2)
    assert results, "no answer from the broker"
    [err] = results
    if allowed:
        assert err is None, err
    else:
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
