"""Both Avro encodings: round trips, wire layout, schema evolution, and bad input."""

from __future__ import annotations

import copy
import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from fastavro import schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from synctec_webhooks import schemas
from synctec_webhooks.schemas import SCHEMA_DIR, SchemaStore
from synctec_webhooks.serialization import (
    SINGLE_OBJECT_MAGIC,
    SchemaRegistryCodec,
    SerializationError,
    SingleObjectCodec,
    make_codec,
)
from tests.unit.test_schemas import crc64_avro

DATA = Path(__file__).parent / "data"
PRODUCT_SYNCED = "com.synctec.events.ProductSynced"
EVENTS_TOPIC = "test.events"
ACCOUNT = "acct_eu"
HISTORY = SCHEMA_DIR / "history"

_PRODUCT = {"id": "1234567890", "title": "Merino Wool Sweater", "sku": "MWS-001"}
_STORES = {
    "source_store": "main-store.myshopify.com",
    "destination_store": "eu-store.myshopify.com",
}
_ATTEMPT = {
    "attempt": 1,
    "at": 1738161000000,
    "status": 503,
    "error": "HTTP 503",
    "latency_ms": 12.5,
    "url": "https://merchant.example/hooks",
}
_DELIVERY = {
    "delivery_id": "dlv_1",
    "webhook_id": "wh_1",
    "account_id": ACCOUNT,
    "event_id": "evt_1",
    "event_type": "product.synced",
    "partition_key": f"{ACCOUNT}/1234567890",
    "payload": '{"id":"evt_1","event":"product.synced"}',
    "event_timestamp": "2025-01-29T14:30:00Z",
    "created_at": 1738161000000,
    "attempt": 2,
    "not_before": 1738161060000,
    "history": [_ATTEMPT],
    "replays": 0,
}
RECORDS: dict[str, dict[str, Any]] = {
    PRODUCT_SYNCED: {
        "id": "evt_1",
        "event": "product.synced",
        "timestamp": "2025-01-29T14:30:00Z",
        "product": _PRODUCT,
        **_STORES,
        "status": "success",
        "account_id": ACCOUNT,
    },
    "com.synctec.events.SyncFailed": {
        "id": "evt_2",
        "event": "sync.failed",
        "timestamp": "2025-01-29T14:30:00+01:00",
        "product": _PRODUCT,
        **_STORES,
        "status": "failed",
        "error": {"code": "rate_limited", "message": "Shopify throttled the request"},
        "account_id": ACCOUNT,
    },
    "com.synctec.events.InventoryUpdated": {
        "id": "evt_3",
        "event": "inventory.updated",
        "timestamp": "2025-01-29T14:30:00.123Z",
        "product": _PRODUCT,
        "location_group": {"id": "lg_1", "name": "EU warehouses"},
        "available": 2**40,
        **_STORES,
        "account_id": ACCOUNT,
    },
    "com.synctec.events.CollectionSynced": {
        "id": "evt_4",
        "event": "collection.synced",
        "timestamp": "2025-01-29T14:30:00Z",
        "collection": {"id": "col_1", "title": "Hiver — laine", "products_count": 42},
        **_STORES,
        "status": "success",
        "account_id": ACCOUNT,
    },
    "com.synctec.webhooks.Subscription": {
        "id": "wh_1",
        "account_id": ACCOUNT,
        "url": "https://merchant.example/hooks",
        "events": ["product.synced", "sync.failed"],
        "secret": "whsec_dGVzdA==",
        "description": None,
        "enabled": True,
        "created_at": 1738161000000,
        "updated_at": 0,
        "sealed_secrets": None,
        "rotation_ends_at": 0,
        "disabled_reason": None,
        "disabled_at": 0,
        "enabled_at": 0,
        "max_in_flight": 5,
        "rate_limit": 2.5,
    },
    "com.synctec.webhooks.DeliveryAttempt": {
        "webhook_id": "wh_1",
        "account_id": ACCOUNT,
        "delivery_id": "msg_1",
        "event_id": "evt_1",
        "event_type": "product.synced",
        "attempt": 2,
        "at": 1738161000000,
        "status": None,
        "error": "timed out after 10.0 s",
        "latency_ms": 10000.5,
        "outcome": "timeout",
        "result": "retry",
    },
    "com.synctec.webhooks.Delivery": _DELIVERY,
    "com.synctec.webhooks.DeadLetter": {
        "dead_letter_id": "dl_1",
        "reason": "retries_exhausted",
        "detail": "The webhook answered 503 to all 8 attempts.",
        "failed_at": 1738161999000,
        "source_topic": "test.retry.1h",
        "source_partition": 3,
        "source_offset": 2**33,
        "webhook_id": "wh_1",
        "account_id": ACCOUNT,
        "event_id": "evt_1",
        "delivery_id": "dlv_1",
        "event_type": "product.synced",
        "attempts": 8,
        "history": [_ATTEMPT, {**_ATTEMPT, "attempt": 2, "status": None, "latency_ms": None}],
        "delivery": _DELIVERY,
        "raw": b"\x00\xffpoison",
        "original_size": 2**33,  # a long
        "truncated": True,
    },
    "com.synctec.webhooks.Account": {
        "id": ACCOUNT,
        "name": "Maison Laine — EU",
        "created_at": 1738161000000,
        "updated_at": 0,
        "max_webhooks": 20,
        "links_not_before": 1738162000000,
    },
    "com.synctec.webhooks.ApiKey": {
        "id": "key_0123456789abcdef01234567",
        "account_id": ACCOUNT,
        "prefix": "slk_AbCdEfGh",
        "key_hash": "ab" * 32,
        "name": None,
        "created_at": 1738161000000,
        "created_by": "operator",
        "revoked_at": 0,
    },
    "com.synctec.webhooks.AuditEntry": {
        "id": "aud_" + "0" * 32,
        "account_id": ACCOUNT,
        "at": 1738161000000,
        "actor_kind": "api_key",
        "actor_id": "key_0123456789abcdef01234567",
        "action": "webhook.created",
        "target_id": "wh_1",
        "detail": None,
        "address": "203.0.113.7",
    },
}


