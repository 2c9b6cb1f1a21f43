"""Pure helpers of synctec_webhooks.localkafka: no JVM, no Maven, no broker."""

from __future__ import annotations

import base64
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka import command, config, files, jars, tools
from synctec_webhooks.localkafka.cluster import LocalCluster
from synctec_webhooks.localkafka.config import Replication
from synctec_webhooks.localkafka.node import LocalBroker


def _properties(text: str) -> dict[str, str]:
    lines = (line.strip() for line in text.splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_rendered_properties_describe_one_node_on_loopback(tmp_path: Path) -> None:
    props = _properties(config.render_properties(19092, 19093, tmp_path / "logs"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "logs")
    assert "$" not in "".join(props.values())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("auto.create.topics.enable", "false"),
        ("num.partitions", "3"),
        ("offsets.topic.replication.factor", "1"),
        ("transaction.state.log.replication.factor", "1"),
        ("transaction.state.log.min.isr", "1"),
        ("group.initial.rebalance.delay.ms", "0"),
        ("log.cleaner.dedupe.buffer.size", str(16 * 1024 * 1024)),
    ],
)
def test_rendered_properties_suit_a_single_node(key: str, value: str, tmp_path: Path) -> None:
    assert _properties(config.render_properties(1, 2, tmp_path))[key] == value


def test_assets_ship_inside_the_package() -> None:
    package = Path(config.__file__).resolve().parent

    for path in (files.POM_FILE, files.PROPERTIES_TEMPLATE, files.LOG4J2_FILE):
        assert path.is_file(), path
        assert path.parent == package / "assets"


def test_jar_dir_honours_synctec_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SYNCTEC_CACHE_DIR", str(tmp_path))

    assert jars.jar_dir() == tmp_path / f"kafka-{jars.KAFKA_VERSION}" / "libs"


