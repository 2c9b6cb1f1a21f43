"""Consumers: `AsyncConsumer` (consume() on a dedicated thread) and the helpers that
read what a consume() returned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

logger = logging.getLogger(__name__)


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
