"""The `admin` role: the admin service behind its aiohttp server.

Layers, each importing only the one below: `server` (this lifecycle) -> `api` (routes,
middlewares) -> `service` (what each route does) -> the core. The role is one process
(`synctec-webhooks admin`, also part of `run`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from synctec_webhooks.admin.api import build_app
from synctec_webhooks.admin.service import AdminService
from synctec_webhooks.config import Settings
from synctec_webhooks.serialization import Codec
from synctec_webhooks.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)


class AdminServer:
    role = "admin"

    def __init__(self, settings: Settings, codec: Codec, table: SubscriptionTable) -> None:
        self.settings = settings
        self.service = AdminService(settings, codec, table)
        self.url: str | None = None  # http://host:port once listening

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        service = self.service
        runner = web.AppRunner(build_app(service), access_log=None, handle_signals=False)
        try:
            await service.start()  # the account table and audit log too; stopped by close()
            await runner.setup()
            site = web.TCPSite(runner, self.settings.admin_host, self.settings.admin_port)
            await site.start()
            server = site._server
            assert server is not None
            host, port = server.sockets[0].getsockname()[:2]  # type: ignore[attr-defined]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{port}"
            logger.info("admin consuming %s; API on %s/api/v1", service.attempts.topic, self.url)
            if ready is not None:
                ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()
            await service.close()

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: ready once the accounts and keys are loaded, the attempts and the
        audit trail replayed, and the API listens."""
        if self.url is None:
            return False, (
                "starting: loading accounts and API keys, replaying the attempts and audit "
                "topics, API not listening yet"
            )
        return True, f"API on {self.url}/api/v1"
