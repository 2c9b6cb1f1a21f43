"""Following a topic: read it from its beginning to its end, then keep reading.

The subscription table, the attempt log and the dead-letter listing each keep their own
view of a whole topic, so they read it without a consumer group: every partition is
assigned from its beginning (`assign`, never `subscribe`) and no offset is committed,
so every reader, in every process, sees every record, every time it starts.

"Caught up" means: every record below the high watermarks asked of the partition
leaders at that moment has been handed over. `TopicFollower.start` returns once caught
up with the ends as of its start, then follows in the background; `catch_up()` asks for
the ends again and waits for them (the subscription table's `sync`). `read_to_end` is
the one-shot, synchronous form, for the CLI and the dead-letter listing.

The group id: librdkafka refuses to build a consumer without `group.id`, but these
readers never join a group, never fetch committed offsets and never commit. They all
name the same group, `<prefix>.unused` (`READER_GROUP`), which therefore never has
members or offsets; the prefix keeps it under the deployment's ACLs like its real groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from synctec_webhooks.config import Settings
from synctec_webhooks.kafka.admin import TopicAdmin
from synctec_webhooks.kafka.config import base_config
from synctec_webhooks.kafka.consumer import AsyncConsumer, data_messages, position
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

READER_GROUP = "unused"
"""The role in `<prefix>.unused`, the `group.id` of every group-less reader (see above)."""

_WARN_EVERY = 10.0  # seconds between warnings while waiting on the broker

OnBatch = Callable[[list[Message]], Awaitable[None]]


class CatchUps:
    """When a view of followed topics was last known current, and one catch-up at a time.

    `wait(not_before)` returns at once when the view was current at `not_before` or
    later; otherwise it catches up (`catch_up`, e.g. `TopicFollower.catch_up`), and
    callers that asked meanwhile share that round instead of starting their own. The
    subscription table, the account table and the audit log each keep one.
    """

    def __init__(self, catch_up: Callable[[], Awaitable[object]]) -> None:
        self._catch_up = catch_up
        self._lock = asyncio.Lock()
        self.current_at = 0.0  # epoch seconds

    def loaded(self, asked_at: float) -> None:
        """The view was read to the ends the topics had at `asked_at` (at start)."""
        self.current_at = max(self.current_at, asked_at)

    async def wait(self, not_before: float) -> None:
        if self.current_at >= not_before:
            return
        async with self._lock:
            if self.current_at >= not_before:
                return
            asked_at = time.time()
            await self._catch_up()
            self.current_at = asked_at


def reader_config(settings: Settings, client_id: str, **extra: Any) -> dict[str, Any]:
    """Configuration of a group-less reader: assigned partitions, nothing committed."""
    conf = base_config(settings, client_id)
    conf.update(
        {
            "group.id": Topics(settings.topic_prefix).group(READER_GROUP),
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # A record written while a fetch waits at the broker is fetched by the next
            # request: 500 ms by default, 100 here.
            "fetch.wait.max.ms": 100,
            "isolation.level": "read_committed",
            # Prefetch a few MB, not librdkafka's 64 MB / 100,000 records per partition:
            # these readers go through whole topics (a week of attempts, every dead
            # letter) in the admin service, which must stay in its pod's memory. It
            # peaked 30-60 MB higher with the defaults (docs/benchmarks.md, admin run).
            "queued.max.messages.kbytes": 4096,
            "queued.min.messages": 10_000,
            "fetch.max.bytes": 2 * 1024 * 1024,
        }
    )
    conf.update(extra)
    return conf


def from_beginning(topic: str, partitions: Iterable[int]) -> list[TopicPartition]:
    return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]


def high_watermarks(consumer: Consumer, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """{partition: high watermark} of the partitions that hold records, asked of their
    leaders (not librdkafka's cache). Blocking; safe beside a consume() on another thread."""
    ends = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10, cached=False
        )
        if high > max(low, 0):  # an empty partition (or one emptied by retention): no wait
            ends[p] = high
    return ends


def reached(positions: Iterable[TopicPartition]) -> dict[int, int]:
    """{partition: next offset to read} from `Consumer.position()`, leaving out the
    partitions with no position yet (a logical, negative offset)."""
    return {tp.partition: tp.offset for tp in positions if tp.offset >= 0}


def behind(ends: Mapping[int, int], positions: Mapping[int, int]) -> dict[int, int]:
    """The part of `ends` ({partition: end offset}) that `positions` has not reached."""
    return {p: end for p, end in ends.items() if positions.get(p, 0) < end}


