from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from synctec_webhooks.consumers.delivery.outcome import (
    Outcome,
    OutcomeKind,
    from_exception,
    from_response,
)
from synctec_webhooks.webhooks import validate_webhook_url

NOW = 1_700_000_000.0


def _connector_error(cls: type[aiohttp.ClientConnectorError], os_error: OSError) -> Any:
    key: Any = SimpleNamespace(host="shop.example", port=443, ssl=True)
    return cls(key, os_error)


# --- responses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (200, OutcomeKind.SUCCESS, None),
        (201, OutcomeKind.SUCCESS, None),
        (204, OutcomeKind.SUCCESS, None),
        (299, OutcomeKind.SUCCESS, None),
        (100, OutcomeKind.HTTP_ERROR, "HTTP 100"),
        (400, OutcomeKind.HTTP_ERROR, "HTTP 400"),
        (404, OutcomeKind.HTTP_ERROR, "HTTP 404"),
        (410, OutcomeKind.HTTP_ERROR, "HTTP 410"),
        (429, OutcomeKind.HTTP_ERROR, "HTTP 429"),
        (500, OutcomeKind.HTTP_ERROR, "HTTP 500"),
        (503, OutcomeKind.HTTP_ERROR, "HTTP 503"),
    ],
)
def test_from_response_status(status: int, kind: OutcomeKind, error: str | None) -> None:
    outcome = from_response(status, {}, 12.5, NOW)
    assert outcome == Outcome(kind, status, error, None, 12.5)
    assert outcome.ok is (kind is OutcomeKind.SUCCESS)
    assert outcome.retryable is (kind is not OutcomeKind.SUCCESS)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(status: int) -> None:
    outcome = from_response(status, {"Location": "https://x"}, 3.0, NOW)
    assert outcome.kind is OutcomeKind.REDIRECT
    assert outcome.status == status
    assert outcome.error == "redirect to https://x not followed (redirects are never followed)"
    assert outcome.retryable


def test_redirect_without_location() -> None:
    outcome = from_response(302, {}, 3.0, NOW)
    assert outcome.error == (
        "HTTP 302 without Location not followed (redirects are never followed)"
    )


def test_redirect_location_is_shortened() -> None:
    outcome = from_response(302, {"location": "https://x/" + "a" * 5000}, 3.0, NOW)
    assert outcome.error is not None
    assert len(outcome.error) < 300


@pytest.mark.parametrize(
    ("status", "value", "retry_after"),
    [
        (429, "30", 30.0),
        (503, "30", 30.0),
        (503, format_datetime(datetime.fromtimestamp(NOW + 120, tz=UTC), usegmt=True), 120.0),
        (429, "later", None),
        (429, None, None),
        (500, "30", None),  # only 429 and 503 mean "come back later"
        (200, "30", None),
        (301, "30", None),
    ],
)
def test_retry_after(status: int, value: str | None, retry_after: float | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    assert from_response(status, headers, 1.0, NOW).retry_after == retry_after


def test_header_names_are_case_insensitive() -> None:
    assert from_response(429, {"retry-after": "7"}, 1.0, NOW).retry_after == 7.0
    assert from_response(503, CIMultiDict({"RETRY-AFTER": "8"}), 1.0, NOW).retry_after == 8.0


# --- exceptions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "error"),
    [
        (TimeoutError(), OutcomeKind.TIMEOUT, "timed out after 10.0 s"),
        (aiohttp.ServerTimeoutError("read"), OutcomeKind.TIMEOUT, "timed out after 10.0 s"),
        (aiohttp.ConnectionTimeoutError(), OutcomeKind.TIMEOUT, "timed out after 10.0 s"),
        (aiohttp.SocketTimeoutError(), OutcomeKind.TIMEOUT, "timed out after 10.0 s"),
        (
            _connector_error(aiohttp.ClientConnectorError, ConnectionRefusedError(111, "refused")),
            OutcomeKind.CONNECTION_ERROR,
            "connection refused: Cannot connect to host shop.example:443 ssl:default [refused]",
        ),
        (
            _connector_error(aiohttp.ClientConnectorError, OSError(113, "No route to host")),
            OutcomeKind.CONNECTION_ERROR,
            "cannot connect: Cannot connect to host shop.example:443 ssl:default "
            "[No route to host]",
        ),
        (
            _connector_error(aiohttp.ClientConnectorDNSError, OSError(-2, "Name not known")),
            OutcomeKind.CONNECTION_ERROR,
            "DNS lookup failed: Cannot connect to host shop.example:443 ssl:default "
            "[Name not known]",
        ),
        (
            aiohttp.ServerDisconnectedError(),
            OutcomeKind.CONNECTION_ERROR,
            "server disconnected: Server disconnected",
        ),
        (
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            OutcomeKind.CONNECTION_ERROR,
            "connection error: [Errno 104] Connection reset by peer",
        ),
        (
            aiohttp.ClientPayloadError("truncated"),
            OutcomeKind.CONNECTION_ERROR,
            "response payload error: truncated",
        ),
        (
            aiohttp.ClientConnectionError("Connection closed"),
            OutcomeKind.CONNECTION_ERROR,
            "ClientConnectionError: Connection closed",
        ),
        (
            aiohttp.ClientError(),
            OutcomeKind.CONNECTION_ERROR,
            "ClientError",
        ),
        (
            ConnectionResetError(104, "reset"),
            OutcomeKind.CONNECTION_ERROR,
            "ConnectionResetError: [Errno 104] reset",
        ),
        (
            aiohttp.InvalidURL("nope://x"),
            OutcomeKind.INVALID_URL,
            "invalid URL: nope://x",
        ),
        (
            aiohttp.NonHttpUrlClientError("ftp://x"),
            OutcomeKind.INVALID_URL,
            "invalid URL: ftp://x",
        ),
        (
            ValueError("Port out of range 0-65535"),
            OutcomeKind.INVALID_URL,
            "invalid URL: Port out of range 0-65535",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
)
def test_from_exception(exc: BaseException, kind: OutcomeKind, error: str) -> None:
    outcome = from_exception(exc, 42.0, 10.0)
    assert outcome == Outcome(kind, None, error, None, 42.0)
    assert outcome.retryable is (kind is not OutcomeKind.INVALID_URL)
    assert not outcome.ok


def test_unexpected_exception_is_retryable(caplog: pytest.LogCaptureFixture) -> None:
    outcome = from_exception(RuntimeError("boom"), 1.0, 10.0)
    assert outcome.kind is OutcomeKind.CONNECTION_ERROR
    assert outcome.error == "unexpected RuntimeError: boom"
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), KeyboardInterrupt()])
def test_cancellation_is_not_an_outcome(exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        from_exception(exc, 1.0, 10.0)


def test_outcome_kind_values_are_stable() -> None:
    # They end up in delivery records and metric labels.
    assert [kind.value for kind in OutcomeKind] == [
        "success",
        "http_error",
        "redirect",
        "timeout",
        "connection_error",
        "invalid_url",
        "refused",
    ]


# --- real aiohttp exceptions, over loopback -------------------------------------------


async def _post(url: str, total: float = 5.0) -> Outcome:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=total)) as session:
        try:
            async with session.post(url, data=b"{}", allow_redirects=False) as response:
                return from_response(response.status, response.headers, 1.0, NOW)
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            return from_exception(exc, 1.0, total)


