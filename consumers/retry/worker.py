"""The retry worker: holds each retry-tier record until it is due, then tries again.

Each tier has one fixed delay, so due times grow with the offset within a partition and
the first record not yet due is where a partition waits. The worker pauses that
partition and seeks back to the record, and keeps polling the others (never sleeping
past max.poll.interval.ms); a timer resumes the partition when the record is due, and
the record is fetched again. Paused partitions are forgotten on revoke; the next owner
starts from the committed offset and pauses again as needed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message, TopicPartition

from synctec_webhooks.consumers.consume_loop import ConsumeDispatchWorker
from synctec_webhooks.kafka import position
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)


class RetryWorker(ConsumeDispatchWorker):
    role = "retry"
    # Retry topics are shared by every webhook: pausing one for a slow webhook would
    # hold the others back, so lanes here are bounded by the worker's memory cap only.
    pause_lanes = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[tuple[str, int], asyncio.TimerHandle] = {}

    def group(self) -> str:
        return Topics(self.settings.topic_prefix).group("retry")

    def subscription(self) -> list[str]:
        topics = Topics(self.settings.topic_prefix)
        return [topics.retry(tier) for tier in range(1, len(self.settings.retry.delays) + 1)]

    def admit(self, msg: Message, record: dict[str, Any]) -> bool:
        topic, partition, offset = position(msg)
        key = (topic, partition)
        if key in self._held:
            return False  # fetched before the pause took effect; it comes again on resume
        wait = record["not_before"] / 1000.0 - time.time()
        if wait <= 0:
            return True
        assert self.consumer is not None and self.loop is not None
        self.pause_for(topic, partition, "not due")
        self.consumer.consumer.seek(TopicPartition(topic, partition, offset))
        self._held[key] = self.loop.call_later(wait, self._resume, key)
        logger.debug("holding %s/%d at %d for %.2f s", topic, partition, offset, wait)
        return False

    def _resume(self, key: tuple[str, int]) -> None:
        if self._held.pop(key, None) is None:
            return
        self.resume_for(key[0], key[1], "not due")

    def on_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            timer = self._held.pop((tp.topic, tp.partition), None)
            if timer is not None:
                timer.cancel()
