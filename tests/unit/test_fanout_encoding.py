"""The fan-out's spliced encoding gives the same bytes as encoding each record."""

from __future__ import annotations

import io

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


def test_spliced_records_equal_records_encoded_one_by_one() -> None:
    codec = SingleObjectCodec()
    _, event = validate_event(
        {
            "event": "product.synced",
            "timestamp": "2025-01-29T14:30:00Z",
            "product": {"id": "p1", "title": "Merino Wool Sweater", "sku": "MWS-001"},
            "source_store": "a.myshopify.com",
            "destination_store": "b.myshopify.com",
            "status": "success",
        }
    )
    subs = [
        Subscription(f"wh_{'x' * i}", "https://m.example/h", ("*",), "whsec_dGVzdA==")
        for i in (1, 24, 70)  # a webhook id long enough for a two-byte length
    ]

    def topic_of(webhook_id: str) -> str:
        return f"t.deliveries.{webhook_id}"

    spliced = encode_deliveries(codec, topic_of, "product.synced", event, subs, NOW_MS)
    expected = [
        (
            topic_of(p.webhook_id),
            p.key,
            codec.encode(topic_of(p.webhook_id), schemas.DELIVERY, p.record),
        )
        for p in plan("product.synced", event, subs, NOW_MS)
    ]
    assert spliced == expected
    assert codec.decode("t", spliced[2][2])[1]["webhook_id"] == subs[2].id


def test_no_matches_no_records() -> None:
    assert encode_deliveries(SingleObjectCodec(), str, "product.synced", {}, [], NOW_MS) == []
