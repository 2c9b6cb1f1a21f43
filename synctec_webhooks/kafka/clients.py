"""The only module that builds confluent-kafka clients, and the asyncio bridges to them.

Why not `confluent_kafka.aio`: `AIOConsumer` serialises every call behind the one in
flight, so `store_offsets` would wait for a blocking `consume`, and `AIOProducer`
buffers produce calls for up to a second and refuses `headers=`. The workers need
offsets stored the moment a POST finishes and headers on dead letters, so they use the
plain clients: a `Producer` polled by its own thread, whose delivery reports resolve
asyncio futures through `call_soon_threadsafe`, and a `Consumer` whose `consume()` runs
on a dedicated thread while the event loop stores offsets and pauses; resumes are made
on that thread, between two `consume()` calls (see `AsyncConsumer.consume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import DeliveryFailed

logger = logging.getLogger(__name__)


_error_listeners: list[Callable[[KafkaError], None]] = []


def add_error_listener(listener: Callable[[KafkaError], None]) -> Callable[[], None]:
    """Also send every client's error_cb errors to `listener` (the metrics); returns a
    function that removes it. Listeners run on librdkafka's threads: keep them quick."""
    _error_listeners.append(listener)
    return lambda: _error_listeners.remove(listener)


def _error_cb(err: KafkaError) -> None:
    for listener in list(_error_listeners):
        listener(err)
    # Severity by code, as quixstreams does: these are informational or transient.
    code = err.code()
    if code == KafkaError._DESTROY:
        logger.debug("kafka client: %s", err)
    elif code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
        logger.warning("kafka client: %s", err)
    else:
        logger.error("kafka client: %s", err)


_librdkafka_logger = logging.getLogger("librdkafka")


def base_config(settings: Settings, client_id: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.topic_prefix}-{client_id}",
        "error_cb": _error_cb,
        # librdkafka's own log lines go through Python logging (format, level, capture)
        # rather than straight to stderr.
        "logger": _librdkafka_logger,
    }
    if settings.kafka_debug:
        conf["debug"] = settings.kafka_debug  # librdkafka's own tracing, for diagnosis
    return conf


