"""What one POST came to: success, or why not, and whether trying again can help.

Pure: the delivery service hands over the status and headers it got, or the exception
it caught, and records the `Outcome`.

    Outcome.kind          retryable
    ├── SUCCESS           no   any 2xx
    ├── HTTP_ERROR        yes  1xx, 4xx, 5xx (Retry-After kept for 429 and 503)
    ├── REDIRECT          yes  3xx: never followed, the endpoint may be fixed later
    ├── TIMEOUT           yes
    ├── CONNECTION_ERROR  yes  refused, DNS, TLS, reset, other aiohttp errors
    ├── INVALID_URL       no   the URL itself cannot be requested
    └── REFUSED           no   the SSRF guard refused every address of the host
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from synctec_webhooks.errors import AddressRefused
from synctec_webhooks.retry_policy import parse_retry_after

logger = logging.getLogger(__name__)

_RETRY_AFTER_STATUSES = frozenset({429, 503})
_SHOWN_LOCATION = 200  # characters of a redirect target kept in the error text


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    HTTP_ERROR = "http_error"
    REDIRECT = "redirect"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_URL = "invalid_url"
    REFUSED = "refused"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    status: int | None
    error: str | None  # for people: "HTTP 500", "timed out after 10.0 s", ...
    retry_after: float | None  # seconds; only from a 429 or 503
    latency_ms: float

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS

    @property
    def retryable(self) -> bool:
        return self.kind not in (OutcomeKind.SUCCESS, OutcomeKind.INVALID_URL, OutcomeKind.REFUSED)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # aiohttp's CIMultiDict is case-insensitive already; a plain dict in tests is not.
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def from_response(
    status: int, headers: Mapping[str, str], latency_ms: float, now: float
) -> Outcome:
    """Classify a response; `now` (unix seconds) resolves an HTTP-date Retry-After."""
    if 200 <= status < 300:
        return Outcome(OutcomeKind.SUCCESS, status, None, None, latency_ms)
    if 300 <= status < 400:
        return Outcome(
            OutcomeKind.REDIRECT, status, _redirect_error(status, headers), None, latency_ms
        )
    retry_after = None
    if status in _RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
    return Outcome(OutcomeKind.HTTP_ERROR, status, f"HTTP {status}", retry_after, latency_ms)


def _redirect_error(status: int, headers: Mapping[str, str]) -> str:
    location = _header(headers, "Location")
    if not location:
        return f"HTTP {status} without Location not followed (redirects are never followed)"
    if len(location) > _SHOWN_LOCATION:
        location = location[:_SHOWN_LOCATION] + "..."
    return f"redirect to {location} not followed (redirects are never followed)"


def from_exception(exc: BaseException, latency_ms: float, timeout: float) -> Outcome:
    """Classify what the POST raised.

    Cancellation and other BaseExceptions that are not Exceptions are re-raised: they
    are not a delivery result. An unexpected Exception counts as a connection error,
    so the record is retried rather than lost, with its class named in the error.
    """
    if not isinstance(exc, Exception):
        raise exc
    refused = _refusal(exc)
    if refused is not None:
        return refused_outcome(refused, latency_ms)
    if isinstance(exc, TimeoutError):  # asyncio's, and aiohttp.ServerTimeoutError
        return _failure(OutcomeKind.TIMEOUT, f"timed out after {timeout:.1f} s", latency_ms)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return _failure(OutcomeKind.INVALID_URL, _describe("invalid URL", exc), latency_ms)
    if isinstance(exc, aiohttp.ClientError):
        return _failure(OutcomeKind.CONNECTION_ERROR, _client_error(exc), latency_ms)
    if isinstance(exc, ValueError):  # yarl and the IDNA codec raise it for bad URLs
        return _failure(OutcomeKind.INVALID_URL, _describe("invalid URL", exc), latency_ms)
    if isinstance(exc, OSError):  # a reset can escape aiohttp unwrapped
        return _failure(OutcomeKind.CONNECTION_ERROR, _named(exc), latency_ms)
    logger.warning("unexpected %s while delivering, treated as retryable", type(exc).__name__)
    return _failure(OutcomeKind.CONNECTION_ERROR, "unexpected " + _named(exc), latency_ms)


def refused_outcome(reason: str, latency_ms: float = 0.0) -> Outcome:
    return _failure(OutcomeKind.REFUSED, f"refused by the SSRF guard: {reason}", latency_ms)


def _refusal(exc: Exception) -> str | None:
    # The guard's resolver raises AddressRefused; aiohttp wraps it as a DNS error.
    inner = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    return inner.reason if isinstance(inner, AddressRefused) else None


def _failure(kind: OutcomeKind, error: str, latency_ms: float) -> Outcome:
    return Outcome(kind, None, error, None, latency_ms)


def _client_error(exc: aiohttp.ClientError) -> str:
    # Most specific first: the DNS, TLS and refused errors are ClientConnectorErrors.
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _describe("DNS lookup failed", exc)
    if isinstance(exc, aiohttp.ClientSSLError):
        return _describe("TLS error", exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = exc.os_error.errno == errno.ECONNREFUSED
        return _describe("connection refused" if refused else "cannot connect", exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _describe("server disconnected", exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _describe("response payload error", exc)
    if isinstance(exc, aiohttp.ClientOSError):
        return _describe("connection error", exc)
    return _named(exc)


def _describe(label: str, exc: BaseException) -> str:
    detail = str(exc)
    return f"{label}: {detail}" if detail else label


def _named(exc: BaseException) -> str:
    return _describe(type(exc).__name__, exc)
