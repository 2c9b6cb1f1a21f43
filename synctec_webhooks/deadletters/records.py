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
"""

from __future__ import annotations

import hashlib
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


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int


def dead_letter_id(source: Source) -> str:
    # Derived from where the record came from: dead-lettering the same source record
    # twice (after a crash) gives the same id, so list and replay can dedupe.
    digest = hashlib.sha256(f"{source.topic}/{source.partition}/{source.offset}".encode())
    return "dl_" + digest.hexdigest()[:32]


def build(
    reason: str,
    detail: str,
    source: Source,
    now_ms: int,
    delivery: dict[str, Any] | None = None,
    raw: bytes | None = None,
) -> dict[str, Any]:
    history = list(delivery["history"]) if delivery else []
    return {
        "dead_letter_id": dead_letter_id(source),
        "reason": reason,
        "detail": detail,
        "failed_at": now_ms,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "webhook_id": delivery["webhook_id"] if delivery else None,
        "event_id": delivery["event_id"] if delivery else None,
        "delivery_id": delivery["delivery_id"] if delivery else None,
        "event_type": delivery["event_type"] if delivery else None,
        "attempts": len(history),
        "history": history,
        "delivery": delivery,
        "raw": raw,
    }


def key_of(record: dict[str, Any]) -> str:
    return record.get("webhook_id") or record["source_topic"]
