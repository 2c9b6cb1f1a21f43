from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from synctec_webhooks.retry_policy import (
    DEFAULT_DELAYS,
    GiveUp,
    Retry,
    RetryPolicy,
    parse_delays,
    parse_retry_after,
)

NOW = 1_700_000_000.0
NOW_MS = 1_700_000_000_000


def _http_date(unix: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix, tz=UTC), usegmt=True)


# --- parse_delays --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5,25,125", (5.0, 25.0, 125.0)),
        ("1, 2 ,4", (1.0, 2.0, 4.0)),
        ("0.5", (0.5,)),
        ("0", (0.0,)),
        ("10,10", (10.0, 10.0)),
        ("60,1", (60.0, 1.0)),  # any order of non-negative values is accepted
    ],
)
def test_parse_delays(text: str, expected: tuple[float, ...]) -> None:
    assert parse_delays(text) == expected


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("", "expected comma-separated"),
        ("  ", "expected comma-separated"),
        ("1,,2", "''"),
        ("1,2,", "''"),
        ("1,abc", "'abc'"),
        ("1,-2", "'-2'"),
        ("nan", "'nan'"),
        ("inf", "'inf'"),
        ("5s", "'5s'"),
    ],
)
def test_parse_delays_refuses(text: str, item: str) -> None:
    with pytest.raises(ValueError, match="SYNCTEC_RETRY_DELAYS") as info:
        parse_delays(text)
    assert item in str(info.value)


# --- parse_retry_after ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-1", None),
        ("nan", None),
        ("soon", None),
        ("Mon, 99 Foo 2023 00:00:00 GMT", None),
        (_http_date(NOW + 90), 90.0),
        (_http_date(NOW - 90), 0.0),  # a date in the past: go now
        ("Tue, 14 Nov 2023 22:13:20 -0000", 0.0),  # naive date, read as GMT
        ("Tue, 14 Nov 2023 22:14:20 -0000", 60.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# --- RetryPolicy ---------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.delays == DEFAULT_DELAYS == (5.0, 25.0, 125.0)
    assert policy.max_attempts == 4
    assert policy.retry_after_max == 3600.0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, Retry(tier=1, not_before_ms=NOW_MS + 5_000)),
        (2, Retry(tier=2, not_before_ms=NOW_MS + 25_000)),
        (3, Retry(tier=3, not_before_ms=NOW_MS + 125_000)),
        (4, GiveUp()),
        (5, GiveUp()),
    ],
)
def test_after_failure_schedule(attempt: int, expected: Retry | GiveUp) -> None:
    assert RetryPolicy().after_failure(attempt, NOW_MS) == expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "tier", "wait_ms"),
    [
        (1, None, 1, 5_000),
        (1, 2.0, 1, 5_000),  # never shorter than the tier's delay
        (1, 5.0, 1, 5_000),  # covered by the tier's own delay
        (1, 20.0, 2, 25_000),  # longer: the first later tier whose delay covers it
        (1, 60.0, 3, 125_000),
        (2, 60.0, 3, 125_000),
        (3, 60.0, 3, 125_000),
        (1, 10_000.0, 3, 125_000),  # longer than every tier: the longest delay
        (1, -5.0, 1, 5_000),
        (1, 0.0005, 1, 5_000),
    ],
)
def test_after_failure_honours_retry_after_with_fixed_tier_delays(
    attempt: int, retry_after: float | None, tier: int, wait_ms: int
) -> None:
    decision = RetryPolicy().after_failure(attempt, NOW_MS, retry_after)
    assert decision == Retry(tier=tier, not_before_ms=NOW_MS + wait_ms)


def test_retry_after_max_bounds_the_request() -> None:
    policy = RetryPolicy(delays=(1.0, 10.0, 100.0), retry_after_max=5.0)
    # 50 s asked, 5 s allowed: tier 2 (10 s) covers it, tier 3 is not needed.
    assert policy.after_failure(1, 0, 50.0) == Retry(tier=2, not_before_ms=10_000)


def test_retry_after_does_not_postpone_giving_up() -> None:
    assert RetryPolicy().after_failure(4, NOW_MS, retry_after=1.0) == GiveUp()


def test_custom_policy() -> None:
    policy = RetryPolicy(delays=(0.25,), retry_after_max=30.0)
    assert policy.max_attempts == 2
    assert policy.after_failure(1, 1000) == Retry(tier=1, not_before_ms=1250)
    assert policy.after_failure(1, 1000, 99.0) == Retry(tier=1, not_before_ms=1250)
    assert policy.after_failure(2, 1000) == GiveUp()


def test_no_retries_gives_up_at_once() -> None:
    policy = RetryPolicy(delays=())
    assert policy.max_attempts == 1
    assert policy.after_failure(1, NOW_MS) == GiveUp()


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().after_failure(0, NOW_MS)
