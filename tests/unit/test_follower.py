"""The topic follower without a broker: a fake consumer stands in for librdkafka, so
what is checked is the follower's own logic (caught up = every record below the ends
asked for handed over; batches in order; errors left out; stop), `read_to_end`, and the
configurations the kafka package hands to librdkafka."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from synctec_webhooks import kafka, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import follower, probe
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.subscriptions import SubscriptionTable, to_record
from synctec_webhooks.topics import Topics

TOPIC = "t.test"
_NO_POSITION = -1001  # librdkafka's OFFSET_INVALID: nothing consumed yet


class FakeMessage:
    def __init__(
        self,
        partition: int,
        offset: int,
        value: bytes | None,
        key: bytes | None = None,
        err: KafkaError | None = None,
    ) -> None:
        self._partition, self._offset, self._value, self._key, self._err = (
            partition,
            offset,
            value,
            key,
            err,
        )

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> KafkaError | None:
        return self._err


class FakeLog:
    """The broker side: partitions of records, a log start offset each (retention)."""

    def __init__(self, partitions: int) -> None:
        self.records: dict[int, list[FakeMessage]] = {p: [] for p in range(partitions)}
        self.low: dict[int, int] = dict.fromkeys(range(partitions), 0)
        self.errors: list[FakeMessage] = []  # handed out by the next consume()
        self.configs: list[dict[str, Any]] = []  # of the consumers built over this log
        self.consumers: list[Any] = []

    def append(self, partition: int, value: bytes | None, key: bytes | None = None) -> None:
        offset = self.low[partition] + len(self.records[partition])
        self.records[partition].append(FakeMessage(partition, offset, value, key))

    def high(self, partition: int) -> int:
        return self.low[partition] + len(self.records[partition])


class FakeConsumer:
    """The few `Consumer` calls the follower makes, over a `FakeLog`."""

    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.fetch: dict[int, int] = {}
        self.app: dict[int, int] = {}
        self.closed = False
        self.watermark_failures = 0  # the next this many watermark queries raise

    def assign(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            assert tp.offset == OFFSET_BEGINNING
            self.fetch[tp.partition] = self.log.low[tp.partition]

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out, self.log.errors = list(self.log.errors), []
        for p, at in self.fetch.items():
            records = self.log.records[p][at - self.log.low[p] :]
            for msg in records[: num_messages - len(out)]:
                out.append(msg)
                self.fetch[p] = self.app[p] = msg.offset() + 1
        if not out:
            time.sleep(min(timeout, 0.005))
        return out

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.app.get(tp.partition, _NO_POSITION))
            for tp in tps
        ]

    def get_watermark_offsets(
        self, tp: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        assert not cached
        if self.watermark_failures:
            self.watermark_failures -= 1
            raise kafka_exception()
        return self.log.low[tp.partition], self.log.high(tp.partition)

    def close(self) -> None:
        self.closed = True


def kafka_exception() -> Exception:
    from confluent_kafka import KafkaException

    return KafkaException(KafkaError(KafkaError._TRANSPORT))


class FakeAsyncConsumer:
    def __init__(self, consumer: FakeConsumer) -> None:
        self.consumer = consumer
        self.closed = False

    async def consume(self, max_messages: int = 500, timeout: float = 0.2) -> list[FakeMessage]:
        msgs = self.consumer.consume(max_messages, 0)
        await asyncio.sleep(0 if msgs else 0.005)
        return msgs

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    async def close(self) -> None:
        self.closed = True
        self.consumer.close()


class FakeAdmin:
    def __init__(self, log: FakeLog) -> None:
        self.log = log

    def partitions(self, topic: str, timeout: float = 10.0) -> int:
        return len(self.log.records)

    def ensure(self, specs: Any, timeout: float = 30.0) -> None:
        pass


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> FakeLog:
    """A fake topic; the follower's consumers read it, and record their configurations."""
    fake = FakeLog(3)

    def async_consumer(conf: dict[str, Any]) -> FakeAsyncConsumer:
        fake.configs.append(conf)
        c = FakeAsyncConsumer(FakeConsumer(fake))
        fake.consumers.append(c)
        return c

    def consumer(conf: dict[str, Any]) -> FakeConsumer:
        fake.configs.append(conf)
        c = FakeConsumer(fake)
        fake.consumers.append(c)
        return c

    monkeypatch.setattr(follower, "AsyncConsumer", async_consumer)
    monkeypatch.setattr(follower, "Consumer", consumer)
    return fake


