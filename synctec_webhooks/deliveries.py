"""The delivery record of one event for one webhook, planned, pure.

Shared below both users: the fan-out plans one per matching webhook, the admin service
one for a test send. The id is deterministic, so re-running either gives the same id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from synctec_webhooks.events import partition_key, render_body
from synctec_webhooks.matching import Subscription


def delivery_id(event_id: str, webhook_id: str) -> str:
    """Deterministic, so a re-run of the fan-out gives the same id and receivers can dedupe."""
    digest = hashlib.sha256(f"{event_id}\x00{webhook_id}".encode()).hexdigest()
    return "msg_" + digest[:32]


@dataclass(frozen=True)
class PlannedDelivery:
    webhook_id: str
    key: str
    record: dict[str, Any]


def plan(
    event_type: str, event: dict[str, Any], matches: list[Subscription], now_ms: int
) -> list[PlannedDelivery]:
    if not matches:
        return []
    key = partition_key(event_type, event)
    # The body is rendered once here and carried verbatim: every attempt POSTs the
    # same bytes, so a signature over it is reproducible.
    payload = render_body(event).decode("utf-8")
    return [
        PlannedDelivery(
            webhook_id=sub.id,
            key=key,
            record={
                "delivery_id": delivery_id(event["id"], sub.id),
                "webhook_id": sub.id,
                # The webhook's account, which matching made the event's own.
                "account_id": sub.account_id,
                "event_id": event["id"],
                "event_type": event_type,
                "partition_key": key,
                "payload": payload,
                "event_timestamp": event["timestamp"],
                "created_at": now_ms,
                "attempt": 1,
                "not_before": now_ms,
                "history": [],
                "replays": 0,
            },
        )
        for sub in matches
    ]
