"""One local Kafka node: a JVM that is both broker and controller, on 127.0.0.1.

`LocalBroker` formats the node's data dir, starts the JVM (which dies with this process),
stops, restarts and kills it. Alone it is a one-node cluster; `LocalCluster` (cluster.py)
drives several of them. A node's data dir holds everything it needs::

    server.properties   rendered from assets/server.properties.template
    ports.json          the ports of the last start, reused so clients keep working
    kraft-logs/         Kafka's log dir (topic data and the metadata log)
    broker.log          the JVM's stdout and stderr, unless a log file is given

A node may also listen for SASL_SSL clients (`sasl_ssl=`, see security.py).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka.config import (
    PORTS_FILE,
    SINGLE_NODE,
    Replication,
    choose_ports,
    free_port,
    new_cluster_id,
    port_is_free,
    read_ports,
    render_properties,
    write_ports,
)
from synctec_webhooks.localkafka.files import LOG4J2_FILE
from synctec_webhooks.localkafka.jars import KAFKA_VERSION, fetch_jars
from synctec_webhooks.localkafka.readiness import wait_until_serving
from synctec_webhooks.localkafka.security import SaslSslListener
from synctec_webhooks.localkafka.tools import TAIL_LINES, require_tool, tail

logger = logging.getLogger(__name__)

_LOG_DIR_NAME = "kraft-logs"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STACK_FRAME = re.compile(r"\s+(at |\.\.\. \d+ more)")


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
class Membership:
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
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self._requested_dir = data_dir
        self._requested_port = port
        self._heap = heap
        self._requested_log = log_file
        self._node_id = node_id
        self._replication = replication
        self._membership: Membership | None = None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._ports: tuple[int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._sasl_ssl = sasl_ssl
        self._sasl_ssl_port: int | None = None

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
    def sasl_ssl_bootstrap_servers(self) -> str:
        """The SASL_SSL listener's address (the node was made with `sasl_ssl=`)."""
        if self._sasl_ssl is None:
            raise BrokerError("the broker has no SASL_SSL listener: pass sasl_ssl=")
        if self._sasl_ssl_port is None:
            raise BrokerError("the broker has not been started")
        return f"127.0.0.1:{self._sasl_ssl_port}"

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
        java = require_tool("java")
        data_dir = self._prepare_data_dir()
        try:
            if self._membership is None:  # a cluster's node keeps the ports its voters know
                stored = read_ports(data_dir / PORTS_FILE)
                self._ports = choose_ports(stored, self._requested_port)
            self._choose_sasl_ssl_port()
            self._write_config()
            self._format_if_new(java, jars)
            self._launch(java, jars)
            wait_until_serving(self.bootstrap_servers, [self], began + timeout)
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
        terminate_all([self], timeout)
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
        terminate_all([self], timeout=30)
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

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines the broker logged since its latest start, minus stack frames."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        # Java traces are mostly frames; the messages and "Caused by" lines say what failed.
        kept = [line for line in text.splitlines() if not _STACK_FRAME.match(line)]
        return tail("\n".join(kept), lines)

    # -- internals (LocalCluster drives a node through these too) --

    @property
    def _name(self) -> str:
        return "Kafka" if self._membership is None else f"Kafka node {self._node_id}"

    def _started_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise BrokerError("the broker has not been started")
        return self._ports

    def _join(self, ports: tuple[int, int], membership: Membership) -> None:
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

    def _choose_sasl_ssl_port(self) -> None:
        """The listener's port: the requested one, else the previous start's while free."""
        if self._sasl_ssl is None:
            return
        port = self._sasl_ssl.port
        if port is None:
            previous = self._sasl_ssl_port
            port = previous if previous is not None and port_is_free(previous) else free_port()
        while port in self._started_ports():
            port = free_port()
        self._sasl_ssl_port = port

    def _sasl_ssl_config(self) -> tuple[SaslSslListener, int] | None:
        if self._sasl_ssl is None or self._sasl_ssl_port is None:
            return None
        return self._sasl_ssl, self._sasl_ssl_port

    def _write_config(self) -> None:
        broker_port, controller_port = self._started_ports()
        write_ports(self.data_dir / PORTS_FILE, (broker_port, controller_port))
        properties = render_properties(
            broker_port,
            controller_port,
            self.data_dir / _LOG_DIR_NAME,
            node_id=self._node_id,
            voters=self.voters,
            replication=self._replication,
            sasl_ssl=self._sasl_ssl_config(),
        )
        path = self.data_dir / "server.properties"
        if self._sasl_ssl is not None:  # it is about to hold the keystore password
            path.touch(mode=0o600)
            path.chmod(0o600)
        path.write_text(properties)

    def _java_command(self, java: str, jars: Path, main_class: str) -> list[str]:
        return [
            java, f"-Xmx{self._heap}",
            # A broker out of memory should die and show why, not limp on.
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            # C1 only: the C2 compiler threads compete with start-up for the CPU (about
            # 3 s -> 2 s on two cores); a local broker never needs peak throughput.
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={LOG4J2_FILE}",
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
        if self._sasl_ssl is not None:
            # SCRAM credentials live in the metadata log: written when it is created.
            command += self._sasl_ssl.format_arguments()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = tail(result.stdout + result.stderr)
            if self._sasl_ssl is not None:
                output = self._sasl_ssl.mask(output)
            raise BrokerError(f"formatting {log_dir} failed (exit {result.returncode}):\n{output}")

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


def terminate_all(nodes: Iterable[LocalBroker], timeout: float) -> None:
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


# Brokers with a live process, stopped at interpreter exit so none outlives its session.
_LIVE: set[LocalBroker] = set()


@atexit.register
def _stop_all() -> None:
    brokers = list(_LIVE)
    try:
        terminate_all(brokers, timeout=10)  # all at once: nobody waits for the others
    except Exception:  # still remove the temporary dirs
        logger.exception("could not stop every local Kafka broker")
    for broker in brokers:
        try:
            broker.stop(timeout=10)
        except Exception:  # stop the others regardless
            logger.exception("could not stop the Kafka broker at %s", broker.bootstrap_servers)
