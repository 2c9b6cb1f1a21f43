"""Fan-out logic, pure: one decoded event + the subscription index -> delivery records.

An event is matched against its own account's webhooks only (`matching`): a "*"
webhook of one account never sees another account's events. Records written before
accounts existed decode with the schema's default, the default account; an event whose
account is not an account id (from a producer that does not validate) is nobody's, and
the fan-out dead-letters it rather than guess.
"""

from __future__ import annotations

from typing import Any

from synctec_webhooks.accounts import DEFAULT_ACCOUNT, account_id_problem
from synctec_webhooks.deliveries import PlannedDelivery, plan
from synctec_webhooks.events import ACCOUNT_FIELD
from synctec_webhooks.matching import Subscription, SubscriptionIndex

__all__ = ["account_of", "account_problem", "matches_for", "plan_for"]


def account_of(event: dict[str, Any]) -> str:
    """The account a decoded event belongs to (a record without the field: the default
    account's; the decoder fills it in from the schema for records written before)."""
    return str(event.get(ACCOUNT_FIELD, DEFAULT_ACCOUNT))


def account_problem(event: dict[str, Any]) -> str | None:
    """Why the event's account is no account id, or None."""
    problem = account_id_problem(event.get(ACCOUNT_FIELD, DEFAULT_ACCOUNT))
    return None if problem is None else f"{ACCOUNT_FIELD}: {problem}"


def matches_for(
    index: SubscriptionIndex, event_type: str, event: dict[str, Any]
) -> list[Subscription]:
    # Disabled webhooks too: the delivery worker dead-letters their deliveries
    # (webhook_disabled), so re-enabling and replaying gets every event to them.
    return index.match(account_of(event), event_type, include_disabled=True)


def plan_for(
    index: SubscriptionIndex, event_type: str, event: dict[str, Any], now_ms: int
) -> list[PlannedDelivery]:
    return plan(event_type, event, matches_for(index, event_type, event), now_ms)
