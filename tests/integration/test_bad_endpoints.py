"""Endpoints that misbehave: each failure is retried, then dead-lettered with a history
that says what went wrong; none of them stops the other endpoints' deliveries."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.serialization import make_codec
from tests.integration.harness import Pipeline, Receiver, Reply, always, product_synced, wait_until

pytestmark = pytest.mark.broker


class GarbageServer:
    """Accepts connections and answers bytes that are not HTTP, then closes."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(50)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(b"\x00\xffthis is not HTTP at all\r\n\r\n")
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def garbage() -> Iterator[GarbageServer]:
    g = GarbageServer()
    yield g
    g.stop()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_misbehaving_endpoints_are_dead_lettered_with_their_reason(
    kafka_bootstrap: str,
    unique_name: str,
    tmp_path: Path,
    receiver: Receiver,
    garbage: GarbageServer,
) -> None:
    p = Pipeline(
        kafka_bootstrap,
        unique_name,
        tmp_path,
        SYNCTEC_HTTP_TIMEOUT="0.5",
        SYNCTEC_RETRY_DELAYS="0.2,0.2,0.2",
    )
    receiver.script("/hangs", lambda _i: Reply(delay=5))
    receiver.script("/redirects", always(302))
    receiver.script("/missing", always(404))
    receiver.script("/teapot", lambda _i: Reply(status=500, body=b"\x00" * 200_000))
    bad = {
        "hangs": (p.add_webhook(receiver.url("/hangs")), "timed out"),
        "redirects": (p.add_webhook(receiver.url("/redirects")), "not followed"),
        "missing": (p.add_webhook(receiver.url("/missing")), "HTTP 404"),
        "teapot": (p.add_webhook(receiver.url("/teapot")), "HTTP 500"),
        "garbage": (p.add_webhook(f"http://127.0.0.1:{garbage.port}/x"), ""),
        "refused": (p.add_webhook(f"http://127.0.0.1:{_closed_port()}/x"), ""),
    }
    good = p.add_webhook(receiver.url("/good"))
    p.start()
    try:
        ids = p.emit(*(product_synced(str(i)) for i in range(5)))
        receiver.wait_for(5, "/good")
        dls = DeadLetters(p.settings, make_codec(None))
        wait_until(
            lambda: len(dls.list()) >= 5 * len(bad), 90, lambda: f"{len(dls.list())} dead letters"
        )
        time.sleep(1)
        letters = dls.list()
    finally:
        assert all(code == 0 for code in p.stop().values()), p.all_logs()

    assert {r.json["id"] for r in receiver.received("/good")} == set(ids)
    assert dls.list(webhook_id=good.id) == []
    assert len(letters) == 5 * len(bad)
    for name, (sub, needle) in bad.items():
        mine = [d.record for d in letters if d.record["webhook_id"] == sub.id]
        assert sorted(d["event_id"] for d in mine) == sorted(ids), name
        for d in mine:
            assert d["reason"] == "retries_exhausted"
            assert [h["attempt"] for h in d["history"]] == [1, 2, 3, 4], name
            errors = [h["error"] for h in d["history"]]
            assert all(e for e in errors), (name, errors)
            assert all(needle in e for e in errors), (name, errors)
    redirects = receiver.received("/redirects")
    assert len(redirects) == 4 * 5  # never followed: only the original URL was asked
    assert garbage.connections >= 4 * 5


def test_removed_webhook_gets_no_further_deliveries(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path).start()
    try:
        gone = p.add_webhook(receiver.url("/gone"))
        kept = p.add_webhook(receiver.url("/kept"))
        p.emit(product_synced("1"))
        receiver.wait_for(1, "/gone")
        assert p.writer.remove(gone.id)
        assert [s.id for s in p.writer.list()] == [kept.id]
        p.emit(product_synced("2"))
        receiver.wait_for(2, "/kept")
        time.sleep(1.5)
    finally:
        assert all(code == 0 for code in p.stop().values()), p.all_logs()
    assert len(receiver.received("/gone")) == 1
    assert not p.writer.remove(gone.id)  # already gone: says so
