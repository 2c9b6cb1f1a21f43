"""Fan-out logic, pure: one decoded event + the subscription index -> delivery records."""

from __future__ import annotations

from typing import Any

from synctec_webhooks.deliveries import PlannedDelivery, plan
from synctec_webhooks.matching import SubscriptionIndex

__all__ = ["plan_for"]


def plan_for(
    index: SubscriptionIndex, event_type: str, event: dict[str, Any], now_ms: int
) -> list[PlannedDelivery]:
    # Disabled webhooks too: the delivery worker dead-letters their deliveries
    # (webhook_disabled), so re-enabling and replaying gets every event to them.
    return plan(event_type, event, index.match(event_type, include_disabled=True), now_ms)
