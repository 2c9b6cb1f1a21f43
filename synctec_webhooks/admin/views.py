"""What the API shows of webhooks, attempts, dead letters, accounts, API keys and audit
entries. Never a signing secret nor an API key's hash: only `created` (POST /webhooks),
`rotated` (rotate-secret) and `key_created` (POST .../api-keys) show a secret, that once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from synctec_webhooks.accounts import Account, ApiKey
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
        "account_id": sub.account_id,
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


def account_view(account: Account, webhooks: int) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "created_at": account.created_at,
        "max_webhooks": account.max_webhooks,
        "webhooks": webhooks,
    }


def key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "created_at": key.created_at,
        "created_by": key.created_by,
        "revoked_at": key.revoked_at or None,
    }


def key_created(key: ApiKey, secret: str) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "key": secret,
        "account_id": key.account_id,
        "name": key.name,
        "created_at": key.created_at,
    }


def audit_view(entry: dict[str, Any]) -> dict[str, Any]:
    at = datetime.fromtimestamp(entry["at"] / 1000, UTC)
    return {
        "id": entry["id"],
        "account_id": entry["account_id"],
        "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "actor": {"kind": entry["actor_kind"], "id": entry["actor_id"]},
        "action": entry["action"],
        "target_id": entry["target_id"],
        "detail": entry["detail"],
        "address": entry["address"],
    }
