"""A transaction that never answers: the fan-out gives it up and must keep consuming.

Found by the fault suite (broker stopped and restarted, 2 runs in 6): while a commit
waited, the events read meanwhile filled a batch, so the partitions were paused; the
wedged transaction was given up with the partitions still paused, and the fan-out never
read another event. No broker: fakes of the consumer and of librdkafka's producer.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

import pytest
from confluent_kafka import TopicPartition

from synctec_webhooks.consumers.fanout import worker as fanout
from synctec_webhooks.serialization import SingleObjectCodec
from tests.unit.test_fanout_too_large import SETTINGS as BASE
from tests.unit.test_fanout_too_large import (
    FakeAdmin,
    FakeTable,
    Librdkafka,
    Msg,
    _event,
    _producer,
)

SETTINGS = BASE.with_(fanout_batch_max=5)
PARTITIONS = [TopicPartition("t.events", 0), TopicPartition("t.events", 1)]


class Hangs(Librdkafka):
    """send_offsets_to_transaction blocks until released (librdkafka#5456's stale
    coordinator after a broker restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.release.wait(10)
        raise RuntimeError("released at the end of the test")


class BusyConsumer:
    """Events keep arriving while the transaction waits; pause and resume are recorded."""

    def __init__(self) -> None:
        self.paused: set[int] = set()
        self.next_offset = 100

        outer = self

        class consumer:
            @staticmethod
            def consumer_group_metadata() -> str:
                return "group metadata"

            @staticmethod
            def assignment() -> list[TopicPartition]:
                return list(PARTITIONS)

            @staticmethod
            def pause(tps: list[TopicPartition]) -> None:
                outer.paused |= {tp.partition for tp in tps}

            @staticmethod
            def resume(tps: list[TopicPartition]) -> None:
                outer.paused -= {tp.partition for tp in tps}

            @staticmethod
            def committed(tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
                return [TopicPartition(tp.topic, tp.partition, 0) for tp in tps]

            @staticmethod
            def seek(tp: TopicPartition) -> None:
                pass

        self.consumer = consumer

    async def consume(self, n: int, timeout: float) -> list[Any]:
        await asyncio.sleep(0.01)
        if len(self.paused) == len(PARTITIONS):
            return []
        self.next_offset += 1
        return [Msg(self.next_offset, _event(self.next_offset))]

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


def test_a_wedged_transaction_given_up_leaves_no_partition_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanout, "TopicAdmin", FakeAdmin)
    monkeypatch.setattr(fanout, "_WEDGED_AFTER", 1.0)
    raw = Hangs()
    worker = fanout.FanoutWorker(SETTINGS, SingleObjectCodec(), cast(Any, FakeTable()))
    consumer = BusyConsumer()
    worker._consumer = cast(Any, consumer)
    worker._producer = _producer(raw)

    async def new_producer() -> Any:
        return _producer(Librdkafka())

    monkeypatch.setattr(worker, "_new_producer", new_producer)
    try:
        committed = asyncio.run(worker._commit_chunk([], list(PARTITIONS)))
    finally:
        raw.release.set()
    assert committed is False  # given up, the consumer rewound
    assert consumer.paused == set(), "partitions left paused: the fan-out would never read again"
