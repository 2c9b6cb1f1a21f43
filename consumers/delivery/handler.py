"""After an attempt, pure: done, the next retry tier, or the dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synctec_webhooks import deadletters
from synctec_webhooks.consumers.delivery.outcome import Outcome, OutcomeKind
from synctec_webhooks.retry_policy import GiveUp, RetryPolicy

GONE = 410
# A delivery record carries its history to the next tier and to its dead letter: bound
# it, so that a retry record stays far below the broker's limit whatever an endpoint
# answered (errors quote exceptions and redirect targets) and however many tiers there are.
HISTORY_MAX = 32  # latest attempts kept
HISTORY_TEXT_MAX = 2048  # characters of an error or URL; webhook URLs are at most 2048


@dataclass(frozen=True)
class Delivered:
    record: dict[str, Any]


@dataclass(frozen=True)
class ScheduleRetry:
    tier: int
    record: dict[str, Any]


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    record: dict[str, Any]


Decision = Delivered | ScheduleRetry | DeadLetter


def with_attempt(record: dict[str, Any], outcome: Outcome, at_ms: int, url: str) -> dict[str, Any]:
    """The record with this attempt appended to its history (bounded, see HISTORY_MAX)."""
    entry = {
        "attempt": record["attempt"],
        "at": at_ms,
        "status": outcome.status,
        "error": _clip(outcome.error),
        "latency_ms": outcome.latency_ms,
        "url": _clip(url),
    }
    return {**record, "history": [*record["history"], entry][-HISTORY_MAX:]}


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= HISTORY_TEXT_MAX:
        return text
    return text[: HISTORY_TEXT_MAX - 1] + "…"


def decide(
    record: dict[str, Any], outcome: Outcome, policy: RetryPolicy, now_ms: int, url: str
) -> Decision:
    done = with_attempt(record, outcome, now_ms, url)
    if outcome.ok:
        return Delivered(done)
    if outcome.kind is OutcomeKind.INVALID_URL:
        return DeadLetter(deadletters.INVALID_URL, outcome.error or "invalid URL", done)
    if outcome.kind is OutcomeKind.REFUSED:
        # Not retried: the same DNS answer is refused again. Replay once it is fixed.
        return DeadLetter(deadletters.REFUSED, outcome.error or "refused", done)
    if outcome.status == GONE:
        # The receiver says the endpoint is gone for good; the admin service disables
        # the webhook when it sees this attempt (see synctec_webhooks/attempts/endpoint_health.py).
        detail = "the endpoint answered 410 Gone, which disables the webhook"
        return DeadLetter(deadletters.WEBHOOK_DISABLED, detail, done)
    step = policy.after_failure(record["attempt"], now_ms, outcome.retry_after)
    if isinstance(step, GiveUp):
        detail = f"{len(done['history'])} attempts failed; last: {outcome.error}"
        return DeadLetter(deadletters.RETRIES_EXHAUSTED, detail, done)
    return ScheduleRetry(
        step.tier, {**done, "attempt": record["attempt"] + 1, "not_before": step.not_before_ms}
    )
