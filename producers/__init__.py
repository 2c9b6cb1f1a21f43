"""The producer library for sync services: emit events, manage subscriptions."""

from synctec_webhooks.producers.events import EmitError, EventProducer, InvalidEvent
from synctec_webhooks.producers.subscriptions import (
    InvalidSubscription,
    SubscriptionWriter,
    parse_event_types,
)

__all__ = [
    "EmitError",
    "EventProducer",
    "InvalidEvent",
    "InvalidSubscription",
    "SubscriptionWriter",
    "parse_event_types",
]
