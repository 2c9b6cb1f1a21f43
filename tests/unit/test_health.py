"""Endpoint health: 410 disables at once; N consecutive failed events disable; a success
or a re-enable starts the count afresh; replaying the attempts log is idempotent."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from synctec_webhooks.attempts.endpoint_health import HealthTracker
from synctec_webhooks.matching import Subscription

T0 = 1_000_000
SUB = Subscription(id="wh_1", url="https://example.com", events=("*",), secret="s", created_at=T0)


def attempt(at: int, result: str, status: int | None = 500) -> dict[str, Any]:
    return {"webhook_id": "wh_1", "at": at, "status": status, "result": result}


def feed(tracker: HealthTracker, sub: Subscription, *attempts: dict[str, Any]) -> list[str]:
    return [r for r in (tracker.observe(a, sub) for a in attempts) if r]


@pytest.mark.parametrize(
    ("results", "disabled"),
    [
        (["retries_exhausted"] * 2, []),
        (["retries_exhausted"] * 3, ["3 consecutive events failed"]),
        (["retries_exhausted", "retries_exhausted", "delivered", "retries_exhausted"], []),
        # Failed attempts that are retried are not failed events yet.
        (["retry"] * 10, []),
        (["refused", "invalid_url", "retries_exhausted"], ["3 consecutive events failed"]),
    ],
)
def test_consecutive_failed_events(results: list[str], disabled: list[str]) -> None:
    tracker = HealthTracker(threshold=3)
    got = feed(tracker, SUB, *(attempt(T0 + i, r) for i, r in enumerate(results)))
    assert got == disabled


def test_410_disables_at_once() -> None:
    tracker = HealthTracker(threshold=20)
    assert feed(tracker, SUB, attempt(T0, "webhook_disabled", 410)) == [
        "the endpoint answered 410 Gone"
    ]


def test_threshold_zero_never_disables_for_failures() -> None:
    tracker = HealthTracker(threshold=0)
    assert feed(tracker, SUB, *(attempt(T0 + i, "retries_exhausted") for i in range(50))) == []


def test_failures_before_a_reenable_are_forgiven() -> None:
    tracker = HealthTracker(threshold=2)
    assert feed(tracker, SUB, attempt(T0 + 1, "retries_exhausted")) == []
    assert tracker.failures("wh_1") == 1
    reenabled = replace(SUB, enabled_at=T0 + 10)
    # A late attempt from before the re-enable does not count...
    assert feed(tracker, reenabled, attempt(T0 + 5, "retries_exhausted")) == []
    # ...and the count starts again from zero.
    assert feed(tracker, reenabled, attempt(T0 + 11, "retries_exhausted")) == []
    assert tracker.failures("wh_1") == 1


def test_disabled_or_unknown_webhooks_are_left_alone() -> None:
    tracker = HealthTracker(threshold=1)
    off = replace(SUB, enabled=False)
    assert feed(tracker, off, attempt(T0, "retries_exhausted", 410)) == []
    assert tracker.observe(attempt(T0, "retries_exhausted"), None) is None


def test_replaying_history_after_a_reenable_does_not_disable_again() -> None:
    history = [attempt(T0 + i, "retries_exhausted") for i in range(1, 4)]
    first = HealthTracker(threshold=3)
    assert feed(first, SUB, *history) == ["3 consecutive events failed"]
    # The operator re-enabled at T0 + 100; a restarted admin replays the same log.
    reenabled = replace(SUB, enabled_at=T0 + 100)
    assert feed(HealthTracker(threshold=3), reenabled, *history) == []
