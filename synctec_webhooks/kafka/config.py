"""Client configuration: what every client, producer and consumer of the package sets,
and where librdkafka's errors and log lines go.

Every client starts from `base_config`, so the connection's security (TLS, SASL: the
`SYNCTEC_KAFKA_*` settings, `synctec_webhooks.kafka_properties`) reaches producers,
workers, the admin service, the CLI, topic admins and followers alike. The local broker's
readiness probe (probe.py) is the one exception: it asks the internal PLAINTEXT listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from synctec_webhooks.config import Settings
from synctec_webhooks.ops.logs import mask_value

logger = logging.getLogger(__name__)


_error_listeners: list[Callable[[KafkaError], None]] = []


def add_error_listener(listener: Callable[[KafkaError], None]) -> Callable[[], None]:
    """Also send every client's error_cb errors to `listener` (the metrics); returns a
    function that removes it. Listeners run on librdkafka's threads: keep them quick."""
    _error_listeners.append(listener)
    return lambda: _error_listeners.remove(listener)


def _error_cb(err: KafkaError) -> None:
    for listener in list(_error_listeners):
        listener(err)
    # Severity by code, as quixstreams does: these are informational or transient.
    code = err.code()
    if code == KafkaError._DESTROY:
        logger.debug("kafka client: %s", err)
    elif code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
        logger.warning("kafka client: %s", err)
    else:
        logger.error("kafka client: %s", err)


_librdkafka_logger = logging.getLogger("librdkafka")


def base_config(settings: Settings, client_id: str) -> dict[str, Any]:
    # Secrets leave their wrapper here, for librdkafka only: from now on the log
    # redactor masks them wherever they turn up (a librdkafka log line, an error).
    for secret in settings.kafka.secrets():
        mask_value(secret)
    # First, so the keys below always win (kafka_properties refuses them anyway).
    conf: dict[str, Any] = settings.kafka.librdkafka()
    conf |= {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.topic_prefix}-{client_id}",
        "error_cb": _error_cb,
        # librdkafka's own log lines go through Python logging (format, level, capture)
        # rather than straight to stderr.
        "logger": _librdkafka_logger,
    }
    if settings.kafka_debug:
        conf["debug"] = settings.kafka_debug  # librdkafka's own tracing, for diagnosis
    return conf


def producer_config(settings: Settings, client_id: str, **extra: Any) -> dict[str, Any]:
    conf = base_config(settings, client_id)
    conf.update(
        {
            # No duplicates from producer retries, no reordering within a partition.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            # Java clients share these topics; keep the same key -> partition mapping.
            "partitioner": "murmur2_random",
        }
    )
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, group: str, client_id: str, **extra: Any) -> dict[str, Any]:
    conf = base_config(settings, client_id)
    conf.update(
        {
            "group.id": group,
            "auto.offset.reset": "earliest",
            # Offsets are stored by the worker only when the work they cover is done;
            # the auto-commit then commits what was stored, never more.
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            # What a crash redoes is what finished since the last commit: commit often.
            "auto.commit.interval.ms": 200,
            # A crashed member's partitions wait this long for a new owner.
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 5),
            "isolation.level": "read_committed",
            # A partition resumed (or newly written) while a fetch waits at the broker
            # is only fetched by the next request: 500 ms by default, 100 here.
            "fetch.wait.max.ms": 100,
            "partition.assignment.strategy": "cooperative-sticky",
            "topic.metadata.refresh.interval.ms": settings.metadata_refresh_ms,
        }
    )
    conf.update(extra)
    return conf
