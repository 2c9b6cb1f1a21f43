"""Event validation, the event's account, partition keys, the webhook body, and the CLI's
JSON reader."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from synctec_webhooks import events, schemas
from synctec_webhooks.events import (
    InvalidEvent,
    default_event_id,
    parse_events_json,
    partition_key,
    render_body,
    validate_event,
)
from synctec_webhooks.serialization import SingleObjectCodec

FIXED_ID = "evt_00000000000000000000000000000001"
ACCOUNT = "acct_eu-1"
PRODUCT = {"id": "1234567890", "title": "Merino Wool Sweater", "sku": "MWS-001"}
STORES = {"source_store": "main-store.myshopify.com", "destination_store": "eu-store.myshopify.com"}
# The example from the webhook documentation.
PRODUCT_SYNCED: dict[str, Any] = {
    "event": "product.synced",
    "timestamp": "2025-01-29T14:30:00Z",
    "product": PRODUCT,
    **STORES,
    "status": "success",
}
EVENTS: dict[str, dict[str, Any]] = {
    "product.synced": PRODUCT_SYNCED,
    "sync.failed": {
        "event": "sync.failed",
        "timestamp": "2025-01-29T14:30:00+01:00",
        "product": PRODUCT,
        **STORES,
        "status": "failed",
        "error": {"code": "rate_limited", "message": "Shopify throttled the request"},
    },
    "inventory.updated": {
        "event": "inventory.updated",
        "timestamp": "2025-01-29T14:30:00.123456Z",
        "product": PRODUCT,
        "location_group": {"id": "lg_1", "name": "EU warehouses"},
        "available": 12,
        **STORES,
    },
    "collection.synced": {
        "event": "collection.synced",
        "timestamp": "2025-01-29T14:30:00-05:30",
        "collection": {"id": "col_1", "title": "Hiver — laine", "products_count": 42},
        **STORES,
        "status": "success",
    },
}


def event(event_type: str, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(EVENTS[event_type]), **changes}


def without(obj: dict[str, Any], dotted: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    *parents, last = dotted.split(".")
    target = obj
    for name in parents:
        target = target[name]
    del target[last]
    return obj


def fixed_id() -> str:
    return FIXED_ID


def validate(obj: object, new_id: Any = events.default_event_id) -> tuple[str, dict[str, Any]]:
    """What EventProducer.emit(obj, account=ACCOUNT) checks."""
    return validate_event(obj, new_id, account=ACCOUNT)


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_good_events(event_type: str) -> None:
    got_type, record = validate(event(event_type), fixed_id)
    assert got_type == event_type
    assert record == {"id": FIXED_ID, **EVENTS[event_type], "account_id": ACCOUNT}
    fields = schemas.load().parsed(schemas.EVENT_SCHEMA[event_type])["fields"]
    assert list(record) == [f["name"] for f in fields]


# --- the account ---------------------------------------------------------------------


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_the_account_may_be_given_in_the_event_instead(event_type: str) -> None:
    given = event(event_type, account_id=ACCOUNT)
    assert validate_event(given, fixed_id) == validate(event(event_type), fixed_id)
    # Both, when they agree.
    assert validate_event(given, fixed_id, account=ACCOUNT) == validate_event(given, fixed_id)


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_an_event_without_an_account_is_refused(event_type: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event(event_type), fixed_id)
    assert info.value.field == "account_id"
    assert info.value.problem.startswith("missing: every event belongs to one StoreLink account")


def test_an_account_given_twice_must_agree() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event("product.synced", account_id="acct_other"), account=ACCOUNT)
    assert info.value.field == "account_id"
    assert "'acct_other'" in info.value.problem
    assert repr(ACCOUNT) in info.value.problem


@pytest.mark.parametrize("bad", ["../etc", "_hidden", "a b", "x" * 65, "acct/1", "é"], ids=repr)
def test_a_malformed_account_is_refused_wherever_it_is_given(bad: str) -> None:
    given = event("product.synced", account_id=bad)
    for obj, account in ((event("product.synced"), bad), (given, None)):
        with pytest.raises(InvalidEvent) as info:
            validate_event(obj, fixed_id, account=account)
        assert info.value.field == "account_id"
        assert "is not an account id" in info.value.problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(7, "expected a string, got integer", id="int"),
        pytest.param(None, "expected a string, got null", id="null"),
        pytest.param("", "must not be empty", id="empty"),
    ],
)
def test_an_account_in_the_event_that_is_no_string_is_refused(value: object, problem: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event("product.synced", account_id=value), fixed_id)
    assert (info.value.field, info.value.problem) == ("account_id", problem)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"timestamp": "2025-01-29t14:30:00z"}, id="lower-case-t-z"),
        pytest.param({"timestamp": "2016-12-31T23:59:60Z"}, id="leap-second"),
        pytest.param({"timestamp": "2025-01-29T14:30:00.5+14:00"}, id="fraction-offset"),
        pytest.param({"available": -3}, id="oversold"),
        pytest.param({"available": 2**63 - 1}, id="max-long"),
        pytest.param({"id": "x" * 200}, id="long-id"),
    ],
)
def test_good_variants(changes: dict[str, Any]) -> None:
    _, record = validate(event("inventory.updated", **changes))
    assert {k: record[k] for k in changes} == changes


def test_given_id_is_kept() -> None:
    _, record = validate(event("product.synced", id="evt_from_producer"), fixed_id)
    assert record["id"] == "evt_from_producer"


def test_missing_id_is_generated() -> None:
    _, record = validate(event("product.synced"))
    assert re.fullmatch(r"evt_[0-9a-f]{32}", record["id"])
    assert validate(event("product.synced"))[1]["id"] != record["id"]


def test_validation_does_not_change_its_input() -> None:
    obj = event("sync.failed")
    validate(obj, fixed_id)
    assert obj == EVENTS["sync.failed"]


@pytest.mark.parametrize(
    ("obj", "field", "problem"),
    [
        pytest.param([PRODUCT_SYNCED], "body", "expected a JSON object, got array", id="array"),
        pytest.param("product.synced", "body", "got string", id="string"),
        pytest.param(None, "body", "got null", id="null"),
        pytest.param(without(PRODUCT_SYNCED, "event"), "event", "missing", id="no-event"),
        pytest.param(
            event("product.synced", event=3), "event", "expected a string", id="event-int"
        ),
        pytest.param(
            event("product.synced", event="order.created"),
            "event",
            "unknown event type 'order.created'; expected one of product.synced,",
            id="unknown-type",
        ),
        pytest.param(without(PRODUCT_SYNCED, "timestamp"), "timestamp", "missing", id="no-ts"),
        pytest.param(without(PRODUCT_SYNCED, "product.sku"), "product.sku", "missing", id="no-sku"),
        pytest.param(
            event("product.synced", source_store=""),
            "source_store",
            "must not be empty",
            id="empty",
        ),
        pytest.param(
            event("product.synced", product={**PRODUCT, "title": "  "}),
            "product.title",
            "must not be empty",
            id="blank",
        ),
        pytest.param(
            event("product.synced", product={**PRODUCT, "id": 1234567890}),
            "product.id",
            "expected a string, got integer",
            id="int-for-string",
        ),
        pytest.param(
            event("product.synced", product="1234567890"),
            "product",
            "expected an object, got string",
            id="string-for-object",
        ),
        pytest.param(event("product.synced", status=None), "status", "got null", id="null-status"),
        pytest.param(
            event("inventory.updated", available=True),
            "available",
            "expected an integer, got boolean",
            id="bool-for-int",
        ),
        pytest.param(
            event("inventory.updated", available=12.0),
            "available",
            "expected an integer, got number",
            id="float-for-int",
        ),
        pytest.param(
            event("inventory.updated", available="12"),
            "available",
            "expected an integer, got string",
            id="string-for-int",
        ),
        pytest.param(
            event("inventory.updated", available=2**63), "available", "out of range", id="huge"
        ),
        pytest.param(
            event(
                "collection.synced", collection={"id": "c", "title": "t", "products_count": False}
            ),
            "collection.products_count",
            "got boolean",
            id="nested-bool",
        ),
        pytest.param(
            event("product.synced", timestamp="2025-01-29T14:30:00"),
            "timestamp",
            "RFC 3339 with a zone",
            id="no-zone",
        ),
        pytest.param(
            event("product.synced", timestamp="2025-01-29 14:30:00Z"),
            "timestamp",
            "RFC 3339",
            id="space",
        ),
        pytest.param(
            event("product.synced", timestamp="1738161000"), "timestamp", "RFC 3339", id="epoch"
        ),
        pytest.param(
            event("product.synced", timestamp="2025-02-30T14:30:00Z"),
            "timestamp",
            "not a real date",
            id="feb-30",
        ),
        pytest.param(
            event("product.synced", timestamp="2025-01-29T14:30:00+24:00"),
            "timestamp",
            "impossible UTC offset",
            id="bad-offset",
        ),
        pytest.param(
            event("product.synced", timestamp="\uff12\uff10\uff12\uff15-01-29T14:30:00Z"),
            "timestamp",
            "RFC 3339",
            id="fullwidth-digits",
        ),
        pytest.param(
            event("product.synced", vendor="Acme"),
            "vendor",
            "unknown field; expected only id, event, timestamp,",
            id="unknown-field",
        ),
        pytest.param(
            event("product.synced", product={**PRODUCT, "vendor": "Acme"}),
            "product.vendor",
            "unknown field; expected only id, title, sku",
            id="unknown-nested",
        ),
        pytest.param(
            without(event("product.synced", sorce_store="x"), "source_store"),
            "sorce_store",
            "unknown field",
            id="typo-names-the-typo",
        ),
        pytest.param(
            event("sync.failed", status="success"),
            "status",
            "must be 'failed' for sync.failed events, got 'success'",
            id="failed-status",
        ),
        pytest.param(without(EVENTS["sync.failed"], "error"), "error", "missing", id="no-error"),
        pytest.param(
            event("sync.failed", error="rate limited"),
            "error",
            "expected an object",
            id="error-string",
        ),
        pytest.param(
            event("sync.failed", error={"code": "x", "message": ""}),
            "error.message",
            "must not be empty",
            id="empty-message",
        ),
        pytest.param(event("product.synced", status=7), "status", "expected a string", id="status"),
        pytest.param(event("product.synced", id=""), "id", "must not be empty", id="empty-id"),
        pytest.param(event("product.synced", id=42), "id", "expected a string", id="int-id"),
        pytest.param(event("product.synced", id="x" * 201), "id", "longer than 200", id="long-id"),
        pytest.param(
            event("product.synced", source_store="\ud800"),
            "source_store",
            "unpaired surrogate",
            id="surrogate",
        ),
    ],
)
def test_bad_events(obj: object, field: str, problem: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate(obj, fixed_id)
    assert info.value.field == field
    assert problem in info.value.problem
    assert str(info.value) == f"invalid event: {field}: {info.value.problem}"


def test_invalid_event_is_a_value_error() -> None:
    assert issubclass(InvalidEvent, ValueError)


def test_default_event_id() -> None:
    assert re.fullmatch(r"evt_[0-9a-f]{32}", default_event_id())


@pytest.mark.parametrize(
    ("event_type", "key"),
    [
        ("product.synced", f"{ACCOUNT}/1234567890"),
        ("sync.failed", f"{ACCOUNT}/1234567890"),
        ("inventory.updated", f"{ACCOUNT}/1234567890"),
        ("collection.synced", f"{ACCOUNT}/col_1"),
    ],
)
def test_partition_key(event_type: str, key: str) -> None:
    assert partition_key(event_type, validate(event(event_type))[1]) == key


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_two_accounts_products_with_one_id_do_not_share_a_key(event_type: str) -> None:
    keys = {
        partition_key(event_type, validate_event(event(event_type), account=account)[1])
        for account in ("acct_a", "acct_b", "default")
    }
    assert len(keys) == 3


def test_the_key_of_a_record_written_before_accounts_is_the_default_accounts() -> None:
    # What a decoder hands over for a record without the field (the schema's default),
    # and what an older in-memory record lacks altogether.
    _, record = validate(event("product.synced"))
    old = {k: v for k, v in record.items() if k != "account_id"}
    assert partition_key("product.synced", old) == "default/1234567890"
    assert partition_key("product.synced", {**old, "account_id": "default"}) == "default/1234567890"


def test_partition_key_of_unknown_type() -> None:
    with pytest.raises(InvalidEvent, match="unknown event type"):
        partition_key("order.created", {"product": PRODUCT})


# --- the size limit --------------------------------------------------------------


def _sized(title: str) -> dict[str, Any]:
    return event("product.synced", product={**PRODUCT, "title": title})


def test_an_event_whose_escaped_body_is_over_the_limit_is_refused() -> None:
    # 170 KB of control characters: small as Avro, about 1 MB as JSON (each one "\\u0001").
    with pytest.raises(InvalidEvent) as info:
        validate(_sized("\x01" * 170_000), fixed_id)
    assert info.value.field == "body"
    size = len(json.dumps("\x01" * 170_000)) - 2
    assert f"{events.MAX_BODY_BYTES:,} bytes" in info.value.problem
    found = re.search(r"is ([0-9,]+) bytes", info.value.problem)
    assert found is not None
    assert size < int(found[1].replace(",", "")) < size + 1000


def test_the_limit_counts_utf8_bytes_of_the_rendered_body() -> None:
    _, record = validate(_sized("x"), fixed_id)
    overhead = len(render_body(record)) - 1
    fits = "é" * ((events.MAX_BODY_BYTES - overhead) // 2)  # two bytes each in UTF-8
    _, record = validate(_sized(fits), fixed_id)
    assert len(render_body(record)) <= events.MAX_BODY_BYTES
    with pytest.raises(InvalidEvent, match="limit"):
        validate(_sized(fits + "éé"), fixed_id)


def test_the_limit_is_256_kib() -> None:
    assert events.MAX_BODY_BYTES == 256 * 1024


# --- the webhook body --------------------------------------------------------------


def test_render_body_of_the_documented_example() -> None:
    _, record = validate(copy.deepcopy(PRODUCT_SYNCED), fixed_id)
    body = render_body(record)
    assert json.loads(body) == PRODUCT_SYNCED | {"id": FIXED_ID}
    assert body == (
        b'{"id":"evt_00000000000000000000000000000001","event":"product.synced",'
        b'"timestamp":"2025-01-29T14:30:00Z",'
        b'"product":{"id":"1234567890","title":"Merino Wool Sweater","sku":"MWS-001"},'
        b'"source_store":"main-store.myshopify.com","destination_store":"eu-store.myshopify.com",'
        b'"status":"success"}'
    )


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_render_body_after_a_kafka_round_trip_is_identical(event_type: str) -> None:
    _, record = validate(event(event_type), fixed_id)
    codec = SingleObjectCodec()
    data = codec.encode("test.events", schemas.EVENT_SCHEMA[event_type], record)
    _, decoded = codec.decode("test.events", data)
    assert render_body(decoded) == render_body(record)
    assert json.loads(render_body(decoded)) == EVENTS[event_type] | {"id": FIXED_ID}


def test_render_body_is_utf8_not_escaped() -> None:
    _, record = validate(event("collection.synced"), fixed_id)
    body = render_body(record)
    assert "Hiver — laine".encode() in body
    assert b"\\u" not in body


def test_render_body_orders_fields_by_schema() -> None:
    _, record = validate(event("sync.failed"), fixed_id)
    shuffled = dict(reversed(list(record.items())))
    shuffled["error"] = dict(reversed(list(record["error"].items())))
    assert render_body(shuffled) == render_body(record)
    assert render_body(shuffled).startswith(b'{"id":')


@pytest.mark.parametrize("event_type", schemas.EVENT_TYPES)
def test_the_account_is_not_in_the_body(event_type: str) -> None:
    _, record = validate(event(event_type), fixed_id)
    assert record["account_id"] == ACCOUNT
    body = render_body(record)
    assert "account_id" not in json.loads(body)
    assert ACCOUNT.encode() not in body
    # Whose the event is does not change a byte of what is POSTed (and signed).
    _, other = validate_event(event(event_type), fixed_id, account="default")
    assert render_body(other) == body
    assert record["account_id"] == ACCOUNT  # rendering does not change the record


def test_render_body_omits_null_fields() -> None:
    _, record = validate(event("product.synced"), fixed_id)
    assert render_body({**record, "vendor": None}) == render_body(record)


def test_render_body_of_unknown_type() -> None:
    with pytest.raises(InvalidEvent) as info:
        render_body({"event": "order.created"})
    assert info.value.field == "event"


# --- the CLI's JSON reader ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"event": "product.synced"}', [{"event": "product.synced"}], id="one"),
        pytest.param('{\n  "a": 1,\n  "b": [1,\n 2]\n}\n', [{"a": 1, "b": [1, 2]}], id="pretty"),
        pytest.param(
            '{"a": 1}\n\n{"b": 2}\r\n  \n{"c": 3}', [{"a": 1}, {"b": 2}, {"c": 3}], id="nd"
        ),
        pytest.param('{"t": "a\u2028b"}\n{"n": 2}', [{"t": "a\u2028b"}, {"n": 2}], id="u2028"),
        pytest.param('\ufeff{"a": 1}', [{"a": 1}], id="bom"),
        pytest.param("[1, 2]", [[1, 2]], id="array-is-one-value"),
        pytest.param("", [], id="empty"),
        pytest.param(" \n\n ", [], id="blank"),
    ],
)
def test_parse_events_json(text: str, expected: list[object]) -> None:
    assert parse_events_json(text) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param('{"a": 1', "line 1", id="one-line"),
        pytest.param('{"a": 1}\n{"b": 2}\n{"c": ', "line 3", id="nd-third"),
        pytest.param('{"a": 1}\n\n\n{oops}', "line 4", id="nd-after-blanks"),
        pytest.param('{\n  "a": 1,\n}\n', "line 3", id="pretty-trailing-comma"),
        pytest.param('{"a": 1} {"b": 2}', "line 1", id="two-on-one-line"),
    ],
)
def test_parse_events_json_bad(text: str, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_events_json(text)
    assert info.value.field == field
    assert info.value.problem.startswith("not valid JSON: ")
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
