"""The broker the suite runs against works, and LocalBroker survives restarts and crashes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from synctec_webhooks.localkafka import BrokerError, LocalBroker

pytestmark = pytest.mark.broker


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)
    futures[topic].result(timeout=15)


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"k", value=value)
    assert producer.flush(10) == 0


def _consume(
    bootstrap: str, topic: str, group: str, count: int, *, subscribe: bool = True, **config: str
) -> list[Message]:
    """Up to `count` records; `subscribe=False` reads partition 0 without a group join."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **config,
        }
    )
    if subscribe:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    received: list[Message] = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"consumer error: {error}")
            if error is None:
                received.append(message)
    finally:
        consumer.close()
    return received


def test_round_trip_on_a_fresh_topic(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"{unique_name}.round-trip"
    _create_topic(kafka_bootstrap, topic, partitions=3)

    _produce(kafka_bootstrap, topic, b"hello")

    [message] = _consume(kafka_bootstrap, topic, f"{unique_name}-group", count=1)
    assert (message.key(), message.value()) == (b"k", b"hello")


def test_read_committed_sees_committed_transactions_only(
    kafka_bootstrap: str, unique_name: str
) -> None:
    topic = f"{unique_name}.tx"
    _create_topic(kafka_bootstrap, topic)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"{unique_name}-tx"}
    )
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.abort_transaction(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(15)

    read_committed = {"isolation.level": "read_committed"}
    messages = _consume(kafka_bootstrap, topic, f"{unique_name}-group", count=1, **read_committed)

    assert [m.value() for m in messages] == [b"committed"]


# The LocalBroker tests read without a consumer group: the first group on a new cluster
# waits ~3 s for __consumer_offsets, and groups are covered above.


def test_restart_keeps_topics_data_and_port(tmp_path: Path, unique_name: str) -> None:
    data_dir = tmp_path / "kafka"
    topic = f"{unique_name}.durable"
    with LocalBroker(data_dir=data_dir) as broker:
        bootstrap = broker.bootstrap_servers
        _create_topic(bootstrap, topic)
        _produce(bootstrap, topic, b"kept")

        broker.restart()

        assert broker.bootstrap_servers == bootstrap
        [message] = _consume(bootstrap, topic, f"{unique_name}-a", count=1, subscribe=False)
        assert message.value() == b"kept"

    # A new LocalBroker on the same data dir finds the same cluster on the same port.
    with LocalBroker(data_dir=data_dir) as again:
        assert again.bootstrap_servers == bootstrap
        [message] = _consume(bootstrap, topic, f"{unique_name}-b", count=1, subscribe=False)
        assert message.value() == b"kept"
    assert (data_dir / "kraft-logs" / "meta.properties").is_file()


def test_start_after_kill_recovers_and_stop_removes_temporary_dir(unique_name: str) -> None:
    topic = f"{unique_name}.crash"
    broker = LocalBroker().start()
    try:
        _create_topic(broker.bootstrap_servers, topic)
        _produce(broker.bootstrap_servers, topic, b"before the crash")

        broker.kill()
        assert not broker.running
        broker.start()

        [message] = _consume(broker.bootstrap_servers, topic, unique_name, count=1, subscribe=False)
        assert message.value() == b"before the crash"
        data_dir = broker.data_dir
    finally:
        broker.stop()
    assert not data_dir.exists()


def test_start_failure_reports_the_log_tail() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalBroker(port=taken.getsockname()[1])

        with pytest.raises(BrokerError, match="Address already in use"):
            broker.start(timeout=30)

    assert not broker.running
