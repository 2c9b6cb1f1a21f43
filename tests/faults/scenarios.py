"""Fault scenarios: the pipeline under crashes, broker outages and bad endpoints.

Each scenario runs the real workers as processes (tests/integration/harness.py) against
a real broker, emits events while it injects its faults, waits until the oracle has
accounted for every (event, endpoint) pair or a deadline passes, and returns a Report.
`Scale` sets the size: the short one runs in `make test`, the long one in `make faults`.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from cryptography.fernet import Fernet

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.localkafka import LocalBroker, LocalCluster
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics
from tests.faults.oracle import Oracle, Report
from tests.integration.harness import (
    Pipeline,
    Receiver,
    Reply,
    always,
    inventory_updated,
    product_synced,
    with_account,
)

HTTP_TIMEOUT = 1.0
FAULT_ENV = {
    "SYNCTEC_HTTP_TIMEOUT": str(HTTP_TIMEOUT),
    "SYNCTEC_RETRY_DELAYS": "0.2,0.4,0.8",
    "SYNCTEC_TRANSACTION_TIMEOUT_MS": "5000",
    "SYNCTEC_SESSION_TIMEOUT_MS": "6000",
}


@dataclass(frozen=True)
class Scale:
    name: str
    events: int
    kills: int
    deadline: float  # seconds to wait for every pair to be accounted for


SHORT = Scale("short", events=200, kills=2, deadline=120)
LONG = Scale("long", events=2000, kills=6, deadline=600)


# --- endpoints that misbehave at the TCP level -----------------------------------------


class ResettingServer:
    """Accepts and resets every connection (RST, not FIN): 'connection reset by peer'."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(100)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError):
                conn.recv(1024)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


# --- the scenario frame -----------------------------------------------------------------