def producer_config(settings: Settings, client_id: str, **extra: Any) -> dict[str, Any]:
    conf = base_config(settings, client_id)
    conf.update(
        {
            # No duplicates from producer retries, no reordering within a partition.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            # Java clients share these topics; keep the same key -> partition mapping.
            "partitioner": "murmur2_random",
        }
    )
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, group: str, client_id: str, **extra: Any) -> dict[str, Any]:
    conf = base_config(settings, client_id)
    conf.update(
        {
            "group.id": group,
            "auto.offset.reset": "earliest",
            # Offsets are stored by the worker only when the work they cover is done;
            # the auto-commit then commits what was stored, never more.
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            # What a crash redoes is what finished since the last commit: commit often.
            "auto.commit.interval.ms": 200,
            # A crashed member's partitions wait this long for a new owner.
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(500, settings.session_timeout_ms // 5),
            "isolation.level": "read_committed",
            # A partition resumed (or newly written) while a fetch waits at the broker
            # is only fetched by the next request: 500 ms by default, 100 here.
            "fetch.wait.max.ms": 100,
            "partition.assignment.strategy": "cooperative-sticky",
            "topic.metadata.refresh.interval.ms": settings.metadata_refresh_ms,
        }
    )
    conf.update(extra)
    return conf


# --- topics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


_ASK_BEFORE_CREATING = 50  # missing topics above which ensure() lists what exists first


class TopicAdmin:
    """Creates topics on demand, remembering what exists so the hot path asks once."""

    def __init__(self, settings: Settings) -> None:
        self._admin = AdminClient(base_config(settings, "admin"))
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, specs: Iterable[TopicSpec], timeout: float = 30.0) -> None:
        with self._lock:
            missing = list({s.name: s for s in specs if s.name not in self._known}.values())
            if len(missing) > _ASK_BEFORE_CREATING:
                # Many at once (a fan-out starting with thousands of webhooks): one
                # metadata request says which exist, rather than a CreateTopics naming
                # thousands of topics that mostly exist (it held the fan-out's first
                # transaction for a minute with 10,000 webhooks).
                existing = set(self._admin.list_topics(timeout=timeout).topics)
                self._known |= existing
                missing = [s for s in missing if s.name not in existing]
            if not missing:
                return
            new = [
                NewTopic(
                    s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config
                )
                for s in missing
            ]
            futures = self._admin.create_topics(new, operation_timeout=timeout)
            for name, fut in futures.items():
                try:
                    fut.result(timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
                self._known.add(name)

    def known(self, topic: str) -> bool:
        return topic in self._known

    def partitions(self, topic: str, timeout: float = 10.0) -> int:
        """Partition count; waits while a topic just created elsewhere is not in metadata yet."""
        deadline = time.monotonic() + timeout
        while True:
            meta = self._admin.list_topics(topic, timeout=timeout)
            info = meta.topics.get(topic)
            if info is not None and info.error is None and info.partitions:
                return len(info.partitions)
            if time.monotonic() > deadline:
                raise KafkaException(
                    info.error
                    if info and info.error
                    else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                )
            time.sleep(0.1)

    def list_topics(self, timeout: float = 10.0) -> list[str]:
        return list(self._admin.list_topics(timeout=timeout).topics)


def core_topics(settings: Settings) -> list[TopicSpec]:
    from synctec_webhooks.topics import Topics

    t = Topics(settings.topic_prefix)
    specs = [
        TopicSpec(t.events, settings.events_partitions),
        TopicSpec(
            t.subscriptions,
            1,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        # Dead letters are the record of what failed for good: kept until removed by hand.
        TopicSpec(t.deadletters, 3, {"retention.ms": "-1"}),
        TopicSpec(f"{t.deadletters}.replayed", 1, {"cleanup.policy": "compact"}),
        # Recent attempts for people to look at, not a record to keep: a week is plenty.
        TopicSpec(t.attempts, 3, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
    ]
    specs += [
        TopicSpec(t.retry(tier), settings.delivery_partitions)
        for tier in range(1, len(settings.retry.delays) + 1)
    ]
    return specs


def delivery_topic_spec(settings: Settings, webhook_id: str) -> TopicSpec:
    from synctec_webhooks.topics import Topics

    return TopicSpec(
        Topics(settings.topic_prefix).delivery(webhook_id), settings.delivery_partitions
    )


# --- producer -------------------------------------------------------------------------


def _retriable(err: KafkaError) -> bool:
    return err.retriable() or err.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    )


class AsyncProducer:
    """A `Producer` whose produce() returns an asyncio future resolved on broker ack."""

    def __init__(self, settings: Settings, client_id: str, **extra: Any) -> None:
        self._producer = Producer(producer_config(settings, client_id, **extra))
        self._settings, self._client_id = settings, client_id
        self._best_effort: Producer | None = None  # made on the first produce_nowait
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._poll_loop, name=f"poll-{client_id}", daemon=True
        )
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if self._best_effort is not None:
                self._best_effort.poll(0)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Message]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Message] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, fut, err, msg)

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers or ()),
                    on_delivery=on_delivery,
                )
                return fut
            except BufferError:
                # Local queue full: let the poll thread drain delivery reports.
                self._producer.poll(0.1)

    def produce_nowait(self, topic: str, value: bytes, key: bytes | str | None) -> None:
        """Best-effort produce (the attempt log): a failure is only logged.

        These go through a second producer that reports failed deliveries only: no
        future, no hop to the event loop and no Python callback per record (at a few
        thousand records a second each of those costs more than the record itself),
        and a longer linger, so the broker gets fewer, larger batches.
        """
        producer = self._best_effort
        if producer is None:
            conf = producer_config(
                self._settings,
                f"{self._client_id}-log",
                **{
                    "delivery.report.only.error": True,
                    "on_delivery": _log_failed,
                    "linger.ms": 50,
                    "enable.idempotence": False,  # a lost or doubled log line is harmless
                },
            )
            producer = self._best_effort = Producer(conf)
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                return
            except BufferError:
                producer.poll(0.1)

    def flush(self, timeout: float = 30.0) -> int:
        return self._producer.flush(timeout)

    def close(self, timeout: float = 30.0) -> int:
        remaining = self._producer.flush(timeout)
        if self._best_effort is not None:
            self._best_effort.flush(min(timeout, 5.0))  # best effort: do not wait long
        self._stop.set()
        self._thread.join(5)
        return remaining


def _log_failed(err: KafkaError | None, msg: Message) -> None:
    if err is not None:
        logger.warning("best-effort record not written to %s: %s", msg.topic(), err)


def _settle(fut: asyncio.Future[Message], err: KafkaError | None, msg: Message) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(DeliveryFailed(err, retriable=_retriable(err)))
    else:
        fut.set_result(msg)


