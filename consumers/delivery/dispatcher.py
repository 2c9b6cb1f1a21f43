"""One delivery attempt end to end, shared by the delivery and the retry workers.

look up the webhook -> sign -> POST -> decide -> hand the record on (retry tier or
dead-letter topic) and wait for the broker's ack. `handle` returns only when the
record's fate is durable, so the caller may then mark its offset finished. How many
POSTs run at once, per webhook and in all, is the worker's business (its lanes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import schemas
from consumers.delivery.handler import DeadLetter, Delivered, ScheduleRetry, decide
from consumers.delivery.sender import Sender
from synctec_webhooks import deadletter
from synctec_webhooks.config import Settings
from synctec_webhooks.dlq import DeadLetterWriter
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import Codec
from synctec_webhooks.signing import signature_headers
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    """What `handle` did, and what the endpoint answered (for the lane's pacing)."""

    result: str  # "delivered", "retry", or a dead-letter reason
    status: int | None = None
    retry_after: float | None = None
    subscription: Subscription | None = None


@dataclass
class Counters:
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    attempts: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        table: SubscriptionTable,
        producer: AsyncProducer,
        sender: Sender,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._table = table
        self._producer = producer
        self._sender = sender
        self._clock = clock
        self._topics = Topics(settings.topic_prefix)
        self._dead_letters = DeadLetterWriter(settings, codec, producer, clock)
        self.counters = Counters()

    async def handle(
        self, record: dict[str, Any], source: deadletter.Source, stop: asyncio.Event
    ) -> Handled:
        """Attempt the delivery and make its outcome durable; returns what happened."""
        sub = await self._table.lookup(record["webhook_id"])
        if sub is None:
            detail = f"webhook {record['webhook_id']} does not exist (removed before delivery)"
            await self.dead_letter(deadletter.WEBHOOK_NOT_FOUND, detail, record, source, stop)
            return Handled(deadletter.WEBHOOK_NOT_FOUND)
        body = record["payload"].encode("utf-8")
        headers = signature_headers(
            secrets=[sub.secret],
            event_type=record["event_type"],
            event_id=record["event_id"],
            delivery_id=record["delivery_id"],
            attempt=record["attempt"],
            timestamp=int(self._clock()),
            body=body,
        )
        outcome = await self._sender.post(sub.url, body, headers)
        self.counters.attempts += 1
        answered = Handled("", outcome.status, outcome.retry_after, sub)
        if outcome.ok:
            # The common case needs no decision record (no history entry to build).
            self.counters.delivered += 1
            return replace(answered, result="delivered")
        decision = decide(record, outcome, self._settings.retry, int(self._clock() * 1000), sub.url)
        if isinstance(decision, Delivered):
            self.counters.delivered += 1
            return replace(answered, result="delivered")
        if isinstance(decision, ScheduleRetry):
            topic = self._topics.retry(decision.tier)
            value = self._codec.encode(topic, schemas.DELIVERY, decision.record)
            await produce_until_acked(
                self._producer, topic, value, record["partition_key"], stop=stop
            )
            self.counters.retried += 1
            logger.info(
                "delivery %s attempt %d failed (%s); retry %d due in %.1f s",
                record["delivery_id"],
                record["attempt"],
                outcome.error,
                decision.tier,
                decision.record["not_before"] / 1000 - self._clock(),
            )
            return replace(answered, result="retry")
        assert isinstance(decision, DeadLetter)
        await self.dead_letter(decision.reason, decision.detail, decision.record, source, stop)
        return replace(answered, result=decision.reason)

    async def dead_letter(
        self,
        reason: str,
        detail: str,
        record: dict[str, Any] | None,
        source: deadletter.Source,
        stop: asyncio.Event,
        raw: bytes | None = None,
    ) -> None:
        await self._dead_letters.write(reason, detail, source, delivery=record, raw=raw, stop=stop)
        self.counters.dead_lettered += 1
        self.counters.by_reason[reason] += 1
