"""Attempt-log records, pure: one finished POST as the admin service shows it.

The delivery and retry workers write one to `<prefix>.attempts` (keyed by webhook id,
so a webhook's attempts stay in order in one partition) after every POST. The admin
service reads them for "recent attempts" and to judge endpoint health. It is a log
for people, not part of the delivery guarantee: it is written without waiting for the
broker, and a crash may lose the last few.
"""

from __future__ import annotations

from typing import Any

DELIVERED = "delivered"
RETRY = "retry"


def attempt_record(
    delivery: dict[str, Any],
    *,
    status: int | None,
    error: str | None,
    latency_ms: float,
    outcome: str,
    result: str,
    at_ms: int,
) -> dict[str, Any]:
    """`result` is DELIVERED, RETRY or the dead-letter reason the attempt led to."""
    return {
        "webhook_id": delivery["webhook_id"],
        # The delivery's account (its webhook's): the admin service shows an account
        # its own attempts only.
        "account_id": delivery["account_id"],
        "delivery_id": delivery["delivery_id"],
        "event_id": delivery["event_id"],
        "event_type": delivery["event_type"],
        "attempt": delivery["attempt"],
        "at": at_ms,
        "status": status,
        "error": error,
        "latency_ms": latency_ms,
        "outcome": outcome,
        "result": result,
    }


def failed_for_good(record: dict[str, Any]) -> bool:
    """True when this attempt ended its delivery without success (dead-lettered)."""
    return record["result"] not in (DELIVERED, RETRY)
