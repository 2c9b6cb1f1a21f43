"""StoreLink webhook delivery on Apache Kafka.

One import root. What a sync service needs is exported here::

    from synctec_webhooks import EventProducer
    with EventProducer.from_env() as producer:
        producer.emit({"event": "product.synced", ...})

The names are loaded on first use (PEP 562), so importing a pure module such as
`synctec_webhooks.signing` does not load the Kafka client. The package tree, and the
path of one event through it, are drawn in docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "EventProducer": "synctec_webhooks.producers.events",
    "EmitError": "synctec_webhooks.errors",
    "SubscriptionWriter": "synctec_webhooks.producers.subscriptions",
    "Settings": "synctec_webhooks.config",
    "SyncTecError": "synctec_webhooks.errors",
    "ConfigError": "synctec_webhooks.errors",
    "InvalidEvent": "synctec_webhooks.errors",
    "InvalidSubscription": "synctec_webhooks.errors",
    "SerializationError": "synctec_webhooks.errors",
    "verify_storelink": "synctec_webhooks.signing",
    "verify_standard": "synctec_webhooks.signing",
}

__all__ = [
    "ConfigError",
    "EmitError",
    "EventProducer",
    "InvalidEvent",
    "InvalidSubscription",
    "SerializationError",
    "Settings",
    "SubscriptionWriter",
    "SyncTecError",
    "__version__",
    "verify_standard",
    "verify_storelink",
]

if TYPE_CHECKING:
    from synctec_webhooks.config import Settings
    from synctec_webhooks.errors import (
        ConfigError,
        EmitError,
        InvalidEvent,
        InvalidSubscription,
        SerializationError,
        SyncTecError,
    )
    from synctec_webhooks.producers.events import EventProducer
    from synctec_webhooks.producers.subscriptions import SubscriptionWriter
    from synctec_webhooks.signing import verify_standard, verify_storelink


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'synctec_webhooks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
