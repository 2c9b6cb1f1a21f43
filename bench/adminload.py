"""What the admin-memory scenario reads: webhooks, a week's attempts, many dead letters.

Written straight to the topics with one raw producer, as the workers would have
written them (the package's codec and keys), so that the scenario measures the admin
service reading them, not the pipeline making them. An attempt record is encoded once
and its ids swapped in as bytes of the same length: a million `encode()` calls would
take longer than the admin takes to read them.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Producer

from synctec_webhooks import attempts, deadletters, deliveries, schemas
from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import TopicAdmin, core_topics, producer_config
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.subscriptions import to_record
from synctec_webhooks.topics import Topics

_WEBHOOK = "wh_{:024x}"
_DELIVERY = "msg_{:032x}"


def _producer(settings: Settings) -> Producer:
    return Producer(
        producer_config(
            settings,
            "bench-admin-load",
            **{
                "enable.idempotence": False,
                "acks": 1,
                "linger.ms": 100,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
            },
        )
    )


def _produce(producer: Producer, topic: str, value: bytes, key: str) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)


def write(settings: Settings, webhooks: int, per_webhook: int, dead: int, url: str) -> None:
    """`webhooks` subscriptions (no delivery topics: the admin needs none), then
    `per_webhook` attempts of each, then `dead` dead letters spread over the webhooks."""
    TopicAdmin(settings).ensure(core_topics(settings))
    topics = Topics(settings.topic_prefix)
    codec = make_codec(None)
    producer = _producer(settings)
    now = int(time.time() * 1000)
    for w in range(webhooks):
        sub = Subscription(_WEBHOOK.format(w), url, ("*",), f"whsec_bench{w}", None, True, now, now)
        value = codec.encode(topics.subscriptions, schemas.SUBSCRIPTION, to_record(sub))
        _produce(producer, topics.subscriptions, value, sub.id)
    _attempts(producer, codec, topics.attempts, webhooks, per_webhook, now)
    _dead_letters(producer, codec, topics, webhooks, dead, url, now)
    if producer.flush(300):
        raise RuntimeError("the broker did not take the admin scenario's records in 300 s")


def _attempts(
    producer: Producer, codec: Any, topic: str, webhooks: int, per_webhook: int, now: int
) -> None:
    first_webhook, first_delivery = _WEBHOOK.format(0), _DELIVERY.format(0)
    delivery = {
        "webhook_id": first_webhook,
        "account_id": DEFAULT_ACCOUNT,
        "delivery_id": first_delivery,
        "event_id": "evt_" + "0" * 32,
        "event_type": "product.synced",
        "attempt": 1,
    }
    record = attempts.attempt_record(
        delivery, status=200, error=None, latency_ms=12.5, outcome="success",
        result=attempts.DELIVERED, at_ms=now,
    )  # fmt: skip
    template = codec.encode(topic, schemas.DELIVERY_ATTEMPT, record)
    webhook_at = template.index(first_webhook.encode())
    delivery_at = template.index(first_delivery.encode())
    value = bytearray(template)
    n = 0
    # Webhook by webhook within each round, as a week of traffic interleaves them.
    for _round in range(per_webhook):
        for w in range(webhooks):
            webhook = _WEBHOOK.format(w)
            value[webhook_at : webhook_at + len(webhook)] = webhook.encode()
            value[delivery_at : delivery_at + 36] = _DELIVERY.format(n).encode()
            _produce(producer, topic, bytes(value), webhook)
            n += 1


def _dead_letters(
    producer: Producer, codec: Any, topics: Topics, webhooks: int, count: int, url: str, now: int
) -> None:
    topic = topics.deadletters
    subs = [
        Subscription(_WEBHOOK.format(w), url, ("*",), "whsec_x", None, True, now, now)
        for w in range(webhooks)
    ]
    for n in range(count):
        sub = subs[n % webhooks]
        event = {
            "id": f"evt_bench{n:012d}",
            "account_id": sub.account_id,
            "event": "sync.failed",
            "timestamp": "2025-01-29T14:30:00Z",
            "product": {"id": str(n % 1000), "title": "Merino Wool Sweater", "sku": "MWS-001"},
            "source_store": "main-store.myshopify.com",
            "destination_store": "eu-store.myshopify.com",
            "status": "failed",
            "error": {"code": "rate_limited", "message": "Shopify API rate limit exceeded"},
        }
        [plan] = deliveries.plan("sync.failed", event, [sub], now - count + n)
        history = [
            {"attempt": a, "at": now, "status": 503, "error": "HTTP 503", "latency_ms": 20.0,
             "url": url}
            for a in range(1, 5)
        ]  # fmt: skip
        failed = {**plan.record, "attempt": 4, "history": history}
        source = deadletters.Source(topics.retry(3), n % 3, n)
        record = deadletters.build(
            deadletters.RETRIES_EXHAUSTED, "every attempt failed", source, now, delivery=failed
        )
        _produce(producer, topic, codec.encode(topic, schemas.DEAD_LETTER, record), sub.id)
