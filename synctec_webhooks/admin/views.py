"""What the API shows of webhooks, attempts and dead letters. Never a signing secret:
only `created` (POST /webhooks) and `rotated` (rotate-secret) add one, that once."""

from __future__ import annotations

from typing import Any

from synctec_webhooks.matching import Subscription
from synctec_webhooks.webhooks import redact_url


def attempt_view(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": record["at"],
        "event_id": record["event_id"],
        "event_type": record["event_type"],
        "delivery_id": record["delivery_id"],
        "attempt": record["attempt"],
        "status": record["status"],
        "error": record["error"],
        "latency_ms": round(record["latency_ms"], 3),
        "outcome": record["outcome"],
        "result": record["result"],
    }


def webhook_view(
    sub: Subscription, last: dict[str, Any] | None = None, failures: int = 0
) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": redact_url(sub.url, sub.url),
        "events": list(sub.events),
        "description": sub.description,
        "enabled": sub.enabled,
        "state": "enabled" if sub.enabled else "disabled",
        "disabled_reason": sub.disabled_reason,
        "disabled_at": sub.disabled_at or None,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "rotation_ends_at": sub.rotation_ends_at or None,
        "consecutive_failures": failures,
        "last_attempt": attempt_view(last) if last is not None else None,
    }


def created(sub: Subscription) -> dict[str, Any]:
    return {**webhook_view(sub), "secret": sub.secret}


def dead_letter_view(summary: dict[str, Any]) -> dict[str, Any]:
    """deadletters.replay.DeadLetterView.summary(), with the password of every URL it
    tried masked wherever it shows: the URLs, their errors, the detail. The API and the
    CLI's `dead-letters list` show this."""
    urls = {h["url"] for h in summary["history"] if h.get("url")}

    def redact(text: str | None) -> str | None:
        for url in urls:
            text = redact_url(text, url) if text else text
        return text

    history = [
        {**h, "url": redact(h.get("url")), "error": redact(h.get("error"))}
        for h in summary["history"]
    ]
    return {**summary, "detail": redact(summary["detail"]), "history": history}
