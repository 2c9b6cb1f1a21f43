"""A delivery whose next record cannot be written (a retry record over the size limit, or
one the broker refuses) becomes a dead letter `too_large`, and so does poison too big to
keep whole: the worker goes on, and the POST is not repeated (issue 11).

The dispatcher runs on fakes of the table, the sender and the producer, which refuses
what librdkafka refuses: no broker.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from confluent_kafka import KafkaError

from synctec_webhooks import deadletters
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.dispatcher import Dispatcher, Handled
from synctec_webhooks.consumers.delivery.outcome import Outcome, OutcomeKind
from synctec_webhooks.deadletters import Source
from synctec_webhooks.errors import DeliveryFailed
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import SingleObjectCodec

NOW_MS = 1_738_161_000_000
SETTINGS = Settings(topic_prefix="t")
CODEC = SingleObjectCodec()
SUB = Subscription(
    id="wh_big", url="https://m.example/big", events=("*",), secret="whsec_c2Vj",
    account_id="acct_big",
)  # fmt: skip


class FakeTable:
    async def lookup(self, sub_id: str) -> Subscription | None:
        return SUB if sub_id == SUB.id else None

    async def sync(self, not_before: float) -> None:
        return None

    def get(self, sub_id: str) -> Subscription | None:
        return SUB if sub_id == SUB.id else None


class FakeProducer:
    """Acknowledges what fits in `limit` bytes; refuses the rest as librdkafka does."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.records: list[tuple[str, bytes]] = []

    async def produce(self, topic: str, value: bytes, key: Any = None, headers: Any = None) -> None:
        size = len(value) + len(key.encode() if isinstance(key, str) else key or b"")
        if size > self.limit:
            error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large")
            raise DeliveryFailed(error, retriable=False, too_large=True)
        self.records.append((topic, value))

    def produce_nowait(self, topic: str, value: bytes, key: Any = None) -> None:
        pass  # the attempt log


class FakeSender:
    def __init__(self, status: int) -> None:
        self.status = status
        self.posts = 0

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        self.posts += 1
        kind = OutcomeKind.SUCCESS if self.status < 300 else OutcomeKind.HTTP_ERROR
        return Outcome(kind, self.status, f"HTTP {self.status}", None, 1.0)


def _record(payload_bytes: int, attempt: int = 1) -> dict[str, Any]:
    return {
        "delivery_id": "msg_" + "0" * 32,
        "webhook_id": SUB.id,
        "account_id": SUB.account_id,
        "event_id": "evt_big",
        "event_type": "product.synced",
        "partition_key": "acct_big/1234567890",
        "payload": '{"id":"evt_big","t":"' + "x" * (payload_bytes - 23) + '"}',
        "event_timestamp": "2025-01-29T14:30:00Z",
        "created_at": NOW_MS,
        "attempt": attempt,
        "not_before": NOW_MS,
        "history": [],
        "replays": 0,
    }


def _dispatcher(producer: FakeProducer, status: int = 500) -> tuple[Dispatcher, FakeSender]:
    sender = FakeSender(status)
    dispatcher = Dispatcher(
        SETTINGS,
        CODEC,
        cast(Any, FakeTable()),
        cast(Any, producer),
        cast(Any, sender),
        clock=lambda: NOW_MS / 1000,
    )
    return dispatcher, sender


def _handle(dispatcher: Dispatcher, record: dict[str, Any], topic: str) -> Handled:
    return asyncio.run(dispatcher.handle(record, Source(topic, 0, 7), asyncio.Event()))


def _written(producer: FakeProducer) -> tuple[list[str], list[dict[str, Any]]]:
    topics = [t for t, _ in producer.records]
    letters = [CODEC.decode(t, v)[1] for t, v in producer.records if t == "t.deadletters"]
    return topics, letters


