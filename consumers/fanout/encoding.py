"""One event's delivery records as bytes, for any number of webhooks, encoded once.

The records of one event differ only in `delivery_id` and `webhook_id`, the first two
fields of the Delivery schema (the third, `account_id`, is the webhook's, which matching
made the event's own: one value per event). In Avro's binary encoding a record is its
fields one after the other, so every record is `string(delivery_id) +
string(webhook_id) + tail` with one tail for the whole event: encode it once, then
splice the two strings in front per webhook. For an event with 10,000 subscribers that
is one fastavro call and 10,000 byte joins instead of 10,000 dicts and 10,000 fastavro
calls.

Only for the single-object codec, whose header does not depend on the topic; with a
schema registry (a subject per topic) every record is encoded on its own.

An event whose body is over MAX_BODY_BYTES, or whose records would be over
MAX_RECORD_BYTES, raises RecordTooLarge before more than one record is made: such events
reach the topic only from producers that do not validate, and become dead letters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from synctec_webhooks import schemas
from synctec_webhooks.deadletters import MAX_RECORD_BYTES
from synctec_webhooks.deliveries import plan
from synctec_webhooks.errors import SyncTecError
from synctec_webhooks.events import MAX_BODY_BYTES, body_too_large
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import SINGLE_OBJECT_MAGIC, Codec, SingleObjectCodec

_HEADER = len(SINGLE_OBJECT_MAGIC) + 8  # magic + CRC-64-AVRO fingerprint
_EMPTY_STRINGS = b"\x00\x00"  # two empty Avro strings: lengths 0, 0


class RecordTooLarge(SyncTecError):
    """An event's body or delivery record is over its limit; `size` is how many bytes."""

    def __init__(self, problem: str, size: int) -> None:
        super().__init__(problem)
        self.size = size


def avro_string(text: str) -> bytes:
    """Avro binary string: zig-zag varint length, then the UTF-8 bytes."""
    data = text.encode("utf-8")
    n = len(data) << 1  # zig-zag of a non-negative long
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


def encode_deliveries(
    codec: Codec,
    topic_of: Callable[[str], str],
    event_type: str,
    event: dict[str, Any],
    matches: list[Subscription],
    now_ms: int,
) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) of every delivery record of one event, in `matches` order;
    RecordTooLarge when the body or a record is over its limit."""
    if not matches:
        return []
    [first] = plan(event_type, event, matches[:1], now_ms)
    body = len(first.record["payload"].encode("utf-8"))
    if body > MAX_BODY_BYTES:
        raise RecordTooLarge(body_too_large(body), body)
    key = first.key
    key_size = len(key.encode("utf-8"))
    if not isinstance(codec, SingleObjectCodec):
        out = []
        for p in plan(event_type, event, matches, now_ms):
            value = codec.encode(topic_of(p.webhook_id), schemas.DELIVERY, p.record)
            _check_size(len(value) + key_size)
            out.append((topic_of(p.webhook_id), p.key, value))
        return out
    template = {**first.record, "delivery_id": "", "webhook_id": ""}
    # One tail per account: a single one unless a caller mixes accounts in `matches`.
    blobs: dict[str, tuple[bytes, bytes]] = {}

    def head_tail(account_id: str) -> tuple[bytes, bytes]:
        found = blobs.get(account_id)
        if found is None:
            record = {**template, "account_id": account_id}
            blob = codec.encode(topic_of(first.webhook_id), schemas.DELIVERY, record)
            if blob[_HEADER : _HEADER + 2] != _EMPTY_STRINGS:  # the field order changed
                raise AssertionError("Delivery must start with delivery_id and webhook_id")
            found = blobs[account_id] = (blob[:_HEADER], blob[_HEADER + 2 :])
        return found

    # delivery_id() of the handler, with the event's half of the hash computed once.
    seed = hashlib.sha256(f"{event['id']}\x00".encode())
    out = []
    for sub in matches:
        h = seed.copy()
        h.update(sub.id.encode())
        did = "msg_" + h.hexdigest()[:32]
        head, tail = head_tail(sub.account_id)
        value = b"".join((head, avro_string(did), avro_string(sub.id), tail))
        _check_size(len(value) + key_size)
        out.append((topic_of(sub.id), key, value))
    return out


def _check_size(size: int) -> None:
    if size > MAX_RECORD_BYTES:
        limit = MAX_RECORD_BYTES
        problem = f"a delivery record would be {size:,} bytes, over the limit of {limit:,} bytes"
        raise RecordTooLarge(problem, size)
