"""The Avro contracts in schemas/ and their loader."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.schema import expand_schema, fingerprint, to_parsing_canonical_form

from synctec_webhooks import schemas
from synctec_webhooks.schemas import SCHEMA_DIR, SchemaStore

DATA = Path(__file__).parent / "data"
EMPTY = 0xC15D213AA4D7A795  # CRC-64-AVRO initial value, from the Avro specification

# An event's account_id comes last: the fields before it are the webhook body, in order.
FIELDS = {
    "com.synctec.events.ProductSynced": [
        "id", "event", "timestamp", "product", "source_store", "destination_store", "status",
        "account_id",
    ],
    "com.synctec.events.SyncFailed": [
        "id", "event", "timestamp", "product", "source_store", "destination_store", "status",
        "error", "account_id",
    ],
    "com.synctec.events.InventoryUpdated": [
        "id", "event", "timestamp", "product", "location_group", "available", "source_store",
        "destination_store", "account_id",
    ],
    "com.synctec.events.CollectionSynced": [
        "id", "event", "timestamp", "collection", "source_store", "destination_store", "status",
        "account_id",
    ],
    "com.synctec.webhooks.Subscription": [
        "id", "account_id", "url", "events", "secret", "description", "enabled", "created_at",
        "updated_at", "sealed_secrets", "rotation_ends_at", "disabled_reason", "disabled_at",
        "enabled_at", "max_in_flight", "rate_limit",
    ],
    "com.synctec.webhooks.DeliveryAttempt": [
        "webhook_id", "account_id", "delivery_id", "event_id", "event_type", "attempt", "at",
        "status", "error", "latency_ms", "outcome", "result",
    ],
    # delivery_id and webhook_id first: the fan-out splices them (consumers/fanout/encoding.py).
    "com.synctec.webhooks.Delivery": [
        "delivery_id", "webhook_id", "account_id", "event_id", "event_type", "partition_key",
        "payload", "event_timestamp", "created_at", "attempt", "not_before", "history",
        "replays",
    ],
    "com.synctec.webhooks.DeadLetter": [
        "dead_letter_id", "reason", "detail", "failed_at", "source_topic", "source_partition",
        "source_offset", "webhook_id", "account_id", "event_id", "delivery_id", "event_type",
        "attempts", "history", "delivery", "raw", "original_size", "truncated",
    ],
    "com.synctec.webhooks.Account": [
        "id", "name", "created_at", "updated_at", "max_webhooks", "links_not_before",
    ],
    "com.synctec.webhooks.ApiKey": [
        "id", "account_id", "prefix", "key_hash", "name", "created_at", "created_by",
        "revoked_at",
    ],
    "com.synctec.webhooks.AuditEntry": [
        "id", "account_id", "at", "actor_kind", "actor_id", "action", "target_id", "detail",
        "address",
    ],
}  # fmt: skip
# The records that existed before accounts: each gained an account_id whose default is the
# default account, so records written before read as the default account's.
BEFORE_ACCOUNTS = [
    *schemas.EVENT_SCHEMA.values(),
    schemas.SUBSCRIPTION,
    schemas.DELIVERY,
    schemas.DELIVERY_ATTEMPT,
    schemas.DEAD_LETTER,
]
AVSC_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification describes it, bit by bit (no table)."""
    fp = EMPTY
    for byte in data:
        fp ^= byte
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY if fp & 1 else 0)
    return fp


def parse_record(obj: Any) -> dict[str, Any]:
    """fastavro's parse_schema, narrowed to the record schemas this package holds."""
    parsed = parse_schema(obj, named_schemas={})
    assert isinstance(parsed, dict)
    return parsed


def expanded_field(schema: dict[str, Any], name: str) -> Any:
    expanded = expand_schema(schema)
    assert isinstance(expanded, dict)
    (field,) = [f for f in expanded["fields"] if f["name"] == name]
    return field["type"]


