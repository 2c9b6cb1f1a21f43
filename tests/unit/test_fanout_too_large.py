"""Events whose records cannot be written: dead-lettered in the batch's transaction, never
a stall (issue 11), under the event's account; and each event fanned out to its own
account's webhooks only (issue 12). The fan-out runs on fakes of the consumer, the table
and librdkafka's transactional producer, which refuses what librdkafka refuses locally:
no broker.
"""

from __future__ import annotations

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from fastavro.schema import fingerprint, to_parsing_canonical_form
from prometheus_client import CollectorRegistry

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.fanout import worker as fanout
from synctec_webhooks.events import MAX_BODY_BYTES
from synctec_webhooks.kafka import TransactionalProducer
from synctec_webhooks.matching import Subscription, SubscriptionIndex
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.serialization import SINGLE_OBJECT_MAGIC, SingleObjectCodec
from synctec_webhooks.topics import Topics

SETTINGS = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="t")
TOPICS = Topics("t")
CODEC = SingleObjectCodec()
LIBRDKAFKA_MAX = 1_000_000  # message.max.bytes, librdkafka's default
ACCOUNT = "acct_eu"


class Msg:
    def __init__(self, offset: int, value: bytes | None, key: bytes | None = b"k") -> None:
        self._offset, self._value, self._key = offset, value, key

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return TOPICS.events

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_738_161_000_000)

    def error(self) -> None:
        return None


class Librdkafka:
    """The transactional `Producer`: refuses records over `limit` bytes, as librdkafka
    does locally (MSG_SIZE_TOO_LARGE, neither retriable nor abortable)."""

    def __init__(self, limit: int = LIBRDKAFKA_MAX) -> None:
        self.limit = limit
        self.open: list[tuple[str, bytes]] = []
        self.committed: list[tuple[str, bytes]] = []
        self.offsets: list[TopicPartition] = []
        self.aborts = 0
        self.refused: list[bytes] = []
        self.keys: list[tuple[str, str]] = []  # of every record produced

    def begin_transaction(self) -> None:
        self.open = []

    def produce(self, topic: str, value: bytes, key: str) -> None:
        if len(value) + len(key.encode()) > self.limit:
            self.refused.append(value)
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message too large"))
        self.open.append((topic, value))
        self.keys.append((topic, key))

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self._pending_offsets = list(offsets)

    def commit_transaction(self, timeout: float) -> None:
        self.committed += self.open
        self.offsets += self._pending_offsets
        self.open = []

    def abort_transaction(self, timeout: float) -> None:
        self.open = []
        self.aborts += 1

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def _producer(raw: Librdkafka) -> TransactionalProducer:
    producer = TransactionalProducer.__new__(TransactionalProducer)
    producer.broker_trouble = False
    producer._producer = cast(Any, raw)
    producer._thread = ThreadPoolExecutor(max_workers=1)
    return producer


class FakeConsumer:
    class consumer:  # what AsyncConsumer.consumer is: the librdkafka client
        @staticmethod
        def consumer_group_metadata() -> str:
            return "group metadata"

        @staticmethod
        def assignment() -> list[TopicPartition]:
            return []

    async def consume(self, n: int, timeout: float) -> list[Any]:
        return []

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


class FakeTable:
    def __init__(self, *subs: Subscription) -> None:
        self.index = SubscriptionIndex()
        for sub in subs:
            self.index.upsert(sub)

    async def sync(self, not_before: float) -> None:
        return None


class FakeAdmin:
    def __init__(self, settings: Settings) -> None:
        pass

    def known(self, topic: str) -> bool:
        return True


