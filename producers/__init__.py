"""The producer library for sync services: emit events, manage subscriptions."""

from producers.events import EmitError, EventProducer, InvalidEvent
from producers.subscriptions import InvalidSubscription, SubscriptionWriter, parse_event_types

__all__ = [
    "EmitError",
    "EventProducer",
    "InvalidEvent",
    "InvalidSubscription",
    "SubscriptionWriter",
    "parse_event_types",
]