class Collect:
    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    async def __call__(self, msgs: list[Any]) -> None:
        self.batches.append([(m.partition(), m.offset()) for m in msgs])

    @property
    def seen(self) -> list[tuple[int, int]]:
        return [x for batch in self.batches for x in batch]


# --- pure helpers ---------------------------------------------------------------------


def test_behind_is_what_positions_have_not_reached() -> None:
    assert follower.behind({0: 5, 1: 3, 2: 1}, {0: 5, 1: 2}) == {1: 3, 2: 1}
    assert follower.behind({0: 5}, {0: 7}) == {}
    assert follower.behind({}, {0: 1}) == {}


def test_reached_leaves_out_partitions_without_a_position() -> None:
    tps = [TopicPartition(TOPIC, 0, 4), TopicPartition(TOPIC, 1, _NO_POSITION)]
    assert follower.reached(tps) == {0: 4}


def test_high_watermarks_only_of_partitions_holding_records() -> None:
    fake = FakeLog(3)
    fake.append(0, b"a")
    fake.low[2] = 7  # every record deleted by retention: nothing to wait for
    assert follower.high_watermarks(FakeConsumer(fake), TOPIC, range(3)) == {0: 1}  # type: ignore[arg-type]


def test_every_reader_names_the_one_unused_group() -> None:
    settings = Settings(topic_prefix="shop1")
    a = kafka.reader_config(settings, "subscriptions")
    b = kafka.reader_config(settings, "admin-attempts")
    assert a["group.id"] == b["group.id"] == Topics("shop1").group(kafka.READER_GROUP)
    assert a["client.id"] != b["client.id"]
    assert a["enable.auto.commit"] is False
    assert a["isolation.level"] == "read_committed"
    assert kafka.reader_config(settings, "x", **{"fetch.wait.max.ms": 5})["fetch.wait.max.ms"] == 5


def test_probe_configurations_take_a_bootstrap_string_only() -> None:
    assert probe.probe_admin_config("127.0.0.1:9") == {
        "bootstrap.servers": "127.0.0.1:9",
        "log_level": 0,
        "reconnect.backoff.max.ms": 200,
    }
    assert probe.probe_consumer_config("127.0.0.1:9", "g") == {
        "bootstrap.servers": "127.0.0.1:9",
        "group.id": "g",
        "enable.auto.commit": False,
        "log_level": 0,
        "reconnect.backoff.max.ms": 200,
    }


# --- TopicFollower --------------------------------------------------------------------


def test_start_returns_caught_up_then_follows(log: FakeLog) -> None:
    for i in range(700):  # more than one batch
        log.append(i % 2, str(i).encode())
    got = Collect()

    async def main() -> None:
        f = kafka.TopicFollower(Settings(), TOPIC, "reader", got)
        await f.start(FakeAdmin(log))  # type: ignore[arg-type]
        assert len(got.seen) == 700
        for p in (0, 1):  # in order within each partition
            offsets = [o for q, o in got.seen if q == p]
            assert offsets == sorted(offsets) == list(range(350))
        log.append(2, b"new")
        await f.catch_up()
        assert got.seen[-1] == (2, 0)
        await f.stop()
        await f.stop()  # twice: harmless

    asyncio.run(main())
    assert log.configs[0]["group.id"] == "synctec.unused"
    assert log.consumers[0].closed


def test_an_empty_topic_is_caught_up_at_once(log: FakeLog) -> None:
    got = Collect()

    async def main() -> None:
        f = kafka.TopicFollower(Settings(), TOPIC, "reader", got)
        await asyncio.wait_for(f.start(FakeAdmin(log)), 2)  # type: ignore[arg-type]
        await f.stop()

    asyncio.run(main())
    assert got.batches == []


def test_errors_are_left_out_of_batches(log: FakeLog) -> None:
    log.errors.append(FakeMessage(0, -1, None, err=KafkaError(KafkaError._PARTITION_EOF)))
    log.errors.append(FakeMessage(0, -1, None, err=KafkaError(KafkaError._TRANSPORT)))
    log.append(0, b"x")
    got = Collect()

    async def main() -> None:
        f = kafka.TopicFollower(Settings(), TOPIC, "reader", got)
        await f.start(FakeAdmin(log))  # type: ignore[arg-type]
        await f.stop()

    asyncio.run(main())
    assert got.seen == [(0, 0)]


