"""Local Apache Kafka (KRaft) from Maven Central jars: one broker, or a loopback cluster.

No Docker needed: Maven resolves the broker's jars once into a cache folder, and each
node runs as a plain `java` child process, both broker and controller. `LocalBroker` is
one node alone; `LocalCluster` is several (three by default) voting in one static quorum,
with every partition replicated three times. Used by `synctec-webhooks broker [--nodes
3]` and by the test suite.

A node's data dir holds everything it needs::

    server.properties   rendered from deploy/kafka/server.properties.template
    ports.json          the ports of the last start, reused so clients keep working
    kraft-logs/         Kafka's log dir (topic data and the metadata log)
    broker.log          the JVM's stdout and stderr, unless a log file is given

and a cluster's data dir holds `cluster.json` (its id and size) and `node-1/`,
`node-2/`, ... one node data dir each.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Self

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from synctec_webhooks.errors import BrokerError

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
# The project is always installed editable, so the repository sits next to the package.
DEPLOY_DIR = Path(__file__).resolve().parent / "assets"
INSTALL_HINT = "install Java 17+ and Maven: apt-get install openjdk-17-jdk-headless maven"

_COMPLETE_MARKER = ".complete"
_LOG_DIR_NAME = "kraft-logs"
_PORTS_FILE = "ports.json"
_CLUSTER_FILE = "cluster.json"
_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WARM_UP_GROUP = "synctec-broker-warm-up"
_STACK_FRAME = re.compile(r"\s+(at |\.\.\. \d+ more)")


# --- jars -----------------------------------------------------------------------------


def cache_dir() -> Path:
    """`$SYNCTEC_CACHE_DIR`, or ~/.cache/synctec-webhooks when unset or empty."""
    configured = os.environ.get("SYNCTEC_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "synctec-webhooks"


def jar_dir() -> Path:
    """Where the broker's jars live once fetched: the JVM classpath is `<jar_dir>/*`."""
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_jars() -> Path:
    """Resolve the broker's jars with Maven into `jar_dir()`, unless already there."""
    target = jar_dir()
    if (target / _COMPLETE_MARKER).is_file():
        return target
    mvn = _require_tool("mvn")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Maven writes into a staging folder that is renamed into place only once complete,
    # so an interrupted fetch never looks like a usable classpath.
    staging = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=target.parent))
    try:
        logger.info("Fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, target)
        command = [
            mvn, "-q", "-B", "-f", str(DEPLOY_DIR / "pom.xml"),
            # Overrides the pom's property, so this module's constant names the version.
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(
                f"Maven could not fetch the Kafka {KAFKA_VERSION} jars (exit {result.returncode}):"
                f"\n{_tail(result.stdout + result.stderr)}"
            )
        (staging / _COMPLETE_MARKER).touch()
        if target.exists() and not (target / _COMPLETE_MARKER).is_file():
            shutil.rmtree(target)  # left by a fetch from before the marker existed
        try:
            staging.rename(target)
        except OSError:
            # Another process (a parallel test run) finished first: its copy will do.
            if not (target / _COMPLETE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _require_tool(name: str) -> str:
    if name == "java" and (java_home := os.environ.get("JAVA_HOME")):
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BrokerError(f"`{name}` not found on PATH; {INSTALL_HINT}")
    return found


# --- configuration --------------------------------------------------------------------


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
) -> str:
    """server.properties for one combined broker+controller node listening on 127.0.0.1.

    `voters` is the cluster's `controller.quorum.voters`; by default the node is alone.
    """
    template = Template((DEPLOY_DIR / "server.properties.template").read_text())
    return template.substitute(
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


def _read_ports(path: Path) -> tuple[int, int] | None:
    try:
        stored = json.loads(path.read_text())
        return int(stored["broker"]), int(stored["controller"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_ports(path: Path, ports: tuple[int, int]) -> None:
    path.write_text(json.dumps({"broker": ports[0], "controller": ports[1]}) + "\n")


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- the broker process ---------------------------------------------------------------


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn making the JVM get SIGTERM when this process dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    # Loaded before the fork: the child should do as little as possible before exec.
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        # Linux ties the signal to the thread that forks: start brokers from a thread that
        # lives as long as they should (the main thread, in pytest and the CLI).
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass(frozen=True)
class _Membership:
    """What a LocalCluster tells each of its nodes: all of them share both values."""

    voters: str
    cluster_id: str


class LocalBroker:
    """One Kafka broker+controller process on 127.0.0.1; a context manager.

    With `data_dir=None` the data lives in a temporary folder deleted by `stop()`; with a
    data dir, a later start reuses its cluster, topics and (while free) its port.

    Alone, the node is its own quorum. As a node of a `LocalCluster` (which sets its
    `node_id` and `replication`, and joins it to the quorum) it keeps the ports the
    other voters know it by, and `start()` waits only until this node serves again.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        heap: str = "512m",
        log_file: Path | None = None,
        *,
        node_id: int = 1,
        replication: Replication = SINGLE_NODE,
    ) -> None:
        self._requested_dir = data_dir
        self._requested_port = port
        self._heap = heap
        self._requested_log = log_file
        self._node_id = node_id
        self._replication = replication
        self._membership: _Membership | None = None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._ports: tuple[int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- state --

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def replication(self) -> Replication:
        return self._replication

    @property
    def voters(self) -> str:
        """This node's `controller.quorum.voters`: the cluster's, or itself alone."""
        if self._membership is not None:
            return self._membership.voters
        return f"{self._node_id}@127.0.0.1:{self._started_ports()[1]}"

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise BrokerError("the broker has not been started")
        return self._data_dir

    @property
    def log_file(self) -> Path:
        return self._requested_log or self.data_dir / "broker.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._started_ports()[0]}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The JVM's process id while running (the benchmark samples its CPU and memory)."""
        return self._process.pid if self.running and self._process is not None else None

    # -- lifecycle --

    def start(self, timeout: float = 60.0) -> Self:
        """Start the broker; return once it serves metadata and consumer groups."""
        if self.running:
            raise BrokerError(f"the broker at {self.bootstrap_servers} is already running")
        began = time.monotonic()
        jars = fetch_jars()
        java = _require_tool("java")
        data_dir = self._prepare_data_dir()
        try:
            if self._membership is None:  # a cluster's node keeps the ports its voters know
                stored = _read_ports(data_dir / _PORTS_FILE)
                self._ports = choose_ports(stored, self._requested_port)
            self._write_config()
            self._format_if_new(java, jars)
            self._launch(java, jars)
            _wait_until_serving(self.bootstrap_servers, [self], began + timeout)
        except BaseException:
            # The error carries the log tail; a temporary dir would only leak.
            self.stop(timeout=10)
            raise
        logger.info(
            "%s ready at %s in %.1f s (version %s, log: %s)",
            self._name, self.bootstrap_servers, time.monotonic() - began, KAFKA_VERSION,
            self.log_file,
        )  # fmt: skip
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the broker down cleanly (SIGKILL after `timeout`); drop a temporary dir."""
        _terminate_all([self], timeout)
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._owns_data_dir = False

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; the data dir stays for a later start()."""
        process = self._process
        if process is not None and process.poll() is None:
            self._signal(signal.SIGKILL)
            process.wait()
        self._process = None
        _LIVE.discard(self)

    def restart(self, timeout: float = 60.0) -> Self:
        """Stop cleanly and start again on the same data dir and port."""
        # ports.json in the data dir brings the same port back (unless taken meanwhile).
        _terminate_all([self], timeout=30)
        return self.start(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """The last lines the broker logged since its latest start, minus stack frames."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        # Java traces are mostly frames; the messages and "Caused by" lines say what failed.
        kept = [line for line in text.splitlines() if not _STACK_FRAME.match(line)]
        return _tail("\n".join(kept), lines)

    # -- internals (LocalCluster drives a node through these too) --

    @property
    def _name(self) -> str:
        return "Kafka" if self._membership is None else f"Kafka node {self._node_id}"

    def _started_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise BrokerError("the broker has not been started")
        return self._ports

    def _join(self, ports: tuple[int, int], membership: _Membership) -> None:
        """Make this node a voter of a cluster, known to the others by these ports."""
        self._ports = ports
        self._membership = membership

    def _prepare_data_dir(self) -> Path:
        if self._data_dir is None:
            if self._requested_dir is None:
                self._data_dir = Path(tempfile.mkdtemp(prefix="synctec-kafka-"))
                self._owns_data_dir = True
            else:
                self._data_dir = self._requested_dir.resolve()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def _write_config(self) -> None:
        broker_port, controller_port = self._started_ports()
        _write_ports(self.data_dir / _PORTS_FILE, (broker_port, controller_port))
        properties = render_properties(
            broker_port,
            controller_port,
            self.data_dir / _LOG_DIR_NAME,
            node_id=self._node_id,
            voters=self.voters,
            replication=self._replication,
        )
        (self.data_dir / "server.properties").write_text(properties)

    def _java_command(self, java: str, jars: Path, main_class: str) -> list[str]:
        return [
            java, f"-Xmx{self._heap}",
            # A broker out of memory should die and show why, not limp on.
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            # C1 only: the C2 compiler threads compete with start-up for the CPU (about
            # 3 s -> 2 s on two cores); a local broker never needs peak throughput.
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
            "-cp", f"{jars}{os.sep}*", main_class,
        ]  # fmt: skip

    def _format_if_new(self, java: str, jars: Path) -> None:
        log_dir = self.data_dir / _LOG_DIR_NAME
        if (log_dir / "meta.properties").is_file():
            return
        # A cluster's nodes must share one id, or they refuse each other's votes.
        cluster_id = new_cluster_id() if self._membership is None else self._membership.cluster_id
        properties = self.data_dir / "server.properties"
        command = self._java_command(java, jars, "kafka.tools.StorageTool")
        command += ["format", "-t", cluster_id, "-c", str(properties)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(
                f"formatting {log_dir} failed (exit {result.returncode}):"
                f"\n{_tail(result.stdout + result.stderr)}"
            )

    def _launch(self, java: str, jars: Path) -> None:
        log_file = self.log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        properties = self.data_dir / "server.properties"
        with log_file.open("ab") as log:
            self._log_offset = log.tell()
            # A new session keeps Ctrl-C in a terminal away from the JVM, so the CLI can
            # stop it in order; the output goes to a file because nobody reads a pipe.
            self._process = subprocess.Popen(
                [*self._java_command(java, jars, "kafka.Kafka"), str(properties)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        _LIVE.add(self)

    def _reap(self, deadline: float, timeout: float) -> None:
        """Wait for a signalled JVM until `deadline`, then SIGKILL it."""
        process = self._process
        if process is not None:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self._name, timeout)
                self._signal(signal.SIGKILL)
                process.wait()
        self._process = None
        _LIVE.discard(self)

    def _signal(self, signum: int) -> None:
        if self._process is not None:
            # The JVM leads its own process group (start_new_session).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signum)


def _terminate_all(nodes: Iterable[LocalBroker], timeout: float) -> None:
    """SIGTERM every node at once, then wait for all; SIGKILL those up after `timeout`."""
    # All at once: a cluster node shutting down alone hands its partitions to the others
    # first, and the last ones would wait for a controller quorum that is already gone.
    nodes = list(nodes)
    for node in nodes:
        if node.running:
            node._signal(signal.SIGTERM)  # Kafka shuts down cleanly on SIGTERM
    deadline = time.monotonic() + timeout
    for node in nodes:
        node._reap(deadline, timeout)


def _wait_until_serving(bootstrap: str, nodes: Sequence[LocalBroker], deadline: float) -> None:
    """Return once every node is registered in the metadata at `bootstrap` and consumer
    groups have a coordinator; fail as soon as one of the JVMs exits."""
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 0,  # refusals while the JVMs boot are expected, not news
            "reconnect.backoff.max.ms": 200,
        }
    )
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
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _WARM_UP_GROUP,
            "enable.auto.commit": False,
            "log_level": 0,
            "reconnect.backoff.max.ms": 200,
        }
    )
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
            lines = max(10, _TAIL_LINES // len(nodes))
            tails = "\n".join(f"{node.log_file} ends:\n{node.log_tail(lines)}" for node in nodes)
            raise BrokerError(f"Kafka did not answer at {bootstrap} in time; {tails}")
        time.sleep(0.1)


# --- a cluster ------------------------------------------------------------------------


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
        java = _require_tool("java")
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
            _wait_until_serving(self.bootstrap_servers, self._nodes, began + timeout)
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
            _terminate_all(self._nodes, timeout)
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

    def _configure_nodes(self, cluster_dir: Path) -> _Membership:
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
        stored = [_read_ports(node._prepare_data_dir() / _PORTS_FILE) for node in self._nodes]
        # All ports are chosen before any node starts: each node's config lists every
        # voter's controller port. A static quorum keeps them in config only, so a port
        # taken since the last start just moves that voter.
        ports = choose_cluster_ports(stored)
        membership = _Membership(quorum_voters([c for _, c in ports]), cluster_id)
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


# Brokers with a live process, and clusters started, stopped at interpreter exit so none
# outlives its session.
_LIVE: set[LocalBroker] = set()
_CLUSTERS: set[LocalCluster] = set()


@atexit.register
def _stop_all() -> None:
    brokers = list(_LIVE)
    for cluster in list(_CLUSTERS):
        try:
            cluster.stop(timeout=10)
        except Exception:  # stop the others regardless
            logger.exception("could not stop the Kafka cluster at %s", cluster.bootstrap_servers)
    try:
        _terminate_all(list(_LIVE), timeout=10)  # all at once: nobody waits for the others
    except Exception:  # still remove the temporary dirs
        logger.exception("could not stop every local Kafka broker")
    for broker in brokers:
        try:
            broker.stop(timeout=10)
        except Exception:  # stop the others regardless
            logger.exception("could not stop the Kafka broker at %s", broker.bootstrap_servers)


# --- `synctec-webhooks broker` --------------------------------------------------------


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
