"""Writes webhook subscriptions to the compacted subscriptions topic.

The topic is the source of truth: `add` writes a record keyed by the webhook id,
`remove` writes a tombstone, `list` reads the topic to its end. The per-endpoint
delivery topic is created when the webhook is added, so the delivery workers' pattern
subscription finds it before the first delivery record arrives.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import replace

from confluent_kafka import KafkaError, Message

from synctec_webhooks import schemas, webhooks
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import InvalidSubscription
from synctec_webhooks.kafka import TopicAdmin, core_topics, delivery_topic_spec, new_producer
from synctec_webhooks.matching import Subscription
from synctec_webhooks.secrets_crypto import SecretBox, load_box
from synctec_webhooks.serialization import Codec, make_codec
from synctec_webhooks.ssrf import Guard
from synctec_webhooks.subscriptions import SubscriptionTable, to_record
from synctec_webhooks.topics import Topics
from synctec_webhooks.webhooks import new_webhook_id, parse_event_types

__all__ = ["InvalidSubscription", "SubscriptionWriter", "new_webhook_id", "parse_event_types"]


class SubscriptionWriter:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self._settings = settings
        self._codec = codec or make_codec(settings.schema_registry_url)
        self._topics = Topics(settings.topic_prefix)
        self._admin = TopicAdmin(settings)
        self._admin.ensure(core_topics(settings))
        self._producer = new_producer(settings, "subscriptions-writer")
        self.guard = Guard.from_cidrs(settings.allow_private_networks)
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        """The key that seals secrets; made (under the state dir) on first need if none."""
        if self._box is None:
            self._box = load_box(self._settings, create=True)
            assert self._box is not None
        return self._box

    def add(
        self,
        url: str,
        events: str | Sequence[str],
        description: str | None = None,
        secret: str | None = None,
        max_in_flight: int | None = None,
        rate_limit: float | None = None,
    ) -> Subscription:
        """Validate, then write. The returned subscription's `secret` is the clear secret,
        to be shown once; the topic only gets it sealed."""
        sub = webhooks.create(
            url,
            events,
            description,
            guard=self.guard,
            box=lambda: self.box,
            now_ms=int(time.time() * 1000),
            secret=secret,
        )
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidSubscription("max_in_flight", f"must be at least 1, got {max_in_flight}")
        if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0):
            raise InvalidSubscription("rate_limit", f"must be a number > 0, got {rate_limit}")
        sub = replace(sub, max_in_flight=max_in_flight, rate_limit=rate_limit)
        self._admin.ensure([delivery_topic_spec(self._settings, sub.id)])
        self.put(sub)
        return sub

    def ensure_delivery_topic(self, webhook_id: str) -> None:
        self._admin.ensure([delivery_topic_spec(self._settings, webhook_id)])

    def put(self, sub: Subscription) -> None:
        value = self._codec.encode(self._topics.subscriptions, schemas.SUBSCRIPTION, to_record(sub))
        self._write(sub.id, value)

    def remove(self, sub_id: str, known: bool = False) -> bool:
        """Write a tombstone; False when no such webhook exists (`known`: the caller
        checked already)."""
        if not known and not any(s.id == sub_id for s in self.list()):
            return False
        self._write(sub_id, None)
        return True

    def list(self) -> list[Subscription]:
        async def read() -> list[Subscription]:
            table = SubscriptionTable(self._settings, self._codec, client_id="subscriptions-list")
            await table.start()
            await table.stop()
            return sorted(table.index.all(), key=lambda s: (s.created_at, s.id))

        return asyncio.run(read())

    def _write(self, key: str, value: bytes | None) -> None:
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        self._producer.produce(
            self._topics.subscriptions, key=key, value=value, on_delivery=on_delivery
        )
        if self._producer.flush(30):
            raise RuntimeError("the broker did not acknowledge the subscription write within 30 s")
        if errors:
            raise RuntimeError(f"subscription write failed: {errors[0]}")