def _event(
    n: int,
    title: str = "Merino Wool Sweater",
    account: str = ACCOUNT,
    event: str = "product.synced",
) -> bytes:
    # Straight to the topic, as a producer that does not validate would write it.
    record = {
        "id": f"evt_{n}",
        "event": "product.synced",
        "timestamp": "2025-01-29T14:30:00Z",
        "product": {"id": str(n), "title": title, "sku": "MWS-001"},
        "source_store": "main-store.myshopify.com",
        "destination_store": "eu-store.myshopify.com",
        "status": "success",
        "account_id": account,
    }
    if event == "sync.failed":
        record = {**record, "status": "failed", "error": {"code": "x", "message": "y"}}
    return CODEC.encode(TOPICS.events, schemas.EVENT_SCHEMA[event], record)


def _worker(
    monkeypatch: pytest.MonkeyPatch, raw: Librdkafka, subs: list[Subscription] | None = None
) -> tuple[fanout.FanoutWorker, list[str]]:
    monkeypatch.setattr(fanout, "TopicAdmin", FakeAdmin)
    if subs is None:
        subs = [
            Subscription(
                id=f"wh_{n}",
                url=f"https://m.example/{n}",
                events=("*",),
                secret="s",
                account_id=ACCOUNT,
            )
            for n in (1, 2)
        ]
    worker = fanout.FanoutWorker(SETTINGS, CODEC, cast(Any, FakeTable(*subs)))
    worker._consumer = cast(Any, FakeConsumer())
    worker._producer = _producer(raw)
    replaced: list[str] = []

    async def new_producer() -> TransactionalProducer:
        replaced.append("a new transactional producer")
        return _producer(raw)

    monkeypatch.setattr(worker, "_new_producer", new_producer)
    return worker, replaced


def _written(raw: Librdkafka) -> tuple[list[str], list[dict[str, Any]]]:
    """(event ids with delivery records, dead letters) committed."""
    delivered, letters = [], []
    for topic, value in raw.committed:
        _, record = CODEC.decode(topic, value)
        if topic == TOPICS.deadletters:
            letters.append(record)
        else:
            delivered.append(record["event_id"])
    return delivered, letters


def test_records_too_large_to_write_become_dead_letters_and_the_batch_commits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = Librdkafka()
    worker, replaced = _worker(monkeypatch, raw)
    escaping = _event(2, "\x01" * 170_000)  # 170 KB as Avro, ~1 MB as a JSON body
    poison = b"\x00garbage" * 125_000  # 1,000,000 bytes that are no record
    big = _event(4, "a" * (MAX_BODY_BYTES + 1000))  # writable, but over the body limit
    batch = [Msg(0, _event(1)), Msg(1, escaping), Msg(2, poison), Msg(3, big), Msg(4, _event(5))]

    asyncio.run(worker._process(cast(Any, batch)))

    delivered, letters = _written(raw)
    assert replaced == [] and raw.aborts == 0
    assert sorted(delivered) == ["evt_1", "evt_1", "evt_5", "evt_5"]  # two webhooks each
    assert raw.offsets == [TopicPartition(TOPICS.events, 0, 5)]  # past every record
    by_offset = {d["source_offset"]: d for d in letters}
    assert sorted(by_offset) == [1, 2, 3]
    assert (by_offset[1]["reason"], by_offset[3]["reason"]) == (deadletters.TOO_LARGE,) * 2
    assert by_offset[1]["original_size"] > 1_000_000  # the escaped body
    assert f"{MAX_BODY_BYTES:,}" in by_offset[1]["detail"]
    assert by_offset[1]["raw"] == escaping[: deadletters.RAW_KEPT] and by_offset[1]["truncated"]
    assert by_offset[2]["reason"] == deadletters.UNDECODABLE
    assert (by_offset[2]["original_size"], by_offset[2]["truncated"]) == (len(poison), True)
    # The events that were read are their account's; nobody knows whose the poison is.
    assert [by_offset[n]["account_id"] for n in (1, 2, 3)] == [ACCOUNT, None, ACCOUNT]
    assert MAX_BODY_BYTES < by_offset[3]["original_size"] < MAX_BODY_BYTES + 2000
    assert all(len(v) <= deadletters.MAX_RECORD_BYTES for _, v in raw.committed)
    assert worker.dead_lettered == 3 and worker.events_consumed == 5
    dead = worker.metrics.registry.get_sample_value(
        "synctec_dead_letters_total",
        {"reason": deadletters.TOO_LARGE, "event_type": "product.synced"},
    )
    assert dead == 2


