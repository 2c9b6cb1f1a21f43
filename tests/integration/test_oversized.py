"""One record must never stall or crash a worker (issue 11).

Records too large for the broker once they are a delivery, a retry or a dead-letter
record, and subscription records with unusable limits, all written straight to the
topics (as a producer that does not validate would): each is dead-lettered with its
reason (and size), the healthy records around it are delivered, every worker stays up,
and the committed offsets move past it. Counted, not sampled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.events import MAX_BODY_BYTES
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics
from tests.integration.harness import (
    Pipeline,
    Receiver,
    always,
    product_synced,
    wait_until,
)

pytestmark = pytest.mark.broker

CODEC = make_codec(None)
NOW_MS = int(time.time() * 1000)


def _raw(bootstrap: str, topic: str, value: bytes, key: str) -> None:
    # Up to the broker's own limit (1,048,588), past librdkafka's default 1,000,000.
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 1_048_000})
    p.produce(topic, value=value, key=key)
    assert p.flush(30) == 0


def _event_bytes(topic: str, event_id: str, title: str) -> bytes:
    record = {
        "id": event_id,
        "event": "product.synced",
        "timestamp": "2025-01-29T14:30:00Z",
        "product": {"id": event_id, "title": title, "sku": "MWS-001"},
        "source_store": "main-store.myshopify.com",
        "destination_store": "eu-store.myshopify.com",
        "status": "success",
        "account_id": DEFAULT_ACCOUNT,
    }
    return CODEC.encode(topic, schemas.EVENT_SCHEMA["product.synced"], record)


def _delivery_bytes(topic: str, webhook_id: str, attempt: int, payload_bytes: int) -> bytes:
    record = {
        "delivery_id": f"msg_big{attempt}",
        "webhook_id": webhook_id,
        "account_id": DEFAULT_ACCOUNT,
        "event_id": f"evt_big{attempt}",
        "event_type": "product.synced",
        "partition_key": f"{DEFAULT_ACCOUNT}/big",
        "payload": '{"id":"evt_big","t":"' + "x" * (payload_bytes - 23) + '"}',
        "event_timestamp": "2025-01-29T14:30:00Z",
        "created_at": NOW_MS,
        "attempt": attempt,
        "not_before": NOW_MS,
        "history": [],
        "replays": 0,
    }
    return CODEC.encode(topic, schemas.DELIVERY, record)


def _committed_past_end(bootstrap: str, group: str, topic: str) -> bool:
    """True when `group` has committed every partition of `topic` up to its end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, n) for n in partitions]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
        for tp in tps:
            low, high = c.get_watermark_offsets(tp, timeout=10)
            if high > low and committed[tp.partition] < high:
                return False
        return True
    finally:
        c.close()


def _letters(p: Pipeline, count: int) -> list[dict[str, Any]]:
    dls = DeadLetters(p.settings, CODEC)
    wait_until(lambda: len(dls.list()) >= count, 60, lambda: f"{[d.record for d in dls.list()]}")
    time.sleep(1)  # anything more would show up now
    return [d.record for d in dls.list()]


