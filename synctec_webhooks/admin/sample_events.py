"""`POST /webhooks/{id}/test`: a sample event, sent to one webhook through the pipeline.

The delivery record is planned by the fan-out's own code and written straight to that
webhook's delivery topic, so only that endpoint gets it (the event belongs to the
webhook's account), and from there it is a delivery like any other: signed by the
delivery worker, retried, dead-lettered, logged to the attempts topic. The event is a
valid event of its type with sample data; its id starts with `evt_test_` so receivers
can tell it from real traffic.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from synctec_webhooks import schemas
from synctec_webhooks.deliveries import PlannedDelivery, plan
from synctec_webhooks.events import validate_event
from synctec_webhooks.matching import WILDCARD, Subscription

_PRODUCT = {"id": "test-product-1", "title": "Test product", "sku": "TEST-001"}
_STORES = {"source_store": "source.example.com", "destination_store": "destination.example.com"}
_SAMPLES: dict[str, dict[str, Any]] = {
    "product.synced": {"product": _PRODUCT, **_STORES, "status": "success"},
    "sync.failed": {
        "product": _PRODUCT,
        **_STORES,
        "status": "failed",
        "error": {"code": "test", "message": "This is a test event"},
    },
    "inventory.updated": {
        "product": _PRODUCT,
        "location_group": {"id": "test-location", "name": "Test location"},
        "available": 42,
        **_STORES,
    },
    "collection.synced": {
        "collection": {"id": "test-collection-1", "title": "Test collection", "products_count": 3},
        **_STORES,
        "status": "success",
    },
}


def default_type(sub: Subscription) -> str:
    """The first type the webhook subscribes to (product.synced for "*")."""
    return next((t for t in sub.events if t != WILDCARD), schemas.EVENT_TYPES[0])


def build_test_delivery(sub: Subscription, event_type: str, now: datetime) -> PlannedDelivery:
    event = {
        "id": "evt_test_" + uuid.uuid4().hex,
        "event": event_type,
        "timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **_SAMPLES[event_type],
    }
    _, record = validate_event(event, account=sub.account_id)
    [planned] = plan(event_type, record, [sub], int(now.timestamp() * 1000))
    return planned
