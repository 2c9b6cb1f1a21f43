"""The fan-out worker: events topic -> one delivery record per matching webhook.

Per consumed batch: catch the subscription table up to the newest event's timestamp,
decode and match each event, produce its delivery records (each to the webhook's own
topic, keyed by product id), wait for the broker to acknowledge all of them, and only
then store the batch's offsets. A crash before the store re-reads the batch: records
may be written twice but never lost; delivery ids are deterministic so duplicates are
recognisable. (Exactly-once fan-out with transactions is tracked separately.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import Message, TopicPartition

import schemas
from consumers.fanout.handler import plan_for
from synctec_webhooks import deadletter
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import (
    AsyncConsumer,
    AsyncProducer,
    TopicAdmin,
    consumer_config,
    core_topics,
    data_messages,
    delivery_topic_spec,
    position,
    produce_until_acked,
)
from synctec_webhooks.kafka_stats import ConsumerStats
from synctec_webhooks.metrics import Metrics
from synctec_webhooks.serialization import Codec, SerializationError
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

_EVENT_TYPE_OF = {name: etype for etype, name in schemas.EVENT_SCHEMA.items()}


class FanoutService:
    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        table: SubscriptionTable,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._codec = codec
        self._table = table
        self._topics = Topics(settings.topic_prefix)
        self._admin = TopicAdmin(settings)
        self.metrics = metrics or Metrics.create()
        self.kafka_stats = ConsumerStats(
            self.metrics, self._topics, self._topics.group("fanout"), settings.ops.stats_interval_ms
        )
        self.events_consumed = 0
        self.deliveries_written = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await asyncio.to_thread(self._admin.ensure, core_topics(self._settings))
        consumer = AsyncConsumer(
            consumer_config(
                self._settings, self._topics.group("fanout"), "fanout", **self.kafka_stats.config()
            )
        )
        producer = AsyncProducer(self._settings, "fanout")
        consumer.consumer.subscribe([self._topics.events])
        logger.info("fan-out consuming %s", self._topics.events)
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                msgs = await consumer.consume(500, 0.2)
                if msgs:
                    await self._process(msgs, consumer, producer, stop)
        finally:
            producer.close()
            await consumer.close()

    async def _process(
        self,
        msgs: list[Message],
        consumer: AsyncConsumer,
        producer: AsyncProducer,
        stop: asyncio.Event,
    ) -> None:
        records = data_messages(msgs, "events topic")
        if not records:
            return
        newest = max(m.timestamp()[1] for m in records) / 1000.0
        # Subscriptions written before the newest event must be in the table first.
        await self._table.sync(newest)
        now_ms = int(time.time() * 1000)
        pending: list[asyncio.Future[Any]] = []
        for msg in records:
            pending += await self._fan_out(msg, producer, now_ms, stop)
        await asyncio.gather(*pending)
        consumer.consumer.store_offsets(offsets=_next_offsets(records))
        self.events_consumed += len(records)

    async def _fan_out(
        self, msg: Message, producer: AsyncProducer, now_ms: int, stop: asyncio.Event
    ) -> list[asyncio.Future[Any]]:
        source = deadletter.Source(*position(msg))
        try:
            name, event = self._codec.decode(source.topic, msg.value() or b"")
        except SerializationError as exc:
            if exc.retriable:
                raise  # the registry is unreachable: these bytes will decode later
            self.metrics.event_consumed(None, 0)
            return [
                self._dead_letter(
                    producer, deadletter.UNDECODABLE, str(exc), source, msg.value(), now_ms, stop
                )
            ]
        event_type = _EVENT_TYPE_OF.get(name)
        if event_type is None:
            detail = f"record of schema {name} is not a sync event"
            self.metrics.event_consumed(None, 0)
            return [
                self._dead_letter(
                    producer, deadletter.INVALID_EVENT, detail, source, msg.value(), now_ms, stop
                )
            ]
        planned = plan_for(self._table.index, event_type, event, now_ms)
        self.metrics.event_consumed(event_type, len(planned))
        specs = [delivery_topic_spec(self._settings, p.webhook_id) for p in planned]
        if any(not self._admin.known(s.name) for s in specs):
            await asyncio.to_thread(self._admin.ensure, specs)
        futures: list[asyncio.Future[Any]] = []
        for p in planned:
            value = self._codec.encode(
                self._topics.delivery(p.webhook_id), schemas.DELIVERY, p.record
            )
            futures.append(
                asyncio.ensure_future(
                    produce_until_acked(
                        producer, self._topics.delivery(p.webhook_id), value, p.key, stop=stop
                    )
                )
            )
        self.deliveries_written += len(planned)
        return futures

    def _dead_letter(
        self,
        producer: AsyncProducer,
        reason: str,
        detail: str,
        source: deadletter.Source,
        raw: bytes | None,
        now_ms: int,
        stop: asyncio.Event,
    ) -> asyncio.Future[Any]:
        logger.error(
            "dead-lettering %s/%d@%d: %s", source.topic, source.partition, source.offset, detail
        )
        record = deadletter.build(reason, detail, source, now_ms, raw=raw)
        value = self._codec.encode(self._topics.deadletters, schemas.DEAD_LETTER, record)
        self.dead_lettered += 1
        self.metrics.dead_lettered(reason, None)
        return asyncio.ensure_future(
            produce_until_acked(
                producer, self._topics.deadletters, value, deadletter.key_of(record), stop=stop
            )
        )


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    nxt: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = position(m)
        nxt[(topic, partition)] = max(nxt.get((topic, partition), 0), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
