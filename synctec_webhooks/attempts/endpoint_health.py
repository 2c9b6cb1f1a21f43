"""Endpoint health, pure: which attempts disable a webhook.

Fed every record of the attempts topic in order (one webhook's attempts share a
partition, so they arrive in the order they were made), with the webhook as it is now:

- an attempt answered 410 Gone disables the webhook at once: the receiver says the
  endpoint is gone for good;
- `threshold` consecutive events that failed for good (dead-lettered after their last
  retry, or refused) disable it; any delivered attempt resets the count.

Only attempts made after the webhook was created or last re-enabled count, so
re-enabling gives it a fresh start, and replaying the topic from its beginning (as the
admin service does when it starts) reaches the same verdicts without disabling again
what an operator has re-enabled since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synctec_webhooks.attempts import DELIVERED, failed_for_good
from synctec_webhooks.matching import Subscription

GONE = 410


@dataclass
class _Streak:
    since: int  # the webhook's enabled_at (or created_at) this count belongs to
    failed: int = 0


class HealthTracker:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold  # 0: never disable for failures
        self._streaks: dict[str, _Streak] = {}

    def observe(self, attempt: dict[str, Any], sub: Subscription | None) -> str | None:
        """The reason to disable `sub` after this attempt, or None."""
        if sub is None or not sub.enabled:
            return None
        since = sub.enabled_at or sub.created_at
        if attempt["at"] < since:
            return None
        streak = self._streaks.get(sub.id)
        if streak is None or streak.since != since:
            streak = self._streaks[sub.id] = _Streak(since)
        if attempt["status"] == GONE:
            streak.failed = 0
            return "the endpoint answered 410 Gone"
        if attempt["result"] == DELIVERED:
            streak.failed = 0
        elif failed_for_good(attempt):
            streak.failed += 1
            if self.threshold and streak.failed >= self.threshold:
                streak.failed = 0
                return f"{self.threshold} consecutive events failed"
        return None

    def failures(self, webhook_id: str) -> int:
        """Consecutive failed events counted so far, for the API."""
        streak = self._streaks.get(webhook_id)
        return streak.failed if streak else 0

    def forget(self, webhook_id: str) -> None:
        self._streaks.pop(webhook_id, None)