def record(fullname: str) -> dict[str, Any]:
    return copy.deepcopy(RECORDS[fullname])


def v1_product() -> dict[str, Any]:
    """A ProductSynced of the current schema (the "old" one of the evolution tests)."""
    return record(PRODUCT_SYNCED)


def v2_product() -> dict[str, Any]:
    return {**v1_product(), "vendor": "Acme Knitwear"}


def v2_json() -> str:
    return (DATA / "product_synced_v2.avsc").read_text(encoding="utf-8")


def mock_url() -> str:
    # Each mock client has its own store; a unique URL keeps tests apart regardless.
    return f"mock://{uuid.uuid4().hex}"


@pytest.fixture
def v2_store(tmp_path: Path) -> SchemaStore:
    """The schemas/ of a release where ProductSynced gained an optional vendor."""
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path)
    shutil.copy(DATA / "product_synced_v2.avsc", tmp_path / "product_synced.avsc")
    return SchemaStore(tmp_path)


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": mock_url()})


def test_every_schema_has_a_sample_record() -> None:
    assert set(RECORDS) == set(schemas.load().names())


# --- single-object encoding -------------------------------------------------------


@pytest.mark.parametrize("fullname", RECORDS)
def test_single_object_round_trip(fullname: str) -> None:
    codec = SingleObjectCodec()
    data = codec.encode("test.any", fullname, record(fullname))
    assert codec.decode("test.any", data) == (fullname, RECORDS[fullname])


@pytest.mark.parametrize("fullname", RECORDS)
def test_single_object_layout_follows_the_spec(fullname: str) -> None:
    data = SingleObjectCodec().encode("test.any", fullname, record(fullname))
    canonical = to_parsing_canonical_form(json.loads(schemas.load().raw(fullname)))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == crc64_avro(canonical.encode()).to_bytes(8, "little")
    body = io.BytesIO()
    schemaless_writer(body, schemas.load().parsed(fullname), record(fullname))
    assert data[10:] == body.getvalue()


