"""A local single-node Apache Kafka broker (KRaft), run from Maven Central jars.

No Docker needed: Maven resolves the broker's jars once into a cache folder, and the
broker runs as a plain `java` child process. Used by `synctec-webhooks broker` and by
the test suite's `kafka_bootstrap` fixture when no other broker is available.

A data dir holds everything one broker needs::

    server.properties   rendered from deploy/kafka/server.properties.template
    ports.json          the ports of the last start, reused so clients keep working
    kraft-logs/         Kafka's log dir (topic data and the metadata log)
    broker.log          the JVM's stdout and stderr, unless a log file is given
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
from collections.abc import Callable
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
# The project is always installed editable, so the repository sits next to the package.
DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
INSTALL_HINT = "install Java 17+ and Maven: apt-get install openjdk-17-jdk-headless maven"

_COMPLETE_MARKER = ".complete"
_LOG_DIR_NAME = "kraft-logs"
_PORTS_FILE = "ports.json"
_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STACK_FRAME = re.compile(r"\s+(at |\.\.\. \d+ more)")


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted, started or kept running."""


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


def render_properties(broker_port: int, controller_port: int, log_dir: Path) -> str:
    """server.properties for one combined broker+controller node listening on 127.0.0.1."""
    template = Template((DEPLOY_DIR / "server.properties.template").read_text())
    return template.substitute(
        broker_port=broker_port, controller_port=controller_port, log_dir=log_dir
    )


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


class LocalBroker:
    """One Kafka broker+controller process on 127.0.0.1; a context manager.

    With `data_dir=None` the data lives in a temporary folder deleted by `stop()`; with a
    data dir, a later start reuses its cluster, topics and (while free) its port.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        heap: str = "512m",
        log_file: Path | None = None,
    ) -> None:
        self._requested_dir = data_dir
        self._requested_port = port
        self._heap = heap
        self._requested_log = log_file
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._ports: tuple[int, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- state --

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
        if self._ports is None:
            raise BrokerError("the broker has not been started")
        return f"127.0.0.1:{self._ports[0]}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

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
            self._ports = choose_ports(_read_ports(data_dir / _PORTS_FILE), self._requested_port)
            _write_ports(data_dir / _PORTS_FILE, self._ports)
            properties = data_dir / "server.properties"
            log_dir = data_dir / _LOG_DIR_NAME
            properties.write_text(render_properties(*self._ports, log_dir=log_dir))
            if not (log_dir / "meta.properties").is_file():
                self._format(java, jars, properties)
            self._launch(java, jars, properties)
            self._wait_until_ready(began + timeout)
        except BaseException:
            # The error carries the log tail; a temporary dir would only leak.
            self.stop(timeout=10)
            raise
        logger.info(
            "Kafka %s ready at %s in %.1f s (log: %s)",
            KAFKA_VERSION, self.bootstrap_servers, time.monotonic() - began, self.log_file,
        )  # fmt: skip
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the broker down cleanly (SIGKILL after `timeout`); drop a temporary dir."""
        self._terminate(timeout)
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
        self._terminate(timeout=30)
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

    # -- internals --

    def _prepare_data_dir(self) -> Path:
        if self._data_dir is None:
            if self._requested_dir is None:
                self._data_dir = Path(tempfile.mkdtemp(prefix="synctec-kafka-"))
                self._owns_data_dir = True
            else:
                self._data_dir = self._requested_dir.resolve()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

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

    def _format(self, java: str, jars: Path, properties: Path) -> None:
        command = self._java_command(java, jars, "kafka.tools.StorageTool")
        command += ["format", "-t", new_cluster_id(), "-c", str(properties)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(
                f"formatting {properties.parent / _LOG_DIR_NAME} failed"
                f" (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}"
            )

    def _launch(self, java: str, jars: Path, properties: Path) -> None:
        log_file = self.log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
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

    def _wait_until_ready(self, deadline: float) -> None:
        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "log_level": 0,  # refusals while the JVM boots are expected, not news
                "reconnect.backoff.max.ms": 200,
            }
        )
        # Ask with a client rather than wait for the port: the listener opens before the
        # broker has registered and can serve metadata.
        self._poll_until(deadline, lambda: bool(admin.list_topics(timeout=1.0).brokers))
        # The first group on a new (or restarted) cluster meets "coordinator load in
        # progress", and librdkafka then backs off ~3 s; asking about a group here gets
        # __consumer_offsets created and loaded in ~0.2 s, so the first consumer is quick.
        group = "synctec-broker-warm-up"

        def group_coordinator_answers() -> bool:
            futures = admin.describe_consumer_groups([group], request_timeout=1.0)
            return futures[group].result() is not None

        self._poll_until(deadline, group_coordinator_answers)

    def _poll_until(self, deadline: float, probe: Callable[[], bool]) -> None:
        while True:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise BrokerError(
                    f"Kafka exited with code {code} while starting; {self.log_file} ends:"
                    f"\n{self.log_tail()}"
                )
            with contextlib.suppress(KafkaException):
                if probe():
                    return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Kafka did not answer at {self.bootstrap_servers} in time;"
                    f" {self.log_file} ends:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _terminate(self, timeout: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            self._signal(signal.SIGTERM)  # Kafka shuts down cleanly on SIGTERM
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("Kafka did not stop within %.0f s; killing it", timeout)
                self._signal(signal.SIGKILL)
                process.wait()
        self._process = None
        _LIVE.discard(self)

    def _signal(self, signum: int) -> None:
        if self._process is not None:
            # The JVM leads its own process group (start_new_session).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signum)

    def log_tail(self) -> str:
        """The last lines the broker logged since its latest start, minus stack frames."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        # Java traces are mostly frames; the messages and "Caused by" lines say what failed.
        lines = [line for line in text.splitlines() if not _STACK_FRAME.match(line)]
        return _tail("\n".join(lines))


# Brokers with a live process; stopped at interpreter exit so none outlives its session.
_LIVE: set[LocalBroker] = set()


@atexit.register
def _stop_all() -> None:
    for broker in list(_LIVE):
        try:
            broker.stop(timeout=10)
        except Exception:  # stop the others regardless
            logger.exception("could not stop the Kafka broker at %s", broker.bootstrap_servers)


# --- `synctec-webhooks broker` --------------------------------------------------------


def main_broker(json_output: bool, data_dir: Path | None, fetch_only: bool) -> int:
    """Run a broker in the foreground until SIGINT/SIGTERM; or only fetch its jars."""
    try:
        if fetch_only:
            print(f"Kafka {KAFKA_VERSION} jars are in {fetch_jars()}", flush=True)
            return 0
        with LocalBroker(data_dir=data_dir) as broker:
            if json_output:
                print(json.dumps({"bootstrap_servers": broker.bootstrap_servers}), flush=True)
            else:
                kept = "" if data_dir is not None else " [temporary]"
                print(
                    f"Kafka {KAFKA_VERSION} broker ready at {broker.bootstrap_servers} "
                    f"(data: {broker.data_dir}{kept}, log: {broker.log_file}). "
                    "Ctrl-C stops it.",
                    flush=True,
                )
            return _serve_until_signalled(broker)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the broker was ready; it is stopped already
        return 130


def _serve_until_signalled(broker: LocalBroker) -> int:
    stop = threading.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in handled}
    try:
        while not stop.wait(0.5):
            if not broker.running:
                raise BrokerError(
                    f"Kafka exited unexpectedly; {broker.log_file} ends:\n{broker.log_tail()}"
                )
        logger.info("Stopping the Kafka broker at %s", broker.bootstrap_servers)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
