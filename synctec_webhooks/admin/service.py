"""The admin service: what the API does, behind the HTTP layer (admin/api.py).

Served by `AdminServer` (admin/server.py), the `admin` process role. It keeps its own view
of the subscriptions (the shared `SubscriptionTable`) and of recent attempts
(`AttemptLog`), writes subscriptions through the same `SubscriptionWriter` as the CLI,
and disables webhooks that `HealthTracker` judges unhealthy. Every write waits for the
broker's ack and for the table to have applied it, so a GET right after a write sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from synctec_webhooks import schemas, webhooks
from synctec_webhooks.admin.errors import ApiError, not_found
from synctec_webhooks.admin.sample_events import build_test_delivery, default_type
from synctec_webhooks.attempts.endpoint_health import HealthTracker
from synctec_webhooks.attempts.log import AttemptLog
from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.errors import ConfigError
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked
from synctec_webhooks.matching import Subscription
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import Codec
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16


def check_token(token: str | None) -> str:
    if not token:
        raise ConfigError(
            "SYNCTEC_ADMIN_TOKEN is not set: the admin API needs a bearer token; set it to a "
            "long random string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"SYNCTEC_ADMIN_TOKEN: use at least {MIN_TOKEN_LENGTH} characters")
    return token


class AdminService:
    def __init__(self, settings: Settings, codec: Codec, table: SubscriptionTable) -> None:
        self.settings = settings
        self.token = check_token(settings.admin_token)
        self.codec = codec
        self.table = table
        self.topics = Topics(settings.topic_prefix)
        self.health = HealthTracker(settings.disable_after_failures)
        self.attempts = AttemptLog(settings, codec, self._on_attempt)
        self._writer: SubscriptionWriter | None = None
        self._dead_letters: DeadLetters | None = None
        self._producer: AsyncProducer | None = None
        self._lock = asyncio.Lock()  # one read-modify-write of a subscription at a time

    # --- lifecycle (driven by admin/server.py) ----------------------------------------

    async def start(self) -> None:
        """Open the writers and replay the attempts topic; the API may serve after this."""
        self._writer = await asyncio.to_thread(SubscriptionWriter, self.settings, self.codec)
        self._writer.box  # noqa: B018 - make or load the key now, not on the first request
        self._dead_letters = await asyncio.to_thread(DeadLetters, self.settings, self.codec)
        self._producer = AsyncProducer(self.settings, "admin")
        await self.attempts.start()

    async def close(self) -> None:
        await self.attempts.stop()
        if self._producer is not None:
            self._producer.close()

    @property
    def writer(self) -> SubscriptionWriter:
        assert self._writer is not None, "AdminService.start() first"
        return self._writer

    # --- webhooks -------------------------------------------------------------------

    def all(self) -> list[Subscription]:
        return sorted(self.table.index.all(), key=lambda s: (s.created_at, s.id))

    def get(self, webhook_id: str) -> Subscription:
        sub = self.table.get(webhook_id)
        if sub is None:
            raise not_found(f"webhook {webhook_id}")
        return sub

    async def _saved(self, sub: Subscription) -> None:
        await asyncio.to_thread(self.writer.put, sub)
        await self.table.sync(time.time())

    async def create(self, url: str, events: list[str], description: str | None) -> Subscription:
        sub = await asyncio.to_thread(self.writer.add, url, events, description)
        await self.table.sync(time.time())
        return sub

    async def patch(self, webhook_id: str, changes: dict[str, Any]) -> Subscription:
        async with self._lock:
            sub = self.get(webhook_id)
            new = await asyncio.to_thread(
                webhooks.patched, sub, changes, guard=self.writer.guard, now_ms=_now_ms()
            )
            await self._saved(new)
        return self.get(webhook_id)

    async def delete(self, webhook_id: str) -> None:
        async with self._lock:
            self.get(webhook_id)
            await asyncio.to_thread(self.writer.remove, webhook_id, True)
            await self.table.sync(time.time())
        self.attempts.forget(webhook_id)
        self.health.forget(webhook_id)

    async def rotate(self, webhook_id: str) -> Subscription:
        async with self._lock:
            sub = self.get(webhook_id)
            grace_ms = int(self.settings.rotation_grace * 1000)
            new = webhooks.rotated(sub, box=self.writer.box, now_ms=_now_ms(), grace_ms=grace_ms)
            await self._saved(new)
        return new

    async def send_test(self, webhook_id: str, event_type: str | None) -> dict[str, Any]:
        sub = self.get(webhook_id)
        if not sub.enabled:
            raise ApiError(
                409,
                "webhook_disabled",
                f"webhook {webhook_id} is disabled; enable it first "
                '(PATCH {"enabled": true}), then send a test',
            )
        planned = build_test_delivery(sub, event_type or default_type(sub), datetime.now(UTC))
        topic = self.topics.delivery(sub.id)
        await asyncio.to_thread(self.writer.ensure_delivery_topic, sub.id)
        value = self.codec.encode(topic, schemas.DELIVERY, planned.record)
        assert self._producer is not None
        await produce_until_acked(self._producer, topic, value, planned.key)
        rec = planned.record
        return {
            "webhook_id": sub.id,
            "event_id": rec["event_id"],
            "event_type": rec["event_type"],
            "delivery_id": rec["delivery_id"],
        }

    # --- health ---------------------------------------------------------------------

    async def _on_attempt(self, record: dict[str, Any]) -> None:
        webhook_id = record["webhook_id"]
        reason = self.health.observe(record, self.table.get(webhook_id))
        if reason is None:
            return
        async with self._lock:
            sub = self.table.get(webhook_id)
            if sub is None or not sub.enabled:
                return
            logger.warning("disabling webhook %s: %s", webhook_id, reason)
            await self._saved(webhooks.disabled(sub, reason, _now_ms()))

    # --- dead letters -----------------------------------------------------------------

    async def dead_letters(self, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        assert self._dead_letters is not None
        views = await asyncio.to_thread(
            self._dead_letters.list,
            filters.get("webhook_id"),
            filters.get("event_id"),
            filters.get("event_type"),
        )
        newest = sorted(views, key=lambda v: v.record["failed_at"], reverse=True)
        return [v.summary() for v in newest[:limit]]

    async def replay(self, filters: dict[str, Any]) -> tuple[int, int]:
        assert self._dead_letters is not None
        return await asyncio.to_thread(
            self._dead_letters.replay,
            filters.get("webhook_id"),
            filters.get("event_id"),
            filters.get("event_type"),
            filters.get("dead_letter_ids"),
        )


def _now_ms() -> int:
    return int(time.time() * 1000)
