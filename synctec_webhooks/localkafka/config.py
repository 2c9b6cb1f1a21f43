"""A node's configuration: its server.properties (rendered from the shipped template), the
ports it listens on (chosen, and kept in `ports.json` so clients keep working across
restarts), the quorum voters, the cluster id and the replication settings."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from synctec_webhooks.localkafka.files import PROPERTIES_TEMPLATE
from synctec_webhooks.localkafka.security import SaslSslListener

PORTS_FILE = "ports.json"


# --- ports ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether the broker could listen on `port` of 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Java listens with SO_REUSEADDR, so connections of a previous run lingering in
        # TIME_WAIT do not stop it from taking the port again; check the same way.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(
    stored: tuple[int, int] | None,
    requested: int | None,
    is_free: Callable[[int], bool] = port_is_free,
) -> tuple[int, int]:
    """(broker, controller) ports: the requested one, else the stored ones while free."""
    broker = requested
    if broker is None:
        broker = stored[0] if stored and is_free(stored[0]) else free_port()
    controller = stored[1] if stored and stored[1] != broker and is_free(stored[1]) else None
    while controller is None or controller == broker:
        controller = free_port()
    return broker, controller


def choose_cluster_ports(
    stored: Sequence[tuple[int, int] | None],
    is_free: Callable[[int], bool] = port_is_free,
) -> list[tuple[int, int]]:
    """(broker, controller) ports per node, as choose_ports() does, all distinct."""
    taken: set[int] = set()

    def usable(port: int) -> bool:
        return port not in taken and is_free(port)

    chosen: list[tuple[int, int]] = []
    for previous in stored:
        broker, controller = choose_ports(previous, None, usable)
        # free_port() does not reserve its answer, so it may repeat one given to a node
        # before; none of them listens yet.
        while broker in taken:
            broker = free_port()
        while controller in taken or controller == broker:
            controller = free_port()
        taken.update((broker, controller))
        chosen.append((broker, controller))
    return chosen


def read_ports(path: Path) -> tuple[int, int] | None:
    """The (broker, controller) ports kept in a `ports.json`; None if absent or unreadable."""
    try:
        stored = json.loads(path.read_text())
        return int(stored["broker"]), int(stored["controller"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_ports(path: Path, ports: tuple[int, int]) -> None:
    """Keep the (broker, controller) ports in a `ports.json` for the next start."""
    path.write_text(json.dumps({"broker": ports[0], "controller": ports[1]}) + "\n")


# --- server.properties ----------------------------------------------------------------


@dataclass(frozen=True)
class Replication:
    """Copies kept of every partition, internal topics included, and how many must be in
    sync for an `acks=all` write (`min.insync.replicas`) to succeed."""

    factor: int = 1
    min_insync: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_insync <= self.factor:
            raise ValueError(f"need 1 <= min_insync <= factor, not {self}")

    @classmethod
    def for_cluster(cls, size: int) -> Replication:
        """Three copies, two in sync: one node may die without losing an acked write or
        refusing new ones. Smaller clusters keep what they can."""
        factor = min(size, 3)
        return cls(factor, max(1, factor - 1))


SINGLE_NODE = Replication(factor=1, min_insync=1)


def render_properties(
    broker_port: int,
    controller_port: int,
    log_dir: Path,
    *,
    node_id: int = 1,
    voters: str | None = None,
    replication: Replication = SINGLE_NODE,
    sasl_ssl: tuple[SaslSslListener, int] | None = None,
) -> str:
    """server.properties for one combined broker+controller node listening on 127.0.0.1.

    `voters` is the cluster's `controller.quorum.voters`; by default the node is alone.
    `sasl_ssl` adds that listener on that port.
    """
    template = Template(PROPERTIES_TEMPLATE.read_text())
    listener, port = sasl_ssl if sasl_ssl else (None, 0)
    return template.substitute(
        sasl_ssl_listener=f",SASL_SSL://127.0.0.1:{port}" if listener else "",
        sasl_ssl_properties=listener.properties() if listener else "",
        broker_port=broker_port,
        controller_port=controller_port,
        log_dir=log_dir,
        node_id=node_id,
        voters=voters or f"{node_id}@127.0.0.1:{controller_port}",
        replication_factor=replication.factor,
        min_insync_replicas=replication.min_insync,
    )


def quorum_voters(controller_ports: Sequence[int]) -> str:
    """`controller.quorum.voters` for nodes 1..n listening on these controller ports."""
    return ",".join(f"{i}@127.0.0.1:{port}" for i, port in enumerate(controller_ports, start=1))


def new_cluster_id() -> str:
    """A cluster id as `StorageTool random-uuid` prints it, without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # Kafka's Uuid.randomUuid() rejects ids starting with "-": they parse as options.
        if not text.startswith("-"):
            return text
