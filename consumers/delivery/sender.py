"""The HTTP side of a delivery: one signed POST, classified into an `Outcome`.

One aiohttp session per worker: keep-alive connections are pooled per host, redirects
are never followed (a 3xx is a failed attempt, so a webhook cannot be bounced to an
address nobody checked), the response body is read up to a cap and thrown away (only
the status matters, and a hostile endpoint must not make us buffer gigabytes).

Every connection goes through the SSRF guard (synctec_webhooks/ssrf.py): host names are
resolved by `GuardedResolver`, which hands aiohttp only addresses that passed, and IP
literals (which aiohttp never resolves) are checked here before the request.
"""

from __future__ import annotations

import time

import aiohttp
from yarl import URL

from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.outcome import (
    Outcome,
    from_exception,
    from_response,
    refused_outcome,
)
from synctec_webhooks.ssrf import Guard, GuardedResolver, ip_literal

_REFUSALS_CACHE = 100_000  # URLs whose IP-literal check a worker remembers
# The StoreLink account the delivery belongs to, beside the signed headers (README).
ACCOUNT_HEADER = "X-StoreLink-Account"


class Sender:
    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.http_timeout
        self._body_limit = settings.response_body_limit
        self._limit = settings.max_in_flight
        self._session: aiohttp.ClientSession | None = None
        self._guard = Guard.from_cidrs(settings.allow_private_networks)
        self._refusals: dict[str, str | None] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._guard, aiohttp.DefaultResolver()),
            limit=self._limit,
            limit_per_host=0,  # the per-endpoint cap is the dispatcher's, by webhook
            keepalive_timeout=30,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # The header is ours; the default one would leak the aiohttp version.
            headers={"User-Agent": "StoreLink-Webhooks/1.0"},
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        assert self._session is not None, "Sender.start() first"
        started = time.monotonic()
        refused = self._refused_literal(url)
        if refused is not None:
            return refused_outcome(refused)
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as resp:
                await resp.content.read(self._body_limit)
                latency = (time.monotonic() - started) * 1000
                return from_response(resp.status, resp.headers, latency, time.time())
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as exc:
            latency = (time.monotonic() - started) * 1000
            return from_exception(exc, latency, self._timeout)

    def _refused_literal(self, url: str) -> str | None:
        # Per URL once: parsing the URL on every POST was 2% of a worker's CPU.
        if url in self._refusals:
            return self._refusals[url]
        if len(self._refusals) >= _REFUSALS_CACHE:
            self._refusals.clear()
        refusal = self._refusals[url] = self._check_literal(url)
        return refusal

    def _check_literal(self, url: str) -> str | None:
        try:
            host = URL(url).raw_host
        except ValueError:
            return None  # aiohttp reports the invalid URL itself
        literal = ip_literal(host) if host else None
        return self._guard.refusal(literal) if literal is not None else None
