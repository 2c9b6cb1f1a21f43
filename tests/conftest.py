"""Shared fixtures: a Kafka broker for integration tests, unique names per test.

The broker is chosen once per session, and only when a test asks for it, so tests that
need none (tests/unit) start nothing:

1. `KAFKA_BOOTSTRAP_SERVERS`, when set: a broker someone else runs;
2. a testcontainers `KafkaContainer`, when a Docker engine answers;
3. a `LocalBroker` (Kafka from Maven Central jars on this JVM), otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from synctec_webhooks.localkafka import KAFKA_VERSION, LocalBroker

logger = logging.getLogger(__name__)

# Other suites may run on this machine at the same time: every service a test starts
# serves /metrics on a free port (it logs which) instead of its role's fixed default.
os.environ.setdefault("SYNCTEC_METRICS_PORT", "0")

_BROKER_CHOICE = pytest.StashKey[str]()
_TRANSACTION_ENV = {
    # The Confluent image sets the offsets topic up for one node but not the
    # transaction log, without which init_transactions() times out.
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
}


def _docker_answers(timeout: float = 2.0) -> bool:
    """Whether a Docker engine responds, without hanging or leaving warnings behind."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    url = urlparse(host)
    # Cheap look first: docker-py, failing to connect, leaks a socket (a ResourceWarning,
    # which this suite turns into an error).
    if url.scheme == "unix" and not os.path.exists(url.path):
        return False
    if url.scheme == "tcp":
        try:
            with socket.create_connection((url.hostname or "localhost", url.port or 2375), timeout):
                pass
        except OSError:
            return False
    try:
        import docker
    except ImportError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            client = docker.from_env(timeout=int(timeout) or 1)
        except Exception:  # any failure means "no usable engine"
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()


@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers before the community split
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.kafka import KafkaContainer  # type: ignore[no-redef]
    container = KafkaContainer().with_kraft()
    for key, value in _TRANSACTION_ENV.items():
        container.with_env(key, value)
    with container:
        yield container.get_bootstrap_server()


@pytest.fixture(scope="session")
def kafka_bootstrap(pytestconfig: pytest.Config) -> Iterator[str]:
    """bootstrap.servers of a broker for the whole session (see the module docstring)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        _announce(pytestconfig, f"KAFKA_BOOTSTRAP_SERVERS={configured}")
        yield configured
    elif _docker_answers():
        with _kafka_container() as bootstrap:
            _announce(pytestconfig, f"testcontainers KafkaContainer at {bootstrap}")
            yield bootstrap
    else:
        began = time.monotonic()
        with LocalBroker() as broker:
            _announce(
                pytestconfig,
                f"LocalBroker at {broker.bootstrap_servers} (no Docker engine answered;"
                f" Kafka {KAFKA_VERSION} started in {time.monotonic() - began:.1f} s)",
            )
            yield broker.bootstrap_servers


@pytest.fixture
def unique_name() -> str:
    """A short name no other test uses: a prefix for topics, groups, transactional ids."""
    return f"t{uuid.uuid4().hex[:8]}"


def _announce(config: pytest.Config, choice: str) -> None:
    logger.info("Kafka broker for this session: %s", choice)
    config.stash[_BROKER_CHOICE] = choice


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    choice = config.stash.get(_BROKER_CHOICE, None)
    if choice is not None:
        terminalreporter.write_line(f"Kafka broker used: {choice}")
