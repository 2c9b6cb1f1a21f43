"""Which subscriptions want an event: an index by account, then by event type.

Every subscription (webhook) belongs to one account, and an event is matched only
against its own account's: "*" means every event type *of that account*. The fan-out
matches every event, so `match` costs as much as the subscriptions it returns and no
more: per account, one dict per event type, one for "*" subscriptions, and disabled
subscriptions kept out of both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from synctec_webhooks.accounts import DEFAULT_ACCOUNT, account_id_problem
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
    # The account (merchant) that owns it; last so positional construction still works.
    account_id: str = DEFAULT_ACCOUNT

    def __post_init__(self) -> None:
        # A list from JSON or Avro would make the frozen object mutable through it.
        object.__setattr__(self, "events", tuple(self.events))
        problem = account_id_problem(self.account_id)
        if problem is not None:
            raise InvalidSubscription("account_id", problem)
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


class _AccountIndex:
    """One account's subscriptions, by event type."""

    __slots__ = ("by_type", "disabled", "wildcard")

    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, Subscription]] = {}
        self.wildcard: dict[str, Subscription] = {}
        self.disabled: dict[str, Subscription] = {}

    def add(self, sub: Subscription) -> None:
        if not sub.enabled:
            self.disabled[sub.id] = sub
        elif sub.wildcard:
            # Only here, so a sub listing "*" and a type is not matched twice.
            self.wildcard[sub.id] = sub
        else:
            for event_type in sub.events:
                self.by_type.setdefault(event_type, {})[sub.id] = sub

    def discard(self, sub: Subscription) -> None:
        self.wildcard.pop(sub.id, None)
        self.disabled.pop(sub.id, None)
        for event_type in sub.events:
            bucket = self.by_type.get(event_type)
            if bucket is None:
                continue
            bucket.pop(sub.id, None)
            if not bucket:
                del self.by_type[event_type]  # no empty buckets left behind by churn

    def __bool__(self) -> bool:
        return bool(self.by_type or self.wildcard or self.disabled)


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._accounts: dict[str, _AccountIndex] = {}
        # Subscription ids per account, in upsert order (lists, counts, limits).
        self._ids_by_account: dict[str, dict[str, None]] = {}

    def upsert(self, sub: Subscription) -> None:
        """Add `sub`, or replace the subscription with its id (old event types dropped)."""
        self.remove(sub.id)
        self._by_id[sub.id] = sub
        self._accounts.setdefault(sub.account_id, _AccountIndex()).add(sub)
        self._ids_by_account.setdefault(sub.account_id, {})[sub.id] = None

    def remove(self, sub_id: str) -> None:
        """Forget a subscription; unknown ids are ignored (tombstones may repeat)."""
        old = self._by_id.pop(sub_id, None)
        if old is None:
            return
        account = self._accounts.get(old.account_id)
        if account is not None:
            account.discard(old)
            if not account:
                del self._accounts[old.account_id]
        ids = self._ids_by_account.get(old.account_id)
        if ids is not None:
            ids.pop(sub_id, None)
            if not ids:
                del self._ids_by_account[old.account_id]

    def get(self, sub_id: str) -> Subscription | None:
        return self._by_id.get(sub_id)

    def match(
        self, account_id: str, event_type: str, include_disabled: bool = False
    ) -> list[Subscription]:
        """The account's enabled subscriptions for `event_type`, then its "*" ones, each
        group in the order of their latest upsert; with `include_disabled`, then its
        disabled ones subscribed to it (the fan-out hands those on to be dead-lettered,
        not dropped). Another account's subscriptions are never returned."""
        account = self._accounts.get(account_id)
        if account is None:
            return []
        bucket = account.by_type.get(event_type)
        exact = list(bucket.values()) if bucket else []
        found = exact + list(account.wildcard.values()) if account.wildcard else exact
        if include_disabled and account.disabled:
            found += [s for s in account.disabled.values() if s.subscribed(event_type)]
        return found

    def all(self, account_id: str | None = None) -> list[Subscription]:
        """Every subscription, disabled ones included; of one account if given."""
        if account_id is None:
            return list(self._by_id.values())
        return [self._by_id[i] for i in self._ids_by_account.get(account_id, ())]

    def count(self, account_id: str) -> int:
        """How many subscriptions the account has (its limit counts them)."""
        return len(self._ids_by_account.get(account_id, ()))

    def accounts(self) -> list[str]:
        """Accounts with at least one subscription."""
        return list(self._ids_by_account)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._by_id
