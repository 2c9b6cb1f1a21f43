"""The fan-out worker: events topic -> one delivery record per matching webhook, exactly once.

Consume-transform-produce in Kafka transactions. Per batch (up to `fanout_batch_max`
events or `fanout_batch_ms` after the first one):

1. catch the subscription table up to the newest event's timestamp;
2. decode and match every event; plan its delivery records (and dead letters for
   poison records), all encoded before the transaction starts;
3. begin a transaction, produce them, add the batch's next offsets to it with
   `send_offsets_to_transaction`, commit.

Readers use `isolation.level=read_committed`, so a crash at any point leaves either
the whole batch (records and offsets) or none of it: never a lost or doubled delivery
record. An abortable error aborts and rewinds the consumer to the committed offsets; a
fenced or fatal error replaces the producer (a new `init_transactions` fences the old
one) and rewinds the same way.

One event must not stall the stream: an event whose body or records are over their
limits (`encoding.RecordTooLarge`) is dead-lettered `too_large` when planned, and a
record the producer refuses for its size anyway aborts only that transaction, which is
planned again with the event dead-lettered; the producer is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.fanout.encoding import RecordTooLarge, encode_deliveries
from synctec_webhooks.consumers.fanout.handler import account_of, account_problem, matches_for
from synctec_webhooks.errors import DeliveryFailed, SerializationError, SyncTecError
from synctec_webhooks.kafka import (
    AsyncConsumer,
    TopicAdmin,
    TransactionalProducer,
    consumer_config,
    core_topics,
    data_messages,
    delivery_topic_spec,
    position,
)
from synctec_webhooks.ops.kafka_stats import ConsumerStats
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.serialization import Codec
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

_EVENT_TYPE_OF = {name: etype for etype, name in schemas.EVENT_SCHEMA.items()}


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: str
    value: bytes
    source: deadletters.Source | None = None  # the event it was made for
    account_id: str | None = None  # that event's account, when it could be read


class TransactionAborted(SyncTecError):
    """The batch's transaction was aborted; its events are consumed again."""


class RecordRefused(SyncTecError):
    """The producer refused one record for its size; the transaction was aborted."""

    def __init__(self, outgoing: Outgoing, error: DeliveryFailed) -> None:
        super().__init__(f"a {len(outgoing.value):,}-byte record was refused: {error}")
        self.outgoing = outgoing
        self.error = error


class TransactionWedged(SyncTecError):
    """A transactional call blocks past every timeout; the producer must be replaced."""


# librdkafka's own limits are 30 s (offsets) and 60 s (commit); past this we stop waiting.
_WEDGED_AFTER = 90.0


def retry_retriable(
    call: Callable[..., None], *args: Any, give_up_after: float = 60.0, first_wait: float = 0.05
) -> None:
    """Call a transactional step again while it fails with a retriable error.

    librdkafka's contract for `send_offsets_to_transaction` and `commit_transaction`:
    a retriable error (CONCURRENT_TRANSACTIONS while the broker still writes the last
    transaction's markers, a coordinator moving, a timeout) means "call it again", not
    "the transaction failed". Treated as failed, it cost a whole new producer, whose
    `init_transactions` then failed the same way for seconds (measured with 1,000
    webhooks: one transaction spans 1,000 partitions, so its markers take a while).
    """
    deadline = time.monotonic() + give_up_after
    wait = first_wait
    while True:
        try:
            call(*args)
            return
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not err.retriable() or err.txn_requires_abort() or err.fatal():
                raise
            if time.monotonic() + wait > deadline:
                raise
            logger.info("fan-out: %s; calling it again in %.2f s", err, wait)
            time.sleep(wait)
            wait = min(wait * 2, 1.0)


