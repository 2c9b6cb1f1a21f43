"""A developer tool: Apache Kafka (KRaft) from Maven Central jars, one node or a cluster.

Used by `synctec-webhooks broker` and `run`, the test suite, the fault suite and the
benchmark. No runtime module imports it (tests/unit/test_layers.py checks it).
"""

from synctec_webhooks.localkafka.broker import BrokerError, LocalBroker, LocalCluster

__all__ = ["BrokerError", "LocalBroker", "LocalCluster"]
