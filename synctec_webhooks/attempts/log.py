"""The attempts topic, followed: recent attempts per webhook, and each one to a callback.

Read from its beginning without a consumer group (like the subscription table), so
every admin replica sees every attempt; each webhook keeps its newest
`SYNCTEC_ATTEMPTS_PER_WEBHOOK` in memory, older ones are dropped. The topic itself is
bounded by its retention (a week).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import (
    AsyncConsumer,
    TopicAdmin,
    base_config,
    data_messages,
    stop_following,
)
from synctec_webhooks.serialization import Codec, SerializationError
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

OnAttempt = Callable[[dict[str, Any]], Awaitable[None]]


class AttemptLog:
    def __init__(self, settings: Settings, codec: Codec, on_attempt: OnAttempt) -> None:
        self._settings = settings
        self._codec = codec
        self._on_attempt = on_attempt
        self.topic = Topics(settings.topic_prefix).attempts
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self._consumer: AsyncConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the topic to its current end, then follow it in the background."""
        count = await asyncio.to_thread(TopicAdmin(self._settings).partitions, self.topic)
        conf = base_config(self._settings, "admin-attempts")
        conf.update(
            {
                "group.id": f"{self._settings.topic_prefix}.unused-attempts-reader",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
            }
        )
        self._consumer = AsyncConsumer(conf)
        partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(count)]
        self._consumer.consumer.assign(partitions)
        ends = await asyncio.to_thread(self._high_watermarks, partitions)
        while ends:
            await self._poll()
            done = await self._consumer.call(self._consumer.consumer.position, partitions)
            for tp in done:
                if tp.partition in ends and tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        self._task = asyncio.create_task(self._follow(), name="attempts-follow")

    def _high_watermarks(self, partitions: list[TopicPartition]) -> dict[int, int]:
        assert self._consumer is not None
        ends = {}
        for tp in partitions:
            _, high = self._consumer.consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10, cached=False
            )
            if high > 0:
                ends[tp.partition] = high
        return ends

    async def _follow(self) -> None:
        while True:
            await self._poll()

    async def _poll(self) -> None:
        assert self._consumer is not None
        for msg in data_messages(await self._consumer.consume(500, 0.2), self.topic):
            try:
                _, record = self._codec.decode(self.topic, msg.value() or b"")
            except SerializationError as exc:
                logger.warning("skipping an unreadable attempt record: %s", exc)
                continue
            self._keep(record)
            try:
                await self._on_attempt(record)
            except Exception:
                # Health bookkeeping must not stop the log; the next attempt tries again.
                logger.exception("handling attempt of %s failed", record.get("webhook_id"))

    def _keep(self, record: dict[str, Any]) -> None:
        recent = self._recent.get(record["webhook_id"])
        if recent is None:
            limit = self._settings.attempts_per_webhook
            recent = self._recent[record["webhook_id"]] = deque(maxlen=limit)
        recent.append(record)

    def recent(self, webhook_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest attempts first."""
        found = list(reversed(self._recent.get(webhook_id, ())))
        return found[:limit] if limit is not None else found

    def last(self, webhook_id: str) -> dict[str, Any] | None:
        recent = self._recent.get(webhook_id)
        return recent[-1] if recent else None

    def forget(self, webhook_id: str) -> None:
        self._recent.pop(webhook_id, None)

    async def stop(self) -> None:
        await stop_following(self._task, self._consumer)
