"""The producer library for sync services: emit events, manage subscriptions."""

from synctec_webhooks.errors import EmitError, InvalidEvent, InvalidSubscription
from synctec_webhooks.producers.events import EventProducer
from synctec_webhooks.producers.subscriptions import SubscriptionWriter, parse_event_types

__all__ = [
    "EmitError",
    "EventProducer",
    "InvalidEvent",
    "InvalidSubscription",
    "SubscriptionWriter",
    "parse_event_types",
]
