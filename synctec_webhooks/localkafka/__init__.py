"""A developer tool: Apache Kafka (KRaft) from Maven Central jars, one node or a cluster.

No Docker needed: Maven resolves the broker's jars once into a cache folder, and each node
runs as a plain `java` child process, both broker and controller. Used by
`synctec-webhooks broker` and `run`, the test suite, the fault suite and the benchmark;
no runtime module imports it. One job per module:

    jars.py        the Kafka version, fetching its jars into a cache folder
    files.py       where the shipped pom.xml, properties templates and log4j2 are
    tools.py       finding `java` and `mvn`; quoting the end of their output
    config.py      ports, server.properties, quorum voters, cluster ids, replication
    node.py        LocalBroker: one node's JVM (format, start, stop, restart, kill)
    security.py    an extra SASL_SSL listener: SCRAM users, TLS keystore, authorizer
    cluster.py     LocalCluster: several nodes in one quorum
    readiness.py   waiting until a node or a cluster serves
    command.py     `synctec-webhooks broker`
"""

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka.cluster import LocalCluster
from synctec_webhooks.localkafka.command import main_broker
from synctec_webhooks.localkafka.config import SINGLE_NODE, Replication, free_port
from synctec_webhooks.localkafka.jars import KAFKA_VERSION, cache_dir, fetch_jars, jar_dir
from synctec_webhooks.localkafka.node import LocalBroker
from synctec_webhooks.localkafka.security import SaslSslListener, ScramUser

__all__ = [
    "KAFKA_VERSION",
    "SINGLE_NODE",
    "BrokerError",
    "LocalBroker",
    "LocalCluster",
    "Replication",
    "SaslSslListener",
    "ScramUser",
    "cache_dir",
    "fetch_jars",
    "free_port",
    "jar_dir",
    "main_broker",
]
