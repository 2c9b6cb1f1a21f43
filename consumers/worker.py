"""The consume -> dispatch loop shared by the delivery and the retry workers.

Records are dispatched concurrently (up to `max_in_flight` at once), but an offset is
stored only when every record before it in its partition is finished: the POST
succeeded, or the record was acknowledged on a retry or dead-letter topic. Records
with the same key in one partition are dispatched one after the other, so one
product's deliveries to one endpoint keep their order (retries aside).

On revoke the worker waits (within a deadline) for the revoked partitions' in-flight
records, stores their offsets and commits before librdkafka hands them over; on stop it
finishes in-flight work the same way, commits and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumers.delivery.dispatcher import Dispatcher
from consumers.delivery.sender import Sender
from synctec_webhooks import deadletter
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import (
    AsyncConsumer,
    AsyncProducer,
    consumer_config,
    data_messages,
    position,
)
from synctec_webhooks.kafka_stats import ConsumerStats
from synctec_webhooks.metrics import Metrics
from synctec_webhooks.offsets import OffsetTracker, PartitionOffsets
from synctec_webhooks.serialization import Codec, SerializationError
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)


class WorkerCrashed(RuntimeError):
    """A dispatch failed in a way that must not be skipped; restart re-delivers it."""


class ConsumeDispatchWorker:
    role = "worker"

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        table: SubscriptionTable,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.table = table
        self.metrics = metrics or Metrics.create(retry_tiers=len(settings.retry.delays))
        self.kafka_stats = ConsumerStats(
            self.metrics,
            Topics(settings.topic_prefix),
            self.group(),
            settings.ops.stats_interval_ms,
            settled=self.settled,
        )
        self.tracker = OffsetTracker()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._chains: dict[tuple[str, int, bytes | None], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._fatal: BaseException | None = None
        self._progress = asyncio.Event()  # set whenever a record finishes
        self._pauses: dict[tuple[str, int], set[str]] = {}
        self._sought: set[tuple[str, int]] = set()  # window-paused and sought back
        self.consumer: AsyncConsumer | None = None
        self.dispatcher: Dispatcher | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_timeout = settings.http_timeout + 5.0

    # --- hooks for subclasses -------------------------------------------------------

    def group(self) -> str:
        raise NotImplementedError

    def subscription(self) -> list[str]:
        raise NotImplementedError

    def admit(self, msg: Message, record: dict[str, Any]) -> bool:
        """False to hold the record back (the retry worker, for records not yet due)."""
        return True

    def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Called on the event loop when partitions are revoked or lost."""

    def settled(self, topic: str, partition: int) -> bool:
        """For the lag metric (kafka_stats.py): True when every record the consumer has
        passed beyond the committed offset is finished. Called on the consume thread."""
        return False

    # --- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        sender = Sender(self.settings)
        await sender.start()
        producer = AsyncProducer(self.settings, self.role)
        self.dispatcher = Dispatcher(
            self.settings, self.codec, self.table, producer, sender, metrics=self.metrics
        )
        self.consumer = AsyncConsumer(
            consumer_config(self.settings, self.group(), self.role, **self.kafka_stats.config())
        )
        self.consumer.consumer.subscribe(
            self.subscription(), on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        logger.info("%s worker consuming %s", self.role, self.subscription())
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set() and self._fatal is None:
                msgs = await self.consumer.consume(500, 0.2)
                for msg in data_messages(msgs, self.role):
                    await self._slots.acquire()
                    self._start(msg, stop)
            if self._fatal is not None:
                raise WorkerCrashed(f"{self.role} worker stopped: {self._fatal}") from self._fatal
        finally:
            await self._shutdown(producer, sender)

    def _start(self, msg: Message, stop: asyncio.Event) -> None:
        topic, partition, offset = position(msg)
        if self._held_back(topic, partition, offset):
            self._slots.release()
            return
        source = deadletter.Source(topic, partition, offset)
        try:
            _, record = self.codec.decode(topic, msg.value() or b"")
        except SerializationError as exc:
            if exc.retriable:
                raise WorkerCrashed(f"cannot decode for now, restart to retry: {exc}") from exc
            self._spawn(msg, None, self._poison(msg, source, str(exc), stop))
            return
        if not self.admit(msg, record):
            self._slots.release()
            return
        assert self.dispatcher is not None
        self._spawn(
            msg, (topic, partition, msg.key()), self.dispatcher.handle(record, source, stop)
        )

    async def _poison(
        self, msg: Message, source: deadletter.Source, detail: str, stop: asyncio.Event
    ) -> None:
        assert self.dispatcher is not None
        await self.dispatcher.dead_letter(
            deadletter.UNDECODABLE, detail, None, source, stop, raw=msg.value()
        )

    def _spawn(
        self, msg: Message, chain_key: tuple[str, int, bytes | None] | None, work: Any
    ) -> None:
        topic, partition, offset = position(msg)
        tracked = self.tracker.partition(topic, partition)
        if offset <= tracked.last:
            # The consumer went back to the committed offset without a revoke we saw
            # (an assignment lost to a session timeout, say): start a new generation, so
            # the records still in flight from before cannot move the new one's offset.
            logger.warning("%s: %s/%d rewound from %d to %d; tracking it afresh",
                           self.role, topic, partition, tracked.last, offset)  # fmt: skip
            self.tracker.forget(topic, partition)
            tracked = self.tracker.partition(topic, partition)
        tracked.add(offset)
        if tracked.window >= self.settings.max_uncommitted:
            # Bound what a crash can redo: stop fetching this partition until the
            # finished prefix catches up with it.
            self.pause_for(topic, partition, "window")
        previous = self._chains.get(chain_key) if chain_key else None

        async def run() -> None:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
                await work
            except Exception as exc:
                # Never mark an unfinished record done: stop, and let a restart redo it.
                logger.exception(
                    "%s: dispatch of %s/%d@%d failed", self.role, topic, partition, offset
                )
                self._fatal = exc
                return
            finally:
                self._slots.release()
                self._progress.set()
            self._finished(topic, partition, offset, tracked)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if chain_key is not None:
            self._chains[chain_key] = task
            task.add_done_callback(lambda t: self._unchain(chain_key, t))

    def _unchain(self, key: tuple[str, int, bytes | None], task: asyncio.Task[None]) -> None:
        if self._chains.get(key) is task:
            del self._chains[key]

    def _finished(self, topic: str, partition: int, offset: int, tracked: PartitionOffsets) -> None:
        position = tracked.done(offset)
        if position is None or self.consumer is None:
            return
        if self.tracker.current(topic, partition) is not tracked:
            return  # revoked or rewound meanwhile: this generation commits nothing more
        if tracked.window < self.settings.max_uncommitted // 2:
            self.resume_for(topic, partition, "window")
        try:
            self.consumer.consumer.store_offsets(
                offsets=[TopicPartition(topic, partition, position)]
            )
        except KafkaException as exc:
            # _STATE: the partition was revoked meanwhile; its new owner redoes the rest.
            if exc.args[0].code() != KafkaError._STATE:
                raise

    # --- pauses ---------------------------------------------------------------------

    def _held_back(self, topic: str, partition: int, offset: int) -> bool:
        """True for a record of a partition paused for its window: not started now.

        The pause stops fetching, but the batch in hand may hold more of the partition:
        seek back to the first of them (fetched again on resume) and skip the rest, so
        the window, and what a crash redoes, stays within `max_uncommitted`.
        """
        key = (topic, partition)
        if "window" not in self._pauses.get(key, ()):
            return False
        if key not in self._sought:
            assert self.consumer is not None
            self.consumer.consumer.seek(TopicPartition(topic, partition, offset))
            self._sought.add(key)
        return True

    def pause_for(self, topic: str, partition: int, reason: str) -> None:
        """Pause a partition for a reason; it resumes when no reason is left."""
        assert self.consumer is not None
        reasons = self._pauses.setdefault((topic, partition), set())
        if not reasons:
            self.consumer.consumer.pause([TopicPartition(topic, partition)])
        reasons.add(reason)

    def resume_for(self, topic: str, partition: int, reason: str) -> None:
        reasons = self._pauses.get((topic, partition))
        if not reasons or reason not in reasons:
            return
        reasons.discard(reason)
        if reason == "window":
            self._sought.discard((topic, partition))
        if not reasons:
            del self._pauses[(topic, partition)]
            assert self.consumer is not None
            self.consumer.consumer.resume([TopicPartition(topic, partition)])

    # --- rebalance and shutdown ---------------------------------------------------

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs on the consume thread, inside consume(): wait for the loop to finish the
        # revoked partitions' work, then commit what it stored, then let go.
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._drain(partitions), self.loop)
        try:
            fut.result(self.drain_timeout + 5)
        except Exception:
            logger.exception("%s: draining revoked partitions failed", self.role)
        _commit(consumer)

    async def _drain(self, partitions: Sequence[TopicPartition]) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while any(self.tracker.in_flight(tp.topic, tp.partition) for tp in partitions):
            self._progress.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        for tp in partitions:
            left = self.tracker.in_flight(tp.topic, tp.partition)
            if left:
                logger.warning(
                    "%s: %d records of %s/%d unfinished at revoke; the next owner redoes them",
                    self.role,
                    left,
                    tp.topic,
                    tp.partition,
                )
            self.tracker.forget(tp.topic, tp.partition)
            # librdkafka forgets pauses of partitions it takes away; so do we.
            self._pauses.pop((tp.topic, tp.partition), None)
            self._sought.discard((tp.topic, tp.partition))
        self.on_revoked(partitions)

    async def _shutdown(self, producer: AsyncProducer, sender: Sender) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
        if self.consumer is not None:
            await self.consumer.call(_commit, self.consumer.consumer)
            await self.consumer.close()
        producer.close()
        await sender.close()


def _commit(consumer: Consumer) -> None:
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        # _NO_OFFSET: nothing stored since the last commit.
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            logger.warning("commit failed: %s", exc)