def test_single_object_evolution_new_writer_old_reader(v2_store: SchemaStore) -> None:
    data = SingleObjectCodec(v2_store).encode(EVENTS_TOPIC, PRODUCT_SYNCED, v2_product())
    old = SchemaStore()
    old.add(v2_json())  # readers get the new schema before writers use it
    assert SingleObjectCodec(old).decode(EVENTS_TOPIC, data) == (PRODUCT_SYNCED, v1_product())


def test_single_object_new_writer_unknown_to_reader_says_what_to_do(v2_store: SchemaStore) -> None:
    data = SingleObjectCodec(v2_store).encode(EVENTS_TOPIC, PRODUCT_SYNCED, v2_product())
    fp = v2_store.fingerprint(PRODUCT_SYNCED).hex()
    with pytest.raises(SerializationError, match=f"{fp}.*deploy new schemas to readers"):
        SingleObjectCodec(SchemaStore()).decode(EVENTS_TOPIC, data)


def test_single_object_evolution_old_writer_new_reader(v2_store: SchemaStore) -> None:
    data = SingleObjectCodec().encode(EVENTS_TOPIC, PRODUCT_SYNCED, v1_product())
    v2_store.add(schemas.load().raw(PRODUCT_SYNCED))  # as schemas/history/ would
    name, decoded = SingleObjectCodec(v2_store).decode(EVENTS_TOPIC, data)
    assert (name, decoded) == (PRODUCT_SYNCED, {**v1_product(), "vendor": None})


# --- records written before accounts ----------------------------------------------

# Each record kind as it was before accounts (schemas/history/), with the current name.
BEFORE_ACCOUNTS = {
    PRODUCT_SYNCED: "product_synced.v1.avsc",
    "com.synctec.events.SyncFailed": "sync_failed.v1.avsc",
    "com.synctec.events.InventoryUpdated": "inventory_updated.v1.avsc",
    "com.synctec.events.CollectionSynced": "collection_synced.v1.avsc",
    "com.synctec.webhooks.Subscription": "subscription.v3.avsc",
    "com.synctec.webhooks.DeliveryAttempt": "delivery_attempt.v1.avsc",
    "com.synctec.webhooks.Delivery": "delivery.v1.avsc",
    "com.synctec.webhooks.DeadLetter": "dead_letter.v2.avsc",
}


def _without_accounts(value: Any) -> Any:
    """A sample record as an older writer held it: no account_id anywhere."""
    if isinstance(value, dict):
        return {k: _without_accounts(v) for k, v in value.items() if k != "account_id"}
    if isinstance(value, list):
        return [_without_accounts(v) for v in value]
    return value


def _with_default_accounts(old: Any, fullname: str) -> dict[str, Any]:
    expected = {**record(fullname), "account_id": "default"}
    if fullname == schemas.DEAD_LETTER:
        expected["delivery"] = {**expected["delivery"], "account_id": "default"}
    # The sample's other fields, as the old writer wrote them.
    assert _without_accounts(expected) == old
    return expected


@pytest.fixture
def old_store(tmp_path: Path) -> SchemaStore:
    """The schemas/ of the release before accounts: the history files as current."""
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path)
    for name in BEFORE_ACCOUNTS.values():
        shutil.copy(HISTORY / name, tmp_path / name.replace(".v1", "").replace(".v2", "")
                    .replace(".v3", ""))  # fmt: skip
    return SchemaStore(tmp_path)


@pytest.mark.parametrize("fullname", BEFORE_ACCOUNTS)
def test_a_record_written_before_accounts_reads_as_the_default_accounts(
    fullname: str, old_store: SchemaStore
) -> None:
    old = _without_accounts(record(fullname))
    assert old_store.fingerprint(fullname) != schemas.load().fingerprint(fullname)
    data = SingleObjectCodec(old_store).encode("test.any", fullname, old)
    # The shipped store knows the old writer schema from schemas/history/.
    name, decoded = SingleObjectCodec().decode("test.any", data)
    assert (name, decoded) == (fullname, _with_default_accounts(old, fullname))


