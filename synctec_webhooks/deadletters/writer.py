"""Writes dead letters: the one place a record is handed to `<prefix>.deadletters`.

A dead letter always fits (`deadletters.fit` cuts what would not); one the broker
refuses anyway, its topic's limit being lower than ours, is written again without the
record's bytes, so that the worker goes on rather than stall on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import DeliveryFailed
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)


class DeadLetterWriter:
    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        producer: AsyncProducer,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._codec = codec
        self._producer = producer
        self._clock = clock
        self._topic = Topics(settings.topic_prefix).deadletters
        self.by_reason: Counter[str] = Counter()
        self._metrics = metrics or Metrics.create(retry_tiers=len(settings.retry.delays))

    async def write(
        self,
        reason: str,
        detail: str,
        source: deadletters.Source,
        delivery: dict[str, Any] | None = None,
        raw: bytes | None = None,
        stop: asyncio.Event | None = None,
        original_size: int | None = None,
        account_id: str | None = None,
    ) -> None:
        """Returns once the broker acknowledged the dead letter. It belongs to the
        delivery's account; without a delivery, to `account_id` (None: unknown)."""
        now_ms = int(self._clock() * 1000)
        dl = deadletters.build(
            reason,
            detail,
            source,
            now_ms,
            delivery=delivery,
            raw=raw,
            original_size=original_size,
            account_id=account_id,
        )
        dl, value = deadletters.fit(dl, self._encode)
        try:
            await self._produce(dl, value, stop)
        except DeliveryFailed as exc:
            if not exc.too_large:
                raise
            logger.warning("dead letter of %d bytes refused (%s); writing it without its bytes",
                           len(value), exc)  # fmt: skip
            dl = deadletters.cut(dl, len(value), keep=0)
            await self._produce(dl, self._encode(dl), stop)
        self.by_reason[reason] += 1
        self._metrics.dead_lettered(
            reason, delivery["event_type"] if delivery else None, dl["account_id"]
        )
        logger.warning(
            "dead-lettered %s (%s): %s",
            dl["delivery_id"] or f"{source.topic}/{source.partition}@{source.offset}",
            reason,
            dl["detail"],  # bounded, unlike `detail`
        )

    def _encode(self, dl: dict[str, Any]) -> bytes:
        return self._codec.encode(self._topic, schemas.DEAD_LETTER, dl)

    async def _produce(self, dl: dict[str, Any], value: bytes, stop: asyncio.Event | None) -> None:
        key = deadletters.key_of(dl)
        await produce_until_acked(self._producer, self._topic, value, key, stop=stop)