def test_a_record_the_producer_refuses_is_dead_lettered_without_replacing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The producer's limit below ours (a smaller message.max.bytes): refused at produce.
    raw = Librdkafka(limit=80_000)
    worker, replaced = _worker(monkeypatch, raw)
    refused = _event(2, "a" * 100_000)
    batch = [Msg(0, _event(1)), Msg(1, refused), Msg(2, _event(3))]

    asyncio.run(worker._process(cast(Any, batch)))

    delivered, letters = _written(raw)
    assert replaced == []  # the producer is fine; only that record cannot be written
    assert raw.aborts == 1  # the transaction it was refused in, redone without it
    assert sorted(delivered) == ["evt_1", "evt_1", "evt_3", "evt_3"]
    assert raw.offsets == [TopicPartition(TOPICS.events, 0, 3)]
    [letter] = letters
    assert (letter["reason"], letter["source_offset"]) == (deadletters.TOO_LARGE, 1)
    assert "MSG_SIZE_TOO_LARGE" in letter["detail"] or "too large" in letter["detail"]
    assert letter["raw"] == refused[: deadletters.RAW_KEPT]
    assert letter["original_size"] == len(raw.refused[0])
    assert letter["account_id"] == ACCOUNT


def test_a_refused_dead_letter_is_written_again_without_the_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = Librdkafka(limit=50_000)  # below even a dead letter keeping 64 KiB of the event
    worker, replaced = _worker(monkeypatch, raw)
    refused = _event(2, "a" * 100_000)

    asyncio.run(worker._process(cast(Any, [Msg(0, _event(1)), Msg(1, refused)])))

    delivered, [letter] = _written(raw)
    assert replaced == [] and raw.aborts == 2
    assert sorted(delivered) == ["evt_1", "evt_1"]
    assert raw.offsets == [TopicPartition(TOPICS.events, 0, 2)]
    assert letter["reason"] == deadletters.TOO_LARGE
    assert (letter["raw"], letter["truncated"]) == (None, True)
    assert "100,3" in letter["detail"]  # the event's record, not its dead letter
    assert letter["account_id"] == ACCOUNT


# --- accounts ------------------------------------------------------------------------


def _hook(sub_id: str, account: str, *events: str, enabled: bool = True) -> Subscription:
    return Subscription(id=sub_id, url=f"https://m.example/{sub_id}", events=events,
                        secret="s", enabled=enabled, account_id=account)  # fmt: skip


def test_each_event_goes_to_its_own_accounts_webhooks_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = Librdkafka()
    subs = [
        _hook("wh_eu_all", "acct_eu", "*"),
        _hook("wh_eu_failed", "acct_eu", "sync.failed"),
        _hook("wh_eu_off", "acct_eu", "*", enabled=False),  # planned, to be dead-lettered
        _hook("wh_us_all", "acct_us", "*"),
        _hook("wh_us_products", "acct_us", "product.synced"),
        _hook("wh_default_all", "default", "*"),
    ]
    worker, _ = _worker(monkeypatch, raw, subs)
    batch = [
        Msg(0, _event(1, account="acct_eu")),
        Msg(1, _event(2, account="acct_us", event="sync.failed")),
        Msg(2, _event(3, account="acct_us")),
        Msg(3, _event(4, account="acct_nobody")),  # an account without webhooks
        Msg(4, _event(5, account="default", event="sync.failed")),
    ]
    asyncio.run(worker._process(cast(Any, batch)))

    written = sorted(
        (
            TOPICS.webhook_of(topic),
            record["event_id"],
            record["account_id"],
            record["partition_key"],
        )
        for topic, value in raw.committed
        for record in [CODEC.decode(topic, value)[1]]
    )
    assert written == [
        ("wh_default_all", "evt_5", "default", "default/5"),
        ("wh_eu_all", "evt_1", "acct_eu", "acct_eu/1"),
        ("wh_eu_off", "evt_1", "acct_eu", "acct_eu/1"),
        ("wh_us_all", "evt_2", "acct_us", "acct_us/2"),
        ("wh_us_all", "evt_3", "acct_us", "acct_us/3"),
        ("wh_us_products", "evt_3", "acct_us", "acct_us/3"),
    ]
    # Kafka keys too: one account's product keeps its order apart from another's.
    assert {key for _, key in raw.keys} == {"default/5", "acct_eu/1", "acct_us/2", "acct_us/3"}
    assert raw.offsets == [TopicPartition(TOPICS.events, 0, 5)]
    assert worker.events_consumed == 5 and worker.dead_lettered == 0


