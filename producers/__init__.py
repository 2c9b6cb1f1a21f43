"""The producer library for sync services: emit events, manage subscriptions; and the
writers of accounts, API keys and audit entries (the admin service, the CLI)."""

from synctec_webhooks.errors import EmitError, InvalidEvent, InvalidSubscription
from synctec_webhooks.producers.accounts import AccountWriter
from synctec_webhooks.producers.audit import AuditWriter
from synctec_webhooks.producers.events import EventProducer
from synctec_webhooks.producers.subscriptions import SubscriptionWriter, parse_event_types

__all__ = [
    "AccountWriter",
    "AuditWriter",
    "EmitError",
    "EventProducer",
    "InvalidEvent",
    "InvalidSubscription",
    "SubscriptionWriter",
    "parse_event_types",
]