@pytest.mark.parametrize(
    ("canonical", "expected"),
    [
        # Vectors from Apache Avro's own tests (Ruby test_fingerprints.rb, C# SchemaFingerprint).
        ('"int"', 0x7275D51A3F395C8F),
        ('"string"', 0x8F014872634503C7),
        ('"null"', 7195948357588979594),
    ],
)
def test_crc64_avro_reference_implementation(canonical: str, expected: int) -> None:
    assert crc64_avro(canonical.encode()) == expected


def test_single_object_header_of_int_matches_the_avro_project() -> None:
    fp = crc64_avro(b'"int"').to_bytes(8, "little")
    assert b"\xc3\x01" + fp == bytes.fromhex("c3018f5c393f1ad57572")


@pytest.mark.parametrize("path", AVSC_FILES, ids=lambda p: p.name)
def test_every_avsc_is_a_standalone_record_schema(path: Path) -> None:
    obj = json.loads(path.read_text(encoding="utf-8"))
    parsed = parse_record(obj)
    assert parsed["type"] == "record"
    assert parsed["name"] in FIELDS


@pytest.mark.parametrize(("fullname", "names"), FIELDS.items())
def test_fields_are_in_contract_order(fullname: str, names: list[str]) -> None:
    assert [f["name"] for f in schemas.load().parsed(fullname)["fields"]] == names


def test_store_holds_exactly_the_contract_schemas() -> None:
    assert sorted(schemas.load().names()) == sorted(FIELDS)
    assert set(schemas.EVENT_SCHEMA) == set(schemas.EVENT_TYPES)
    assert {schemas.SUBSCRIPTION, schemas.DELIVERY, schemas.DEAD_LETTER} <= set(FIELDS)
    assert {schemas.ACCOUNT, schemas.API_KEY, schemas.AUDIT_ENTRY} <= set(FIELDS)


@pytest.mark.parametrize("fullname", BEFORE_ACCOUNTS)
def test_the_account_of_an_older_record_is_the_default_account(fullname: str) -> None:
    (field,) = [f for f in schemas.load().parsed(fullname)["fields"] if f["name"] == "account_id"]
    assert field["default"] == "default"
    # A dead letter's may be null (a record nobody could read), but not by default.
    expected = ["string", "null"] if fullname == schemas.DEAD_LETTER else "string"
    assert field["type"] == expected


def test_every_schema_before_accounts_is_kept_in_history() -> None:
    # Records written with them stay on the topics until retention removes them.
    history = {p.name for p in (SCHEMA_DIR / "history").glob("*.avsc")}
    for name in [
        "product_synced.v1.avsc", "sync_failed.v1.avsc", "inventory_updated.v1.avsc",
        "collection_synced.v1.avsc", "subscription.v3.avsc", "delivery.v1.avsc",
        "delivery_attempt.v1.avsc", "dead_letter.v2.avsc",
    ]:  # fmt: skip
        assert name in history
        old = json.loads((SCHEMA_DIR / "history" / name).read_text(encoding="utf-8"))
        assert "account_id" not in [f["name"] for f in old["fields"]]


@pytest.mark.parametrize("fullname", FIELDS)
def test_fingerprint_is_little_endian_crc64_of_canonical_form(fullname: str) -> None:
    store = schemas.load()
    canonical = to_parsing_canonical_form(json.loads(store.raw(fullname)))
    fp = store.fingerprint(fullname)
    assert len(fp) == 8
    assert fp == crc64_avro(canonical.encode()).to_bytes(8, "little")
    assert fp.hex() == fingerprint(canonical, "CRC-64-AVRO")


def test_fingerprints_are_stable_and_distinct() -> None:
    first, second = SchemaStore(), SchemaStore()
    fps = [first.fingerprint(name) for name in FIELDS]
    assert fps == [second.fingerprint(name) for name in FIELDS]
    assert len(set(fps)) == len(fps)


