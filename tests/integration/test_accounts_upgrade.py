"""The upgrade to accounts (issue 12) on a real broker: records written before it are
read and delivered as the default account's, nothing lost.

Before the workers start, the topics hold what the previous release wrote, with the
schemas it wrote them with (schemas/history/): webhooks as Subscription v2 (a clear
secret) and v3 (a sealed one), sync events of every type (v1), a delivery record on its
webhook's topic and a retry record on tier 1 (Delivery v1), none with an account. New
webhooks of the default account and of another account are added beside them. Then:
every old event reaches every old and new default-account webhook that wants it, once
(or is dead-lettered, as the default account's, after every attempt failed); the
in-flight records are POSTed; the other account's "*" webhook gets none of it; every
POST says `X-StoreLink-Account: default`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from synctec_webhooks import schemas
from synctec_webhooks.deliveries import delivery_id
from synctec_webhooks.kafka import TopicAdmin, core_topics, delivery_topic_spec
from synctec_webhooks.kafka.follower import read_to_end
from synctec_webhooks.matching import Subscription
from synctec_webhooks.schemas import SCHEMA_DIR, SchemaStore
from synctec_webhooks.secrets_crypto import SecretBox
from synctec_webhooks.serialization import SingleObjectCodec, make_codec
from synctec_webhooks.signing import generate_secret, verify_storelink
from synctec_webhooks.ssrf import Guard
from synctec_webhooks.subscriptions import to_record
from synctec_webhooks.topics import Topics
from synctec_webhooks.webhooks import create
from tests.integration.harness import (
    Pipeline,
    Receiver,
    always,
    collection_synced,
    inventory_updated,
    product_synced,
    sync_failed,
    wait_until,
)

pytestmark = pytest.mark.broker

HISTORY = SCHEMA_DIR / "history"
ATTEMPTS = 4  # the pipeline's SYNCTEC_RETRY_DELAYS has three tiers
BUILDERS = {
    "product.synced": product_synced,
    "sync.failed": sync_failed,
    "inventory.updated": inventory_updated,
    "collection.synced": collection_synced,
}
OLD_EVENTS = {
    "product.synced": "product_synced.v1.avsc",
    "sync.failed": "sync_failed.v1.avsc",
    "inventory.updated": "inventory_updated.v1.avsc",
    "collection.synced": "collection_synced.v1.avsc",
}


def _old_codec(tmp: Path, *history: str) -> SingleObjectCodec:
    """A codec of the release before accounts: the given history files as its schemas."""
    tmp.mkdir()
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp)
    for name in history:
        current = name.split(".")[0] + ".avsc"
        shutil.copy(HISTORY / name, tmp / current)
    return SingleObjectCodec(SchemaStore(tmp))


def _as_old(record: dict[str, Any], history: str) -> dict[str, Any]:
    """`record` with only the fields the old schema had (no account anywhere)."""
    fields = {f["name"] for f in json.loads((HISTORY / history).read_text())["fields"]}
    assert "account_id" not in fields
    return {k: v for k, v in record.items() if k in fields}


def _write(bootstrap: str, records: list[tuple[str, str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for topic, key, value in records:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def _old_event(n: int, event_type: str) -> tuple[str, str, dict[str, Any]]:
    """(id, old partition key: the entity id alone, record)."""
    entity = f"old{n}"
    event = {"id": f"evt_old_{n:03d}", **BUILDERS[event_type](entity)}
    return event["id"], entity, event


def _delivery_record(event: dict[str, Any], sub: Subscription, attempt: int) -> dict[str, Any]:
    """A Delivery v1 record as the previous fan-out (or retry worker) wrote it."""
    now = int(time.time() * 1000)
    return {
        "delivery_id": delivery_id(event["id"], sub.id),
        "webhook_id": sub.id,
        "event_id": event["id"],
        "event_type": event["event"],
        "partition_key": event["product"]["id"],
        "payload": json.dumps(event, separators=(",", ":")),
        "event_timestamp": event["timestamp"],
        "created_at": now,
        "attempt": attempt,
        "not_before": now,
        "history": [
            {
                "attempt": a,
                "at": now,
                "status": 503,
                "error": "HTTP 503",
                "latency_ms": 5.0,
                "url": sub.url,
            }
            for a in range(1, attempt)
        ],
        "replays": 0,
    }


def test_records_written_before_accounts_are_delivered_as_the_default_accounts(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    topics = Topics(p.settings.topic_prefix)
    admin = TopicAdmin(p.settings)
    admin.ensure(core_topics(p.settings))
    old = _old_codec(
        tmp_path / "v2", *OLD_EVENTS.values(), "delivery.v1.avsc", "subscription.v2.avsc"
    )
    old_v3 = _old_codec(tmp_path / "v3", "subscription.v3.avsc")
    receiver.script("/old-failing", always(500))

    # The previous release's webhooks: one with a clear secret (v2), two sealed (v3).
    now = int(time.time() * 1000)
    guard = Guard.from_cidrs(p.settings.allow_private_networks)
    box = SecretBox(p.settings.secret_keys)
    clear = Subscription("wh_" + "0" * 23 + "1", receiver.url("/old-v2"), ("*",),
                         generate_secret(), created_at=now)  # fmt: skip
    sealed = create(receiver.url("/old-v3"), "product.synced,sync.failed", None,
                    guard=guard, box=box, now_ms=now)  # fmt: skip
    failing = create(receiver.url("/old-failing"), "sync.failed", None,
                     guard=guard, box=box, now_ms=now)  # fmt: skip
    old_hooks = [clear, sealed, failing]
    admin.ensure([delivery_topic_spec(p.settings, s.id) for s in old_hooks])
    subs = [(clear, old, "subscription.v2.avsc")] + [
        (s, old_v3, "subscription.v3.avsc") for s in (sealed, failing)
    ]
    records = [
        (topics.subscriptions, s.id,
         codec.encode(topics.subscriptions, schemas.SUBSCRIPTION, _as_old(to_record(s), name)))
        for s, codec, name in subs
    ]  # fmt: skip

    # Its events, of every type, keyed by the entity alone as it keyed them.
    old_events = [_old_event(n, t) for n, t in enumerate(sorted(BUILDERS) * 3)]
    for _, key, event in old_events:
        name = schemas.EVENT_SCHEMA[event["event"]]
        records.append((topics.events, key, old.encode(topics.events, name, event)))
    # And records in flight: a first attempt on a delivery topic, a retry on tier 1.
    _, _, in_flight = _old_event(900, "product.synced")
    _, _, retrying = _old_event(901, "sync.failed")
    first, second = _delivery_record(in_flight, clear, 1), _delivery_record(retrying, sealed, 2)
    records += [
        (topics.delivery(clear.id), first["partition_key"],
         old.encode(topics.delivery(clear.id), schemas.DELIVERY, first)),
        (topics.retry(1), second["partition_key"],
         old.encode(topics.retry(1), schemas.DELIVERY, second)),
    ]  # fmt: skip
    _write(kafka_bootstrap, records)

    # After the upgrade: a webhook of the default account, and one of another account.
    new_default = p.writer.add(receiver.url("/new-default"), "*", account_id="default")
    new_other = p.writer.add(receiver.url("/new-other"), "*", account_id="acct_new")
    default_hooks = [*old_hooks, new_default]
    by_path = {
        "/old-v2": clear,
        "/old-v3": sealed,
        "/old-failing": failing,
        "/new-default": new_default,
        "/new-other": new_other,
    }

    p.start()
    try:
        # New events beside the old ones: the default account's, and the other's.
        [new_id] = p.producer.emit_many([product_synced("new1")], "default")
        [other_id] = p.producer.emit_many([sync_failed("new2")], "acct_new")
        p.producer.flush()

        expected: Counter[tuple[str, str]] = Counter()
        for event_id, _, event in [*old_events, (new_id, "", product_synced("new1"))]:
            for sub in default_hooks:
                if sub.wants(event["event"]):
                    expected[(event_id, sub.id)] = ATTEMPTS if sub is failing else 1
        expected[(other_id, new_other.id)] = 1
        expected[(in_flight["id"], clear.id)] = 1
        expected[(retrying["id"], sealed.id)] = 1
        dead = {pair for pair, n in expected.items() if n == ATTEMPTS}
        assert len(dead) == 3  # the three old sync.failed events

        receiver.wait_for(sum(expected.values()), timeout=60)

        def letters() -> list[dict[str, Any]]:
            codec = make_codec(None)
            return [
                codec.decode(topics.deadletters, m.value() or b"")[1]
                for m in read_to_end(p.settings, topics.deadletters, "upgrade-test")
            ]

        wait_until(lambda: len(letters()) >= len(dead), 30, lambda: f"{letters()}")
        time.sleep(2)  # time enough for a doubled or foreign POST to show up

        got: Counter[tuple[str, str]] = Counter()
        for post in receiver.received():
            sub = by_path[post.path]
            event_id = post.json["id"]
            assert post.header("X-StoreLink-Delivery-Id") == delivery_id(event_id, sub.id)
            assert verify_storelink(sub.secret, post.body, post.header("X-StoreLink-Signature"))
            account = "acct_new" if sub is new_other else "default"
            assert post.header("X-StoreLink-Account") == account
            assert "account_id" not in post.json
            got[(event_id, sub.id)] += 1
        assert got == expected
        # The old events' bodies are what the old producers sent, byte for byte.
        [old_body] = [
            r.body for r in receiver.received("/old-v2") if r.json["id"] == old_events[0][0]
        ]
        assert json.loads(old_body) == old_events[0][2]
        # The in-flight records: as they were, their attempt number kept.
        [retried] = [r for r in receiver.received("/old-v3") if r.json["id"] == retrying["id"]]
        assert retried.header("X-StoreLink-Attempt") == "2"

        found = letters()
        assert {(d["event_id"], d["webhook_id"]) for d in found} == dead
        assert {d["account_id"] for d in found} == {"default"}
        assert {d["delivery"]["account_id"] for d in found} == {"default"}
    finally:
        p.stop_and_check()