@pytest.mark.parametrize("value", [None, ""])
def test_jar_dir_defaults_to_the_user_cache(
    value: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("SYNCTEC_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("SYNCTEC_CACHE_DIR", value)

    expected = tmp_path / ".cache" / "synctec-webhooks" / f"kafka-{jars.KAFKA_VERSION}" / "libs"
    assert jars.jar_dir() == expected


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {config.new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


@pytest.mark.parametrize(
    ("stored", "requested", "free", "expected_broker", "expected_controller"),
    [
        ((5000, 5001), None, {5000, 5001}, 5000, 5001),  # reuse both
        ((5000, 5001), 6000, {5000, 5001, 6000}, 6000, 5001),  # the caller's port wins
        ((5000, 5001), None, {5001}, None, 5001),  # broker port taken: a new one
        ((5000, 5001), None, {5000}, 5000, None),  # controller port taken: a new one
        (None, None, set(), None, None),  # first start
        (None, 6000, set(), 6000, None),
    ],
)
def test_choose_ports(
    stored: tuple[int, int] | None,
    requested: int | None,
    free: set[int],
    expected_broker: int | None,
    expected_controller: int | None,
) -> None:
    broker_port, controller_port = config.choose_ports(stored, requested, free.__contains__)

    assert broker_port != controller_port
    if expected_broker is not None:
        assert broker_port == expected_broker
    else:
        assert broker_port not in {5000, 5001, 6000}
    if expected_controller is not None:
        assert controller_port == expected_controller
    else:
        assert controller_port not in {5000, 5001, 6000}


def test_free_port_is_bindable() -> None:
    port = config.free_port()

    assert config.port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not config.port_is_free(port)


def test_fetch_jars_renames_a_complete_download_into_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYNCTEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    calls: list[list[str]] = []

    def fake_maven(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        out_dir = Path(next(a for a in command if a.startswith("-DoutputDirectory=")).split("=")[1])
        (out_dir / "kafka_2.13.jar").touch()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(jars.subprocess, "run", fake_maven)

    first = jars.fetch_jars()
    second = jars.fetch_jars()

    assert first == second == jars.jar_dir()
    assert (first / "kafka_2.13.jar").is_file()
    assert len(calls) == 1, "a cached download is not fetched again"
    assert f"-Dkafka.version={jars.KAFKA_VERSION}" in calls[0]
    assert [p.name for p in first.parent.iterdir()] == ["libs"], "no staging dir left"


def test_fetch_jars_reports_maven_output_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYNCTEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    failed = subprocess.CompletedProcess([], 1, "[ERROR] Could not resolve kafka_2.13\n", "")
    monkeypatch.setattr(jars.subprocess, "run", lambda command, **_: failed)

    with pytest.raises(BrokerError, match=r"Could not resolve kafka_2\.13"):
        jars.fetch_jars()

    assert list(jars.jar_dir().parent.iterdir()) == []


def test_fetch_jars_without_maven_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SYNCTEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)

    with pytest.raises(BrokerError, match="apt-get install openjdk-17-jdk-headless maven"):
        jars.fetch_jars()


def test_broker_command_fetch_only_prints_the_jar_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(command, "fetch_jars", lambda: tmp_path)

    assert command.main_broker(json_output=False, data_dir=None, fetch_only=True) == 0

    assert str(tmp_path) in capsys.readouterr().out


def test_broker_command_reports_errors_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SYNCTEC_CACHE_DIR", str(tmp_path))  # no jars fetched there
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)  # and no Maven

    assert command.main_broker(json_output=True, data_dir=None, fetch_only=False) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "apt-get install" in captured.err


def test_log_tail_leaves_out_java_stack_frames(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    log.write_text(
        "[2026-01-01 00:00:00,000] ERROR Exiting Kafka (kafka.Kafka$)\n"
        "java.lang.RuntimeException: Unable to start acceptor for PLAINTEXT\n"
        "\tat kafka.network.SocketServer.enableRequestProcessing(SocketServer.scala:201)\n"
        "\t... 6 more\n"
        "Caused by: java.net.BindException: Address already in use\n"
    )

    tail = LocalBroker(log_file=log).log_tail().splitlines()

    assert tail == [
        "[2026-01-01 00:00:00,000] ERROR Exiting Kafka (kafka.Kafka$)",
        "java.lang.RuntimeException: Unable to start acceptor for PLAINTEXT",
        "Caused by: java.net.BindException: Address already in use",
    ]


# --- clusters -------------------------------------------------------------------------


def test_rendered_properties_for_a_cluster_node(tmp_path: Path) -> None:
    voters = config.quorum_voters([19093, 19193, 19293])
    replication = Replication.for_cluster(3)

    text = config.render_properties(
        19192, 19193, tmp_path, node_id=2, voters=voters, replication=replication
    )
    props = _properties(text)

    assert voters == "1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293"
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == voters
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193"
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    for key in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "2", key


@pytest.mark.parametrize(
    ("size", "factor", "min_insync"),
    [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)],
)
def test_cluster_replication_tolerates_one_node_down(
    size: int, factor: int, min_insync: int
) -> None:
    assert Replication.for_cluster(size) == Replication(factor, min_insync)


@pytest.mark.parametrize(("factor", "min_insync"), [(1, 2), (3, 0), (0, 0)])
def test_replication_refuses_impossible_settings(factor: int, min_insync: int) -> None:
    with pytest.raises(ValueError, match="min_insync"):
        Replication(factor, min_insync)


@pytest.mark.parametrize(
    ("stored", "free", "expected"),
    [
        # every stored port free: all kept
        ([(5000, 5001), (5002, 5003)], {5000, 5001, 5002, 5003}, [(5000, 5001), (5002, 5003)]),
        # node 2's broker port taken: only that one moves
        ([(5000, 5001), (5002, 5003)], {5000, 5001, 5003}, [(5000, 5001), (None, 5003)]),
        # two nodes stored the same port (a copied dir): the second gets a new one
        ([(5000, 5001), (5000, 5003)], {5000, 5001, 5003}, [(5000, 5001), (None, 5003)]),
        # first start
        ([None, None, None], set(), [(None, None)] * 3),
    ],
)
def test_choose_cluster_ports(
    stored: list[tuple[int, int] | None],
    free: set[int],
    expected: list[tuple[int | None, int | None]],
) -> None:
    chosen = config.choose_cluster_ports(stored, free.__contains__)

    every_port = [port for pair in chosen for port in pair]
    assert len(set(every_port)) == len(every_port), "no port given twice"
    for (broker_port, controller_port), (want_broker, want_controller) in zip(
        chosen, expected, strict=True
    ):
        assert broker_port == want_broker or (want_broker is None and broker_port not in free)
        assert controller_port == want_controller or (
            want_controller is None and controller_port not in free
        )


def test_cluster_refuses_a_data_dir_of_another_size(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text('{"cluster_id": "x", "size": 3}\n')

    with pytest.raises(BrokerError, match="cluster of 3 nodes, not 5"):
        LocalCluster(size=5, data_dir=tmp_path)._cluster_id(tmp_path)


def test_cluster_id_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = LocalCluster(data_dir=tmp_path)._cluster_id(tmp_path)

    assert LocalCluster(data_dir=tmp_path)._cluster_id(tmp_path) == first


def test_an_unstarted_cluster_says_so() -> None:
    cluster = LocalCluster()

    with pytest.raises(BrokerError, match="not been started"):
        _ = cluster.bootstrap_servers


def test_broker_command_refuses_zero_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main_broker(json_output=True, data_dir=None, fetch_only=False, nodes=0) == 1

    assert "at least one node" in capsys.readouterr().err