def test_an_event_over_the_body_limit_is_refused_at_emit_and_by_the_cli(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    from synctec_webhooks.errors import InvalidEvent

    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    escaping = product_synced("big", product={"id": "big", "title": "\x01" * 170_000, "sku": "s"})
    with pytest.raises(InvalidEvent, match=f"over the limit of {MAX_BODY_BYTES:,} bytes"):
        p.producer.emit(escaping, account=DEFAULT_ACCOUNT)
    res = subprocess.run(
        [sys.executable, "-m", "synctec_webhooks.cli", "emit"],
        env={**os.environ, **p.env},
        input=json.dumps(escaping),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert f"{MAX_BODY_BYTES:,} bytes" in res.stderr and "nothing was sent" in res.stderr


def test_events_too_large_to_fan_out_are_dead_lettered_and_the_fanout_moves_on(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    topics = Topics(p.settings.topic_prefix)
    p.add_webhook(receiver.url("/a"))
    p.start()
    try:
        first = p.emit(product_synced("1"), product_synced("2"))
        # Straight to the topic: 170 KB of control characters, about 1 MB once escaped
        # as JSON; a poison record near 1 MB; an event just over the body limit.
        escaping = _event_bytes(topics.events, "evt_escaping", "\x01" * 170_000)
        _raw(kafka_bootstrap, topics.events, escaping, "escaping")
        poison = b"\x00not avro" * 110_000  # 990,000 bytes
        _raw(kafka_bootstrap, topics.events, poison, "poison")
        over = _event_bytes(topics.events, "evt_over", "a" * (MAX_BODY_BYTES + 10))
        _raw(kafka_bootstrap, topics.events, over, "over")
        then = p.emit(product_synced("3"), product_synced("4"))
        receiver.wait_for(4, "/a")
        letters = _letters(p, 3)
        wait_until(
            lambda: _committed_past_end(kafka_bootstrap, topics.group("fanout"), topics.events),
            30,
            lambda: "the fan-out's committed offset did not reach the end of the events topic",
        )
        time.sleep(1)
    finally:
        codes = p.stop()
    logs = p.all_logs()
    assert all(code == 0 for code in codes.values()), logs
    assert "replacing the transactional producer" not in logs
    assert sorted(r.json["id"] for r in receiver.received("/a")) == sorted(first + then)
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for d in letters:
        by_reason.setdefault(d["reason"], []).append(d)
    assert sorted((r, len(ds)) for r, ds in by_reason.items()) == [
        (deadletters.TOO_LARGE, 2),
        (deadletters.UNDECODABLE, 1),
    ]
    [undecodable] = by_reason[deadletters.UNDECODABLE]
    assert undecodable["original_size"] == len(poison) and undecodable["truncated"]
    assert undecodable["raw"] == poison[: deadletters.RAW_KEPT]
    sizes = sorted(d["original_size"] for d in by_reason[deadletters.TOO_LARGE])
    assert MAX_BODY_BYTES < sizes[0] < MAX_BODY_BYTES + 1000  # the event just over
    assert sizes[1] > 1_000_000  # the escaped one
    for d in letters:
        assert d["source_topic"] == topics.events and d["detail"]


def test_a_delivery_whose_retry_record_cannot_be_written_is_dead_lettered_once(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    topics = Topics(p.settings.topic_prefix)
    receiver.script("/big", always(500))
    # Subscribed to an event type nobody emits here: it only gets the raw records.
    big = p.add_webhook(receiver.url("/big"), "collection.synced")
    p.add_webhook(receiver.url("/ok"))
    # Records that fit the broker, whose retry record (one attempt more) does not.
    for topic, attempt in ((topics.delivery(big.id), 1), (topics.retry(1), 2)):
        _raw(kafka_bootstrap, topic, _delivery_bytes(topic, big.id, attempt, 1_000_000), "big")
    p.start()
    try:
        ids = p.emit(*(product_synced(str(n)) for n in range(5)))
        receiver.wait_for(5, "/ok")
        letters = _letters(p, 2)
        for role, topic in (("deliver", topics.delivery(big.id)), ("retry", topics.retry(1))):
            wait_until(
                lambda r=role, t=topic: _committed_past_end(kafka_bootstrap, topics.group(r), t),
                30,
                lambda r=role: f"the {r} worker did not commit past the large record",
            )
        time.sleep(1)
    finally:
        codes = p.stop()
    assert all(code == 0 for code in codes.values()), p.all_logs()
    assert sorted(r.json["id"] for r in receiver.received("/ok")) == sorted(ids)
    posts = receiver.received("/big")
    assert len(posts) == 2  # one attempt each, never repeated
    assert all(len(r.body) == 1_000_000 for r in posts)
    assert sorted(d["source_topic"] for d in letters) == sorted(
        [topics.delivery(big.id), topics.retry(1)]
    )
    for d in letters:
        assert d["reason"] == deadletters.TOO_LARGE
        assert d["original_size"] > 1_000_000 and d["truncated"]
        assert d["delivery"] is None and d["raw"].startswith(b'{"id":"evt_big"')
        assert d["webhook_id"] == big.id and [h["status"] for h in d["history"]] == [500]


def _subscription_bytes(topic: str, sub_id: str, url: str, **limits: object) -> bytes:
    record = {"id": sub_id, "account_id": DEFAULT_ACCOUNT, "url": url, "events": ["*"],
              "secret": "whsec_c2VjcmV0c2VjcmV0", "description": None, "enabled": True,
              "created_at": NOW_MS, "updated_at": 0,
              "sealed_secrets": None, "rotation_ends_at": 0, "disabled_reason": None,
              "disabled_at": 0, "enabled_at": 0, "max_in_flight": None, "rate_limit": None,
              **limits}  # fmt: skip
    return CODEC.encode(topic, schemas.SUBSCRIPTION, record)


def test_subscription_records_with_unusable_limits_do_not_stop_the_workers(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    topics = Topics(p.settings.topic_prefix)
    p.add_webhook(receiver.url("/ok"))
    for sub_id, path, limits in (
        ("wh_negative_in_flight", "/neg1", {"max_in_flight": -1}),
        ("wh_negative_rate", "/neg2", {"rate_limit": -5.0}),
    ):
        value = _subscription_bytes(topics.subscriptions, sub_id, receiver.url(path), **limits)
        _raw(kafka_bootstrap, topics.subscriptions, value, sub_id)
    p.start()
    try:
        ids = p.emit(*(product_synced(str(n)) for n in range(5)))
        receiver.wait_for(5, "/ok")
        letters = _letters(p, 2)
        more = p.emit(product_synced("5"))
        receiver.wait_for(6, "/ok")
    finally:
        codes = p.stop()
    assert all(code == 0 for code in codes.values()), p.all_logs()
    assert sorted(r.json["id"] for r in receiver.received("/ok")) == sorted(ids + more)
    assert receiver.received("/neg1") == [] and receiver.received("/neg2") == []
    assert (
        sorted((d["reason"], d["source_topic"]) for d in letters)
        == [(deadletters.INVALID_SUBSCRIPTION, topics.subscriptions)] * 2
    )
    details = " ".join(d["detail"] for d in letters)
    assert "max_in_flight" in details and "rate_limit" in details
