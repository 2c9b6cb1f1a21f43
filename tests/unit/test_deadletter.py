"""Dead-letter records: built from a delivery or from poison bytes, stable ids, Avro-safe,
of the delivery's account (none for bytes nobody could read)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.deadletters import Source, build, dead_letter_id, key_of
from synctec_webhooks.serialization import SingleObjectCodec

NOW_MS = 1_738_161_000_000
SOURCE = Source("synctec.retry.3", 2, 41)
URL = "https://shop.example/hooks/synctec"
ACCOUNT = "acct_eu"


def _delivery(attempts: int) -> dict[str, Any]:
    return {
        "delivery_id": "msg_0123456789abcdef0123456789abcdef",
        "webhook_id": "wh_0123456789abcdef01234567",
        "account_id": ACCOUNT,
        "event_id": "evt_1",
        "event_type": "sync.failed",
        "partition_key": f"{ACCOUNT}/1234567890",
        "payload": '{"id":"evt_1","event":"sync.failed"}',
        "event_timestamp": "2025-01-29T14:30:00Z",
        "created_at": NOW_MS - 3_600_000,
        "attempt": max(attempts, 1),
        "not_before": NOW_MS - 1000,
        "history": [
            {
                "attempt": n,
                "at": NOW_MS - (attempts - n) * 1000,
                "status": None if n % 2 else 500,
                "error": "timed out after 10.0 s" if n % 2 else "HTTP 500",
                "latency_ms": 10.5 * n,
                "url": URL,
            }
            for n in range(1, attempts + 1)
        ],
        "replays": 1,
    }


# --- build ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "attempts"),
    [
        (deadletters.RETRIES_EXHAUSTED, 4),
        (deadletters.INVALID_URL, 1),
        (deadletters.WEBHOOK_NOT_FOUND, 0),
    ],
)
def test_build_from_a_delivery(reason: str, attempts: int) -> None:
    delivery = _delivery(attempts)
    before = copy.deepcopy(delivery)

    record = build(reason, "why", SOURCE, NOW_MS, delivery=delivery)

    assert delivery == before
    assert record == {
        "dead_letter_id": dead_letter_id(SOURCE, before),
        "reason": reason,
        "detail": "why",
        "failed_at": NOW_MS,
        "source_topic": "synctec.retry.3",
        "source_partition": 2,
        "source_offset": 41,
        "webhook_id": delivery["webhook_id"],
        "account_id": ACCOUNT,
        "event_id": delivery["event_id"],
        "delivery_id": delivery["delivery_id"],
        "event_type": delivery["event_type"],
        "attempts": attempts,
        "history": before["history"],
        "delivery": before,
        "raw": None,
        "original_size": None,
        "truncated": False,
    }


@pytest.mark.parametrize(
    ("reason", "raw"),
    [
        (deadletters.UNDECODABLE, b"\xc3\x01garbage\x00\xff"),
        (deadletters.UNDECODABLE, b""),
        (deadletters.UNDECODABLE, None),  # a tombstone on the events topic has no value
        (deadletters.INVALID_EVENT, b"\xc3\x01" + bytes(range(256))),
    ],
)
def test_build_from_poison_bytes(reason: str, raw: bytes | None) -> None:
    source = Source("synctec.events", 0, 7)
    record = build(reason, "cannot read", source, NOW_MS, raw=raw)
    assert record == {
        "dead_letter_id": dead_letter_id(source),
        "reason": reason,
        "detail": "cannot read",
        "failed_at": NOW_MS,
        "source_topic": "synctec.events",
        "source_partition": 0,
        "source_offset": 7,
        "webhook_id": None,
        "account_id": None,  # nobody knows whose: operators only
        "event_id": None,
        "delivery_id": None,
        "event_type": None,
        "attempts": 0,
        "history": [],
        "delivery": None,
        "raw": raw,
        "original_size": None,
        "truncated": False,
    }


def test_a_dead_letter_of_a_readable_event_without_a_delivery_has_the_events_account() -> None:
    # The fan-out's too_large: the event decoded, no delivery record could be made.
    source = Source("synctec.events", 0, 7)
    record = build(deadletters.TOO_LARGE, "too large", source, NOW_MS, raw=b"x",
                   original_size=300_000, account_id=ACCOUNT)  # fmt: skip
    assert record["account_id"] == ACCOUNT
    assert record["webhook_id"] is None and record["delivery"] is None


def test_the_account_of_a_delivery_dead_letter_is_the_deliverys() -> None:
    delivery = {**_delivery(2), "account_id": "acct_us"}
    record = build(deadletters.RETRIES_EXHAUSTED, "why", SOURCE, NOW_MS, delivery=delivery,
                   account_id=ACCOUNT)  # fmt: skip
    assert record["account_id"] == record["delivery"]["account_id"] == "acct_us"


def test_history_is_a_copy() -> None:
    delivery = _delivery(2)
    record = build(deadletters.RETRIES_EXHAUSTED, "why", SOURCE, NOW_MS, delivery=delivery)
    record["history"].append({"attempt": 3})
    assert len(delivery["history"]) == 2


@pytest.mark.parametrize(
    ("record", "key"),
    [
        pytest.param(
            build(deadletters.INVALID_URL, "x", SOURCE, NOW_MS, delivery=_delivery(1)),
            "wh_0123456789abcdef01234567",
            id="delivery-by-webhook",
        ),
        pytest.param(
            build(deadletters.UNDECODABLE, "x", Source("synctec.events", 0, 1), NOW_MS, raw=b"x"),
            "synctec.events",
            id="poison-by-topic",
        ),
    ],
)
def test_key_of(record: dict[str, Any], key: str) -> None:
    assert key_of(record) == key


# --- dead_letter_id ------------------------------------------------------------------


def test_dead_letter_id_is_deterministic() -> None:
    first = dead_letter_id(Source("synctec.retry.3", 2, 41))
    assert first == dead_letter_id(Source("synctec.retry.3", 2, 41))
    assert re.fullmatch(r"dl_[0-9a-f]{32}", first)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(Source("synctec.retry.2", 2, 41), id="topic"),
        pytest.param(Source("synctec.retry.3", 3, 41), id="partition"),
        pytest.param(Source("synctec.retry.3", 2, 42), id="offset"),
        pytest.param(Source("synctec.retry.3", 24, 1), id="digits-move-across"),
        pytest.param(Source("other.retry.3", 2, 41), id="prefix"),
    ],
)
def test_dead_letter_id_is_distinct_per_source(other: Source) -> None:
    assert dead_letter_id(other) != dead_letter_id(SOURCE)


def test_a_poison_dead_letter_id_ignores_the_content() -> None:
    a = build(deadletters.UNDECODABLE, "a", SOURCE, NOW_MS, raw=b"a")
    b = build(deadletters.INVALID_EVENT, "b", SOURCE, NOW_MS + 1, raw=b"b")
    assert a["dead_letter_id"] == b["dead_letter_id"] == dead_letter_id(SOURCE)


def test_two_retry_chains_of_one_delivery_give_one_dead_letter_id() -> None:
    # A worker killed after its retry record was acknowledged, before its offset was
    # committed, starts a second chain: it ends on another retry offset, with another
    # history, maybe another reason, but it is the same delivery in the same round.
    first = build(deadletters.RETRIES_EXHAUSTED, "a", SOURCE, NOW_MS, delivery=_delivery(4))
    second_delivery = {**_delivery(3), "attempt": 3}
    second = build(
        deadletters.WEBHOOK_DISABLED, "b", Source("synctec.retry.2", 0, 7), NOW_MS + 9,
        delivery=second_delivery,
    )  # fmt: skip
    assert first["dead_letter_id"] == second["dead_letter_id"]
    assert re.fullmatch(r"dl_[0-9a-f]{32}", first["dead_letter_id"])
    assert first["dead_letter_id"] != dead_letter_id(SOURCE)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"replays": 2}, id="another-replay-round"),
        pytest.param({"delivery_id": "msg_" + "f" * 32}, id="another-delivery"),
        pytest.param({"webhook_id": "wh_" + "f" * 24}, id="another-webhook"),
    ],
)
def test_a_delivery_dead_letter_id_is_distinct_per_delivery_and_round(
    change: dict[str, Any],
) -> None:
    delivery = _delivery(4)
    assert dead_letter_id(SOURCE, {**delivery, **change}) != dead_letter_id(SOURCE, delivery)


# --- Avro ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(
            build(
                deadletters.RETRIES_EXHAUSTED,
                "4 attempts failed",
                SOURCE,
                NOW_MS,
                delivery=_delivery(4),
            ),
            id="retries-exhausted",
        ),
        pytest.param(
            build(deadletters.INVALID_URL, "invalid URL", SOURCE, NOW_MS, delivery=_delivery(1)),
            id="invalid-url",
        ),
        pytest.param(
            build(deadletters.WEBHOOK_NOT_FOUND, "gone", SOURCE, NOW_MS, delivery=_delivery(0)),
            id="webhook-not-found",
        ),
        pytest.param(
            build(
                deadletters.UNDECODABLE,
                "bad magic",
                Source("synctec.events", 5, 2**40),
                NOW_MS,
                raw=b"\x00\x01\xff",
            ),
            id="undecodable",
        ),
        pytest.param(
            build(deadletters.UNDECODABLE, "tombstone", Source("synctec.events", 0, 0), NOW_MS),
            id="no-bytes",
        ),
        pytest.param(
            build(
                deadletters.TOO_LARGE,
                "body too large",
                Source("synctec.events", 0, 3),
                NOW_MS,
                raw=b"\xc3\x01",
                account_id=ACCOUNT,
            ),
            id="too-large-event",
        ),
        pytest.param(
            build(
                deadletters.INVALID_EVENT,
                "not an event",
                Source("synctec.events", 1, 9),
                NOW_MS,
                raw=b"\xc3\x01" + bytes(8),
            ),
            id="invalid-event",
        ),
    ],
)
def test_built_records_round_trip_as_dead_letter(record: dict[str, Any]) -> None:
    codec = SingleObjectCodec()
    data = codec.encode("synctec.deadletters", schemas.DEAD_LETTER, record)
    assert codec.decode("synctec.deadletters", data) == (schemas.DEAD_LETTER, record)


# --- size: a dead letter always fits in a Kafka record ---------------------------------

CODEC = SingleObjectCodec()
TOPIC = "synctec.deadletters"


def _encode(record: dict[str, Any]) -> bytes:
    return CODEC.encode(TOPIC, schemas.DEAD_LETTER, record)


def _fits(record: dict[str, Any], value: bytes) -> bool:
    return len(value) + len(key_of(record).encode()) <= deadletters.MAX_RECORD_BYTES


def test_raw_bytes_are_cut_to_a_bound_keeping_the_original_size() -> None:
    raw = bytes(range(256)) * 4000  # 1,024,000 bytes: a poison record near 1 MB
    record = build(deadletters.UNDECODABLE, "bad magic", SOURCE, NOW_MS, raw=raw)
    assert record["raw"] == raw[: deadletters.RAW_KEPT]
    assert record["truncated"] is True
    assert record["original_size"] == len(raw)
    assert record["reason"] == deadletters.UNDECODABLE
    kept, value = deadletters.fit(record, _encode)
    assert kept == record and _fits(kept, value)
    assert CODEC.decode(TOPIC, value) == (schemas.DEAD_LETTER, record)


def test_a_small_dead_letter_is_encoded_as_it_is() -> None:
    record = build(deadletters.RETRIES_EXHAUSTED, "why", SOURCE, NOW_MS, delivery=_delivery(4))
    assert deadletters.fit(record, _encode) == (record, _encode(record))
    assert record["truncated"] is False and record["original_size"] is None


def test_a_delivery_too_large_to_keep_is_dropped_and_its_payload_start_kept() -> None:
    delivery = {**_delivery(4), "payload": '{"id":"evt_1","t":"' + "\\u0001" * 160_000 + '"}'}
    record = build(
        deadletters.TOO_LARGE, "retry record too large", SOURCE, NOW_MS, delivery=delivery,
        original_size=1_000_123,
    )  # fmt: skip
    kept, value = deadletters.fit(record, _encode)
    assert _fits(kept, value)
    assert kept["delivery"] is None  # not replayable: its body would be cut
    assert kept["raw"] == delivery["payload"].encode()[: deadletters.RAW_KEPT]
    assert kept["truncated"] is True
    assert kept["original_size"] == 1_000_123
    for name in (
        "webhook_id", "account_id", "event_id", "delivery_id", "event_type", "reason", "detail",
    ):  # fmt: skip
        assert kept[name] == record[name]
    assert kept["account_id"] == ACCOUNT  # still listed to its account, without the delivery
    assert kept["history"] == delivery["history"] and kept["attempts"] == 4
    assert CODEC.decode(TOPIC, value) == (schemas.DEAD_LETTER, kept)


def test_without_an_original_size_the_size_before_cutting_is_kept() -> None:
    delivery = {**_delivery(1), "payload": "x" * 950_000}
    record = build(deadletters.RETRIES_EXHAUSTED, "why", SOURCE, NOW_MS, delivery=delivery)
    kept, value = deadletters.fit(record, _encode)
    assert _fits(kept, value) and kept["delivery"] is None
    assert kept["original_size"] == len(_encode(record))
    assert kept["reason"] == deadletters.RETRIES_EXHAUSTED


def test_every_field_is_bounded_whatever_a_raw_record_held() -> None:
    huge = "w" * 300_000
    delivery = {
        **_delivery(3),
        "webhook_id": huge,
        "event_id": huge,
        "partition_key": huge,
        "history": [
            {"attempt": n, "at": NOW_MS, "status": None, "error": huge, "latency_ms": 1.0,
             "url": huge}
            for n in range(1, 200)
        ],
    }  # fmt: skip
    record = build(deadletters.TOO_LARGE, huge, SOURCE, NOW_MS, delivery=delivery)
    kept, value = deadletters.fit(record, _encode)
    assert _fits(kept, value)
    assert len(kept["detail"]) < 2000 and len(kept["webhook_id"]) < 2000
    assert kept["history"][-1]["attempt"] == 199  # the latest attempts are kept
    assert CODEC.decode(TOPIC, value)[1] == kept


def test_a_dead_letter_written_before_the_size_fields_still_reads(tmp_path: Path) -> None:
    # schemas/history/dead_letter.v1.avsc is the writer; the current schema reads it.
    (tmp_path / "dead_letter.avsc").write_text(
        (schemas.SCHEMA_DIR / "history" / "dead_letter.v1.avsc").read_text()
    )
    old = build(deadletters.UNDECODABLE, "bad", SOURCE, NOW_MS, raw=b"\x00")
    del old["original_size"], old["truncated"], old["account_id"]
    data = SingleObjectCodec(schemas.SchemaStore(tmp_path)).encode(TOPIC, schemas.DEAD_LETTER, old)
    # Written before accounts too: the default account's, as the schema says.
    expected = {**old, "original_size": None, "truncated": False, "account_id": "default"}
    assert CODEC.decode(TOPIC, data)[1] == expected


def test_a_delivery_dead_letter_written_before_accounts_reads_as_the_default_accounts(
    tmp_path: Path,
) -> None:
    (tmp_path / "dead_letter.avsc").write_text(
        (schemas.SCHEMA_DIR / "history" / "dead_letter.v2.avsc").read_text()
    )
    delivery = {k: v for k, v in _delivery(3).items() if k != "account_id"}
    old = build(deadletters.RETRIES_EXHAUSTED, "why", SOURCE, NOW_MS, delivery=_delivery(3))
    old = {**{k: v for k, v in old.items() if k != "account_id"}, "delivery": delivery}
    data = SingleObjectCodec(schemas.SchemaStore(tmp_path)).encode(TOPIC, schemas.DEAD_LETTER, old)
    decoded = CODEC.decode(TOPIC, data)[1]
    assert decoded["account_id"] == decoded["delivery"]["account_id"] == "default"
    assert decoded == {
        **old,
        "account_id": "default",
        "delivery": {**delivery, "account_id": "default"},
    }
