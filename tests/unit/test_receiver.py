"""The debug receiver, served in-process on loopback by aiohttp's test utilities."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from synctec_webhooks.receiver import _serve_until_signal, build_app, main_receive, serve
from synctec_webhooks.signing import signature_headers

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
NOW = 1_700_000_000
BODY = json.dumps({"type": "product.updated", "data": {"id": "p_1", "title": "Café"}}).encode()


def _headers(secret: str = SECRET, body: bytes = BODY, timestamp: int = NOW) -> dict[str, str]:
    return signature_headers(
        secrets=[secret],
        event_type="product.updated",
        event_id="evt_1",
        delivery_id="dlv_1",
        attempt=3,
        timestamp=timestamp,
        body=body,
    )


Client = TestClient[web.Request, web.Application]
Check = Callable[[Client], Awaitable[None]]


def _run(app: web.Application, check: Check) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main())


def _post_once(
    secret: str | None,
    body: bytes,
    headers: dict[str, str],
    *,
    status: int = 200,
    path: str = "/hooks/orders",
) -> tuple[int, object, str]:
    """POST once; returns the status, the JSON answer and what the receiver printed."""
    out = io.StringIO()
    result: list[tuple[int, object]] = []

    async def check(client: Client) -> None:
        async with client.post(path, data=body, headers=headers) as response:
            result.append((response.status, await response.json()))

    _run(build_app(secret, out, status=status, clock=lambda: NOW + 0.25), check)
    return result[0][0], result[0][1], out.getvalue()


def test_prints_one_block_per_request() -> None:
    status, answer, printed = _post_once(SECRET, BODY, _headers())
    assert status == 200
    assert answer == {"received": True}
    assert printed == (
        "--- 2023-11-14T22:13:20.250+00:00  POST /hooks/orders\n"
        "X-StoreLink-Event: product.updated\n"
        "X-StoreLink-Delivery-Id: dlv_1\n"
        "X-StoreLink-Attempt: 3\n"
        "X-StoreLink-Signature: valid\n"
        "webhook-signature: valid\n"
        "{\n"
        '  "type": "product.updated",\n'
        '  "data": {\n'
        '    "id": "p_1",\n'
        '    "title": "Café"\n'
        "  }\n"
        "}\n"
        "\n"
    )


def test_tampered_body_is_invalid() -> None:
    _, _, printed = _post_once(SECRET, BODY + b" ", _headers())
    assert "X-StoreLink-Signature: INVALID\n" in printed
    assert "webhook-signature: INVALID\n" in printed


def test_wrong_secret_is_invalid() -> None:
    _, _, printed = _post_once(OTHER_SECRET, BODY, _headers())
    assert "X-StoreLink-Signature: INVALID\n" in printed
    assert "webhook-signature: INVALID\n" in printed


def test_stale_timestamp_only_fails_the_standard_signature() -> None:
    _, _, printed = _post_once(SECRET, BODY, _headers(timestamp=NOW - 3600))
    assert "X-StoreLink-Signature: valid\n" in printed
    assert "webhook-signature: INVALID\n" in printed


def test_unsigned_request_with_secret_is_invalid() -> None:
    _, _, printed = _post_once(SECRET, BODY, {"Content-Type": "application/json"})
    assert "X-StoreLink-Signature: INVALID\n" in printed
    assert "webhook-signature: INVALID\n" in printed


def test_without_secret_no_verdicts() -> None:
    _, _, printed = _post_once(None, BODY, _headers())
    assert "valid" not in printed.lower()
    assert "X-StoreLink-Event: product.updated\n" in printed


def test_non_json_body_printed_as_text() -> None:
    _, _, printed = _post_once(None, b"hello \xff", {"Content-Type": "text/plain"})
    assert "hello \ufffd\n" in printed


def test_empty_body() -> None:
    _, _, printed = _post_once(None, b"", {})
    assert "(empty body)\n" in printed


@pytest.mark.parametrize("status", [201, 410, 500, 503])
def test_answers_the_configured_status(status: int) -> None:
    answered, answer, _ = _post_once(None, BODY, _headers(), status=status)
    assert answered == status
    assert answer == {"received": True}


@pytest.mark.parametrize("path", ["/", "/a/b/c", "/hook?x=1"])
def test_any_path(path: str) -> None:
    status, _, printed = _post_once(None, BODY, {}, path=path)
    assert status == 200
    assert f"POST {path}\n" in printed


def test_only_post() -> None:
    async def check(client: Client) -> None:
        async with client.get("/") as response:
            assert response.status == 405

    _run(build_app(None, io.StringIO()), check)


def test_flushes_per_request() -> None:
    class Recorder(io.StringIO):
        flushed: list[str]

        def flush(self) -> None:
            self.flushed.append(self.getvalue())

    out = Recorder()
    out.flushed = []

    async def check(client: Client) -> None:
        for _ in range(2):
            async with client.post("/", data=BODY) as response:
                assert response.status == 200
            assert out.flushed[-1] == out.getvalue()

    _run(build_app(None, out), check)
    assert len(out.flushed) == 2


def test_malformed_secret_refused_at_start() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        build_app("not-a-whsec-secret", io.StringIO())
    assert main_receive(0, "127.0.0.1", "not-a-whsec-secret") == 2


class _Announcing(io.StringIO):
    """Output that sets `listening` once the server says it is listening."""

    listening: asyncio.Event

    def write(self, text: str) -> int:
        if "listening" in text:
            self.listening.set()
        return super().write(text)


def test_serve_until_cancelled() -> None:
    with socket.socket() as sock:  # a loopback port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = _Announcing()

    async def main() -> None:
        out.listening = asyncio.Event()
        task = asyncio.create_task(serve("127.0.0.1", port, SECRET, status=202, out=out))
        await out.listening.wait()
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/x"
            # serve() checks webhook-timestamp against the real clock.
            headers = _headers(timestamp=int(time.time()))
            async with session.post(url, data=BODY, headers=headers) as response:
                assert response.status == 202
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert f"listening on http://127.0.0.1:{port}/" in out.getvalue()
    assert "X-StoreLink-Signature: valid\n" in out.getvalue()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(signum: int, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Announcing()
    monkeypatch.setattr(sys, "stdout", out)  # serve() prints to stdout by default

    async def main() -> None:
        out.listening = asyncio.Event()
        task = asyncio.create_task(_serve_until_signal("127.0.0.1", 0, None, 200))
        await out.listening.wait()
        os.kill(os.getpid(), signum)
        await task  # returns normally: a signal is a clean stop

    asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main_receive(port, "127.0.0.1", None) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