async def _with_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    check: Callable[[str], Awaitable[None]],
) -> None:
    app = web.Application()
    app.router.add_post("/", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        await check(str(server.make_url("/")))


def test_real_timeout() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    async def check(url: str) -> None:
        outcome = await _post(url, total=0.2)
        assert (outcome.kind, outcome.error) == (OutcomeKind.TIMEOUT, "timed out after 0.2 s")

    asyncio.run(_with_server(slow, check))


def test_real_redirect_and_retry_after() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.query.get("go"):
            return web.Response(status=302, headers={"Location": "https://elsewhere.test/"})
        return web.Response(status=429, headers={"Retry-After": "9"})

    async def check(url: str) -> None:
        redirect = await _post(url + "?go=1")
        assert redirect.kind is OutcomeKind.REDIRECT
        assert redirect.error == (
            "redirect to https://elsewhere.test/ not followed (redirects are never followed)"
        )
        limited = await _post(url)
        assert (limited.kind, limited.status, limited.retry_after) == (
            OutcomeKind.HTTP_ERROR,
            429,
            9.0,
        )

    asyncio.run(_with_server(handler, check))


def test_real_connection_refused() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = asyncio.run(_post(f"http://127.0.0.1:{port}/"))
    assert outcome.kind is OutcomeKind.CONNECTION_ERROR
    assert outcome.error is not None
    assert outcome.error.startswith("connection refused: ")


def test_real_invalid_url() -> None:
    outcome = asyncio.run(_post("ftp://127.0.0.1/"))
    assert outcome.kind is OutcomeKind.INVALID_URL


# --- URL validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://shop.example/hooks", "https://shop.example/hooks"),
        ("HTTPS://Shop.Example:443/Hooks", "https://shop.example/Hooks"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://user:pass@shop.example/h", "https://user:pass@shop.example/h"),
        ("https://bücher.example/h?x=1", "https://xn--bcher-kva.example/h?x=1"),
        ("https://shop.example/" + "a" * 2000, "https://shop.example/" + "a" * 2000),
    ],
)
def test_validate_webhook_url_accepts(url: str, normalized: str) -> None:
    assert validate_webhook_url(url) == normalized


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must be an absolute http(s) URL"),
        ("shop.example/hooks", "must be an absolute http(s) URL"),
        ("/hooks", "must be an absolute http(s) URL"),
        ("//shop.example/hooks", "must be an absolute http(s) URL"),
        ("ftp://shop.example/", "must be an absolute http(s) URL"),
        ("mailto:a@shop.example", "must be an absolute http(s) URL"),
        ("https://", "must be an absolute http(s) URL"),
        ("http:///path", "must be an absolute http(s) URL"),
        ("https://shop.example/a b", "must not contain whitespace"),
        (" https://shop.example/", "must not contain whitespace"),
        ("https://shop.example/\n", "must not contain whitespace"),
        ("https://shop.example:99999/", "Port out of range"),
        ("http://[::1/", "Invalid IPv6 URL"),
        ("https://shop.example/" + "a" * 2100, "at most 2048 characters, got 2121"),
    ],
)
def test_validate_webhook_url_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^url: ") as info:
        validate_webhook_url(url)
    assert message in str(info.value)