def test_watermarks_are_asked_again_until_the_broker_answers(log: FakeLog) -> None:
    log.append(1, b"x")
    got = Collect()

    async def main() -> None:
        f = kafka.TopicFollower(Settings(), TOPIC, "reader", got)
        original = follower.high_watermarks
        calls = 0

        def flaky(*args: Any) -> dict[int, int]:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise kafka_exception()
            return original(*args)

        follower.high_watermarks = flaky  # type: ignore[assignment]
        try:
            await f.start(FakeAdmin(log))  # type: ignore[arg-type]
        finally:
            follower.high_watermarks = original
        assert calls == 3
        await f.stop()

    asyncio.run(main())
    assert got.seen == [(1, 0)]


def test_catch_up_raises_once_the_callback_failed(log: FakeLog) -> None:
    async def fail(msgs: list[Any]) -> None:
        if any(m.value() == b"bad" for m in msgs):
            raise ValueError("cannot handle")

    async def main() -> None:
        f = kafka.TopicFollower(Settings(), TOPIC, "reader", fail)
        await f.start(FakeAdmin(log))  # type: ignore[arg-type]
        log.append(0, b"bad")
        with pytest.raises(RuntimeError, match="not following") as raised:
            await asyncio.wait_for(f.catch_up(), 2)
        assert isinstance(raised.value.__cause__, ValueError)
        with pytest.raises(ValueError):
            await f.stop()  # the failure is not lost at stop either

    asyncio.run(main())


def test_catch_up_before_start_raises_and_stop_is_harmless() -> None:
    async def main() -> None:
        f = kafka.TopicFollower(Settings(), TOPIC, "reader", Collect())
        with pytest.raises(RuntimeError, match="not following"):
            await f.catch_up()
        await f.stop()

    asyncio.run(main())


# --- read_to_end ----------------------------------------------------------------------


def test_read_to_end_reads_what_is_there_and_closes(log: FakeLog) -> None:
    for i in range(1200):
        log.append(i % 3, str(i).encode())
    log.low[1] = 0
    settings = Settings()
    got = list(follower.read_to_end(settings, TOPIC, "reader", FakeAdmin(log)))  # type: ignore[arg-type]
    assert sorted(int(m.value()) for m in got) == list(range(1200))
    consumer = log.consumers[0]
    assert consumer.closed
    assert set(consumer.fetch) == {0, 1, 2}


def test_read_to_end_assigns_only_partitions_with_records(log: FakeLog) -> None:
    log.append(2, b"only")
    got = list(follower.read_to_end(Settings(), TOPIC, "reader", FakeAdmin(log)))  # type: ignore[arg-type]
    assert [m.value() for m in got] == [b"only"]
    assert set(log.consumers[0].fetch) == {2}


def test_read_to_end_raises_on_a_consumer_error(log: FakeLog) -> None:
    log.append(0, b"x")
    log.errors.append(FakeMessage(0, -1, None, err=KafkaError(KafkaError._TRANSPORT)))
    with pytest.raises(RuntimeError, match=r"reading t\.test"):
        list(follower.read_to_end(Settings(), TOPIC, "reader", FakeAdmin(log)))  # type: ignore[arg-type]
    assert log.consumers[0].closed


# --- the subscription table on the follower -------------------------------------------


def test_subscription_table_sync_applies_what_was_written_before(
    log: FakeLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synctec_webhooks.subscriptions as subscriptions

    single = FakeLog(1)
    log.records, log.low = single.records, single.low
    monkeypatch.setattr(subscriptions, "TopicAdmin", lambda _settings: FakeAdmin(log))
    settings = Settings()
    codec = make_codec(None)
    topic = Topics(settings.topic_prefix).subscriptions

    def put(sub_id: str) -> None:
        sub = Subscription(id=sub_id, url="https://example.com/h", events=("*",), secret="s")
        log.append(0, codec.encode(topic, schemas.SUBSCRIPTION, to_record(sub)), sub_id.encode())

    put("wh_a")
    put("wh_b")

    async def main() -> None:
        table = SubscriptionTable(settings, codec)
        await table.start()
        assert {s.id for s in table.index.all()} == {"wh_a", "wh_b"}
        log.append(0, None, b"wh_a")  # tombstone
        put("wh_c")
        await table.sync(time.time())
        assert {s.id for s in table.index.all()} == {"wh_b", "wh_c"}
        log.append(0, b"not avro", b"wh_d")
        await table.sync(time.time())
        assert table.poison_count == 1
        await table.stop()

    asyncio.run(main())
