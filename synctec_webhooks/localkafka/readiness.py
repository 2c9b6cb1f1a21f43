"""Waiting until a starting node, or a whole cluster, serves: its brokers are registered
and consumer groups have a coordinator. Fails as soon as one of the JVMs exits, or at the
deadline, with the end of the nodes' logs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException, TopicPartition

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.kafka.probe import probe_admin, probe_consumer
from synctec_webhooks.localkafka.tools import TAIL_LINES

if TYPE_CHECKING:
    from synctec_webhooks.localkafka.node import LocalBroker

_WARM_UP_GROUP = "synctec-broker-warm-up"


def wait_until_serving(bootstrap: str, nodes: Sequence[LocalBroker], deadline: float) -> None:
    """Return once every node is registered in the metadata at `bootstrap` and consumer
    groups have a coordinator; fail as soon as one of the JVMs exits."""
    admin = probe_admin(bootstrap)
    expected = {node.node_id for node in nodes}
    # Ask with a client rather than wait for the port: the listener opens before the
    # broker has registered and can serve metadata. Brokers list only unfenced nodes, so
    # a restarted node that lists itself has caught up and is back in service.
    _poll_until(
        deadline,
        lambda: expected <= set(admin.list_topics(timeout=1.0).brokers),
        nodes,
        bootstrap,
    )
    # The first group on a new (or restarted) cluster meets "coordinator load in
    # progress", and librdkafka then backs off ~3 s; asking about a group here gets
    # __consumer_offsets created and loaded in ~0.2 s, so the first consumer is quick.
    # A consumer asks, not AdminClient.describe_consumer_groups(): librdkafka's admin
    # requests to a coordinator abort the whole process when the connection drops
    # mid-request (confluentinc/librdkafka#4605), as it does to a node still starting.
    consumer = probe_consumer(bootstrap, _WARM_UP_GROUP)
    try:
        # The topic need not exist: the coordinator answers "no offset" for it.
        partition = TopicPartition(_WARM_UP_GROUP, 0)
        _poll_until(
            deadline, lambda: bool(consumer.committed([partition], timeout=1.0)), nodes, bootstrap
        )
    finally:
        consumer.close()


def _poll_until(
    deadline: float, probe: Callable[[], bool], nodes: Sequence[LocalBroker], bootstrap: str
) -> None:
    while True:
        for node in nodes:
            if not node.running:
                code = None if node._process is None else node._process.returncode
                raise BrokerError(
                    f"{node._name} exited with code {code} while starting; {node.log_file}"
                    f" ends:\n{node.log_tail()}"
                )
        with contextlib.suppress(KafkaException):
            if probe():
                return
        if time.monotonic() > deadline:
            lines = max(10, TAIL_LINES // len(nodes))
            tails = "\n".join(f"{node.log_file} ends:\n{node.log_tail(lines)}" for node in nodes)
            raise BrokerError(f"Kafka did not answer at {bootstrap} in time; {tails}")
        time.sleep(0.1)