def test_a_retry_record_over_the_limit_is_dead_lettered_after_one_post() -> None:
    producer = FakeProducer()
    dispatcher, sender = _dispatcher(producer)
    record = _record(999_950)  # written raw past the limit; its retry record is bigger yet

    handled = _handle(dispatcher, record, "t.deliveries.wh_big")

    assert handled.result == deadletters.TOO_LARGE and sender.posts == 1
    topics, [letter] = _written(producer)
    assert topics == ["t.deadletters"]  # no retry record
    assert letter["reason"] == deadletters.TOO_LARGE
    assert letter["original_size"] > deadletters.MAX_RECORD_BYTES  # the retry record's size
    assert f"{deadletters.MAX_RECORD_BYTES:,}" in letter["detail"]
    assert (letter["delivery"], letter["truncated"]) == (None, True)
    assert letter["raw"] == record["payload"].encode()[: deadletters.RAW_KEPT]
    assert (letter["delivery_id"], letter["webhook_id"]) == (record["delivery_id"], SUB.id)
    assert letter["account_id"] == "acct_big"  # without its delivery, still its account's
    assert [h["status"] for h in letter["history"]] == [500]  # the attempt that was made
    assert all(len(v) <= deadletters.MAX_RECORD_BYTES for _, v in producer.records)
    assert dispatcher.counters.by_reason[deadletters.TOO_LARGE] == 1
    assert (
        dispatcher.metrics.registry.get_sample_value(
            "synctec_dead_letters_total",
            {"reason": deadletters.TOO_LARGE, "event_type": "product.synced"},
        )
        == 1
    )


def test_a_retry_record_the_broker_refuses_is_dead_lettered() -> None:
    # The producer's (or topic's) limit below ours: refused when produced.
    producer = FakeProducer(limit=100_000)
    dispatcher, _ = _dispatcher(producer)
    record = _record(150_000, attempt=2)

    handled = _handle(dispatcher, record, "t.retry.1")

    assert handled.result == deadletters.TOO_LARGE
    topics, [letter] = _written(producer)
    assert topics == ["t.deadletters"]
    assert letter["reason"] == deadletters.TOO_LARGE and "MSG_SIZE_TOO_LARGE" in letter["detail"]
    assert letter["delivery"] is None and letter["truncated"]
    assert letter["original_size"] > 150_000


def test_a_small_retry_record_still_goes_to_its_tier() -> None:
    producer = FakeProducer()
    dispatcher, _ = _dispatcher(producer)
    assert _handle(dispatcher, _record(1000), "t.deliveries.wh_big").result == "retry"
    assert [t for t, _ in producer.records] == ["t.retry.1"]


def test_a_large_delivery_dead_lettered_for_another_reason_keeps_its_reason() -> None:
    producer = FakeProducer()
    dispatcher, _ = _dispatcher(producer)
    last = _record(950_000, attempt=4)  # the last attempt: retries exhausted

    assert _handle(dispatcher, last, "t.retry.3").result == deadletters.RETRIES_EXHAUSTED

    _, [letter] = _written(producer)
    assert letter["reason"] == deadletters.RETRIES_EXHAUSTED
    assert letter["delivery"] is None and letter["truncated"] and letter["original_size"]


def test_poison_near_a_megabyte_is_dead_lettered_cut() -> None:
    producer = FakeProducer()
    dispatcher, _ = _dispatcher(producer)
    poison = b"\xff" * 999_000
    source = Source("t.deliveries.wh_big", 0, 3)

    asyncio.run(
        dispatcher.dead_letter(
            deadletters.UNDECODABLE, "bad magic", None, source, asyncio.Event(), raw=poison
        )
    )

    _, [letter] = _written(producer)
    assert letter["reason"] == deadletters.UNDECODABLE
    assert letter["account_id"] is None  # nobody could read whose it is
    assert letter["raw"] == poison[: deadletters.RAW_KEPT]
    assert (letter["original_size"], letter["truncated"]) == (len(poison), True)


def test_a_dead_letter_the_broker_refuses_is_written_again_without_its_bytes() -> None:
    # A topic limit below even the cut dead letter: the record's bytes are left out.
    producer = FakeProducer(limit=20_000)
    dispatcher, _ = _dispatcher(producer)
    poison = b"\xff" * 500_000
    source = Source("t.deliveries.wh_big", 0, 4)

    asyncio.run(
        dispatcher.dead_letter(
            deadletters.UNDECODABLE, "bad magic", None, source, asyncio.Event(), raw=poison
        )
    )

    _, [letter] = _written(producer)
    assert letter["reason"] == deadletters.UNDECODABLE
    assert letter["raw"] is None and letter["truncated"]
    assert letter["original_size"] == len(poison)
