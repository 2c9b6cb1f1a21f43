"""One delivery attempt end to end, shared by the delivery and the retry workers.

look up the webhook -> sign -> POST -> decide -> hand the record on (retry tier or
dead-letter topic) and wait for the broker's ack. `handle` returns only when the
record's fate is durable, so the caller may then mark its offset finished. How many
POSTs run at once, per webhook and in all, is the worker's business (its lanes). A
disabled webhook's records are dead-lettered unsent. Every POST is also logged to the
attempts topic (best effort) for the admin service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from synctec_webhooks import attempts, deadletters, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.handler import (
    DeadLetter,
    Decision,
    Delivered,
    ScheduleRetry,
    decide,
)
from synctec_webhooks.consumers.delivery.outcome import Outcome
from synctec_webhooks.consumers.delivery.sender import ACCOUNT_HEADER, Sender
from synctec_webhooks.deadletters.writer import DeadLetterWriter
from synctec_webhooks.errors import DeliveryFailed, SecretKeyError
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked
from synctec_webhooks.matching import Subscription
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.secrets_crypto import SecretOpener
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
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._table = table
        self._producer = producer
        self._sender = sender
        self._clock = clock
        self._topics = Topics(settings.topic_prefix)
        self._secrets = SecretOpener(settings)
        self.counters = Counters()
        self.metrics = metrics or Metrics.create(retry_tiers=len(settings.retry.delays))
        self._dead_letters = DeadLetterWriter(settings, codec, producer, clock, self.metrics)

    async def handle(
        self, record: dict[str, Any], source: deadletters.Source, stop: asyncio.Event
    ) -> Handled:
        """Attempt the delivery and make its outcome durable; returns what happened."""
        sub = await self._table.lookup(record["webhook_id"])
        if sub is None:
            detail = f"webhook {record['webhook_id']} does not exist (removed before delivery)"
            await self.dead_letter(deadletters.WEBHOOK_NOT_FOUND, detail, record, source, stop)
            return Handled(deadletters.WEBHOOK_NOT_FOUND)
        if not sub.enabled:
            # A re-enable written just before this record (enable, then replay) may not
            # have reached the table yet: catch up to the record's time before refusing.
            await self._table.sync(record["not_before"] / 1000)
            sub = self._table.get(sub.id) or sub
        if not sub.enabled:
            detail = (
                f"webhook {sub.id} is disabled ({sub.disabled_reason or 'no reason given'}); "
                "re-enable it, then replay"
            )
            await self.dead_letter(deadletters.WEBHOOK_DISABLED, detail, record, source, stop)
            return Handled(deadletters.WEBHOOK_DISABLED, subscription=sub)
        body = record["payload"].encode("utf-8")
        timestamp = int(self._clock())
        try:
            secrets = self._secrets.signing_secrets(sub, timestamp * 1000)
        except SecretKeyError as exc:
            # This webhook alone cannot be signed for: its records wait, durable and
            # replayable, in the dead-letter topic; the worker and the others go on.
            reason = deadletters.SECRET_UNAVAILABLE
            detail = f"{exc}; then replay: synctec-webhooks dead-letters replay --webhook {sub.id}"
            await self.dead_letter(reason, detail, record, source, stop)
            return Handled(reason, subscription=sub)
        headers = signature_headers(
            secrets=secrets,
            event_type=record["event_type"],
            event_id=record["event_id"],
            delivery_id=record["delivery_id"],
            attempt=record["attempt"],
            timestamp=timestamp,
            body=body,
        )
        # Not signed: the webhook's own secret already says whose it is.
        headers[ACCOUNT_HEADER] = record["account_id"]
        with self.metrics.in_flight.track_inprogress():
            outcome = await self._sender.post(sub.url, body, headers)
        self.counters.attempts += 1
        self.metrics.attempt(
            webhook_id=sub.id,
            account_id=record["account_id"],
            event_type=record["event_type"],
            outcome=outcome,
            event_timestamp=record["event_timestamp"],
            created_at_ms=record["created_at"],
            now=self._clock(),
        )
        now_ms = int(self._clock() * 1000)
        decision = decide(record, outcome, self._settings.retry, now_ms, sub.url)
        self._log_attempt(record, outcome, decision, now_ms)
        answered = Handled("", outcome.status, outcome.retry_after, sub)
        if isinstance(decision, Delivered):
            self.counters.delivered += 1
            return replace(answered, result="delivered")
        if isinstance(decision, ScheduleRetry):
            result = await self._schedule_retry(decision, source, stop)
            if result == "retry":
                logger.info(
                    "delivery %s attempt %d failed (%s); retry %d due in %.1f s",
                    record["delivery_id"],
                    record["attempt"],
                    outcome.error,
                    decision.tier,
                    decision.record["not_before"] / 1000 - self._clock(),
                )
            return replace(answered, result=result)
        assert isinstance(decision, DeadLetter)
        await self.dead_letter(decision.reason, decision.detail, decision.record, source, stop)
        return replace(answered, result=decision.reason)

    async def _schedule_retry(
        self, decision: ScheduleRetry, source: deadletters.Source, stop: asyncio.Event
    ) -> str:
        """Hand the record to its retry tier: "retry". A retry record too large to write
        (over MAX_RECORD_BYTES, or refused by the broker) is dead-lettered instead, its
        attempt made: "too_large", never an error that would stop the worker."""
        record, topic = decision.record, self._topics.retry(decision.tier)
        value = self._codec.encode(topic, schemas.DELIVERY, record)
        size = len(value) + len(record["partition_key"].encode("utf-8"))
        limit = deadletters.MAX_RECORD_BYTES
        if size > limit:
            problem = f"the retry record would be {size:,} bytes, over the limit of {limit:,} bytes"
        else:
            try:
                await produce_until_acked(
                    self._producer, topic, value, record["partition_key"], stop=stop
                )
            except DeliveryFailed as exc:
                if not exc.too_large:
                    raise
                problem = f"the broker refused the {size:,}-byte retry record ({exc})"
            else:
                self.counters.retried += 1
                self.metrics.retry_scheduled(decision.tier, record["event_type"])
                return "retry"
        reason = deadletters.TOO_LARGE
        detail = f"{problem}; not retried"
        await self.dead_letter(reason, detail, record, source, stop, original_size=size)
        return reason

    def _log_attempt(
        self, record: dict[str, Any], outcome: Outcome, decision: Decision, now_ms: int
    ) -> None:
        if isinstance(decision, Delivered):
            result = attempts.DELIVERED
        elif isinstance(decision, ScheduleRetry):
            result = attempts.RETRY
        else:
            result = decision.reason
        entry = attempts.attempt_record(
            record,
            status=outcome.status,
            error=outcome.error,
            latency_ms=outcome.latency_ms,
            outcome=outcome.kind.value,
            result=result,
            at_ms=now_ms,
        )
        topic = self._topics.attempts
        value = self._codec.encode(topic, schemas.DELIVERY_ATTEMPT, entry)
        # Not awaited: the attempt log must not hold up or fail a delivery.
        self._producer.produce_nowait(topic, value, record["webhook_id"])

    async def dead_letter(
        self,
        reason: str,
        detail: str,
        record: dict[str, Any] | None,
        source: deadletters.Source,
        stop: asyncio.Event,
        raw: bytes | None = None,
        original_size: int | None = None,
    ) -> None:
        await self._dead_letters.write(
            reason, detail, source, delivery=record, raw=raw, stop=stop, original_size=original_size
        )
        self.counters.dead_lettered += 1
        self.counters.by_reason[reason] += 1
