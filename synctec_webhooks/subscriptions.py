"""The subscription table: a compacted topic, followed into an in-memory index.

Every worker that needs subscriptions (the fan-out to match, the delivery and retry
workers for URL and secret) keeps its own copy by following the compacted topic from the
beginning without a consumer group (`kafka.TopicFollower`). `sync(t)` answers "is every
subscription written before time t applied?" by catching up with freshly fetched high
watermarks; the fan-out calls it before matching an event so a webhook added just
before an event is never missed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import astuple
from typing import Any

from confluent_kafka import Message

from synctec_webhooks import deadletters
from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.writer import DeadLetterWriter
from synctec_webhooks.errors import InvalidSubscription, SerializationError
from synctec_webhooks.kafka import CatchUps, TopicAdmin, TopicFollower, core_topics, position
from synctec_webhooks.matching import Subscription, SubscriptionIndex
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

_STATE_FIELDS = ("rotation_ends_at", "disabled_reason", "disabled_at", "enabled_at")


def to_record(sub: Subscription) -> dict[str, Any]:
    """The Avro record. A sealed subscription's clear `secret` never reaches the topic."""
    return {
        "id": sub.id,
        "account_id": sub.account_id,
        "url": sub.url,
        "events": list(sub.events),
        "secret": "" if sub.sealed_secrets else sub.secret,
        "description": sub.description,
        "enabled": sub.enabled,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "sealed_secrets": sub.sealed_secrets,
        **{name: getattr(sub, name) for name in _STATE_FIELDS},
        "max_in_flight": sub.max_in_flight,
        "rate_limit": sub.rate_limit,
    }


def from_record(rec: dict[str, Any]) -> Subscription:
    return Subscription(
        id=rec["id"],
        url=rec["url"],
        events=tuple(rec["events"]),
        secret=rec["secret"],
        description=rec.get("description"),
        enabled=rec.get("enabled", True),
        created_at=rec.get("created_at", 0),
        updated_at=rec.get("updated_at", 0),
        sealed_secrets=rec.get("sealed_secrets"),
        rotation_ends_at=rec.get("rotation_ends_at", 0),
        disabled_reason=rec.get("disabled_reason"),
        disabled_at=rec.get("disabled_at", 0),
        enabled_at=rec.get("enabled_at", 0),
        max_in_flight=rec.get("max_in_flight"),
        rate_limit=rec.get("rate_limit"),
        account_id=rec.get("account_id") or DEFAULT_ACCOUNT,
    )


class SubscriptionTable:
    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        client_id: str = "subscriptions",
        dead_letters: DeadLetterWriter | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._topic = Topics(settings.topic_prefix).subscriptions
        self.index = SubscriptionIndex()
        self._follower = TopicFollower(settings, self._topic, client_id, self._on_batch)
        self._current = CatchUps(self._follower.catch_up)
        self.poison_count = 0
        # One reader per deployment should dead-letter poison records (the fan-out's);
        # the others only skip them. Re-reading the topic after a restart writes the
        # same dead-letter id again, which `dead-letters list` shows once.
        self._dead_letters = dead_letters

    async def start(self) -> None:
        """Create the topic if needed, load it to the end, then follow it in the background."""
        admin = TopicAdmin(self._settings)
        await asyncio.to_thread(admin.ensure, core_topics(self._settings))
        asked_at = time.time()
        await self._follower.start(admin)
        self._current.loaded(asked_at)
        logger.info("subscription table loaded: %d webhooks", len(self.index))

    async def _on_batch(self, msgs: list[Message]) -> None:
        for msg in msgs:
            problem = self._apply(msg.key(), msg.value())
            if problem is not None:
                await self._poison(msg, *problem)

    def _apply(self, key: bytes | None, value: bytes | None) -> tuple[str, str] | None:
        """Apply one record; (reason, detail) when it is not a usable subscription."""
        if value is None:
            if key is not None:
                self.index.remove(key.decode())
            return None
        try:
            _, rec = self._codec.decode(self._topic, value)
        except SerializationError as exc:
            return deadletters.UNDECODABLE, str(exc)
        try:
            sub = from_record(rec)
        except InvalidSubscription as exc:  # a limit a worker cannot use, say
            return deadletters.INVALID_SUBSCRIPTION, f"not a usable subscription: {exc}"
        except (KeyError, TypeError, ValueError) as exc:
            return deadletters.INVALID_SUBSCRIPTION, f"not a usable subscription: {exc!r}"
        self.index.upsert(sub)
        return None

    async def _poison(self, msg: Message, reason: str, detail: str) -> None:
        # A bad subscription record must not stop the table: skip it, keep it visible.
        self.poison_count += 1
        source = deadletters.Source(*position(msg))
        logger.error("skipping subscription record at %s/%d@%d: %s", *astuple(source), detail)
        if self._dead_letters is not None:
            await self._dead_letters.write(reason, detail, source, raw=msg.value())

    async def sync(self, not_before: float) -> None:
        """Return once every record written to the topic before `not_before` is applied.

        Waits as long as it takes: while the broker is away nothing can be matched
        correctly anyway, and the callers hold their offsets meanwhile.
        """
        await self._current.wait(not_before)

    def get(self, sub_id: str) -> Subscription | None:
        return self.index.get(sub_id)

    async def lookup(self, sub_id: str) -> Subscription | None:
        """The subscription, catching up first when it is not known yet (new webhook)."""
        sub = self.index.get(sub_id)
        if sub is None:
            await self.sync(time.time())
            sub = self.index.get(sub_id)
        return sub

    async def stop(self) -> None:
        await self._follower.stop()
