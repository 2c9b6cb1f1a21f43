"""The attempts topic, followed: recent attempts per webhook, and each one to a callback.

Followed from its beginning without a consumer group (`kafka.TopicFollower`, like the
subscription table), so every admin replica sees every attempt. The topic holds a week
of POSTs, which can be millions (10,000 webhooks x 100 attempts each is a million), so
what is kept in memory is bounded twice: at most `SYNCTEC_ATTEMPTS_PER_WEBHOOK` (100) per
webhook, among the newest `SYNCTEC_ATTEMPTS_KEPT` (200,000) of all webhooks; plus every
webhook's last attempt, for its "last attempt" column. Each is kept as the record's
bytes (about 260 with what holds them; a decoded dict takes four times that) and is
decoded when asked for.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import Message

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import SerializationError
from synctec_webhooks.kafka import TopicFollower
from synctec_webhooks.recent import RecentByKey
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

OnAttempt = Callable[[dict[str, Any]], Awaitable[None]]


class AttemptLog:
    def __init__(self, settings: Settings, codec: Codec, on_attempt: OnAttempt) -> None:
        self._codec = codec
        self._on_attempt = on_attempt
        self.topic = Topics(settings.topic_prefix).attempts
        self._recent = RecentByKey(settings.attempts_per_webhook, settings.attempts_kept)
        self._last: dict[str, bytes] = {}
        self._follower = TopicFollower(
            settings, self.topic, "admin-attempts", self._on_batch, wait=0.2
        )

    async def start(self) -> None:
        """Read the topic to its current end, then follow it in the background."""
        await self._follower.start()

    async def _on_batch(self, msgs: list[Message]) -> None:
        for msg in msgs:
            raw = msg.value() or b""
            try:
                _, record = self._codec.decode(self.topic, raw)
            except SerializationError as exc:
                logger.warning("skipping an unreadable attempt record: %s", exc)
                continue
            self._keep(sys.intern(record["webhook_id"]), raw)
            try:
                await self._on_attempt(record)
            except Exception:
                # Health bookkeeping must not stop the log; the next attempt tries again.
                logger.exception("handling attempt of %s failed", record.get("webhook_id"))

    def _keep(self, webhook_id: str, raw: bytes) -> None:
        self._recent.keep(webhook_id, raw)
        self._last[webhook_id] = raw

    @property
    def kept(self) -> int:
        """Attempts held in the per-webhook rings (last attempts aside)."""
        return self._recent.kept

    def _decode(self, raw: bytes) -> dict[str, Any]:
        return self._codec.decode(self.topic, raw)[1]

    def recent(self, webhook_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest attempts first."""
        newest = self._recent.newest(webhook_id)
        return [self._decode(raw) for raw in itertools.islice(newest, limit)]

    def last(self, webhook_id: str) -> dict[str, Any] | None:
        raw = self._last.get(webhook_id)
        return self._decode(raw) if raw is not None else None

    def forget(self, webhook_id: str) -> None:
        self._recent.forget(webhook_id)
        self._last.pop(webhook_id, None)

    async def stop(self) -> None:
        await self._follower.stop()