@pytest.mark.parametrize("fullname", BEFORE_ACCOUNTS)
def test_registry_record_written_before_accounts_reads_as_the_default_accounts(
    fullname: str, old_store: SchemaStore, registry: SchemaRegistryClient
) -> None:
    old = _without_accounts(record(fullname))
    data = SchemaRegistryCodec("", old_store, client=registry).encode("test.any", fullname, old)
    name, decoded = SchemaRegistryCodec("", client=registry).decode("test.any", data)
    assert (name, decoded) == (fullname, _with_default_accounts(old, fullname))


# --- Confluent Schema Registry -----------------------------------------------------


@pytest.mark.parametrize("fullname", RECORDS)
def test_registry_round_trip(fullname: str) -> None:
    codec = SchemaRegistryCodec(mock_url())
    data = codec.encode("test.any", fullname, record(fullname))
    assert codec.decode("test.any", data) == (fullname, RECORDS[fullname])


def test_registry_wire_format_and_subjects(registry: SchemaRegistryClient) -> None:
    codec = SchemaRegistryCodec("mock://unused", client=registry)
    inventory = "com.synctec.events.InventoryUpdated"
    first = codec.encode(EVENTS_TOPIC, PRODUCT_SYNCED, record(PRODUCT_SYNCED))
    second = codec.encode(EVENTS_TOPIC, inventory, record(inventory))
    subjects = {f"{EVENTS_TOPIC}-{PRODUCT_SYNCED}", f"{EVENTS_TOPIC}-{inventory}"}
    assert set(registry.get_subjects()) == subjects
    for data, fullname in ((first, PRODUCT_SYNCED), (second, inventory)):
        latest = registry.get_latest_version(f"{EVENTS_TOPIC}-{fullname}")
        assert data[0] == 0
        assert int.from_bytes(data[1:5], "big") == latest.schema_id
    assert first[1:5] != second[1:5]


def test_registry_decoder_needs_only_the_registry(registry: SchemaRegistryClient) -> None:
    data = SchemaRegistryCodec("", client=registry).encode(
        EVENTS_TOPIC, PRODUCT_SYNCED, v1_product()
    )
    reader = SchemaRegistryCodec("", client=registry)
    assert reader.decode(EVENTS_TOPIC, data) == (PRODUCT_SYNCED, v1_product())


def test_registry_evolution_new_writer_old_reader(
    v2_store: SchemaStore, registry: SchemaRegistryClient
) -> None:
    writer = SchemaRegistryCodec("", v2_store, client=registry)
    data = writer.encode(EVENTS_TOPIC, PRODUCT_SYNCED, v2_product())
    reader = SchemaRegistryCodec("", client=registry)
    assert reader.decode(EVENTS_TOPIC, data) == (PRODUCT_SYNCED, v1_product())


def test_registry_evolution_old_writer_new_reader(
    v2_store: SchemaStore, registry: SchemaRegistryClient
) -> None:
    data = SchemaRegistryCodec("", client=registry).encode(
        EVENTS_TOPIC, PRODUCT_SYNCED, v1_product()
    )
    name, decoded = SchemaRegistryCodec("", v2_store, client=registry).decode(EVENTS_TOPIC, data)
    assert (name, decoded) == (PRODUCT_SYNCED, {**v1_product(), "vendor": None})


# --- errors ------------------------------------------------------------------------


def _valid_single_object() -> bytes:
    return SingleObjectCodec().encode(EVENTS_TOPIC, PRODUCT_SYNCED, v1_product())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"", r"bad magic \(empty\)", id="empty"),
        pytest.param(b"garbage bytes here", "bad magic 6761.*c301", id="garbage"),
        pytest.param(b"\x00\x00\x00\x00\x01\x02abc", "Confluent Schema Registry", id="registry"),
        pytest.param(SINGLE_OBJECT_MAGIC + b"\x01\x02", "truncated record: 4 bytes", id="short"),
        pytest.param(
            SINGLE_OBJECT_MAGIC + bytes(8) + b"\x02a",
            "fingerprint 0000000000000000 is not in schemas/.*readers before writers",
            id="unknown-fingerprint",
        ),
        pytest.param(_valid_single_object()[:-4], "cannot decode.*truncated", id="cut-body"),
        pytest.param(_valid_single_object() + b"\x00", "1 bytes left", id="trailing"),
    ],
)
def test_single_object_bad_input(data: bytes, match: str) -> None:
    with pytest.raises(SerializationError, match=match) as info:
        SingleObjectCodec().decode(EVENTS_TOPIC, data)
    assert info.value.retriable is False
    assert EVENTS_TOPIC in str(info.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"", r"bad magic \(empty\)", id="empty"),
        pytest.param(b"\x07garbage", "bad magic 07, expected 00", id="garbage"),
        pytest.param(_valid_single_object(), "single-object encoding", id="single-object"),
        pytest.param(b"\x00\x00\x00", "truncated record: 3 bytes", id="short"),
        pytest.param(b"\x00\x00\x00\x03\xe7\x02a", "schema id 999.*Not Found", id="unknown-id"),
    ],
)
def test_registry_bad_input(data: bytes, match: str) -> None:
    with pytest.raises(SerializationError, match=match) as info:
        SchemaRegistryCodec(mock_url()).decode(EVENTS_TOPIC, data)
    assert info.value.retriable is False


