"""The fan-out's spliced encoding gives the same bytes as encoding each record."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import schemaless_writer

from synctec_webhooks import schemas
from synctec_webhooks.consumers.fanout.encoding import avro_string, encode_deliveries
from synctec_webhooks.deliveries import plan
from synctec_webhooks.events import validate_event
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import SingleObjectCodec

NOW_MS = 1_738_161_000_000


@pytest.mark.parametrize("text", ["", "a", "x" * 63, "y" * 64, "z" * 20000, "é€😀"])
def test_avro_string_matches_fastavro(text: str) -> None:
    buf = io.BytesIO()
    schemaless_writer(buf, "string", text)
    assert avro_string(text) == buf.getvalue()


def _event(account: str) -> dict[str, Any]:
    _, event = validate_event(
        {
            "event": "product.synced",
            "timestamp": "2025-01-29T14:30:00Z",
            "product": {"id": "p1", "title": "Merino Wool Sweater", "sku": "MWS-001"},
            "source_store": "a.myshopify.com",
            "destination_store": "b.myshopify.com",
            "status": "success",
        },
        account=account,
    )
    return event


def topic_of(webhook_id: str) -> str:
    return f"t.deliveries.{webhook_id}"


def _one_by_one(
    codec: SingleObjectCodec, event: dict[str, Any], subs: list[Subscription]
) -> list[tuple[str, str, bytes]]:
    return [
        (
            topic_of(p.webhook_id),
            p.key,
            codec.encode(topic_of(p.webhook_id), schemas.DELIVERY, p.record),
        )
        for p in plan("product.synced", event, subs, NOW_MS)
    ]


# An account id of 64 characters: its Avro length takes two bytes, as for long webhook ids.
@pytest.mark.parametrize("account", ["default", "acct_eu", "m" * 64])
def test_spliced_records_equal_records_encoded_one_by_one(account: str) -> None:
    codec = SingleObjectCodec()
    event = _event(account)
    subs = [
        Subscription(
            f"wh_{'x' * i}", "https://m.example/h", ("*",), "whsec_dGVzdA==", account_id=account
        )
        for i in (1, 24, 70)  # a webhook id long enough for a two-byte length
    ]

    spliced = encode_deliveries(codec, topic_of, "product.synced", event, subs, NOW_MS)
    assert spliced == _one_by_one(codec, event, subs)
    decoded = [codec.decode("t", value)[1] for _, _, value in spliced]
    assert decoded[2]["webhook_id"] == subs[2].id
    assert {d["account_id"] for d in decoded} == {account}
    assert {key for _, key, _ in spliced} == {f"{account}/p1"}


def test_webhooks_of_several_accounts_each_get_their_own_account() -> None:
    # The fan-out never mixes accounts (matching is per account); a caller that does
    # still gets each webhook's own account in its record, never the first one's.
    codec = SingleObjectCodec()
    event = _event("acct_a")
    subs = [
        Subscription(f"wh_{n}", "https://m.example/h", ("*",), "whsec_dGVzdA==", account_id=a)
        for n, a in enumerate(["acct_a", "acct_b", "acct_a", "default"])
    ]
    spliced = encode_deliveries(codec, topic_of, "product.synced", event, subs, NOW_MS)
    assert spliced == _one_by_one(codec, event, subs)
    accounts = [codec.decode("t", value)[1]["account_id"] for _, _, value in spliced]
    assert accounts == ["acct_a", "acct_b", "acct_a", "default"]


def test_no_matches_no_records() -> None:
    assert encode_deliveries(SingleObjectCodec(), str, "product.synced", {}, [], NOW_MS) == []
