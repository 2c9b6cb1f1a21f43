"""Fan-out planning: one event and its matching subscriptions -> delivery records, each
of the event's own account."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from synctec_webhooks import schemas
from synctec_webhooks.consumers.fanout.handler import account_of, account_problem, plan_for
from synctec_webhooks.deliveries import PlannedDelivery, delivery_id, plan
from synctec_webhooks.events import render_body, validate_event
from synctec_webhooks.matching import Subscription, SubscriptionIndex
from synctec_webhooks.serialization import SingleObjectCodec

NOW_MS = 1_738_161_000_000
ACCOUNT = "acct_eu"
OTHER = "acct_us"
PRODUCT = {"id": "1234567890", "title": "Merino Wool Sweater", "sku": "MWS-001"}
STORES = {"source_store": "main-store.myshopify.com", "destination_store": "eu-store.myshopify.com"}
# JSON as the sync services send it, one per event type.
EVENTS: dict[str, dict[str, Any]] = {
    "product.synced": {
        "id": "evt_product",
        "event": "product.synced",
        "timestamp": "2025-01-29T14:30:00Z",
        "product": PRODUCT,
        **STORES,
        "status": "success",
    },
    "sync.failed": {
        "id": "evt_failed",
        "event": "sync.failed",
        "timestamp": "2025-01-29T14:30:00+01:00",
        "product": PRODUCT,
        **STORES,
        "status": "failed",
        "error": {"code": "rate_limited", "message": "Shopify throttled the request"},
    },
    "inventory.updated": {
        "id": "evt_inventory",
        "event": "inventory.updated",
        "timestamp": "2025-01-29T14:30:00.123456Z",
        "product": PRODUCT,
        "location_group": {"id": "lg_1", "name": "EU warehouses"},
        "available": 12,
        **STORES,
    },
    "collection.synced": {
        "id": "evt_collection",
        "event": "collection.synced",
        "timestamp": "2025-01-29T14:30:00-05:30",
        "collection": {"id": "col_1", "title": "Hiver — laine", "products_count": 42},
        **STORES,
        "status": "success",
    },
}
EXPECTED_KEY = {
    "product.synced": f"{ACCOUNT}/1234567890",
    "sync.failed": f"{ACCOUNT}/1234567890",
    "inventory.updated": f"{ACCOUNT}/1234567890",
    "collection.synced": f"{ACCOUNT}/col_1",
}


def _event(event_type: str, account: str = ACCOUNT) -> dict[str, Any]:
    got_type, record = validate_event(copy.deepcopy(EVENTS[event_type]), account=account)
    assert got_type == event_type
    return record


def _sub(sub_id: str, *events: str, enabled: bool = True, account: str = ACCOUNT) -> Subscription:
    return Subscription(
        id=sub_id,
        url=f"https://{sub_id}.example/hook",
        events=events,
        secret="whsec_" + sub_id,
        enabled=enabled,
        account_id=account,
    )


# --- delivery_id ---------------------------------------------------------------------


def test_delivery_id_is_deterministic() -> None:
    first = delivery_id("evt_1", "wh_a")
    assert first == delivery_id("evt_1", "wh_a")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", first)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(("evt_1", "wh_a"), ("evt_2", "wh_a"), id="other-event"),
        pytest.param(("evt_1", "wh_a"), ("evt_1", "wh_b"), id="other-webhook"),
        pytest.param(("evt_1", "wh_a"), ("wh_a", "evt_1"), id="swapped"),
        pytest.param(("evt_1w", "h_a"), ("evt_1", "wh_a"), id="same-concatenation"),
    ],
)
def test_delivery_id_is_distinct(one: tuple[str, str], other: tuple[str, str]) -> None:
    assert delivery_id(*one) != delivery_id(*other)


# --- plan ----------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_plan_one_delivery_per_match(event_type: str) -> None:
    event = _event(event_type)
    subs = [_sub("wh_a", event_type), _sub("wh_b", "*")]
    body = render_body(event).decode("utf-8")

    planned = plan(event_type, event, subs, NOW_MS)

    assert [p.webhook_id for p in planned] == ["wh_a", "wh_b"]
    for p, sub in zip(planned, subs, strict=True):
        key = EXPECTED_KEY[event_type]
        assert p == PlannedDelivery(
            webhook_id=sub.id,
            key=key,
            record={
                "delivery_id": delivery_id(event["id"], sub.id),
                "webhook_id": sub.id,
                "account_id": ACCOUNT,
                "event_id": event["id"],
                "event_type": event_type,
                "partition_key": key,
                "payload": body,
                "event_timestamp": EVENTS[event_type]["timestamp"],
                "created_at": NOW_MS,
                "attempt": 1,
                "not_before": NOW_MS,
                "history": [],
                "replays": 0,
            },
        )


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_plan_payload_is_the_event(event_type: str) -> None:
    event = _event(event_type)
    (p,) = plan(event_type, event, [_sub("wh_a", "*")], NOW_MS)
    assert json.loads(p.record["payload"]) == EVENTS[event_type]


def test_plan_without_matches_is_empty() -> None:
    assert plan("product.synced", _event("product.synced"), [], NOW_MS) == []


def test_plan_records_do_not_share_history() -> None:
    event = _event("product.synced")
    a, b = plan("product.synced", event, [_sub("wh_a", "*"), _sub("wh_b", "*")], NOW_MS)
    assert a.record["history"] is not b.record["history"]


def test_plan_does_not_change_the_event() -> None:
    event = _event("sync.failed")
    before = copy.deepcopy(event)
    plan("sync.failed", event, [_sub("wh_a", "*")], NOW_MS)
    assert event == before


def test_plan_is_repeatable() -> None:
    event = _event("inventory.updated")
    subs = [_sub("wh_a", "*")]
    assert plan("inventory.updated", event, subs, NOW_MS) == plan(
        "inventory.updated", event, subs, NOW_MS
    )


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_planned_records_round_trip_as_delivery(event_type: str) -> None:
    codec = SingleObjectCodec()
    for p in plan(event_type, _event(event_type), [_sub("wh_a", "*"), _sub("wh_b", "*")], NOW_MS):
        data = codec.encode("t", schemas.DELIVERY, p.record)
        assert codec.decode("t", data) == (schemas.DELIVERY, p.record)


# --- plan_for ------------------------------------------------------------------------


def _index() -> SubscriptionIndex:
    index = SubscriptionIndex()
    for sub in [
        _sub("wh_products", "product.synced"),
        _sub("wh_all", "*"),
        _sub("wh_failures", "sync.failed", "inventory.updated"),
        _sub("wh_off", "*", enabled=False),
        _sub("wh_off_products", "product.synced", enabled=False),
        # Another account's, of every kind: never planned for ACCOUNT's events.
        _sub("wh_us_products", "product.synced", account=OTHER),
        _sub("wh_us_all", "*", account=OTHER),
        _sub("wh_us_off", "*", enabled=False, account=OTHER),
        _sub("wh_default_all", "*", account="default"),
    ]:
        index.upsert(sub)
    return index


# Disabled webhooks are planned too, last: the delivery worker dead-letters their
# records (webhook_disabled) so nothing is lost while a webhook is off.
@pytest.mark.parametrize(
    ("event_type", "webhooks"),
    [
        ("product.synced", ["wh_products", "wh_all", "wh_off", "wh_off_products"]),
        ("sync.failed", ["wh_failures", "wh_all", "wh_off"]),
        ("inventory.updated", ["wh_failures", "wh_all", "wh_off"]),
        ("collection.synced", ["wh_all", "wh_off"]),
    ],
)
def test_plan_for_follows_the_index(event_type: str, webhooks: list[str]) -> None:
    event = _event(event_type)
    planned = plan_for(_index(), event_type, event, NOW_MS)
    assert [p.webhook_id for p in planned] == webhooks
    assert [p.record["delivery_id"] for p in planned] == [
        delivery_id(event["id"], w) for w in webhooks
    ]


@pytest.mark.parametrize(
    ("event_type", "webhooks"),
    [
        ("product.synced", ["wh_us_products", "wh_us_all", "wh_us_off"]),
        ("sync.failed", ["wh_us_all", "wh_us_off"]),
    ],
)
def test_plan_for_another_account_is_its_own(event_type: str, webhooks: list[str]) -> None:
    event = _event(event_type, account=OTHER)
    planned = plan_for(_index(), event_type, event, NOW_MS)
    assert [p.webhook_id for p in planned] == webhooks
    assert {p.record["account_id"] for p in planned} == {OTHER}
    assert {p.key for p in planned} == {f"{OTHER}/{EXPECTED_KEY[event_type].split('/')[1]}"}


def test_plan_for_an_event_of_an_account_without_webhooks_is_empty() -> None:
    event = _event("product.synced", account="acct_new")
    assert plan_for(_index(), "product.synced", event, NOW_MS) == []


def test_an_event_written_before_accounts_goes_to_the_default_account() -> None:
    # Decoded from an old record, the field holds the schema default; an in-memory
    # record may lack it altogether.
    event = _event("product.synced", account="default")
    old = {k: v for k, v in event.items() if k != "account_id"}
    assert account_of(old) == account_of(event) == "default"
    for e in (event, old):
        planned = plan_for(_index(), "product.synced", e, NOW_MS)
        assert [p.webhook_id for p in planned] == ["wh_default_all"]
        assert planned[0].record["account_id"] == "default"
        assert planned[0].key == "default/1234567890"


@pytest.mark.parametrize("bad", ["", "../etc", "_x", "a b", "x" * 65])
def test_an_event_of_no_valid_account_is_nobodys(bad: str) -> None:
    # Only from a producer that does not validate; never the default account's.
    event = {**_event("product.synced"), "account_id": bad}
    assert account_of(event) == bad
    problem = account_problem(event)
    assert problem is not None and problem.startswith("account_id: ")
    assert plan_for(_index(), "product.synced", event, NOW_MS) == []
    assert account_problem(_event("product.synced")) is None
    assert account_problem({k: v for k, v in event.items() if k != "account_id"}) is None


def test_the_account_is_in_the_record_and_the_key_but_not_the_payload() -> None:
    event = _event("product.synced")
    (p,) = plan("product.synced", event, [_sub("wh_a", "*")], NOW_MS)
    assert p.record["account_id"] == ACCOUNT
    assert p.key == p.record["partition_key"] == f"{ACCOUNT}/1234567890"
    assert "account_id" not in json.loads(p.record["payload"])
    assert ACCOUNT not in p.record["payload"]


def test_plan_for_without_subscriptions_is_empty() -> None:
    event = _event("product.synced")
    assert plan_for(SubscriptionIndex(), "product.synced", event, NOW_MS) == []


def test_plan_for_only_type_subscriptions_elsewhere() -> None:
    index = SubscriptionIndex()
    index.upsert(_sub("wh_products", "product.synced"))
    event = _event("collection.synced")
    assert plan_for(index, "collection.synced", event, NOW_MS) == []
