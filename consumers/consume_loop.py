"""The consume -> dispatch loop shared by the delivery and the retry workers.

Records are dispatched concurrently, but an offset is stored only when every record
before it in its partition is finished: the POST succeeded, or the record was
acknowledged on a retry or dead-letter topic. Records with the same key in one
partition are dispatched one after the other, so one product's deliveries to one
endpoint keep their order (retries aside).

Isolation. Each webhook has a `Lane` with its own limit of POSTs in flight (and an
optional rate); runner coroutines take records from it, so a slow endpoint occupies
only its own lane's runners, and takes one of the worker's `max_in_flight` HTTP slots
only while a POST is actually open. A lane holding more than `lane_cap` records has its
partitions paused (delivery topics are per webhook), so its backlog waits in Kafka and
the rest of the stream flows; the lane resumes at a quarter. A partition that arrives
unpaused for a paused lane (after a rebalance) is paused at its first record.

Bounded redo. A partition whose uncommitted window reaches `max_uncommitted` is paused
too, and the rest of the batch in hand for it is sought back, so a crash redoes at most
that many records per partition. Pauses carry reasons ("lane", "window", the retry
worker's "not due"); a partition resumes when none is left.

Offsets of finished records are stored in batches, once per consume round and before
every commit, rather than one `store_offsets` call per record.

On revoke the worker drops the revoked partitions' queued records, waits (within a
deadline) for their started ones, stores and commits before librdkafka hands them
over; on stop it lets started POSTs finish, commits and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from synctec_webhooks import deadletters
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.dispatcher import Dispatcher
from synctec_webhooks.consumers.delivery.lanes import Item, Lane
from synctec_webhooks.consumers.delivery.sender import Sender
from synctec_webhooks.errors import SerializationError, WorkerCrashed
from synctec_webhooks.kafka import (
    AsyncConsumer,
    AsyncProducer,
    consumer_config,
    data_messages,
    position,
)
from synctec_webhooks.offsets import OffsetTracker
from synctec_webhooks.ops.kafka_stats import ConsumerStats
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.serialization import Codec
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

_POISON_LANE = ""  # undecodable records have no webhook; they share one lane


class ConsumeDispatchWorker:
    role = "worker"
    # Delivery topics are per webhook, so a lane's partitions are its own to pause;
    # retry topics are shared, and the retry worker bounds its lanes by memory only.
    pause_lanes = True

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
        self._http_slots = asyncio.Semaphore(settings.max_in_flight)
        self._lanes: dict[str, Lane] = {}
        self._holding = 0  # records consumed and not finished, all lanes
        self._room = asyncio.Event()  # set when _holding drops below max_held
        self._running: Counter[tuple[str, int]] = Counter()  # started records per partition
        self._to_store: dict[tuple[str, int], int] = {}
        self._pauses: dict[tuple[str, int], set[str]] = {}
        self._sought: set[tuple[str, int]] = set()  # window-paused and sought back
        # Partitions to resume before the next consume() (on the consume thread: see
        # AsyncConsumer.consume); librdkafka still has them paused until then.
        self._resumes: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fatal: BaseException | None = None
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever a record finishes
        self.consumer: AsyncConsumer | None = None
        self.dispatcher: Dispatcher | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.drain_timeout = settings.http_timeout + 5.0
        self.max_held = settings.max_held

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
        """For the lag metric (ops/kafka_stats.py): True when every record the consumer has
        passed beyond the committed offset is finished. Called on the consume thread."""
        return False

    # --- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = stop
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
                if self._holding >= self.max_held:
                    # Full: wait for room rather than fetch more (consume is what
                    # serves rebalances, so never for long).
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), 0.2)
                    self._store_offsets()
                    continue
                msgs = await self.consumer.consume(500, 0.05, self._take_resumes())
                touched: set[Lane] = set()
                for msg in data_messages(msgs, self.role):
                    lane = self._accept(msg)
                    if lane is not None:
                        touched.add(lane)
                for lane in touched:
                    self._top_up(lane)
                self._store_offsets()
            if self._fatal is not None:
                raise WorkerCrashed(f"{self.role} worker stopped: {self._fatal}") from self._fatal
        finally:
            await self._shutdown(producer, sender)

    def _accept(self, msg: Message) -> Lane | None:
        """Decode a record and queue it on its webhook's lane."""
        topic, partition, offset = position(msg)
        if self._held_back(topic, partition, offset):
            return None
        try:
            _, record = self.codec.decode(topic, msg.value() or b"")
        except SerializationError as exc:
            if exc.retriable:
                raise WorkerCrashed(f"cannot decode for now, restart to retry: {exc}") from exc
            item = Item(topic, partition, offset, None, None, raw=msg.value(), detail=str(exc))
            return self._queue(_POISON_LANE, item)
        if not self.admit(msg, record):
            return None
        return self._queue(record["webhook_id"], Item(topic, partition, offset, msg.key(), record))

    def _queue(self, webhook_id: str, item: Item) -> Lane:
        topic, partition, offset = item.topic, item.partition, item.offset
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
        item.tracked = tracked
        if tracked.window >= self.settings.max_uncommitted:
            # Bound what a crash can redo: stop fetching this partition until the
            # finished prefix catches up with it.
            self.pause_for(topic, partition, "window")
        self._holding += 1
        lane = self._lanes.get(webhook_id)
        if lane is None:
            lane = self._lanes[webhook_id] = self._new_lane(webhook_id)
        lane.push(item)
        if self.pause_lanes and webhook_id != _POISON_LANE:
            tp = (topic, partition)
            if lane.paused and tp not in lane.paused_partitions:
                self._pause_lane(lane, [tp])  # assigned to us since the lane was paused
            elif not lane.paused and lane.held >= self.lane_cap(lane):
                self._pause_lane(lane, self._lane_partitions(tp))
        return lane

    def _new_lane(self, webhook_id: str) -> Lane:
        max_in_flight, rate = self._limits_of(webhook_id)
        return Lane.new(webhook_id, max_in_flight, rate, self.settings.retry.retry_after_max)

    def _limits_of(self, webhook_id: str) -> tuple[int, float | None]:
        """The webhook's own limits, else the worker's defaults."""
        sub = self.table.get(webhook_id)
        max_in_flight = (sub.max_in_flight if sub else None) or (
            self.settings.max_in_flight_per_endpoint
        )
        rate = (sub.rate_limit if sub else None) or self.settings.rate_limit_per_endpoint
        return min(max_in_flight, self.settings.max_in_flight), rate

    def lane_cap(self, lane: Lane) -> int:
        """Records a lane may hold before its partitions are paused (it resumes at a
        quarter: wide, so that a busy healthy lane pauses seldom)."""
        return max(8 * lane.control.ceiling, self.settings.lane_cap)

    # --- runners --------------------------------------------------------------------

    def _top_up(self, lane: Lane) -> None:
        for _ in range(lane.wanted_runners()):
            lane.runners += 1
            task = asyncio.create_task(self._runner(lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _runner(self, lane: Lane) -> None:
        """Take the lane's records one by one while it has some it may start."""
        assert self.loop is not None
        loop = self.loop
        try:
            while lane.ready and self._fatal is None and not self._stop.is_set():
                if lane.runners > lane.control.limit:
                    return  # the endpoint throttled: fewer runners from now on
                blocked = lane.blocked(loop.time())
                if blocked > 0:
                    await self._sleep(blocked)
                    continue
                wait = lane.reserve(loop.time())
                if wait > 0:
                    await self._sleep(wait)  # the booked slot is this runner's: keep it
                    if not lane.ready or self._stop.is_set():
                        return
                item = lane.take()
                tp = (item.topic, item.partition)
                self._running[tp] += 1
                try:
                    async with self._http_slots:
                        status, retry_after = await self._dispatch(item)
                except Exception as exc:
                    # Never mark an unfinished record done: stop, and let a restart redo it.
                    logger.exception(
                        "%s: dispatch of %s/%d@%d failed",
                        self.role, item.topic, item.partition, item.offset,
                    )  # fmt: skip
                    self._fatal = exc
                    return
                finally:
                    self._running[tp] -= 1
                    self._progress.set()
                lane.done(item)
                lane.on_answer(status, retry_after, loop.time())
                self._released(lane)
                self._finished(item)
                if lane.wanted_runners():  # the AIMD limit grew back
                    self._top_up(lane)
        finally:
            lane.runners -= 1

    async def _dispatch(self, item: Item) -> tuple[int | None, float | None]:
        assert self.dispatcher is not None and self.loop is not None
        source = deadletters.Source(item.topic, item.partition, item.offset)
        if item.record is None:
            await self.dispatcher.dead_letter(
                deadletters.UNDECODABLE, item.detail, None, source, self._stop, raw=item.raw
            )
            return None, None
        handled = await self.dispatcher.handle(item.record, source, self._stop)
        lane = self._lanes.get(item.record["webhook_id"])
        if lane is not None and handled.subscription is not lane.subscription:
            # First record of the lane, or the webhook was updated: its limits may differ.
            lane.subscription = handled.subscription
            lane.configure(*self._limits_of(lane.webhook_id), self.loop.time())
        return handled.status, handled.retry_after

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once on stop (a Retry-After may be an hour)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _released(self, lane: Lane) -> None:
        self._holding -= 1
        if self._holding < self.max_held:
            self._room.set()
        if lane.paused and lane.held <= self.lane_cap(lane) // 4:
            self._resume_lane(lane)

    def _finished(self, item: Item) -> None:
        tracked = item.tracked
        assert tracked is not None
        position = tracked.done(item.offset)
        if position is None:
            return
        topic, partition = item.topic, item.partition
        if self.tracker.current(topic, partition) is not tracked:
            return  # revoked or rewound meanwhile: this generation commits nothing more
        if tracked.window < self.settings.max_uncommitted // 2:
            self.resume_for(topic, partition, "window")
        self._to_store[(topic, partition)] = position

    def _store_offsets(self) -> None:
        """Store every partition's new committable position in one call."""
        if not self._to_store or self.consumer is None:
            return
        pending, self._to_store = self._to_store, {}
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            self.consumer.consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # _STATE: every partition was revoked meanwhile; the new owners redo the rest.
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
        key = (topic, partition)
        reasons = self._pauses.setdefault(key, set())
        if not reasons:
            if key in self._resumes:
                self._resumes.discard(key)  # never resumed in librdkafka: still paused
            else:
                with contextlib.suppress(KafkaException):  # revoked meanwhile
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
            self._resumes.add((topic, partition))  # done before the next consume()

    def _take_resumes(self) -> list[TopicPartition]:
        resumes, self._resumes = self._resumes, set()
        return [TopicPartition(t, p) for t, p in resumes]

    def _lane_partitions(self, tp: tuple[str, int]) -> list[tuple[str, int]]:
        """Every partition of the lane's topic assigned to us (delivery topics are per
        webhook), not only the one a record came from."""
        assert self.consumer is not None
        mine = [(p.topic, p.partition) for p in self.consumer.consumer.assignment()]
        return [x for x in mine if x[0] == tp[0]] or [tp]

    def _pause_lane(self, lane: Lane, partitions: list[tuple[str, int]]) -> None:
        lane.paused = True
        for topic, partition in partitions:
            lane.paused_partitions.add((topic, partition))
            self.pause_for(topic, partition, "lane")
        logger.debug("lane %s paused at %d records", lane.webhook_id, lane.held)

    def _resume_lane(self, lane: Lane) -> None:
        lane.paused = False
        for topic, partition in lane.paused_partitions:
            self.resume_for(topic, partition, "lane")
        lane.paused_partitions.clear()

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
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        for lane in self._lanes.values():
            lane.paused_partitions -= revoked  # librdkafka drops their pauses itself
            # Queued records were not started: the next owner fetches them again.
            for _ in range(lane.drop(revoked)):
                self._released(lane)
        deadline = time.monotonic() + self.drain_timeout
        while any(self._running[tp] for tp in revoked):
            self._progress.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        for topic, partition in revoked:
            left = self._running.pop((topic, partition), 0)
            if left:
                logger.warning(
                    "%s: %d records of %s/%d unfinished at revoke; the next owner redoes them",
                    self.role, left, topic, partition,
                )  # fmt: skip
            self.tracker.forget(topic, partition)
            # librdkafka forgets pauses of partitions it takes away; so do we.
            self._pauses.pop((topic, partition), None)
            self._sought.discard((topic, partition))
            self._resumes.discard((topic, partition))
        self._store_offsets()
        self.on_revoked(partitions)

    async def _shutdown(self, producer: AsyncProducer, sender: Sender) -> None:
        # Runners stop taking records once stop is set; started POSTs finish.
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
        if self.consumer is not None:
            self._store_offsets()
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
