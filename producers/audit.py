"""Writes audit entries (`audit.entry`) to `<prefix>.audit`, keyed by account id, so one
account's trail stays in order; each write returns once the broker acknowledged it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from synctec_webhooks import audit, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import AsyncProducer, TopicAdmin, core_topics, produce_until_acked
from synctec_webhooks.serialization import Codec, make_codec
from synctec_webhooks.topics import Topics

__all__ = ["AuditWriter"]


class AuditWriter:
    """`record(...)` builds and writes one entry; `write(entry)` writes one built with
    `audit.entry`. Shares `producer` when given, else has its own (`close()`)."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec | None = None,
        producer: AsyncProducer | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec or make_codec(settings.schema_registry_url)
        self.topic = Topics(settings.topic_prefix).audit
        self._own = producer is None
        self._producer = producer or AsyncProducer(settings, "audit-writer")
        self._ensured = False

    async def write(self, entry: dict[str, Any]) -> None:
        if not self._ensured:
            admin = TopicAdmin(self._settings)
            await asyncio.to_thread(admin.ensure, core_topics(self._settings))
            self._ensured = True
        value = self._codec.encode(self.topic, schemas.AUDIT_ENTRY, entry)
        await produce_until_acked(self._producer, self.topic, value, entry["account_id"])

    async def record(
        self,
        account_id: str,
        action: str,
        actor: audit.Actor,
        target_id: str | None = None,
        detail: str | None = None,
        now_ms: int | None = None,
    ) -> dict[str, Any]:
        """Write one entry (see `audit.entry`); the entry written."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        entry = audit.entry(account_id, action, actor, now_ms, target_id, detail)
        await self.write(entry)
        return entry

    def close(self) -> None:
        if self._own:
            self._producer.close()
