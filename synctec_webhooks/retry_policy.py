"""When to try a failed delivery again, and when to give up.

Attempt 1 is the first POST. After attempt n fails, the record goes to retry tier n
(topic `<prefix>.retry.<n>`, fixed delay `delays[n-1]`) until the tiers run out; then
it is dead-lettered. So `max_attempts == 1 + len(delays)`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

logger = logging.getLogger(__name__)

ENV_VAR = "SYNCTEC_RETRY_DELAYS"

DEFAULT_DELAYS: tuple[float, ...] = (5.0, 25.0, 125.0)  # 3 retries, x5 each time


def parse_delays(text: str) -> tuple[float, ...]:
    """Parse "5,25,125" (seconds) into a delay per retry tier.

    Refuses an empty list, empty items, non-numbers, NaN/infinity and negatives. Any
    order of non-negative values is accepted: each tier is its own topic with its own
    fixed delay, so a shorter later delay is unusual but not unsafe.
    """
    if not text.strip():
        raise ValueError(f"{ENV_VAR}: expected comma-separated seconds such as '5,25,125'")
    return tuple(_parse_delay(item) for item in text.split(","))


def _parse_delay(item: str) -> float:
    try:
        value = float(item)
    except ValueError:
        raise ValueError(f"{ENV_VAR}: {item.strip()!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{ENV_VAR}: {item.strip()!r} must be a finite number >= 0")
    return value


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from `now` (unix seconds) that a Retry-After header asks us to wait.

    Accepts delta-seconds ("120") and an HTTP-date; a date in the past gives 0. Returns
    None when the header is absent or unparseable, so the caller falls back to its own
    schedule.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_date(text, now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until_date(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # parsedate_to_datetime gives a naive datetime for "-0000"; HTTP-dates are GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Retry:
    """Send to retry tier `tier`; not due before `not_before_ms` (unix ms)."""

    tier: int
    not_before_ms: int


@dataclass(frozen=True)
class GiveUp:
    """No retry tier left: dead-letter the record."""


Decision = Retry | GiveUp


@dataclass(frozen=True)
class RetryPolicy:
    delays: tuple[float, ...] = DEFAULT_DELAYS
    # A Retry-After longer than this is cut to this bound, so one endpoint cannot park
    # a record for days.
    retry_after_max: float = 3600.0

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.delays)

    def after_failure(
        self, attempt: int, now_ms: int, retry_after: float | None = None
    ) -> Decision:
        """What to do after attempt number `attempt` (1 = the first POST) failed.

        `retry_after` is the parsed Retry-After in seconds. The caller passes it only
        for 429 and 503, the statuses whose Retry-After means "come back later"; for
        anything else it passes None. It can lengthen a wait, never shorten it.

        Every tier keeps its one fixed delay, so that due times grow with the offset
        and the retry worker may pause a partition at its first record not yet due.
        A longer Retry-After is therefore honoured by choosing a later tier: the first
        one (from this attempt's own) whose delay covers it, else the longest delay.
        `retry_after_max` bounds what is asked for at all.
        """
        if attempt < 1:
            raise ValueError(f"attempt: must be >= 1, got {attempt}")
        if attempt > len(self.delays):
            return GiveUp()
        tier = attempt
        if retry_after is not None:
            wanted = min(max(retry_after, 0.0), self.retry_after_max)
            tier = self._tier_covering(attempt, wanted)
        return Retry(tier=tier, not_before_ms=now_ms + round(self.delays[tier - 1] * 1000))

    def _tier_covering(self, attempt: int, wanted: float) -> int:
        candidates = range(attempt, len(self.delays) + 1)
        for tier in candidates:
            if self.delays[tier - 1] >= wanted:
                return tier
        return max(candidates, key=lambda t: self.delays[t - 1])
