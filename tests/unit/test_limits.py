"""Per-endpoint pacing: the token bucket and the AIMD limit, with an explicit clock."""

from __future__ import annotations

import pytest

from synctec_webhooks.limits import AdaptiveLimit, TokenBucket


def test_bucket_spaces_requests_at_the_rate_after_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_bucket_refills_with_time_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    # Ten seconds idle: back to a full burst, not a hundred tokens.
    assert [bucket.reserve(10.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


@pytest.mark.parametrize("rate", [1.0, 7.0, 50.0, 1000.0])
def test_bucket_never_admits_more_than_rate_plus_burst_in_any_second(rate: float) -> None:
    bucket = TokenBucket(rate=rate, now=0.0)
    # Callers that each send at the moment their reservation says.
    sends = []
    for i in range(int(rate * 5)):
        now = i / (rate * 4)  # asking four times faster than the rate
        sends.append(now + bucket.reserve(now))
    for start in sends:
        in_window = sum(1 for t in sends if start <= t < start + 1.0)
        assert in_window <= rate + bucket.burst + 1e-9


@pytest.mark.parametrize("rate", [0.0, -1.0, float("inf"), float("nan")])
def test_bucket_refuses_a_rate_that_is_not_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate)


def test_throttle_halves_the_limit_and_blocks_for_retry_after() -> None:
    limit = AdaptiveLimit(ceiling=20)
    limit.on_throttle(100.0, retry_after=7.0)
    assert limit.limit == 10
    assert limit.wait(100.0) == pytest.approx(7.0)
    assert limit.wait(107.5) == 0.0


def test_throttle_without_retry_after_backs_off_exponentially_up_to_a_cap() -> None:
    limit = AdaptiveLimit(ceiling=8)
    waits = []
    for _ in range(11):
        limit.on_throttle(0.0, None)
        waits.append(limit.blocked_until)
        limit.blocked_until = 0.0
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])
    assert limit.limit == 1  # never below one


def test_retry_after_is_bounded() -> None:
    limit = AdaptiveLimit(ceiling=4, retry_after_max=30.0)
    limit.on_throttle(0.0, retry_after=86400.0)
    assert limit.wait(0.0) == 30.0


def test_successes_give_the_slots_back_one_round_trip_at_a_time() -> None:
    limit = AdaptiveLimit(ceiling=16)
    limit.on_throttle(0.0, 0.0)
    limit.on_throttle(0.0, 0.0)
    assert limit.limit == 4
    grown = []
    for _ in range(60):
        limit.on_success(1.0)
        grown.append(limit.limit)
    # 4 successes to reach 5, then 5 more to reach 6, ...: additive increase.
    assert grown[3] == 5 and grown[8] == 6 and grown[14] == 7
    assert max(grown) <= 16
    for _ in range(500):
        limit.on_success(2.0)
    assert limit.limit == 16


def test_a_success_resets_the_backoff() -> None:
    limit = AdaptiveLimit(ceiling=4)
    limit.on_throttle(0.0, None)
    limit.on_throttle(0.0, None)
    limit.on_success(5.0)
    limit.on_throttle(10.0, None)
    assert limit.blocked_until == pytest.approx(10.1)


def test_a_new_ceiling_applies_at_once_unless_slowed_down() -> None:
    limit = AdaptiveLimit(ceiling=10)
    limit.set_ceiling(30)
    assert limit.limit == 30
    limit.on_throttle(0.0, 0.0)
    limit.set_ceiling(40)
    assert (limit.ceiling, limit.limit) == (40, 15)
    limit.set_ceiling(5)
    assert (limit.ceiling, limit.limit) == (5, 5)