async def produce_until_acked(
    producer: AsyncProducer,
    topic: str,
    value: bytes | None,
    key: bytes | str | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
    stop: asyncio.Event | None = None,
) -> Message:
    """Produce, and on a retriable failure produce again until the broker acknowledges.

    The caller's offset is not stored meanwhile, so a crash here re-delivers rather
    than loses. A non-retriable error (e.g. record too large) is raised.
    """
    delay = 0.5
    while True:
        try:
            return await producer.produce(topic, value, key, headers)
        except DeliveryFailed as exc:
            if not exc.retriable or (stop is not None and stop.is_set()):
                raise
            logger.warning("produce to %s failed (%s); trying again in %.1f s", topic, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class TransactionalProducer:
    """A transactional `Producer` for the fan-out; every call blocks, so each producer has
    its own thread (`run`): a call that never returns strands that thread, not others.

    `broker_trouble` turns true when the client lost its brokers. librdkafka can then
    keep a stale group coordinator and block in `send_offsets_to_transaction` past its
    timeout (confluentinc/librdkafka#5456, #5511), so the fan-out replaces such a
    producer between transactions, and gives up on one that blocks anyway.
    """

    def __init__(self, settings: Settings, client_id: str, transactional_id: str) -> None:
        self.broker_trouble = False

        def on_error(err: KafkaError) -> None:
            if err.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                self.broker_trouble = True
            _error_cb(err)

        conf = producer_config(
            settings,
            client_id,
            **{
                "transactional.id": transactional_id,
                # Bounds how long readers wait on a transaction left open by an
                # instance that died and did not come back under the same id.
                "transaction.timeout.ms": settings.transaction_timeout_ms,
            },
        )
        conf["error_cb"] = on_error
        self._producer = Producer(conf)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="txn")

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def poll(self) -> None:
        """Serve queued callbacks (error_cb among them) without blocking."""
        self._producer.poll(0)

    def abandon(self) -> None:
        """Leave a blocked producer to its thread; a successor with the same
        transactional id fences it and aborts its transaction."""
        self._thread.shutdown(wait=False)

    def init_transactions(self, timeout: float = 60.0) -> None:
        self._producer.init_transactions(timeout)

    def begin_transaction(self) -> None:
        self._producer.begin_transaction()

    def produce(self, topic: str, value: bytes, key: str) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key)
                return
            except BufferError:
                self._producer.poll(0.1)

    def send_offsets_to_transaction(self, offsets: list[Any], group_metadata: Any) -> None:
        self._producer.send_offsets_to_transaction(offsets, group_metadata, 30)

    def commit_transaction(self) -> None:
        self._producer.commit_transaction(60)

    def abort_transaction(self) -> None:
        self._producer.abort_transaction(60)

    def close(self, timeout: float = 30.0) -> None:
        try:
            self._producer.flush(timeout)
        except KafkaException as exc:
            # A fenced or fatal producer refuses to flush; it is being replaced anyway
            # (its open transaction is aborted by the successor's init_transactions).
            logger.warning("closing the transactional producer: %s", exc)
        self._thread.shutdown(wait=False)


# --- consumer -------------------------------------------------------------------------


class AsyncConsumer:
    """A `Consumer` whose blocking consume() runs on one dedicated thread.

    Rebalance callbacks run on that thread too (librdkafka calls them from consume);
    `run_on_loop` lets them wait for work the event loop owns.
    """

    def __init__(self, conf: dict[str, Any]) -> None:
        self.consumer = Consumer(conf)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="consume")
        self._closed = False

    async def consume(
        self,
        max_messages: int = 500,
        timeout: float = 0.2,
        resume: list[TopicPartition] | None = None,
    ) -> list[Message]:
        """Resume `resume` (see `_resume_then_consume`), then consume a batch."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._resume_then_consume, resume, max_messages, timeout
        )

    def _resume_then_consume(
        self, resume: list[TopicPartition] | None, max_messages: int, timeout: float
    ) -> list[Message]:
        # resume() is synchronous in librdkafka and holds the GIL: called from the event
        # loop while this thread was inside consume(), it took 60-70 ms per call under
        # load (measured), stalling every POST in flight. Here, between two consume()
        # calls on the consume thread, it takes well under a millisecond.
        if resume:
            with contextlib.suppress(KafkaException):  # revoked meanwhile
                self.consumer.resume(resume)
        return self.consumer.consume(max_messages, timeout)  # type: ignore[no-any-return]

    async def call(self, fn: Any, *args: Any) -> Any:
        """Run a blocking client call on the consume thread (never concurrently with consume)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.call(self.consumer.close)
        self._executor.shutdown(wait=True)


async def stop_following(task: asyncio.Task[None] | None, consumer: AsyncConsumer | None) -> None:
    """Stop a topic follower (the subscription table, the attempt log): cancel its
    background task, wait for it to end, then close its consumer."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if consumer is not None:
        await consumer.close()


def is_benign(err: KafkaError) -> bool:
    """Consumer errors that need no action: end of partition, unknown topic while created."""
    return err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART)


def data_messages(msgs: list[Message], what: str) -> list[Message]:
    """The records among consumed messages; errors are logged (benign ones at debug)."""
    out = []
    for m in msgs:
        err = m.error()
        if err is None:
            out.append(m)
        elif is_benign(err):
            logger.debug("%s: %s", what, err)
        else:
            logger.warning("%s: %s", what, err)
    return out


def position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record: never None for a record."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"not a consumed record: {msg!r}")
    return topic, partition, offset
