"""Dead-letter records, pure: what failed for good, why, and where it came from.

Reasons (the `reason` field, a stable machine code; `detail` is the human sentence):
    retries_exhausted   every attempt failed; `history` holds each one
    invalid_url         the webhook's URL cannot be requested at all
    webhook_not_found   the webhook was removed before its delivery was made
    undecodable         the bytes on a topic are not a record we can read (`raw` keeps them)
    invalid_event       the record decoded but is not a sync event we know
    invalid_subscription  a subscriptions-topic record that is not a usable webhook
    webhook_disabled    the webhook is disabled (by an operator, a 410, or too many
                        failed events); replay after re-enabling it
    refused             the SSRF guard refused the address the URL resolves to
    secret_unavailable  this worker cannot open the webhook's sealed signing secret (no key,
                        or not the key that sealed it); fix SYNCTEC_SECRET_KEY, then replay
    too_large           the record it would become is over a size limit: an event's body
                        over MAX_BODY_BYTES (events.py), or a delivery or retry record over
                        MAX_RECORD_BYTES; `original_size` says how large

Account. A dead letter belongs to the account of its delivery record (`account_id`, at
the top level, where the admin service filters on it), or of the event it was made from;
None when the record could not be read, so nobody knows whose it is: only operators see
those. Dead letters written before accounts existed read as the default account.

Size. A dead letter always fits in a Kafka record: `raw` keeps at most RAW_KEPT bytes, and
`fit` leaves out a delivery too large to keep (the start of its payload goes to `raw`).
Either sets `truncated` and `original_size`; a dead letter without its delivery is not
replayable, which is right for one whose body would be cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

RETRIES_EXHAUSTED = "retries_exhausted"
INVALID_URL = "invalid_url"
WEBHOOK_NOT_FOUND = "webhook_not_found"
UNDECODABLE = "undecodable"
INVALID_EVENT = "invalid_event"
INVALID_SUBSCRIPTION = "invalid_subscription"
WEBHOOK_DISABLED = "webhook_disabled"
REFUSED = "refused"
SECRET_UNAVAILABLE = "secret_unavailable"
TOO_LARGE = "too_large"

# The largest record (key + value) a worker produces; what would be larger is dead-lettered
# (too_large) instead. Below librdkafka's message.max.bytes (1,000,000) and the broker's
# (1,048,588), with room for the record's framing.
MAX_RECORD_BYTES = 900_000
RAW_KEPT = 64 * 1024  # bytes of a poison record, or of a payload left out, that are kept
_TEXT_KEPT = 1000  # characters of each text field of a dead letter cut to fit
_HISTORY_KEPT = 32  # latest attempts of a dead letter cut to fit
_TEXT_FIELDS = ("detail", "webhook_id", "event_id", "delivery_id", "event_type")


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int


def dead_letter_id(source: Source, delivery: Mapping[str, Any] | None = None) -> str:
    """One id per thing that failed, so list and replay show and send it once.

    A delivery's dead letter is named by the delivery and its replay round: a worker
    killed after a retry record was acknowledged, before its offset was committed,
    starts a second retry chain, which ends in a second dead letter from another source
    record; both get this one id. Anything else (bytes that are no delivery) is named
    by its source record, which a crash may dead-letter twice, with the same id.
    """
    if delivery is not None:
        name = f"delivery/{delivery['webhook_id']}/{delivery['delivery_id']}/{delivery['replays']}"
    else:
        name = f"{source.topic}/{source.partition}/{source.offset}"
    return "dl_" + hashlib.sha256(name.encode()).hexdigest()[:32]


def build(
    reason: str,
    detail: str,
    source: Source,
    now_ms: int,
    delivery: dict[str, Any] | None = None,
    raw: bytes | None = None,
    original_size: int | None = None,
    account_id: str | None = None,
) -> dict[str, Any]:
    """The dead letter; `raw` cut to RAW_KEPT bytes. `original_size`: how large what did
    not fit was (too_large); else the size of `raw` when it is cut. The account is the
    delivery's; without a delivery, `account_id` (None: the record could not be read)."""
    if delivery is not None:
        account_id = delivery["account_id"]
    history = list(delivery["history"]) if delivery else []
    truncated = raw is not None and len(raw) > RAW_KEPT
    if raw is not None and truncated:
        original_size = original_size if original_size is not None else len(raw)
        raw = raw[:RAW_KEPT]
    return {
        "dead_letter_id": dead_letter_id(source, delivery),
        "reason": reason,
        "detail": _clip(detail),
        "failed_at": now_ms,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "webhook_id": delivery["webhook_id"] if delivery else None,
        "account_id": account_id,
        "event_id": delivery["event_id"] if delivery else None,
        "delivery_id": delivery["delivery_id"] if delivery else None,
        "event_type": delivery["event_type"] if delivery else None,
        "attempts": len(history),
        "history": history,
        "delivery": delivery,
        "raw": raw,
        "original_size": original_size,
        "truncated": truncated,
    }


def key_of(record: dict[str, Any]) -> str:
    return record.get("webhook_id") or record["source_topic"]


def fit(
    record: dict[str, Any], encode: Callable[[dict[str, Any]], bytes]
) -> tuple[dict[str, Any], bytes]:
    """The dead letter and its encoded bytes, `cut` first if they would be over
    MAX_RECORD_BYTES (key included). `encode` is the codec, for the dead-letter topic."""
    value = encode(record)
    if _record_size(record, value) <= MAX_RECORD_BYTES:
        return record, value
    small = cut(record, len(value))
    value = encode(small)
    if _record_size(small, value) > MAX_RECORD_BYTES:  # every field is bounded: never
        raise AssertionError(f"a cut dead letter is {len(value):,} bytes")
    return small, value


def cut(record: dict[str, Any], size: int, keep: int = RAW_KEPT) -> dict[str, Any]:
    """The dead letter (`size` bytes encoded) made small whatever it held: its delivery
    left out, the start of the payload kept instead in `raw` (at most `keep` bytes; none
    when 0), every text field and the history bounded. The counts and ids stay."""
    raw = record["raw"]
    if raw is None and record["delivery"] is not None:
        raw = record["delivery"]["payload"].encode("utf-8")
    history = [
        {**entry, "error": _clip(entry["error"]), "url": _clip(entry["url"])}
        for entry in record["history"][-_HISTORY_KEPT:]
    ]
    original = record["original_size"]
    return {
        **record,
        **{name: _clip(record[name]) for name in _TEXT_FIELDS},
        "history": history,
        "delivery": None,
        "raw": raw[:keep] if raw is not None and keep > 0 else None,
        "original_size": original if original is not None else size,
        "truncated": True,
    }


def _record_size(record: dict[str, Any], value: bytes) -> int:
    return len(value) + len(key_of(record).encode("utf-8"))


def _clip(text: Any) -> Any:
    if isinstance(text, str) and len(text) > _TEXT_KEPT:
        return text[: _TEXT_KEPT - 1] + "…"
    return text
