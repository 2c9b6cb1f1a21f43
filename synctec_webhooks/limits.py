"""Per-endpoint pacing, pure: a token bucket for a requests/s limit, and an AIMD
controller that slows an endpoint down when it answers 429 or 503.

Both take `now` (monotonic seconds) as an argument, so they are tested without a clock
and without an event loop. The delivery worker keeps one of each per webhook.
"""

from __future__ import annotations

import math

# Without a Retry-After, a throttled endpoint is left alone this long, doubling while
# it keeps throttling, up to the cap. Short at first: halving the concurrency is the
# main answer, and an endpoint that sheds one request in three must still be served.
_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 30.0


class TokenBucket:
    """At most `rate` requests per second on average, bursts of at most `burst`.

    `reserve(now)` books the next request and returns how long to wait before sending
    it. Bookings may run ahead of the tokens (a debt), so several callers reserving at
    once are spread `1 / rate` apart instead of all waking together.
    """

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a finite number > 0, got {rate}")
        self.rate = rate
        # A tenth of a second's worth: smooth enough that any one-second window holds
        # at most rate + burst requests, loose enough for timer jitter at high rates.
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._at = now

    def reserve(self, now: float) -> float:
        elapsed = max(0.0, now - self._at)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class AdaptiveLimit:
    """How many POSTs an endpoint may have in flight, adjusted by what it answers.

    Additive increase, multiplicative decrease, as TCP does: a 429 or 503 halves the
    limit and blocks new POSTs until its Retry-After has passed (or a backoff, doubling
    while the endpoint keeps throttling); every `limit` successes in a row, about one
    round trip's worth, give one slot back, up to `ceiling`.
    """

    def __init__(self, ceiling: int, retry_after_max: float = 3600.0) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, got {ceiling}")
        self.ceiling = ceiling
        self.limit = ceiling
        self.blocked_until = 0.0
        self._retry_after_max = retry_after_max
        self._successes = 0
        self._backoff = _FIRST_BACKOFF

    def set_ceiling(self, ceiling: int) -> None:
        """A new configured maximum (the webhook's settings changed)."""
        ceiling = max(1, ceiling)
        if ceiling > self.ceiling and self.limit == self.ceiling:
            self.limit = ceiling  # not slowed down: take the new room at once
        self.ceiling = ceiling
        self.limit = min(self.limit, ceiling)

    def on_success(self, now: float) -> None:
        self._backoff = _FIRST_BACKOFF
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self.limit += 1
            self._successes = 0

    def on_throttle(self, now: float, retry_after: float | None) -> None:
        self.limit = max(1, self.limit // 2)
        self._successes = 0
        if retry_after is not None:
            delay = min(max(0.0, retry_after), self._retry_after_max)
        else:
            delay = self._backoff
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        self.blocked_until = max(self.blocked_until, now + delay)

    def wait(self, now: float) -> float:
        """Seconds before the next POST may start (0 when not blocked)."""
        return max(0.0, self.blocked_until - now)
