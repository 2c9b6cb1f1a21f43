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
import uuid
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

import schemas
from consumers.delivery.outcome import validate_webhook_url
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import TopicAdmin, core_topics, delivery_topic_spec, producer_config
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import Codec, make_codec
from synctec_webhooks.signing import generate_secret
from synctec_webhooks.subscriptions import SubscriptionTable, to_record
from synctec_webhooks.topics import Topics

WILDCARD = "*"


class InvalidSubscription(ValueError):
    """A webhook we refuse to store; the message names the field."""


def parse_event_types(text: str | Sequence[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    types = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if not types:
        raise InvalidSubscription("events: give at least one event type, or '*' for all")
    unknown = [t for t in types if t != WILDCARD and t not in schemas.EVENT_TYPES]
    if unknown:
        raise InvalidSubscription(
            f"events: unknown event type {unknown[0]!r}; "
            f"choose from {', '.join(schemas.EVENT_TYPES)} or '*'"
        )
    return (WILDCARD,) if WILDCARD in types else types


def new_webhook_id() -> str:
    return "wh_" + uuid.uuid4().hex[:24]


class SubscriptionWriter:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self._settings = settings
        self._codec = codec or make_codec(settings.schema_registry_url)
        self._topics = Topics(settings.topic_prefix)
        self._admin = TopicAdmin(settings)
        self._admin.ensure(core_topics(settings))
        self._producer = Producer(producer_config(settings, "subscriptions-writer"))

    def add(
        self,
        url: str,
        events: str | Sequence[str],
        description: str | None = None,
        secret: str | None = None,
        max_in_flight: int | None = None,
        rate_limit: float | None = None,
    ) -> Subscription:
        try:
            url = validate_webhook_url(url)
        except ValueError as exc:
            raise InvalidSubscription(str(exc)) from None
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidSubscription(f"max_in_flight: must be at least 1, got {max_in_flight}")
        if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0):
            raise InvalidSubscription(f"rate_limit: must be a number > 0, got {rate_limit}")
        now = int(time.time() * 1000)
        sub = Subscription(
            id=new_webhook_id(),
            url=url,
            events=parse_event_types(events),
            secret=secret or generate_secret(),
            description=description,
            enabled=True,
            created_at=now,
            updated_at=now,
            max_in_flight=max_in_flight,
            rate_limit=rate_limit,
        )
        self._admin.ensure([delivery_topic_spec(self._settings, sub.id)])
        self.put(sub)
        return sub

    def put(self, sub: Subscription) -> None:
        value = self._codec.encode(self._topics.subscriptions, schemas.SUBSCRIPTION, to_record(sub))
        self._write(sub.id, value)

    def remove(self, sub_id: str) -> bool:
        """Write a tombstone; False when no such webhook exists."""
        if not any(s.id == sub_id for s in self.list()):
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