class FanoutWorker:
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
        # Metrics of the batch in progress, recorded once its transaction commits: an
        # aborted batch is consumed again and must not be counted twice.
        self._uncommitted: list[Callable[[], None]] = []
        self._consumer: AsyncConsumer | None = None
        self._producer: TransactionalProducer | None = None
        self._carry: list[Message] = []
        self._topic_names: dict[str, str] = {}
        self._wedged: list[TransactionalProducer] = []
        # Events one of whose records the producer refused: (detail, size, refusals,
        # account) until the chunk that dead-letters them commits.
        self._refused: dict[deadletters.Source, tuple[str, int, int, str | None]] = {}
        self.events_consumed = 0
        self.deliveries_written = 0
        self.dead_lettered = 0
        self.aborted = 0

    @property
    def transactional_id(self) -> str:
        # Stable per instance: a restarted fan-out aborts its predecessor's open
        # transaction at once instead of readers waiting for the transaction timeout.
        return f"{self._settings.topic_prefix}.fanout.{self._settings.instance_id}"

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        await asyncio.to_thread(self._admin.ensure, core_topics(self._settings))
        conf = consumer_config(
            self._settings,
            self._topics.group("fanout"),
            "fanout",
            **{"enable.auto.commit": False},
            **self.kafka_stats.config(),
        )
        self._consumer = AsyncConsumer(conf)
        self._producer = await self._new_producer()
        self._consumer.consumer.subscribe([self._topics.events])
        logger.info("fan-out consuming %s (transactional id %s)", self._topics.events,
                    self.transactional_id)  # fmt: skip
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                batch = await self._next_batch(stop)
                if batch:
                    await self._process(batch)
        finally:
            if self._producer is not None:
                self._producer.close()
            await self._consumer.close()

    async def _new_producer(self) -> TransactionalProducer:
        producer = TransactionalProducer(self._settings, "fanout", self.transactional_id)
        await producer.run(producer.init_transactions)
        return producer

    async def _replace_producer(self, why: str, wedged: bool = False) -> None:
        """A new producer under the same transactional id; it fences the old one."""
        logger.warning("fan-out: replacing the transactional producer (%s)", why)
        old, self._producer = self._producer, None
        if old is not None:
            if wedged:
                old.abandon()
                self._wedged.append(old)  # never destroyed while its thread is blocked
            else:
                await asyncio.to_thread(old.close, 5)
        self._producer = await self._new_producer()

    async def _next_batch(self, stop: asyncio.Event) -> list[Message]:
        assert self._consumer is not None
        # Records consumed while the previous transaction was committing come first.
        batch, self._carry = self._carry, []
        deadline = time.monotonic() + self._settings.fanout_batch_ms / 1000 if batch else None
        limit = self._settings.fanout_batch_max
        while len(batch) < limit and not stop.is_set():
            wait = 0.2 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            msgs = await self._consumer.consume(limit - len(batch), wait)
            batch += data_messages(msgs, "events topic")
            if batch and deadline is None:
                deadline = time.monotonic() + self._settings.fanout_batch_ms / 1000
            if not batch:
                return []
        return batch

    async def _process(self, batch: list[Message]) -> None:
        assert self._producer is not None
        await self._producer.run(self._producer.poll)  # error_cb runs only inside poll
        if self._producer.broker_trouble:
            await self._replace_producer("it lost its brokers; its coordinators may be stale")
        newest = max(m.timestamp()[1] for m in batch) / 1000.0
        # Subscriptions written before the newest event must be in the table first.
        await self._table.sync(newest)
        now_ms = int(time.time() * 1000)
        start = 0
        while start < len(batch):
            # One transaction per chunk of at most fanout_max_records delivery records
            # (at least one event): with 10,000 subscribers a batch of 500 events would
            # be 5 million records in one transaction.
            self._uncommitted.clear()
            outgoing: list[Outgoing] = []
            end = start
            while end < len(batch) and (
                end == start or len(outgoing) < self._settings.fanout_max_records
            ):
                outgoing += self._plan(batch[end], now_ms)
                end += 1
            offsets = _next_offsets(batch[:end])
            try:
                if not await self._commit_chunk(outgoing, offsets):
                    return
            except RecordRefused as exc:
                self._refuse(exc)
                continue  # the same events again, the refused one dead-lettered
            self._refused.clear()
            self.events_consumed += end - start
            self.deliveries_written += sum(o.topic != self._topics.deadletters for o in outgoing)
            for record_metrics in self._uncommitted:
                record_metrics()
            self.kafka_stats.note_committed(offsets)
            start = end

    def _refuse(self, exc: RecordRefused) -> None:
        """Dead-letter the event of a refused record when its chunk is planned again; if
        its dead letter is refused too, without the event's bytes; then give up."""
        source, size = exc.outgoing.source, len(exc.outgoing.value)
        if source is None:
            raise exc.error
        detail = f"the producer refused its {size:,}-byte record: {exc.error}"
        first = (detail, size, 0, exc.outgoing.account_id)
        detail, size, refusals, account = self._refused.get(source, first)
        if refusals >= 2:
            raise exc.error
        logger.error("fan-out: %s/%d@%d: %s", *astuple(source), exc)
        self._refused[source] = (detail, size, refusals + 1, account)

    async def _commit_chunk(self, outgoing: list[Outgoing], offsets: list[TopicPartition]) -> bool:
        """Commit one chunk with the offsets of every event up to its end; False when the
        transaction failed and the consumer was rewound."""
        new = {
            self._topics.webhook_of(o.topic)
            for o in outgoing
            if o.topic != self._topics.deadletters and not self._admin.known(o.topic)
        }
        if new:
            specs = [delivery_topic_spec(self._settings, w) for w in new]
            await asyncio.to_thread(self._admin.ensure, specs)
        try:
            await self._commit(outgoing, offsets)
            return True
        except TransactionAborted:
            self.aborted += 1
        except TransactionWedged as exc:
            await self._replace_producer(str(exc), wedged=True)
        except KafkaException as exc:
            # Fenced (another instance took our transactional id) or fatal: a new
            # producer fences this one's leftovers; the batch is consumed again.
            await self._replace_producer(f"the transaction failed for good: {exc}")
        await self._rewind()
        return False

    async def _commit(self, outgoing: list[Outgoing], offsets: list[TopicPartition]) -> None:
        """Commit the batch's transaction while keeping the consumer served.

        The broker takes our offsets only from a member of a stable group; after a
        session timeout (a broker restart, say) the consumer must be polled to rejoin,
        or `send_offsets_to_transaction` waits forever. So if the commit is not done at
        once, poll meanwhile, keep what arrives for the next batch, and pause the
        partitions if that grows to a batch.
        """
        assert self._consumer is not None and self._producer is not None
        work = asyncio.ensure_future(self._producer.run(self._commit_batch, outgoing, offsets))
        await asyncio.wait({work}, timeout=0.5)
        paused: list[TopicPartition] = []
        give_up = time.monotonic() + _WEDGED_AFTER
        c = self._consumer.consumer
        try:
            while not work.done():
                if time.monotonic() > give_up:
                    raise TransactionWedged(
                        f"no answer from the transaction in {_WEDGED_AFTER:.0f} s"
                    )
                msgs = await self._consumer.consume(100, 0.1)
                self._carry += data_messages(msgs, "events topic")
                if len(self._carry) >= self._settings.fanout_batch_max and not paused:
                    paused = await self._consumer.call(c.assignment)
                    await self._consumer.call(c.pause, paused)
        finally:
            # Whatever ends the wait (a wedged transaction given up included): paused
            # partitions left paused are never read again (the fault suite's broker
            # restart found it: the fan-out stopped for good).
            if paused:
                await self._consumer.call(c.resume, paused)
        work.result()

    def _commit_batch(self, outgoing: list[Outgoing], offsets: list[TopicPartition]) -> None:
        """Blocking: one transaction for the batch's records and its consumer offsets."""
        assert self._producer is not None and self._consumer is not None
        p = self._producer
        try:
            p.begin_transaction()
            for o in outgoing:
                try:
                    p.produce(o.topic, o.value, o.key)
                except DeliveryFailed as exc:
                    # That record cannot be written, but the producer can: no new one,
                    # no rewind (which would fetch the same event again, for ever).
                    p.abort_transaction()
                    raise RecordRefused(o, exc) from exc
            metadata = self._consumer.consumer.consumer_group_metadata()
            retry_retriable(p.send_offsets_to_transaction, offsets, metadata)
            retry_retriable(p.commit_transaction)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.txn_requires_abort():
                logger.warning("fan-out transaction aborted (%s); rewinding", err)
                p.abort_transaction()
                raise TransactionAborted(str(err)) from exc
            raise

    async def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset."""
        assert self._consumer is not None
        self._carry = []  # consumed past the committed offsets: fetched again after the seek
        c = self._consumer.consumer
        assigned = await self._consumer.call(c.assignment)
        if not assigned:
            return
        committed = await self._consumer.call(c.committed, assigned, 10)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            await self._consumer.call(c.seek, TopicPartition(tp.topic, tp.partition, offset))

    def _plan(self, msg: Message, now_ms: int) -> list[Outgoing]:
        source = deadletters.Source(*position(msg))
        if source in self._refused:
            detail, size, refusals, account = self._refused[source]
            self._uncommitted.append(lambda: self.metrics.event_consumed(None, 0, account))
            letter = self._dead_letter(
                deadletters.TOO_LARGE, detail, source, msg.value(), now_ms, size,
                account_id=account,
                keep_raw=refusals < 2,  # its dead letter was refused too: without the bytes
            )  # fmt: skip
            return [letter]
        try:
            name, event = self._codec.decode(source.topic, msg.value() or b"")
        except SerializationError as exc:
            if exc.retriable:
                raise  # the registry is unreachable: these bytes will decode later
            self._uncommitted.append(lambda: self.metrics.event_consumed(None, 0, None))
            return [
                self._dead_letter(deadletters.UNDECODABLE, str(exc), source, msg.value(), now_ms)
            ]
        event_type = _EVENT_TYPE_OF.get(name)
        if event_type is None:
            detail = f"record of schema {name} is not a sync event"
            self._uncommitted.append(lambda: self.metrics.event_consumed(None, 0, None))
            return [
                self._dead_letter(deadletters.INVALID_EVENT, detail, source, msg.value(), now_ms)
            ]
        problem = account_problem(event)
        if problem is not None:
            self._uncommitted.append(lambda: self.metrics.event_consumed(event_type, 0, None))
            detail = f"{event_type} event of no account: {problem}"
            reason, raw = deadletters.INVALID_EVENT, msg.value()
            return [self._dead_letter(reason, detail, source, raw, now_ms, None, event_type)]
        account = account_of(event)
        # The event's own account's webhooks only, disabled ones included.
        matches = matches_for(self._table.index, event_type, event)
        try:
            encoded = encode_deliveries(
                self._codec, self._delivery_topic, event_type, event, matches, now_ms
            )
        except RecordTooLarge as exc:
            self._uncommitted.append(lambda: self.metrics.event_consumed(event_type, 0, account))
            reason, raw = deadletters.TOO_LARGE, msg.value()
            letter = self._dead_letter(
                reason, str(exc), source, raw, now_ms, exc.size, event_type, account_id=account
            )
            return [letter]
        found = len(matches)
        self._uncommitted.append(lambda: self.metrics.event_consumed(event_type, found, account))
        return [Outgoing(topic, key, value, source, account) for topic, key, value in encoded]

    def _delivery_topic(self, webhook_id: str) -> str:
        topic = self._topic_names.get(webhook_id)
        if topic is None:
            topic = self._topic_names[webhook_id] = self._topics.delivery(webhook_id)
        return topic

    def _dead_letter(
        self,
        reason: str,
        detail: str,
        source: deadletters.Source,
        raw: bytes | None,
        now_ms: int,
        original_size: int | None = None,
        event_type: str | None = None,
        keep_raw: bool = True,
        account_id: str | None = None,
    ) -> Outgoing:
        record = deadletters.build(reason, detail, source, now_ms, raw=raw,
                                   original_size=original_size, account_id=account_id)  # fmt: skip
        if not keep_raw:
            record = deadletters.cut(record, len(raw or b""), keep=0)
        logger.error("dead-lettering %s/%d@%d: %s", *astuple(source), record["detail"])
        record, value = deadletters.fit(record, self._encode_dead_letter)
        self.dead_lettered += 1
        self._uncommitted.append(lambda: self.metrics.dead_lettered(reason, event_type, account_id))
        topic, key = self._topics.deadletters, deadletters.key_of(record)
        return Outgoing(topic, key, value, source, account_id)

    def _encode_dead_letter(self, record: dict[str, Any]) -> bytes:
        return self._codec.encode(self._topics.deadletters, schemas.DEAD_LETTER, record)


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    nxt: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = position(m)
        nxt[(topic, partition)] = max(nxt.get((topic, partition), 0), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