def test_events_written_before_accounts_go_to_the_default_accounts_webhooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An event record of the schema before accounts (schemas/history/), as it sits on
    # the topic after the upgrade: it reads as the default account's.
    from fastavro import parse_schema, schemaless_writer

    old_schema = json.loads((schemas.SCHEMA_DIR / "history" / "product_synced.v1.avsc").read_text())
    body = io.BytesIO()
    old = {k: v for k, v in CODEC.decode(TOPICS.events, _event(7))[1].items() if k != "account_id"}
    schemaless_writer(body, parse_schema(old_schema), old)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(old_schema), "CRC-64-AVRO"))
    value = SINGLE_OBJECT_MAGIC + fp + body.getvalue()

    raw = Librdkafka()
    subs = [_hook("wh_default", "default", "*"), _hook("wh_eu", "acct_eu", "*")]
    worker, _ = _worker(monkeypatch, raw, subs)
    asyncio.run(worker._process(cast(Any, [Msg(0, value)])))

    [(topic, record)] = [(t, CODEC.decode(t, v)[1]) for t, v in raw.committed]
    assert topic == TOPICS.delivery("wh_default")
    assert (record["event_id"], record["account_id"]) == ("evt_7", "default")
    assert record["partition_key"] == "default/7"
    assert "account_id" not in json.loads(record["payload"])


def test_an_event_of_no_valid_account_is_dead_lettered_not_given_to_the_default_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = Librdkafka()
    worker, _ = _worker(monkeypatch, raw, [_hook("wh_default", "default", "*")])
    batch = [Msg(0, _event(1, account="")), Msg(1, _event(2, account="../x")),
             Msg(2, _event(3, account="default"))]  # fmt: skip
    asyncio.run(worker._process(cast(Any, batch)))

    delivered, letters = _written(raw)
    assert delivered == ["evt_3"]
    assert [(d["source_offset"], d["reason"], d["account_id"]) for d in letters] == [
        (0, deadletters.INVALID_EVENT, None),
        (1, deadletters.INVALID_EVENT, None),
    ]
    assert all("account_id: " in d["detail"] for d in letters)
    assert letters[0]["raw"] == batch[0].value()  # the record, to look at
    assert raw.offsets == [TopicPartition(TOPICS.events, 0, 3)]


def test_per_account_event_metrics_count_the_events_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = Librdkafka()
    worker, _ = _worker(monkeypatch, raw, [_hook("wh_eu", "acct_eu", "*")])
    worker.metrics = Metrics.create(CollectorRegistry(), per_account=["acct_eu"])
    batch = [Msg(0, _event(1)), Msg(1, _event(2, account="acct_us")), Msg(2, b"poison")]
    asyncio.run(worker._process(cast(Any, batch)))

    def events(account: str) -> float | None:
        return worker.metrics.registry.get_sample_value(
            "synctec_account_events_total", {"account": account}
        )

    assert (events("acct_eu"), events("_other"), events("_unknown")) == (1, 1, 1)
    dead = worker.metrics.registry.get_sample_value(
        "synctec_account_dead_letters_total", {"account": "_unknown", "reason": "undecodable"}
    )
    assert dead == 1
