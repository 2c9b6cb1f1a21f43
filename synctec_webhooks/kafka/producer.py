"""Producers: `new_producer` for the synchronous callers, `AsyncProducer` (acks as
asyncio futures) and `TransactionalProducer` (the fan-out's, one thread each)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import DeliveryFailed
from synctec_webhooks.kafka.config import _error_cb, producer_config

logger = logging.getLogger(__name__)


def new_producer(settings: Settings, client_id: str, **extra: Any) -> Producer:
    """A plain `Producer` with the package's producer settings (`extra` overrides them):
    for callers that produce, poll and flush themselves."""
    return Producer(producer_config(settings, client_id, **extra))


def produce_when_queued(producer: Producer, topic: str, value: bytes, key: str, **kw: Any) -> None:
    """`produce`, waiting while librdkafka's local queue is full (BufferError): for
    callers of a plain `Producer` that flush (or commit a transaction) afterwards."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, **kw)
            return
        except BufferError:
            producer.poll(0.1)


def _retriable(err: KafkaError) -> bool:
    return err.retriable() or err.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    )


def _too_large(err: KafkaError) -> bool:
    # librdkafka refuses locally with the broker's code; the broker with it or the batch's.
    return err.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE)


def _failed(err: KafkaError) -> DeliveryFailed:
    return DeliveryFailed(err, retriable=_retriable(err), too_large=_too_large(err))


class AsyncProducer:
    """A `Producer` whose produce() returns an asyncio future resolved on broker ack."""

    def __init__(self, settings: Settings, client_id: str, **extra: Any) -> None:
        self._producer = new_producer(settings, client_id, **extra)
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
            except KafkaException as exc:
                # Refused before it was queued (a record over message.max.bytes, say):
                # failed like any record the broker did not take, so callers see one error.
                fut.set_exception(_failed(exc.args[0]))
                return fut

    def produce_nowait(self, topic: str, value: bytes, key: bytes | str | None) -> None:
        """Best-effort produce (the attempt log): a failure is only logged.

        These go through a second producer that reports failed deliveries only: no
        future, no hop to the event loop and no Python callback per record (at a few
        thousand records a second each of those costs more than the record itself),
        and a longer linger, so the broker gets fewer, larger batches.
        """
        producer = self._best_effort
        if producer is None:
            producer = self._best_effort = new_producer(
                self._settings,
                f"{self._client_id}-log",
                **{
                    "delivery.report.only.error": True,
                    "on_delivery": _log_failed,
                    "linger.ms": 50,
                    "enable.idempotence": False,  # a lost or doubled log line is harmless
                },
            )
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                return
            except BufferError:
                producer.poll(0.1)
            except KafkaException as exc:
                logger.warning("best-effort record not written to %s: %s", topic, exc)
                return

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
        fut.set_exception(_failed(err))
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
    than loses. A non-retriable error is raised (`too_large` set for a record too large).
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

        self._producer = new_producer(
            settings,
            client_id,
            **{
                "transactional.id": transactional_id,
                # Bounds how long readers wait on a transaction left open by an
                # instance that died and did not come back under the same id.
                "transaction.timeout.ms": settings.transaction_timeout_ms,
                "error_cb": on_error,
            },
        )
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
        """Queue a record in the open transaction. One refused for its size raises
        DeliveryFailed (`too_large`): that record cannot be written, but the producer and
        its transaction are sound; any other KafkaException is the transaction's."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key)
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not _too_large(err) or err.fatal() or err.txn_requires_abort():
                    raise
                raise _failed(err) from exc

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
