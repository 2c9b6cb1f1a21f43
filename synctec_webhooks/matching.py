"""Which subscriptions want an event: an index by event type.

The fan-out matches every event, so `match` costs as much as the subscriptions it
returns and no more: one dict per event type, one for "*" subscriptions, and disabled
subscriptions kept out of both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from synctec_webhooks.errors import InvalidSubscription

logger = logging.getLogger(__name__)

WILDCARD = "*"


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)  # out of logs and tracebacks
    description: str | None = None
    enabled: bool = True
    created_at: int = 0
    updated_at: int = 0
    # The signing secrets sealed with SYNCTEC_SECRET_KEY (secrets_crypto); `secret` is
    # then "" on the topic and only the admin service or CLI, at creation, knows it.
    sealed_secrets: str | None = field(default=None, repr=False)
    rotation_ends_at: int = 0  # epoch ms when a rotated-out secret stops signing
    disabled_reason: str | None = None  # why it was disabled, for people
    disabled_at: int = 0
    enabled_at: int = 0  # epoch ms of the last (re-)enable; failures before it are forgiven
    # Per-webhook limits; None means the worker's defaults (SYNCTEC_MAX_IN_FLIGHT_PER_
    # ENDPOINT, SYNCTEC_RATE_LIMIT_PER_ENDPOINT).
    max_in_flight: int | None = None
    rate_limit: float | None = None  # requests per second

    def __post_init__(self) -> None:
        # A list from JSON or Avro would make the frozen object mutable through it.
        object.__setattr__(self, "events", tuple(self.events))
        # The writers check these; a record written past them (straight to the topic)
        # must be refused here, not crash the workers that build lanes from it.
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise InvalidSubscription(
                "max_in_flight", f"must be at least 1, got {self.max_in_flight}"
            )
        if self.rate_limit is not None and not (
            math.isfinite(self.rate_limit) and self.rate_limit > 0
        ):
            raise InvalidSubscription("rate_limit", f"must be a number > 0, got {self.rate_limit}")

    @property
    def wildcard(self) -> bool:
        return WILDCARD in self.events

    def subscribed(self, event_type: str) -> bool:
        return self.wildcard or event_type in self.events

    def wants(self, event_type: str) -> bool:
        """True if enabled and subscribed to `event_type` or to "*"."""
        return self.enabled and self.subscribed(event_type)


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._by_type: dict[str, dict[str, Subscription]] = {}
        self._wildcard: dict[str, Subscription] = {}
        self._disabled: dict[str, Subscription] = {}

    def upsert(self, sub: Subscription) -> None:
        """Add `sub`, or replace the subscription with its id (old event types dropped)."""
        self.remove(sub.id)
        self._by_id[sub.id] = sub
        if not sub.enabled:
            self._disabled[sub.id] = sub
            return
        if sub.wildcard:
            # Only here, so a sub listing "*" and a type is not matched twice.
            self._wildcard[sub.id] = sub
            return
        for event_type in sub.events:
            self._by_type.setdefault(event_type, {})[sub.id] = sub

    def remove(self, sub_id: str) -> None:
        """Forget a subscription; unknown ids are ignored (tombstones may repeat)."""
        old = self._by_id.pop(sub_id, None)
        if old is None:
            return
        self._wildcard.pop(sub_id, None)
        self._disabled.pop(sub_id, None)
        for event_type in old.events:
            bucket = self._by_type.get(event_type)
            if bucket is None:
                continue
            bucket.pop(sub_id, None)
            if not bucket:
                del self._by_type[event_type]  # no empty buckets left behind by churn

    def get(self, sub_id: str) -> Subscription | None:
        return self._by_id.get(sub_id)

    def match(self, event_type: str, include_disabled: bool = False) -> list[Subscription]:
        """Enabled subscriptions for `event_type`, then the "*" ones, each group in the
        order of their latest upsert; with `include_disabled`, then the disabled ones
        subscribed to it (the fan-out hands those on to be dead-lettered, not dropped)."""
        bucket = self._by_type.get(event_type)
        exact = list(bucket.values()) if bucket else []
        found = exact + list(self._wildcard.values()) if self._wildcard else exact
        if include_disabled and self._disabled:
            found += [s for s in self._disabled.values() if s.subscribed(event_type)]
        return found

    def all(self) -> list[Subscription]:
        """Every subscription, disabled ones included."""
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._by_id
