"""`synctec-webhooks broker`: run a local broker, or a cluster, in the foreground until
SIGINT/SIGTERM; or only fetch the jars (`--fetch-only`)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka.cluster import LocalCluster
from synctec_webhooks.localkafka.jars import KAFKA_VERSION, fetch_jars
from synctec_webhooks.localkafka.node import LocalBroker

logger = logging.getLogger(__name__)


def main_broker(json_output: bool, data_dir: Path | None, fetch_only: bool, nodes: int = 1) -> int:
    """Run a broker (or a cluster of `nodes`) in the foreground until SIGINT/SIGTERM; or
    only fetch the jars."""
    try:
        if fetch_only:
            print(f"Kafka {KAFKA_VERSION} jars are in {fetch_jars()}", flush=True)
            return 0
        if nodes < 1:
            raise BrokerError(f"a cluster needs at least one node, not {nodes}")
        server = LocalBroker(data_dir=data_dir) if nodes == 1 else LocalCluster(nodes, data_dir)
        with server:
            if json_output:
                print(json.dumps({"bootstrap_servers": server.bootstrap_servers}), flush=True)
            else:
                print(_ready_line(server, temporary=data_dir is None), flush=True)
            return _serve_until_signalled(server)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the broker was ready; it is stopped already
        return 130


def _ready_line(server: LocalBroker | LocalCluster, temporary: bool) -> str:
    kept = " [temporary]" if temporary else ""
    if isinstance(server, LocalBroker):
        what = f"broker ready at {server.bootstrap_servers}"
        where = f"data: {server.data_dir}{kept}, log: {server.log_file}"
    else:
        what = f"cluster of {server.size} nodes ready at {server.bootstrap_servers}"
        where = f"data: {server.data_dir}{kept}, logs: node-*/broker.log there"
    return f"Kafka {KAFKA_VERSION} {what} ({where}). Ctrl-C stops it."


def _serve_until_signalled(server: LocalBroker | LocalCluster) -> int:
    nodes = [server] if isinstance(server, LocalBroker) else server.nodes
    # A cluster serves on while a majority of its voters does: someone may be killing a
    # node on purpose to watch the others take over.
    majority = len(nodes) // 2 + 1
    reported: set[int] = set()
    stop = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in handled}
    try:
        while not stop.wait(0.5):
            down = [node for node in nodes if not node.running]
            if len(nodes) - len(down) < majority:
                tails = "\n".join(f"{n.log_file} ends:\n{n.log_tail()}" for n in down)
                raise BrokerError(f"Kafka exited unexpectedly; {tails}")
            for node in down:
                if node.node_id not in reported:
                    reported.add(node.node_id)
                    print(
                        f"warning: Kafka node {node.node_id} exited; the other"
                        f" {len(nodes) - len(down)} serve on (log: {node.log_file})",
                        file=sys.stderr,
                        flush=True,
                    )
        logger.info("Stopping Kafka at %s", server.bootstrap_servers)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
