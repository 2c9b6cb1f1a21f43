"""LocalCluster: three KRaft nodes that keep every acknowledged record with one of them down.

The tests share one cluster of their own (not the session's broker). Node 1 is SIGKILLed
once, mid-stream by the acks=all test, or by the `node_down` fixture when that test did
not run, and stays down until the rejoin test brings it back: the module pays for one
crash and one restart. Every test leaves at most that one node down, so min ISR 2 holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from synctec_webhooks.localkafka import LocalCluster

pytestmark = pytest.mark.broker

_KILLED = 0  # index into cluster.nodes: node id 1


def _kafka_jvms_under(directory: Path) -> list[int]:
    """Kafka JVMs whose server.properties lies under `directory`; other engineers'
    brokers on this machine are not counted."""
    listed = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True)
    prefix = str(directory).encode()
    pids = []
    for pid in listed.stdout.split():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        if any(arg.startswith(prefix) for arg in args):
            pids.append(int(pid))
    return pids


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as started:
        data_dir = started.data_dir
        assert len(_kafka_jvms_under(data_dir)) == 3
        yield started
    assert _kafka_jvms_under(data_dir) == [], "a cluster JVM outlived stop()"
    assert not data_dir.exists()


@pytest.fixture
def node_down(cluster: LocalCluster) -> int:
    """Index of a node SIGKILLed (once per module) and still down."""
    if cluster.nodes[_KILLED].running:
        cluster.kill(_KILLED)
    return _KILLED


def _admin(cluster: LocalCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap_servers})


def _create_topic(cluster: LocalCluster, topic: str, replication_factor: int = -1) -> None:
    """Three partitions; replication -1 takes the cluster's default.replication.factor."""
    admin = _admin(cluster)  # kept until the result: a destroyed client fails its futures
    futures = admin.create_topics([NewTopic(topic, 3, replication_factor)], operation_timeout=10)
    futures[topic].result(timeout=15)


def _short_isrs(cluster: LocalCluster) -> dict[str, list[int]]:
    """Every partition, internal ones included, whose ISR lacks one of the nodes."""
    metadata = _admin(cluster).list_topics(timeout=10)
    return {
        f"{topic.topic}-{partition.id}": sorted(partition.isrs)
        for topic in metadata.topics.values()
        for partition in topic.partitions.values()
        if sorted(partition.isrs) != [1, 2, 3]
    }


def _produce_acked(producer: Producer, topic: str, values: list[bytes]) -> None:
    """Produce and flush; fail unless the broker acknowledged every record."""
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _: Message) -> None:
        if error is not None:
            failures.append(error)

    for value in values:
        producer.produce(topic, key=value, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "records still unacknowledged after 30 s"
    assert failures == []


def _read_committed(cluster: LocalCluster, topic: str, group: str, count: int) -> list[bytes]:
    """The values a read_committed group member gets: `count`, and any more within 1 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    # A second past `count`: a duplicate would arrive right behind the last record.
    enough: float | None = None
    try:
        while time.monotonic() < (deadline if enough is None else enough):
            if enough is None and len(values) >= count:
                enough = time.monotonic() + 1.0
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"consumer error: {error}")
            value = message.value()
            if error is None and value is not None:
                values.append(value)
    finally:
        consumer.close()
    return values


def _values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i:04d}".encode() for i in range(count)]


# Runs before the shared cluster starts: two clusters at once would crowd two cores.
def test_broker_command_runs_a_cluster_until_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "synctec_webhooks.cli", "broker", "--nodes", "3", "--json"]
    # Its temporary cluster dir lands under tmp_path, where its JVMs can be told apart.
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment) as process:
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())
            servers = ready["bootstrap_servers"].split(",")
            assert len(servers) == 3
            assert len(_kafka_jvms_under(tmp_path)) == 3
            metadata = AdminClient({"bootstrap.servers": servers[2]}).list_topics(timeout=10)
            assert sorted(metadata.brokers) == [1, 2, 3]
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
    assert _kafka_jvms_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == [], "the temporary cluster dir is left behind"


@pytest.mark.parametrize("replication_factor", [3, -1], ids=["explicit", "default"])
def test_topics_get_three_replicas_and_min_isr_two(
    cluster: LocalCluster, unique_name: str, replication_factor: int
) -> None:
    topic = f"{unique_name}.replicated"
    _create_topic(cluster, topic, replication_factor)

    admin = _admin(cluster)
    metadata = admin.list_topics(timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    for name in (topic, "__consumer_offsets"):
        for partition in metadata.topics[name].partitions.values():
            assert sorted(partition.replicas) == [1, 2, 3], (name, partition)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["min.insync.replicas"].value == "2"


def test_acks_all_producer_loses_nothing_when_a_node_is_killed(
    cluster: LocalCluster, unique_name: str
) -> None:
    topic = f"{unique_name}.acks-all"
    _create_topic(cluster, topic)
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "enable.idempotence": True,  # implies acks=all
            "acks": "all",
            "linger.ms": 5,
        }
    )
    before, after = _values("before", 100), _values("after", 100)
    _produce_acked(producer, topic, before)
    metadata = _admin(cluster).list_topics(topic, timeout=10)
    leaders = {partition.leader for partition in metadata.topics[topic].partitions.values()}

    # The killed node leads one of the three partitions: its records must come back from
    # the followers, and the new records need the two survivors' acks.
    assert _KILLED + 1 in leaders
    cluster.kill(_KILLED)
    _produce_acked(producer, topic, after)

    received = _read_committed(cluster, topic, f"{unique_name}-group", len(before + after))
    assert sorted(received) == sorted(before + after)


def test_transactions_commit_with_a_node_down(
    cluster: LocalCluster, node_down: int, unique_name: str
) -> None:
    assert not cluster.nodes[node_down].running
    topic = f"{unique_name}.tx"
    _create_topic(cluster, topic)
    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": f"{unique_name}-tx"}
    )
    producer.init_transactions(30)
    committed = _values("committed", 50)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.abort_transaction(30)
    producer.begin_transaction()
    for value in committed:
        producer.produce(topic, key=value, value=value)
    producer.commit_transaction(30)

    received = _read_committed(cluster, topic, f"{unique_name}-group", len(committed))
    assert sorted(received) == committed


def test_restarted_node_rejoins_every_isr(
    cluster: LocalCluster, node_down: int, unique_name: str
) -> None:
    topic = f"{unique_name}.rejoin"
    _create_topic(cluster, topic)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all"})
    _produce_acked(producer, topic, _values("while-down", 50))  # for it to catch up on
    assert f"{topic}-0" in _short_isrs(cluster)
    port = cluster.nodes[node_down].bootstrap_servers

    cluster.start_node(node_down)

    assert cluster.nodes[node_down].bootstrap_servers == port
    deadline = time.monotonic() + 30
    while short := _short_isrs(cluster):
        assert time.monotonic() < deadline, f"ISRs still short 30 s after the restart: {short}"
        time.sleep(0.2)


def test_a_node_stopped_cleanly_comes_back_on_its_port(cluster: LocalCluster) -> None:
    if not cluster.nodes[_KILLED].running:  # when run without the rejoin test
        cluster.start_node(_KILLED)
    last = len(cluster.nodes) - 1
    port = cluster.nodes[last].bootstrap_servers

    cluster.stop_node(last)
    assert not cluster.nodes[last].running
    cluster.start_node(last)

    assert cluster.nodes[last].bootstrap_servers == port
    assert sorted(_admin(cluster).list_topics(timeout=10).brokers) == [1, 2, 3]