class Run:
    """One scenario's pipeline, receiver, oracle and event stream."""

    def __init__(self, name: str, bootstrap: str, logs: Path, scale: Scale, **env: str) -> None:
        self.name = name
        self.scale = scale
        self.receiver = Receiver().start()
        prefix = "f" + "".join(c for c in name if c.isalnum())[:12] + str(random.randrange(10**6))
        logs.mkdir(parents=True, exist_ok=True)
        self.pipeline = Pipeline(bootstrap, prefix, logs, **{**FAULT_ENV, **env})
        self.oracle = Oracle(self.pipeline.settings, self.receiver, HTTP_TIMEOUT)
        self.webhooks: dict[str, str] = {}  # path -> webhook id
        self._emitter: threading.Thread | None = None
        self.emitted = 0

    def endpoint(self, path: str, script: Callable[[int], Reply] | None = None,
                 url: str | None = None, events: str = "*") -> str:  # fmt: skip
        if script is not None:
            self.receiver.script(path, script)
        sub = self.pipeline.add_webhook(url or self.receiver.url(path), events)
        self.webhooks[path] = sub.id
        self.oracle.subscribe(path, sub.id)
        return sub.id

    def emit_in_background(self, count: int, chunks: int = 20, pause: float = 0.1) -> None:
        def emit() -> None:
            per = max(1, count // chunks)
            sent = 0
            while sent < count:
                n = min(per, count - sent)
                events = [product_synced(str(random.randrange(40))) for _ in range(n)]
                ids = self.pipeline.emit(*events)
                self.oracle.emitted(ids, list(self.webhooks.values()))
                sent += n
                self.emitted = sent
                time.sleep(pause)

        self._emitter = threading.Thread(target=emit, daemon=True)
        self._emitter.start()

    def wait_emitted(self) -> None:
        if self._emitter is not None:
            self._emitter.join(300)

    def settle(self) -> None:
        """Wait until every pair is accounted for (or the deadline), then a little more."""
        self.wait_emitted()
        deadline = time.monotonic() + self.scale.deadline
        while time.monotonic() < deadline and not self.oracle.accounted():
            time.sleep(2)
        time.sleep(2)  # late duplicates show up here, not after the report

    def finish(self, why: str = "") -> Report:
        try:
            report = self.oracle.report(self.name, why)
        finally:
            codes = self.pipeline.stop()
            self.receiver.stop()
        bad = {role: code for role, code in codes.items() if code != 0}
        if bad:
            report.notes.append(f"workers exited non-zero at the end: {bad}")
        return report


@contextlib.contextmanager
def running(run: Run) -> Iterator[Run]:
    try:
        run.pipeline.start()
        yield run
    except BaseException:
        run.pipeline.stop()
        run.receiver.stop()
        print(run.pipeline.all_logs())
        raise


def _wait_posts(run: Run, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(run.receiver.received()) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)


# --- scenarios --------------------------------------------------------------------------


def delivery_worker_sigkill(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("delivery worker SIGKILL", bootstrap, logs, scale)
    run.endpoint("/a", lambda _i: Reply(delay=0.02))
    run.endpoint("/b")
    with running(run):
        run.emit_in_background(scale.events)
        step = max(10, scale.events * 2 // (scale.kills + 1))
        for k in range(1, scale.kills + 1):
            _wait_posts(run, k * step)
            run.pipeline.kill("deliver")
            run.pipeline.restart("deliver")
        run.settle()
    return run.finish("records in flight when the delivery worker was SIGKILLed")


def fanout_sigkill(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("fan-out SIGKILL mid-transaction", bootstrap, logs, scale,
              SYNCTEC_FANOUT_BATCH_MS="200")  # fmt: skip
    run.endpoint("/a")
    run.endpoint("/b")
    with running(run):
        run.emit_in_background(scale.events, chunks=40, pause=0.05)
        for _ in range(scale.kills):
            time.sleep(random.uniform(0.3, 1.0))
            run.pipeline.kill("fanout")
            run.pipeline.restart("fanout")
        run.settle()
    return run.finish()


def broker_restart(bootstrap: str, logs: Path, scale: Scale) -> Report:
    del bootstrap  # this scenario needs a broker of its own to stop
    with LocalBroker(data_dir=logs / "broker") as broker:
        run = Run("broker stopped and restarted", broker.bootstrap_servers, logs, scale)
        run.endpoint("/a")
        with running(run):
            run.emit_in_background(scale.events // 2, chunks=10)
            run.wait_emitted()
            _wait_posts(run, scale.events // 4)
            broker.stop()  # a clean stop, mid-stream; the data dir stays
            time.sleep(3)
            broker.start()
            run.emit_in_background(scale.events // 2, chunks=10)
            run.settle()
        return run.finish("partitions lost to the session timeout while the broker was away")


def misbehaving_endpoints(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("endpoints: 500, timeout, reset, slow, flapping", bootstrap, logs, scale)
    resetting = ResettingServer()
    try:
        run.endpoint("/ok")
        run.endpoint("/500", always(500))
        run.endpoint("/timeout", lambda _i: Reply(delay=HTTP_TIMEOUT * 3))
        run.endpoint("/reset", url=f"http://127.0.0.1:{resetting.port}/reset")
        run.endpoint("/slow", lambda _i: Reply(delay=HTTP_TIMEOUT * 0.3))
        run.endpoint("/flapping", lambda i: Reply(500 if (i // 7) % 2 else 200))
        with running(run):
            run.emit_in_background(max(20, scale.events // 5), chunks=5)
            run.settle()
        return run.finish()
    finally:
        resetting.stop()


def subscription_removed(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("subscription removed mid-flight", bootstrap, logs, scale)
    run.endpoint("/kept")
    gone = run.endpoint("/removed", lambda _i: Reply(delay=0.05))
    with running(run):
        run.emit_in_background(scale.events, chunks=10)
        _wait_posts(run, scale.events // 2)
        run.pipeline.writer.remove(gone)
        del run.webhooks["/removed"]  # events emitted from now on do not expect it
        run.oracle.removed(gone)
        run.settle()
    return run.finish()


def poison_records(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("poison records", bootstrap, logs, scale)
    run.endpoint("/a", events="inventory.updated")
    topics = Topics(run.pipeline.settings.topic_prefix)
    raw = Producer({"bootstrap.servers": run.pipeline.settings.bootstrap_servers})
    poison = max(5, scale.events // 40)
    with running(run):
        for n in range(poison):
            raw.produce(topics.events, value=b"\x00poison %d" % n, key=str(n))
            ids = run.pipeline.emit(inventory_updated(str(n)))
            run.oracle.emitted(ids, list(run.webhooks.values()))
        raw.flush(30)
        run.settle()
    report = run.finish()
    if report.poison_dead_lettered != poison:
        report.notes.append(f"{report.poison_dead_lettered} poison dead letters, expected {poison}")
    return report


def everything_at_once(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("kills + flapping endpoint + poison", bootstrap, logs, scale)
    run.endpoint("/ok", lambda _i: Reply(delay=0.02))
    run.endpoint("/flapping", lambda i: Reply(503 if i % 3 == 0 else 200))
    topics = Topics(run.pipeline.settings.topic_prefix)
    raw = Producer({"bootstrap.servers": run.pipeline.settings.bootstrap_servers})
    with running(run):
        run.emit_in_background(scale.events, chunks=20)
        for k in range(scale.kills):
            raw.produce(topics.events, value=b"poison", key=str(k))
            time.sleep(random.uniform(0.5, 1.5))
            role = ("deliver", "fanout", "retry")[k % 3]
            run.pipeline.kill(role)
            run.pipeline.restart(role)
        raw.flush(30)
        run.settle()
    return run.finish("records in flight at the SIGKILLs")


def cluster_node_killed(bootstrap: str, logs: Path, scale: Scale) -> Report:
    del bootstrap  # three brokers of its own, replication factor 3, min.insync.replicas 2
    with LocalCluster(3, data_dir=logs / "cluster") as cluster:
        run = Run("one broker of three SIGKILLed", cluster.bootstrap_servers, logs, scale)
        run.endpoint("/a")
        run.endpoint("/b", lambda _i: Reply(delay=0.02))
        with running(run):
            run.emit_in_background(scale.events, chunks=20, pause=0.15)
            _wait_posts(run, scale.events // 3)
            victim = random.randrange(3)
            cluster.kill(victim)
            time.sleep(3)
            cluster.start_node(victim)
            run.settle()
        return run.finish("partitions that moved while their leader was down")


def delivery_scale_out(bootstrap: str, logs: Path, scale: Scale) -> Report:
    run = Run("two delivery workers, one killed", bootstrap, logs, scale,
              SYNCTEC_DELIVERY_PARTITIONS="4")  # fmt: skip
    run.endpoint("/a", lambda _i: Reply(delay=0.02))
    run.endpoint("/b", lambda _i: Reply(delay=0.02))
    with running(run):
        run.pipeline.start(["deliver@2"])
        run.emit_in_background(scale.events, chunks=20, pause=0.15)
        _wait_posts(run, scale.events // 2)
        run.pipeline.kill("deliver")  # its partitions move to deliver@2
        run.settle()
    report = run.finish("records in flight at the SIGKILL")
    second = run.pipeline.log_path("deliver@2").read_text()
    if " consuming " not in second:
        report.notes.append("the second delivery worker never consumed")
    return report


def retry_rebalance(bootstrap: str, logs: Path, scale: Scale) -> Report:
    """Retry workers join and die while records wait: none is retried before it is due."""
    delay = 1.5
    delays = f"{delay},{delay},{delay}"
    run = Run("retry workers rebalanced while holding", bootstrap, logs, scale,
              SYNCTEC_RETRY_DELAYS=delays, SYNCTEC_DELIVERY_PARTITIONS="4")  # fmt: skip
    run.endpoint("/down", always(500))
    with running(run):
        run.emit_in_background(max(20, scale.events // 10), chunks=5, pause=0.3)
        time.sleep(delay)
        run.pipeline.start(["retry@2"])  # a rebalance while partitions are paused
        time.sleep(delay)
        run.pipeline.kill("retry")  # and another: its partitions move to retry@2
        run.settle()
    report = run.finish()
    # When each delivery's attempt n was first made; attempt n+1 must wait its delay.
    # (A killed worker's successor may repeat an attempt later: that is a duplicate.)
    first: dict[tuple[str, int], float] = {}
    for r in run.receiver.received("/down"):
        key = (r.header("X-StoreLink-Delivery-Id"), int(r.header("X-StoreLink-Attempt")))
        first[key] = min(first.get(key, r.at), r.at)
    early = sum(
        1
        for (delivery, attempt), at in first.items()
        if attempt > 1 and at - first[(delivery, attempt - 1)] < delay - 0.05
    )
    if early:
        report.notes.append(f"{early} retries came before they were due")
    return report


def bad_records(bootstrap: str, logs: Path, scale: Scale) -> Report:
    """An oversized event and a webhook whose secret no key opens, among healthy ones.

    The oversized events are written straight to the events topic (as a producer that
    does not validate would); each must become one `too_large` dead letter. The stray
    webhook was sealed with a key no worker has: each of its pairs must be dead-lettered
    `secret_unavailable` and none POSTed. The healthy endpoints must get every event.
    """
    run = Run("oversized events + unopenable secret", bootstrap, logs, scale)
    run.endpoint("/a")
    run.endpoint("/b", lambda _i: Reply(delay=0.02))
    stray_key = Fernet.generate_key().decode()
    stray = SubscriptionWriter(run.pipeline.settings.with_(secret_keys=(stray_key,)))
    run.oracle.subscribe("/stray", stray.add(run.receiver.url("/stray"), "*").id)
    run.webhooks["/stray"] = run.oracle.webhook_of_path["/stray"]
    topics = Topics(run.pipeline.settings.topic_prefix)
    raw = Producer({"bootstrap.servers": run.pipeline.settings.bootstrap_servers,
                    "message.max.bytes": 1_048_000})  # fmt: skip
    codec = make_codec(None)
    oversized = max(3, scale.events // 200)
    with running(run):
        run.emit_in_background(scale.events, chunks=20)
        for n in range(oversized):
            event = product_synced(f"big{n}")
            # ~170 KB of control characters: each becomes \u0001 (6 bytes) in the body.
            event["product"]["title"] = "\x01" * 170_000
            event["id"] = f"evt_oversized_{n}"
            event = with_account(event)
            value = codec.encode(topics.events, schemas.EVENT_SCHEMA["product.synced"], event)
            raw.produce(topics.events, value=value, key=f"{event['account_id']}/big{n}")
            time.sleep(random.uniform(0.1, 0.5))
        raw.flush(30)
        run.settle()
    report = run.finish()
    letters = DeadLetters(run.pipeline.settings, codec).list()
    too_large = sum(1 for d in letters if d.record["reason"] == deadletters.TOO_LARGE)
    if too_large != oversized:
        report.notes.append(f"{too_large} too_large dead letters, expected {oversized}")
    unopened = {
        d.record["event_id"]
        for d in letters
        if d.record["reason"] == deadletters.SECRET_UNAVAILABLE
    }
    if len(unopened) != run.emitted:
        report.notes.append(f"{len(unopened)} secret_unavailable events, expected {run.emitted}")
    if run.receiver.received("/stray"):
        report.notes.append("the webhook with an unopenable secret was POSTed to")
    healthy = {r.json["id"] for r in run.receiver.received("/a")}
    if len(healthy) != run.emitted:
        report.notes.append(f"/a got {len(healthy)} of {run.emitted} events")
    return report


SCENARIOS: dict[str, Callable[[str, Path, Scale], Report]] = {
    "delivery_sigkill": delivery_worker_sigkill,
    "fanout_sigkill": fanout_sigkill,
    "broker_restart": broker_restart,
    "endpoints": misbehaving_endpoints,
    "subscription_removed": subscription_removed,
    "poison": poison_records,
    "everything": everything_at_once,
    "cluster_node_killed": cluster_node_killed,
    "delivery_scale_out": delivery_scale_out,
    "retry_rebalance": retry_rebalance,
    "bad_records": bad_records,
}
