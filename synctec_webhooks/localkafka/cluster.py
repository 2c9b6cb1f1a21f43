"""A local Kafka cluster: several `LocalBroker` nodes (three by default) on 127.0.0.1,
voting in one static KRaft quorum, with every partition replicated three times.

A cluster's data dir holds `cluster.json` (its id and size) and `node-1/`, `node-2/`, ...
one node data dir each (see node.py).
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka.config import (
    PORTS_FILE,
    Replication,
    choose_cluster_ports,
    new_cluster_id,
    quorum_voters,
    read_ports,
)
from synctec_webhooks.localkafka.jars import KAFKA_VERSION, fetch_jars
from synctec_webhooks.localkafka.node import LocalBroker, Membership, terminate_all
from synctec_webhooks.localkafka.readiness import wait_until_serving
from synctec_webhooks.localkafka.tools import require_tool

logger = logging.getLogger(__name__)

_CLUSTER_FILE = "cluster.json"


class LocalCluster:
    """`size` LocalBroker nodes on 127.0.0.1, all of them voters of one static KRaft
    quorum and brokers; a context manager.

    Each partition, internal topics included, gets `Replication.for_cluster(size)`: 3
    replicas with 2 in sync for an `acks=all` write, so the cluster keeps accepting and
    serving every acknowledged record with any one node down. With `data_dir=None` the
    data lives in a temporary folder deleted by `stop()`; with a data dir, a later start
    reuses its cluster, topics and (while free) its ports. Node `i` of the methods below
    is `nodes[i]`, whose node id is `i + 1`.
    """

    def __init__(self, size: int = 3, data_dir: Path | None = None, heap: str = "384m") -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self._size = size
        self._requested_dir = data_dir
        self._heap = heap
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._nodes: list[LocalBroker] = []

    # -- state --

    @property
    def size(self) -> int:
        return self._size

    @property
    def replication(self) -> Replication:
        return Replication.for_cluster(self._size)

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise BrokerError("the cluster has not been started")
        return self._data_dir

    @property
    def nodes(self) -> list[LocalBroker]:
        if not self._nodes:
            raise BrokerError("the cluster has not been started")
        return list(self._nodes)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    # -- lifecycle --

    def start(self, timeout: float = 90.0) -> Self:
        """Start every node; return once all serve metadata and groups have a coordinator."""
        if any(node.running for node in self._nodes):
            raise BrokerError(f"the cluster at {self.bootstrap_servers} is already running")
        began = time.monotonic()
        jars = fetch_jars()
        java = require_tool("java")
        cluster_dir = self._prepare_data_dir()
        _CLUSTERS.add(self)
        try:
            membership = self._configure_nodes(cluster_dir)
            # The formats run in threads (about 0.7 s each); the brokers are launched from
            # this thread, which their PR_SET_PDEATHSIG is tied to.
            with ThreadPoolExecutor(max_workers=self._size) as pool:
                for _ in pool.map(lambda node: node._format_if_new(java, jars), self._nodes):
                    pass
            for node in self._nodes:
                node._launch(java, jars)
            wait_until_serving(self.bootstrap_servers, self._nodes, began + timeout)
        except BaseException:
            self.stop(timeout=10)
            raise
        logger.info(
            "Kafka %s cluster of %d nodes ready at %s in %.1f s (voters %s)",
            KAFKA_VERSION, self._size, self.bootstrap_servers, time.monotonic() - began,
            membership.voters,
        )  # fmt: skip
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut every node down cleanly (SIGKILL after `timeout`); SIGKILL the nodes of a
        temporary dir, then delete it."""
        if self._owns_data_dir:
            # The data is about to go, so a clean shutdown would only cost time: the last
            # voter to stop waits 5 s for a quorum that is gone.
            for node in self._nodes:
                node.kill()
        else:
            terminate_all(self._nodes, timeout)
        _CLUSTERS.discard(self)
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._owns_data_dir = False
            self._nodes = []  # their dirs are gone: the next start builds new ones

    def kill(self, i: int) -> None:
        """SIGKILL node i, as a crash would; start_node(i) brings it back."""
        self.nodes[i].kill()

    def stop_node(self, i: int, timeout: float = 30.0) -> None:
        """Shut node i down cleanly; start_node(i) brings it back."""
        self.nodes[i].stop(timeout)

    def start_node(self, i: int, timeout: float = 60.0) -> LocalBroker:
        """Start node i again on its ports and data dir; return once it serves again."""
        # The other voters know it by its controller port: if that is taken meanwhile,
        # the start fails (with the log tail) rather than moving it.
        return self.nodes[i].start(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --

    def _prepare_data_dir(self) -> Path:
        if self._data_dir is None:
            if self._requested_dir is None:
                self._data_dir = Path(tempfile.mkdtemp(prefix="synctec-kafka-cluster-"))
                self._owns_data_dir = True
            else:
                self._data_dir = self._requested_dir.resolve()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def _configure_nodes(self, cluster_dir: Path) -> Membership:
        """Give every node its ports and the voters they make up; write their configs."""
        cluster_id = self._cluster_id(cluster_dir)
        if not self._nodes:
            self._nodes = [
                LocalBroker(
                    cluster_dir / f"node-{node_id}",
                    heap=self._heap,
                    node_id=node_id,
                    replication=self.replication,
                )
                for node_id in range(1, self._size + 1)
            ]
        stored = [read_ports(node._prepare_data_dir() / PORTS_FILE) for node in self._nodes]
        # All ports are chosen before any node starts: each node's config lists every
        # voter's controller port. A static quorum keeps them in config only, so a port
        # taken since the last start just moves that voter.
        ports = choose_cluster_ports(stored)
        membership = Membership(quorum_voters([c for _, c in ports]), cluster_id)
        for node, node_ports in zip(self._nodes, ports, strict=True):
            node._join(node_ports, membership)
            node._write_config()
        return membership

    def _cluster_id(self, cluster_dir: Path) -> str:
        """The id the nodes were formatted with, kept in cluster.json; new on a new dir."""
        path = cluster_dir / _CLUSTER_FILE
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            cluster_id = new_cluster_id()
            path.write_text(json.dumps({"cluster_id": cluster_id, "size": self._size}) + "\n")
            return cluster_id
        except (OSError, ValueError) as exc:
            raise BrokerError(f"{path} is unreadable: {exc}") from exc
        # Another size would change the voter set, which a static quorum cannot do.
        if stored.get("size") != self._size:
            raise BrokerError(
                f"{cluster_dir} holds a cluster of {stored.get('size')} nodes, not {self._size}"
            )
        return str(stored["cluster_id"])


# Clusters started, stopped at interpreter exit so none outlives its session. atexit runs
# this before node.py's handler (registered earlier, on import), which then stops any
# broker still running.
_CLUSTERS: set[LocalCluster] = set()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_CLUSTERS):
        try:
            cluster.stop(timeout=10)
        except Exception:  # stop the others regardless
            logger.exception("could not stop the Kafka cluster at %s", cluster.bootstrap_servers)