class TopicFollower:
    """Reads `topic` from its beginning without a consumer group and hands each batch of
    records (errors left out and logged) to `on_batch`, in order, one batch at a time.

        follower = TopicFollower(settings, topic, "my-reader", on_batch)
        await follower.start()     # returns caught up with the topic's ends at start
        await follower.catch_up()  # caught up with its ends now
        await follower.stop()

    An exception from `on_batch` ends the following; `catch_up` then raises.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        client_id: str,
        on_batch: OnBatch,
        *,
        batch: int = 500,
        wait: float = 0.1,
    ) -> None:
        self.topic = topic
        self._settings = settings
        self._client_id = client_id
        self._on_batch = on_batch
        self._batch, self._wait = batch, wait
        self._consumer: AsyncConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._partitions: list[TopicPartition] = []
        self._positions: dict[int, int] = {}
        self._advanced = asyncio.Event()

    async def start(self, admin: TopicAdmin | None = None) -> None:
        """Assign every partition from its beginning, follow in the background, and
        return once every record the topic holds now has been handed to `on_batch`."""
        admin = admin or TopicAdmin(self._settings)
        count = await asyncio.to_thread(admin.partitions, self.topic)
        self._consumer = AsyncConsumer(reader_config(self._settings, self._client_id))
        self._partitions = [TopicPartition(self.topic, p) for p in range(count)]
        self._consumer.consumer.assign(from_beginning(self.topic, range(count)))
        self._task = asyncio.create_task(self._follow(), name=f"follow-{self.topic}")
        await self.catch_up()

    async def _follow(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        try:
            while True:
                msgs = data_messages(await consumer.consume(self._batch, self._wait), self.topic)
                if msgs:
                    await self._on_batch(msgs)
                done = await consumer.call(consumer.consumer.position, self._partitions)
                self._positions.update(reached(done))
                self._advanced.set()
        finally:
            self._advanced.set()  # wakes catch_up(), which then finds this task ended

    async def catch_up(self) -> None:
        """Return once every record below the topic's current ends was handed over.

        Waits as long as it takes, asking for the ends again while the broker does not
        answer (a topic created a moment ago may have no leader yet, a restarting broker
        takes seconds to serve its partitions again).
        """
        self._check_following()
        ends = await self._ends()
        while behind(ends, self._positions):
            self._check_following()
            self._advanced.clear()
            try:
                await asyncio.wait_for(self._advanced.wait(), _WARN_EVERY)
            except TimeoutError:
                logger.warning("still catching up with %s", self.topic)

    def _check_following(self) -> None:
        task = self._task
        if task is None or task.done():
            failure = task.exception() if task is not None and not task.cancelled() else None
            raise RuntimeError(f"not following {self.topic}") from failure

    async def _ends(self) -> dict[int, int]:
        assert self._consumer is not None
        consumer = self._consumer.consumer
        partitions = [tp.partition for tp in self._partitions]
        failing_since: float | None = None
        while True:
            try:
                # Not on the consume thread: the query must not wait behind consume().
                return await asyncio.to_thread(high_watermarks, consumer, self.topic, partitions)
            except KafkaException as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                elif now - failing_since > _WARN_EVERY:
                    logger.warning("cannot read %s watermarks yet: %s", self.topic, exc)
                    failing_since = now
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Stop following: cancel the background task, wait for it to end, then close
        the consumer. Harmless before `start` and when called twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.close()


def read_to_end(
    settings: Settings, topic: str, client_id: str, admin: TopicAdmin | None = None
) -> Iterator[Message]:
    """Every record of `topic` up to its current end, without a consumer group
    (blocking). An error other than end-of-partition raises RuntimeError."""
    count = (admin or TopicAdmin(settings)).partitions(topic)
    consumer = Consumer(reader_config(settings, client_id))
    try:
        ends = high_watermarks(consumer, topic, range(count))
        consumer.assign(from_beginning(topic, ends))
        while ends:
            # Short waits: consume() holds out for a full batch until its timeout, and the
            # position check below is what ends the read.
            for msg in consumer.consume(500, 0.1):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {err}")
                    continue
                yield msg
                _, partition, offset = position(msg)
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
            if ends:
                done = consumer.position([TopicPartition(topic, p) for p in ends])
                ends = behind(ends, reached(done))
    finally:
        consumer.close()
