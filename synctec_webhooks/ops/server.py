"""The operations endpoint every service serves: /metrics, /healthz, /readyz.

One small aiohttp server per process, on the process's own event loop:

    /metrics   the process's `Metrics` registry in the Prometheus text format
    /healthz   200 while the event loop answers (liveness: restart me if not)
    /readyz    200 when every registered check passes, else 503, JSON either way

Services register what "ready" means for them with `add_check(name, check)`; the
workers do it in `app.run_workers`. Another service (the admin API) starts its own
`OpsServer(settings, roles=["admin"])` and registers its checks the same way, or mounts
`routes()` on its own aiohttp app. Values that are cheaper to read at scrape time than to
keep current (the subscription counts) are registered with `on_scrape`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self, cast

from aiohttp import web
from confluent_kafka import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from synctec_webhooks import kafka
from synctec_webhooks.config import Settings
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

CheckResult = tuple[bool, str]
Check = Callable[[], CheckResult | Awaitable[CheckResult]]

CHECK_TIMEOUT = 5.0  # seconds a readiness check may take before it counts as failed
SUBSCRIPTIONS_GRACE = 5.0  # seconds a subscription may take to reach the table


class OpsServer:
    def __init__(
        self,
        settings: Settings,
        roles: Iterable[str],
        metrics: Metrics | None = None,
    ) -> None:
        self.roles = list(roles)
        self.metrics = metrics or Metrics.create(
            retry_tiers=len(settings.retry.delays),
            per_webhook=settings.ops.per_webhook,
            per_webhook_cap=settings.ops.per_webhook_cap,
            per_account=settings.ops.per_account,
            per_account_cap=settings.ops.per_account_cap,
        )
        self._host = settings.ops.host
        self._port = settings.ops.port_for(self.roles)
        self._checks: dict[str, Check] = {}
        self._refreshers: list[Callable[[], None]] = []
        self._runner: web.AppRunner | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._started = time.monotonic()
        self._stop: asyncio.Event | None = None
        self.stopping = False
        self.port = 0

    # --- registration ------------------------------------------------------------

    def add_check(self, name: str, check: Check) -> None:
        """A readiness check: returns (ok, detail), sync or async."""
        self._checks[name] = check

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Called before each /metrics answer, on the event loop."""
        self._refreshers.append(refresh)

    def follow(self, stop: asyncio.Event) -> None:
        """Not ready from the moment `stop` is set: the process is draining."""
        self._stop = stop

    # --- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/metrics", self._metrics),
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
        ]

    async def start(self) -> Self:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                exc.errno,
                f"cannot serve /metrics on {self._host}:{self._port} ({exc.strerror}); "
                "set SYNCTEC_METRICS_PORT (0 picks a free port)",
            ) from exc
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._remove_listener = kafka.add_error_listener(self._kafka_error)
        logger.info("%s serving /metrics, /healthz, /readyz on %s", "+".join(self.roles), self.url)
        return self

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _kafka_error(self, err: KafkaError) -> None:
        # _DESTROY is every client's own close, not a problem.
        if err.code() != KafkaError._DESTROY:
            self.metrics.kafka_error(err.name())

    # --- handlers ----------------------------------------------------------------

    async def _metrics(self, _request: web.Request) -> web.Response:
        for refresh in self._refreshers:
            try:
                refresh()
            except Exception:
                # A broken refresher must not take the other metrics down with it.
                logger.exception("metrics refresher failed")
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        uptime = round(time.monotonic() - self._started, 1)
        return web.json_response({"status": "ok", "roles": self.roles, "uptime_s": uptime})

    async def _readyz(self, _request: web.Request) -> web.Response:
        results = await self.readiness()
        ready = all(ok for ok, _ in results.values())
        body = {
            "ready": ready,
            "checks": {name: {"ok": ok, "detail": d} for name, (ok, d) in results.items()},
        }
        return web.json_response(body, status=200 if ready else 503)

    async def readiness(self) -> dict[str, CheckResult]:
        if self.stopping or (self._stop is not None and self._stop.is_set()):
            return {"stopping": (False, "shutting down: finishing in-flight work")}
        if not self._checks:
            return {"started": (False, "no worker has registered yet")}
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        return dict(zip(names, outcomes, strict=True))

    @staticmethod
    async def _run(check: Check) -> CheckResult:
        try:
            pending = check()
            if inspect.isawaitable(pending):
                ok, detail = await asyncio.wait_for(pending, CHECK_TIMEOUT)
            else:
                ok, detail = cast(CheckResult, pending)
            return bool(ok), str(detail)
        except Exception as exc:  # a failing check is an answer: not ready, and why
            return False, f"check failed: {type(exc).__name__}: {exc}"


def subscriptions_check(table: SubscriptionTable, grace: float = SUBSCRIPTIONS_GRACE) -> Check:
    """Ready when every subscription written more than `grace` seconds ago is applied."""

    async def check() -> CheckResult:
        # Bounded by CHECK_TIMEOUT in readiness(): a table still catching up is not ready.
        await table.sync(time.time() - grace)
        return True, f"caught up: {len(table.index)} webhooks"

    return check
