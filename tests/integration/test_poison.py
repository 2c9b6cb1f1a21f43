"""Poison records on every topic a worker reads: dead-lettered with the reason and the
source topic/partition/offset, and nobody stalls or crash-loops on them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics
from tests.integration.harness import Pipeline, Receiver, product_synced, wait_until

pytestmark = pytest.mark.broker


def _raw(bootstrap: str, topic: str, value: bytes, key: str) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, value=value, key=key)
    assert p.flush(30) == 0


def test_poison_on_subscription_delivery_and_retry_topics(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    topics = Topics(p.settings.topic_prefix)
    before = p.add_webhook(receiver.url("/before"))
    _raw(kafka_bootstrap, topics.subscriptions, b"not a subscription", "wh_poison")
    _raw(kafka_bootstrap, topics.delivery(before.id), b"\x00garbage delivery", "k")
    _raw(kafka_bootstrap, topics.retry(1), b"garbage retry", "k")
    p.start()
    try:
        after = p.add_webhook(receiver.url("/after"))
        ids = p.emit(product_synced("1"), product_synced("2"))
        receiver.wait_for(2, "/before")
        receiver.wait_for(2, "/after")
        dls = DeadLetters(p.settings, make_codec(None))
        wait_until(lambda: len(dls.list()) >= 3, 30, lambda: f"{dls.list()}")
        time.sleep(1)
        letters = [d.record for d in dls.list()]
    finally:
        codes = p.stop()
    assert all(code == 0 for code in codes.values()), p.all_logs()
    assert {r.json["id"] for r in receiver.received("/after")} == set(ids)
    assert {r.json["id"] for r in receiver.received("/before")} == set(ids)
    assert after.id != before.id
    by_source = {d["source_topic"]: d for d in letters}
    assert set(by_source) == {topics.subscriptions, topics.delivery(before.id), topics.retry(1)}
    assert len(letters) == 3  # each once, though three processes read the subscriptions
    for d in letters:
        assert d["reason"] == "undecodable"
        assert d["source_offset"] >= 0 and d["source_partition"] >= 0
        assert d["raw"] and d["detail"]