def test_registry_cut_body() -> None:
    codec = SchemaRegistryCodec(mock_url())
    data = codec.encode(EVENTS_TOPIC, PRODUCT_SYNCED, v1_product())
    with pytest.raises(SerializationError, match="cannot decode") as info:
        codec.decode(EVENTS_TOPIC, data[:-4])
    assert isinstance(info.value.__cause__, Exception)


@pytest.mark.parametrize(("status", "retriable"), [(503, True), (429, True), (401, False)])
def test_registry_outage_is_retriable(
    monkeypatch: pytest.MonkeyPatch, status: int, retriable: bool
) -> None:
    codec = SchemaRegistryCodec(mock_url())
    data = codec.encode(EVENTS_TOPIC, PRODUCT_SYNCED, v1_product())
    reader = SchemaRegistryCodec(mock_url())

    def failing(*args: object, **kwargs: object) -> None:
        raise SchemaRegistryError(status, -1, "registry says no")

    monkeypatch.setattr(reader.client, "get_schema", failing)
    with pytest.raises(SerializationError, match="registry says no") as info:
        reader.decode(EVENTS_TOPIC, data)
    assert info.value.retriable is retriable
    assert isinstance(info.value.__cause__, SchemaRegistryError)


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in v1_product().items() if k != key}


@pytest.mark.parametrize(
    ("fullname", "bad", "match"),
    [
        pytest.param(
            PRODUCT_SYNCED, _without("status"), "ProductSynced.status is missing", id="missing"
        ),
        pytest.param(
            PRODUCT_SYNCED,
            {**v1_product(), "product": {**_PRODUCT, "sku": 7}},
            "Product.sku: expected string, got int",
            id="wrong-type",
        ),
        pytest.param(
            PRODUCT_SYNCED, {**v1_product(), "vendor": "x"}, "more fields.*vendor", id="extra"
        ),
        pytest.param(
            "com.synctec.Nope", v1_product(), "no local schema named", id="unknown-schema"
        ),
    ],
)
@pytest.mark.parametrize("codec_type", ["single-object", "registry"])
def test_encode_refuses_records_that_do_not_fit(
    codec_type: str, fullname: str, bad: dict[str, Any], match: str
) -> None:
    codec = (
        SingleObjectCodec() if codec_type == "single-object" else SchemaRegistryCodec(mock_url())
    )
    with pytest.raises(SerializationError, match=match) as info:
        codec.encode(EVENTS_TOPIC, fullname, bad)
    assert info.value.__cause__ is not None


def test_encode_error_does_not_quote_values() -> None:
    sub = {**record("com.synctec.webhooks.Subscription"), "secret": b"whsec_do_not_log"}
    with pytest.raises(SerializationError) as info:
        SingleObjectCodec().encode("test.subscriptions", "com.synctec.webhooks.Subscription", sub)
    assert "whsec_do_not_log" not in str(info.value)
    assert "secret" in str(info.value)


@pytest.mark.parametrize(
    ("url", "codec_type"),
    [(None, SingleObjectCodec), ("", SingleObjectCodec), ("mock://x", SchemaRegistryCodec)],
)
def test_make_codec(url: str | None, codec_type: type) -> None:
    assert isinstance(make_codec(url), codec_type)
