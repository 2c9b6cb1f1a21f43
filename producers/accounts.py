"""Writes accounts and API keys to their compacted topics, waiting for the broker's ack.

`<prefix>.accounts` is keyed by account id, `<prefix>.api-keys` by key id; the latest
record of a key is the truth (a revoked key is its record with `revoked_at` set, so the
list still shows it). Readers follow both topics (`account_table.AccountTable`); a
writer that must see its own write before it answers calls the table's `sync()`.
"""

from __future__ import annotations

import asyncio

from synctec_webhooks import schemas
from synctec_webhooks.accounts import Account, ApiKey
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import AsyncProducer, TopicAdmin, core_topics, produce_until_acked
from synctec_webhooks.serialization import Codec, make_codec
from synctec_webhooks.topics import Topics

__all__ = ["AccountWriter"]


class AccountWriter:
    """`put_account` / `put_key`, each returning once the broker acknowledged it.

    Shares `producer` when given (the admin service's), else has its own, which
    `close()` closes."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec | None = None,
        producer: AsyncProducer | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec or make_codec(settings.schema_registry_url)
        self._topics = Topics(settings.topic_prefix)
        self._own = producer is None
        self._producer = producer or AsyncProducer(settings, "accounts-writer")
        self._ensured = False

    async def _ensure_topics(self) -> None:
        if not self._ensured:
            admin = TopicAdmin(self._settings)
            await asyncio.to_thread(admin.ensure, core_topics(self._settings))
            self._ensured = True

    async def put_account(self, account: Account) -> None:
        await self._ensure_topics()
        topic = self._topics.accounts
        value = self._codec.encode(topic, schemas.ACCOUNT, account.record())
        await produce_until_acked(self._producer, topic, value, account.id)

    async def put_key(self, key: ApiKey) -> None:
        await self._ensure_topics()
        topic = self._topics.api_keys
        value = self._codec.encode(topic, schemas.API_KEY, key.record())
        await produce_until_acked(self._producer, topic, value, key.id)

    def close(self) -> None:
        if self._own:
            self._producer.close()
