"""The attempts topic, followed: recent attempts per webhook, and each one to a callback.

Followed from its beginning without a consumer group (`kafka.TopicFollower`, like the
subscription table), so every admin replica sees every attempt; each webhook keeps its newest
`SYNCTEC_ATTEMPTS_PER_WEBHOOK` in memory, older ones are dropped. The topic itself is
bounded by its retention (a week).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import Message

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import SerializationError
from synctec_webhooks.kafka import TopicFollower
from synctec_webhooks.serialization import Codec
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
        self._follower = TopicFollower(
            settings, self.topic, "admin-attempts", self._on_batch, wait=0.2
        )

    async def start(self) -> None:
        """Read the topic to its current end, then follow it in the background."""
        await self._follower.start()

    async def _on_batch(self, msgs: list[Message]) -> None:
        for msg in msgs:
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
        await self._follower.stop()
