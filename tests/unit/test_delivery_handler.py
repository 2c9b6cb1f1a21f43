"""After one attempt: delivered, the next retry tier, or the dead-letter topic."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.consumers.delivery.handler import (
    HISTORY_MAX,
    HISTORY_TEXT_MAX,
    DeadLetter,
    Decision,
    Delivered,
    ScheduleRetry,
    decide,
    with_attempt,
)
from synctec_webhooks.consumers.delivery.outcome import Outcome, OutcomeKind
from synctec_webhooks.retry_policy import RetryPolicy
from synctec_webhooks.serialization import SingleObjectCodec

NOW_MS = 1_738_161_000_000
URL = "https://shop.example/hooks/synctec"
POLICY = RetryPolicy()  # delays 5, 25, 125 s: attempts 1..4
PRIOR = {
    "at": NOW_MS - 60_000,
    "status": 500,
    "error": "HTTP 500",
    "latency_ms": 8.0,
    "url": URL,
}

OK = Outcome(OutcomeKind.SUCCESS, 200, None, None, 12.5)
HTTP_500 = Outcome(OutcomeKind.HTTP_ERROR, 500, "HTTP 500", None, 30.0)
HTTP_404 = Outcome(OutcomeKind.HTTP_ERROR, 404, "HTTP 404", None, 4.0)
TIMEOUT = Outcome(OutcomeKind.TIMEOUT, None, "timed out after 10.0 s", None, 10_000.0)
REFUSED = Outcome(OutcomeKind.CONNECTION_ERROR, None, "connection refused: boom", None, 1.0)
REDIRECT = Outcome(
    OutcomeKind.REDIRECT,
    302,
    "redirect to https://elsewhere.example/ not followed (redirects are never followed)",
    None,
    3.0,
)
INVALID = Outcome(OutcomeKind.INVALID_URL, None, "invalid URL: ftp://x", None, 0.1)


def _throttled(retry_after: float, status: int = 429) -> Outcome:
    return Outcome(OutcomeKind.HTTP_ERROR, status, f"HTTP {status}", retry_after, 2.0)


def _record(attempt: int = 1) -> dict[str, Any]:
    """A delivery record about to make `attempt`, with one history entry per earlier one."""
    return {
        "delivery_id": "msg_0123456789abcdef0123456789abcdef",
        "webhook_id": "wh_0123456789abcdef01234567",
        "account_id": "acct_eu",
        "event_id": "evt_1",
        "event_type": "product.synced",
        "partition_key": "acct_eu/1234567890",
        "payload": '{"id":"evt_1","event":"product.synced"}',
        "event_timestamp": "2025-01-29T14:30:00Z",
        "created_at": NOW_MS - 3_600_000,
        "attempt": attempt,
        "not_before": NOW_MS - 1000,
        "history": [{"attempt": n, **PRIOR} for n in range(1, attempt)],
        "replays": 0,
    }


def _entry(attempt: int, outcome: Outcome) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": NOW_MS,
        "status": outcome.status,
        "error": outcome.error,
        "latency_ms": outcome.latency_ms,
        "url": URL,
    }


def _decide(record: dict[str, Any], outcome: Outcome, policy: RetryPolicy = POLICY) -> Decision:
    """decide(), checking on the way that it leaves its input alone."""
    before = copy.deepcopy(record)
    decision = decide(record, outcome, policy, NOW_MS, URL)
    assert record == before
    return decision


# --- delivered -----------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 4])
def test_success_is_delivered(attempt: int) -> None:
    record = _record(attempt)
    decision = _decide(record, OK)
    assert decision == Delivered({**record, "history": [*record["history"], _entry(attempt, OK)]})


# --- retried -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "attempt", "tier", "delay_s"),
    [
        pytest.param(HTTP_500, 1, 1, 5, id="500-attempt-1"),
        pytest.param(HTTP_500, 2, 2, 25, id="500-attempt-2"),
        pytest.param(HTTP_500, 3, 3, 125, id="500-attempt-3"),
        pytest.param(HTTP_404, 1, 1, 5, id="404"),
        pytest.param(TIMEOUT, 1, 1, 5, id="timeout"),
        pytest.param(TIMEOUT, 3, 3, 125, id="timeout-attempt-3"),
        pytest.param(REFUSED, 2, 2, 25, id="connection-refused"),
        pytest.param(REDIRECT, 1, 1, 5, id="redirect-not-followed"),
        pytest.param(_throttled(3), 1, 1, 5, id="retry-after-shorter-than-tier"),
        pytest.param(_throttled(5), 1, 1, 5, id="retry-after-equal-to-tier"),
        pytest.param(_throttled(6), 1, 2, 25, id="retry-after-picks-tier-2"),
        pytest.param(_throttled(60), 1, 3, 125, id="retry-after-picks-tier-3"),
        pytest.param(_throttled(60, 503), 1, 3, 125, id="503-retry-after"),
        pytest.param(_throttled(86_400), 1, 3, 125, id="retry-after-beyond-every-tier"),
        pytest.param(_throttled(60), 2, 3, 125, id="retry-after-from-attempt-2"),
        pytest.param(_throttled(1), 2, 2, 25, id="retry-after-never-shortens"),
    ],
)
def test_failure_is_retried(outcome: Outcome, attempt: int, tier: int, delay_s: int) -> None:
    record = _record(attempt)
    decision = _decide(record, outcome)
    assert decision == ScheduleRetry(
        tier,
        {
            **record,
            "attempt": attempt + 1,
            "not_before": NOW_MS + delay_s * 1000,
            "history": [*record["history"], _entry(attempt, outcome)],
        },
    )


def test_retry_follows_a_custom_policy() -> None:
    policy = RetryPolicy(delays=(0.5, 2.0))
    decision = _decide(_record(2), HTTP_500, policy)
    assert isinstance(decision, ScheduleRetry)
    assert (decision.tier, decision.record["not_before"]) == (2, NOW_MS + 2000)
    assert isinstance(_decide(_record(3), HTTP_500, policy), DeadLetter)


def test_redirect_target_is_recorded_not_requested() -> None:
    decision = _decide(_record(1), REDIRECT)
    assert isinstance(decision, ScheduleRetry)
    (entry,) = decision.record["history"]
    assert entry["url"] == URL
    assert entry["status"] == 302
    assert "not followed" in entry["error"]


# --- dead-lettered -------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [HTTP_500, TIMEOUT, REFUSED, REDIRECT, _throttled(60)])
def test_failure_after_the_last_tier_is_dead_lettered(outcome: Outcome) -> None:
    record = _record(POLICY.max_attempts)
    decision = _decide(record, outcome)
    assert isinstance(decision, DeadLetter)
    assert decision.reason == deadletters.RETRIES_EXHAUSTED == "retries_exhausted"
    assert decision.record == {
        **record,
        "history": [*record["history"], _entry(POLICY.max_attempts, outcome)],
    }
    assert len(decision.record["history"]) == 4
    assert decision.detail == f"4 attempts failed; last: {outcome.error}"


@pytest.mark.parametrize("attempt", [1, 2, 4])
def test_invalid_url_is_dead_lettered_at_once(attempt: int) -> None:
    record = _record(attempt)
    decision = _decide(record, INVALID)
    assert decision == DeadLetter(
        "invalid_url",
        "invalid URL: ftp://x",
        {**record, "history": [*record["history"], _entry(attempt, INVALID)]},
    )


def test_invalid_url_without_error_text_has_a_detail() -> None:
    outcome = Outcome(OutcomeKind.INVALID_URL, None, None, None, 0.0)
    decision = _decide(_record(1), outcome)
    assert isinstance(decision, DeadLetter)
    assert decision.detail == "invalid URL"


def test_every_attempt_fails_then_dead_letter() -> None:
    """The whole chain: three retries on tiers 1, 2, 3, then the dead-letter topic."""
    record = _record(1)
    tiers = []
    for _ in range(POLICY.max_attempts - 1):
        decision = _decide(record, HTTP_500)
        assert isinstance(decision, ScheduleRetry)
        tiers.append(decision.tier)
        record = decision.record
    final = _decide(record, HTTP_500)
    assert tiers == [1, 2, 3]
    assert isinstance(final, DeadLetter)
    assert final.reason == "retries_exhausted"
    assert [h["attempt"] for h in final.record["history"]] == [1, 2, 3, 4]
    assert all(h["status"] == 500 for h in final.record["history"])


# --- records stay valid --------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "outcome"),
    [(1, OK), (1, HTTP_500), (2, TIMEOUT), (3, REDIRECT), (4, REFUSED), (1, INVALID)],
)
def test_decided_records_encode_as_delivery(attempt: int, outcome: Outcome) -> None:
    codec = SingleObjectCodec()
    decision = _decide(_record(attempt), outcome)
    data = codec.encode("t", schemas.DELIVERY, decision.record)
    assert codec.decode("t", data) == (schemas.DELIVERY, decision.record)
    # A retry or a dead letter stays the delivery's account's.
    assert decision.record["account_id"] == "acct_eu"


def test_with_attempt_appends_without_mutating() -> None:
    record = _record(2)
    before = copy.deepcopy(record)
    done = with_attempt(record, HTTP_500, NOW_MS, URL)
    assert record == before
    assert done["history"] == [*before["history"], _entry(2, HTTP_500)]
    assert done["attempt"] == 2


# --- a retry record cannot grow without bound ---------------------------------------


def test_history_entries_are_bounded_whatever_the_endpoint_answered() -> None:
    long_error = Outcome(OutcomeKind.CONNECTION_ERROR, None, "reset: " + "x" * 100_000, None, 1.0)
    long_url = "https://shop.example/" + "p" * 100_000
    done = with_attempt(_record(2), long_error, NOW_MS, long_url)
    entry = done["history"][-1]
    assert len(entry["error"]) <= HISTORY_TEXT_MAX and entry["error"].startswith("reset: xxx")
    assert len(entry["url"]) <= HISTORY_TEXT_MAX and entry["url"].startswith(long_url[:100])


def test_history_keeps_only_the_latest_attempts() -> None:
    record = _record(1)
    record = {**record, "attempt": 500, "history": [{"attempt": n, **PRIOR} for n in range(1, 500)]}
    done = with_attempt(record, HTTP_500, NOW_MS, URL)
    assert len(done["history"]) == HISTORY_MAX
    assert done["history"][-1] == _entry(500, HTTP_500)
    assert done["history"][0]["attempt"] == 500 - HISTORY_MAX + 1
