"""The audit topic, followed: the newest entries per account, for `GET /api/v1/audit`.

Followed from its beginning without a consumer group (`kafka.TopicFollower`), like the
attempt log, so every admin replica shows every change, whichever replica (or the CLI)
made it. What is kept in memory is bounded twice: at most `SYNCTEC_AUDIT_PER_ACCOUNT`
entries per account, among the newest `SYNCTEC_AUDIT_KEPT` of all accounts; each as the
record's bytes, decoded when asked for. The topic itself keeps
`SYNCTEC_AUDIT_RETENTION_DAYS` of entries: the trail of record.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import SerializationError
from synctec_webhooks.kafka import CatchUps, TopicFollower
from synctec_webhooks.recent import RecentByKey
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

__all__ = ["AuditLog"]

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, settings: Settings, codec: Codec, client_id: str = "admin-audit") -> None:
        self._codec = codec
        self.topic = Topics(settings.topic_prefix).audit
        self._recent = RecentByKey(settings.audit_per_account, settings.audit_kept)
        self._follower = TopicFollower(settings, self.topic, client_id, self._on_batch)
        self._current = CatchUps(self._follower.catch_up)

    async def start(self) -> None:
        """Read the topic to its current end, then follow it in the background."""
        asked_at = time.time()
        await self._follower.start()
        self._current.loaded(asked_at)

    async def sync(self) -> None:
        """Return once every entry written before now is kept (or evicted)."""
        await self._current.wait(time.time())

    async def _on_batch(self, msgs: list[Message]) -> None:
        for msg in msgs:
            raw = msg.value()
            if not raw:
                continue
            try:
                _, record = self._codec.decode(self.topic, raw)
            except SerializationError as exc:
                logger.warning("skipping an unreadable audit record: %s", exc)
                continue
            self._recent.keep(sys.intern(str(record["account_id"])), raw)

    def _newest(self, account_id: str) -> Iterator[dict[str, Any]]:
        for raw in self._recent.newest(account_id):
            yield self._codec.decode(self.topic, raw)[1]

    def recent(self, account_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first: of one account, or of all."""
        if account_id is not None:
            return list(itertools.islice(self._newest(account_id), limit))
        merged = heapq.merge(
            *(self._newest(a) for a in self._recent.keys()),
            key=lambda e: e["at"],
            reverse=True,
        )
        return list(itertools.islice(merged, limit))

    @property
    def kept(self) -> int:
        return self._recent.kept

    async def stop(self) -> None:
        await self._follower.stop()
