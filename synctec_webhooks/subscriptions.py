"""The subscription table: a compacted topic, followed into an in-memory index.

Every worker that needs subscriptions (the fan-out to match, the delivery and retry
workers for URL and secret) keeps its own copy by reading the compacted topic from the
beginning with a group-less consumer. `sync(t)` answers "is every subscription written
before time t applied?" by comparing our position with freshly fetched high watermarks;
the fan-out calls it before matching an event so a webhook added just before an event
is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import astuple
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, TopicPartition

from synctec_webhooks import deadletters
from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.writer import DeadLetterWriter
from synctec_webhooks.kafka import (
    AsyncConsumer,
    TopicAdmin,
    base_config,
    core_topics,
    is_benign,
    position,
    stop_following,
)
from synctec_webhooks.matching import Subscription, SubscriptionIndex
from synctec_webhooks.serialization import Codec, SerializationError
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

_WARN_EVERY = 10.0  # seconds between warnings while waiting on the broker


_STATE_FIELDS = ("rotation_ends_at", "disabled_reason", "disabled_at", "enabled_at")


def to_record(sub: Subscription) -> dict[str, Any]:
    """The Avro record. A sealed subscription's clear `secret` never reaches the topic."""
    return {
        "id": sub.id,
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
        self._client_id = client_id
        self.index = SubscriptionIndex()
        self._consumer: AsyncConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._positions: dict[int, int] = {}
        self._advanced = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._synced_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.poison_count = 0
        # One reader per deployment should dead-letter poison records (the fan-out's);
        # the others only skip them. Re-reading the topic after a restart writes the
        # same dead-letter id again, which `dead-letters list` shows once.
        self._dead_letters = dead_letters

    async def start(self) -> None:
        """Create the topic if needed, load it to the end, then follow it in the background."""
        admin = TopicAdmin(self._settings)
        await asyncio.to_thread(admin.ensure, core_topics(self._settings))
        count = await asyncio.to_thread(admin.partitions, self._topic)
        conf = base_config(self._settings, self._client_id)
        conf.update(
            {
                "group.id": f"{self._settings.topic_prefix}.unused-subscriptions-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 100,
                "isolation.level": "read_committed",
            }
        )
        self._consumer = AsyncConsumer(conf)
        self._partitions = [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in range(count)]
        self._consumer.consumer.assign(self._partitions)
        self._task = asyncio.create_task(self._follow(), name="subscriptions-follow")
        await self.sync(time.time())
        logger.info("subscription table loaded: %d webhooks", len(self.index))

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            msgs = await self._consumer.consume(500, 0.1)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if not is_benign(err):
                        logger.warning("subscriptions topic: %s", err)
                    continue
                problem = self._apply(msg.key(), msg.value())
                if problem is not None:
                    await self._poison(msg, *problem)
            await self._update_positions()

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

    async def _update_positions(self) -> None:
        assert self._consumer is not None
        positions = await self._consumer.call(self._consumer.consumer.position, self._partitions)
        for tp in positions:
            if tp.offset >= 0:
                self._positions[tp.partition] = tp.offset
        self._advanced.set()

    async def sync(self, not_before: float) -> None:
        """Return once every record written to the topic before `not_before` is applied.

        Waits as long as it takes: while the broker is away nothing can be matched
        correctly anyway, and the callers hold their offsets meanwhile.
        """
        if self._synced_at >= not_before:
            return
        async with self._sync_lock:
            if self._synced_at >= not_before:
                return
            asked_at = time.time()
            targets = await self._high_watermarks()
            waited = 0.0
            while any(self._positions.get(p, 0) < hw for p, hw in targets.items()):
                self._advanced.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._advanced.wait(), _WARN_EVERY)
                waited += _WARN_EVERY
                if waited >= _WARN_EVERY and not self._advanced.is_set():
                    logger.warning("subscription table still catching up with %s", self._topic)
            self._synced_at = asked_at

    async def _high_watermarks(self) -> dict[int, int]:
        assert self._consumer is not None
        c = self._consumer.consumer

        def query() -> dict[int, int]:
            return {
                tp.partition: c.get_watermark_offsets(tp, timeout=10, cached=False)[1]
                for tp in (TopicPartition(p.topic, p.partition) for p in self._partitions)
            }

        # Ask until the broker answers: a topic created a moment ago may have no leader
        # yet, and a broker restarting takes seconds to serve its partitions again.
        failing_since: float | None = None
        while True:
            try:
                # Not on the consume thread: the query must not wait behind consume().
                return await asyncio.to_thread(query)
            except KafkaException as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                elif now - failing_since > _WARN_EVERY:
                    logger.warning("cannot read %s watermarks yet: %s", self._topic, exc)
                    failing_since = now
                await asyncio.sleep(0.2)

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
        await stop_following(self._task, self._consumer)
