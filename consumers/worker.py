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

from consumers.delivery.dispatcher import Dispatcher
from consumers.delivery.lanes import Item, Lane
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
from synctec_webhooks.offsets import OffsetTracker
from synctec_webhooks.serialization import Codec, SerializationError
from synctec_webhooks.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

_POISON_LANE = ""  # undecodable records have no webhook; they share one lane


class WorkerCrashed(RuntimeError):
    """A dispatch failed in a way that must not be skipped; restart re-delivers it."""


class ConsumeDispatchWorker:
    role = "worker"
    # Delivery topics are per webhook, so a lane's partitions are its own to pause;
    # retry topics are shared, and the retry worker bounds its lanes by memory only.
    pause_lanes = True

    def __init__(self, settings: Settings, codec: Codec, table: SubscriptionTable) -> None:
        self.settings = settings
        self.codec = codec
        self.table = table
        self.tracker = OffsetTracker()
        self._http_slots = asyncio.Semaphore(settings.max_in_flight)
        self._lanes: dict[str, Lane] = {}
        self._holding = 0  # records consumed and not finished, all lanes
        self._room = asyncio.Event()  # set when _held drops below max_held
        self._running: Counter[tuple[str, int]] = Counter()  # started records per partition
        self._to_store: dict[tuple[str, int], int] = {}
        self._paused: dict[tuple[str, int], str] = {}  # paused partition -> its lane
        self._to_pause: set[tuple[str, int]] = set()
        self._to_resume: set[tuple[str, int]] = set()
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

    # --- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = stop
        sender = Sender(self.settings)
        await sender.start()
        producer = AsyncProducer(self.settings, self.role)
        self.dispatcher = Dispatcher(self.settings, self.codec, self.table, producer, sender)
        self.consumer = AsyncConsumer(consumer_config(self.settings, self.group(), self.role))
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
                    self._apply_pauses()
                    self._store_offsets()
                    continue
                msgs = await self.consumer.consume(500, 0.2)
                touched: set[Lane] = set()
                for msg in data_messages(msgs, self.role):
                    lane = self._accept(msg)
                    if lane is not None:
                        touched.add(lane)
                for lane in touched:
                    self._top_up(lane)
                self._apply_pauses()
                self._store_offsets()
            if self._fatal is not None:
                raise WorkerCrashed(f"{self.role} worker stopped: {self._fatal}") from self._fatal
        finally:
            await self._shutdown(producer, sender)

    def _accept(self, msg: Message) -> Lane | None:
        """Decode a record and queue it on its webhook's lane."""
        topic, partition, offset = position(msg)
        value = msg.value() or b""
        try:
            _, record = self.codec.decode(topic, value)
        except SerializationError as exc:
            if exc.retriable:
                raise WorkerCrashed(f"cannot decode for now, restart to retry: {exc}") from exc
            item = Item(topic, partition, offset, None, None, raw=msg.value(), detail=str(exc))
            return self._queue(_POISON_LANE, item)
        if not self.admit(msg, record):
            return None
        return self._queue(record["webhook_id"], Item(topic, partition, offset, msg.key(), record))

    def _queue(self, webhook_id: str, item: Item) -> Lane:
        self.tracker.add(item.topic, item.partition, item.offset)
        self._holding += 1
        lane = self._lanes.get(webhook_id)
        if lane is None:
            lane = self._lanes[webhook_id] = self._new_lane(webhook_id)
        lane.push(item)
        if self.pause_lanes and webhook_id != _POISON_LANE:
            tp = (item.topic, item.partition)
            if lane.paused and tp not in self._paused:
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
                self._finished(item.topic, item.partition, item.offset)
                if lane.wanted_runners():  # the AIMD limit grew back
                    self._top_up(lane)
        finally:
            lane.runners -= 1

    async def _dispatch(self, item: Item) -> tuple[int | None, float | None]:
        assert self.dispatcher is not None
        source = deadletter.Source(item.topic, item.partition, item.offset)
        if item.record is None:
            await self.dispatcher.dead_letter(
                deadletter.UNDECODABLE, item.detail, None, source, self._stop, raw=item.raw
            )
            return None, None
        handled = await self.dispatcher.handle(item.record, source, self._stop)
        lane = self._lanes.get(item.record["webhook_id"])
        if lane is not None and handled.subscription is not lane.subscription:
            # First record of the lane, or the webhook was updated: its limits may differ.
            assert self.loop is not None
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

    def _finished(self, topic: str, partition: int, offset: int) -> None:
        position = self.tracker.done(topic, partition, offset)
        if position is not None:
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

    # --- pausing --------------------------------------------------------------------

    def _lane_partitions(self, tp: tuple[str, int]) -> list[tuple[str, int]]:
        """Every partition of the lane's topic assigned to us (delivery topics are per
        webhook), not only the one a record came from."""
        assert self.consumer is not None
        mine = [(p.topic, p.partition) for p in self.consumer.consumer.assignment()]
        return [x for x in mine if x[0] == tp[0]] or [tp]

    def _pause_lane(self, lane: Lane, partitions: list[tuple[str, int]]) -> None:
        lane.paused = True
        for tp in partitions:
            if tp not in self._paused:
                self._paused[tp] = lane.webhook_id
                self._to_pause.add(tp)
                self._to_resume.discard(tp)
        logger.debug("lane %s paused at %d records", lane.webhook_id, lane.held)

    def _resume_lane(self, lane: Lane) -> None:
        lane.paused = False
        for tp in lane.pause_partitions(self._paused):
            del self._paused[tp]
            self._to_resume.add(tp)
            self._to_pause.discard(tp)

    def _apply_pauses(self) -> None:
        """One pause and one resume call per consume round: each call takes librdkafka's
        locks, and at full load lanes fill and drain many times a second."""
        assert self.consumer is not None
        c = self.consumer.consumer
        with contextlib.suppress(KafkaException):  # a partition revoked meanwhile
            if self._to_pause:
                c.pause([TopicPartition(t, p) for t, p in self._to_pause])
            if self._to_resume:
                c.resume([TopicPartition(t, p) for t, p in self._to_resume])
        self._to_pause.clear()
        self._to_resume.clear()

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
            dropped = lane.drop(revoked)
            for _ in range(dropped):
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
            self._paused.pop((topic, partition), None)
            self._to_pause.discard((topic, partition))
            self._to_resume.discard((topic, partition))
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