@pytest.mark.parametrize("fullname", FIELDS)
def test_by_fingerprint_round_trip(fullname: str) -> None:
    store = schemas.load()
    name, parsed = store.by_fingerprint(store.fingerprint(fullname))
    assert name == fullname
    assert parsed is store.parsed(fullname)


def test_unknown_fingerprint_raises_key_error() -> None:
    with pytest.raises(KeyError):
        schemas.load().by_fingerprint(b"\x00" * 8)


def test_unknown_name_raises_key_error_listing_the_known() -> None:
    with pytest.raises(KeyError, match=re.escape("com.synctec.webhooks.Delivery")):
        schemas.load().parsed("com.synctec.Nope")


def test_raw_is_the_schema_json() -> None:
    store = schemas.load()
    for name in FIELDS:
        assert parse_record(json.loads(store.raw(name)))["name"] == name


def test_add_makes_a_writer_resolvable_without_changing_the_reader() -> None:
    store = SchemaStore()
    current = store.fingerprint("com.synctec.events.ProductSynced")
    v2 = (DATA / "product_synced_v2.avsc").read_text(encoding="utf-8")
    assert store.add(v2) == "com.synctec.events.ProductSynced"
    v2_fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(json.loads(v2)), "CRC-64-AVRO"))
    name, parsed = store.by_fingerprint(v2_fp)
    assert name == "com.synctec.events.ProductSynced"
    assert parsed["fields"][-1]["name"] == "vendor"
    assert store.fingerprint("com.synctec.events.ProductSynced") == current


def test_history_schemas_resolve_by_fingerprint(tmp_path: Path) -> None:
    for path in AVSC_FILES:
        shutil.copy(path, tmp_path)
    (tmp_path / "history").mkdir()
    shutil.copy(DATA / "product_synced_v2.avsc", tmp_path / "history")
    v2 = json.loads((DATA / "product_synced_v2.avsc").read_text(encoding="utf-8"))
    v2_fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(v2), "CRC-64-AVRO"))
    assert SchemaStore(tmp_path).by_fingerprint(v2_fp)[0] == "com.synctec.events.ProductSynced"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "broken.avsc"),
        ('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}', "nope"),
        ('"string"', "record"),
    ],
)
def test_broken_schema_file_is_named(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "broken.avsc").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        SchemaStore(tmp_path)


def test_two_files_defining_one_name_are_refused(tmp_path: Path) -> None:
    shutil.copy(SCHEMA_DIR / "delivery.avsc", tmp_path / "a.avsc")
    shutil.copy(SCHEMA_DIR / "delivery.avsc", tmp_path / "b.avsc")
    with pytest.raises(ValueError, match="already defined"):
        SchemaStore(tmp_path)


@pytest.mark.parametrize(
    "fullname",
    [
        "com.synctec.events.SyncFailed",
        "com.synctec.events.InventoryUpdated",
    ],
)
def test_product_record_is_the_same_in_every_event(fullname: str) -> None:
    # Each file defines Product inline; they must not drift apart.
    store = schemas.load()
    reference = expanded_field(store.parsed("com.synctec.events.ProductSynced"), "product")
    other = expanded_field(store.parsed(fullname), "product")
    assert to_parsing_canonical_form(other) == to_parsing_canonical_form(reference)


def test_dead_letter_embeds_the_current_delivery_and_attempt() -> None:
    # A dead-lettered delivery is replayed as is, so its copy must match delivery.avsc.
    store = schemas.load()
    embedded = expanded_field(store.parsed(schemas.DEAD_LETTER), "delivery")
    assert embedded[0] == "null"
    delivery = expand_schema(store.parsed(schemas.DELIVERY))
    assert to_parsing_canonical_form(embedded[1]) == to_parsing_canonical_form(delivery)
    history = expanded_field(store.parsed(schemas.DEAD_LETTER), "history")
    assert history == expanded_field(store.parsed(schemas.DELIVERY), "history")


def test_load_is_cached() -> None:
    assert schemas.load() is schemas.load()
