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
from collections import deque
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import SerializationError
from synctec_webhooks.kafka import CatchUps, TopicFollower
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

__all__ = ["AuditLog"]

logger = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, settings: Settings, codec: Codec, client_id: str = "admin-audit") -> None:
        self._codec = codec
        self._per_account = settings.audit_per_account
        self._budget = settings.audit_kept
        self.topic = Topics(settings.topic_prefix).audit
        self._recent: dict[str, deque[bytes]] = {}  # per account, oldest first
        # The account of every entry kept, in the order they came (the eviction order),
        # and per account how many of its oldest entries there its own ring dropped
        # already (as in attempts/log.py).
        self._order: deque[str] = deque()
        self._stale: dict[str, int] = {}
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
            self._keep(sys.intern(str(record["account_id"])), raw)

    def _keep(self, account_id: str, raw: bytes) -> None:
        ring = self._recent.get(account_id)
        if ring is None:
            ring = self._recent[account_id] = deque()
        ring.append(raw)
        self._order.append(account_id)
        if len(ring) > self._per_account:
            ring.popleft()
            self._stale[account_id] = self._stale.get(account_id, 0) + 1
        while len(self._order) > self._budget:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        account_id = self._order.popleft()
        stale = self._stale.get(account_id, 0)
        if stale > 1:
            self._stale[account_id] = stale - 1
        elif stale == 1:
            del self._stale[account_id]
        else:
            ring = self._recent[account_id]
            ring.popleft()
            if not ring:
                del self._recent[account_id]

    def _newest(self, account_id: str) -> Iterator[dict[str, Any]]:
        for raw in reversed(self._recent.get(account_id, deque())):
            yield self._codec.decode(self.topic, raw)[1]

    def recent(self, account_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first: of one account, or of all."""
        if account_id is not None:
            return list(itertools.islice(self._newest(account_id), limit))
        merged = heapq.merge(
            *(self._newest(a) for a in list(self._recent)),
            key=lambda e: e["at"],
            reverse=True,
        )
        return list(itertools.islice(merged, limit))

    @property
    def kept(self) -> int:
        return sum(len(r) for r in self._recent.values())

    async def stop(self) -> None:
        await self._follower.stop()
