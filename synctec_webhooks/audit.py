"""The audit trail's entries: who changed what, when, from where. Pure.

Every change made through the admin API or the CLI is one `AuditEntry` record on the
`<prefix>.audit` topic, keyed by account, so an account's trail stays in order and can
be read back per account (admin service, `GET /api/v1/audit`). Entries never hold a
secret: a rotation says "rotated", not the secret; a key says its id and prefix.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "ACTOR_KINDS", "CLI", "SYSTEM", "Actor", "entry"]

ACTIONS = (
    "account.created",
    "account.updated",
    "api_key.created",
    "api_key.revoked",
    "portal_link.issued",
    "portal_links.revoked",
    "webhook.created",
    "webhook.updated",
    "webhook.enabled",
    "webhook.disabled",
    "webhook.deleted",
    "webhook.secret_rotated",
    "webhook.test_sent",
    "dead_letters.replayed",
)
ACTOR_KINDS = ("operator", "api_key", "portal", "cli", "system")
_DETAIL_MAX = 1000


@dataclass(frozen=True)
class Actor:
    """Who made a change: the kind of credential and its id (never the credential)."""

    kind: str
    id: str
    address: str | None = None  # the client's address, for API requests

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise ValueError(f"actor kind {self.kind!r} is not one of {ACTOR_KINDS}")


CLI = Actor("cli", "cli")
SYSTEM = Actor("system", "system")


def entry(
    account_id: str,
    action: str,
    actor: Actor,
    now_ms: int,
    target_id: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """An AuditEntry record (schemas/audit_entry.avsc)."""
    if action not in ACTIONS:
        raise ValueError(f"audit action {action!r} is not one of audit.ACTIONS")
    if detail is not None and len(detail) > _DETAIL_MAX:
        detail = detail[: _DETAIL_MAX - 3] + "..."
    return {
        "id": "aud_" + secrets.token_hex(16),
        "account_id": account_id,
        "at": now_ms,
        "actor_kind": actor.kind,
        "actor_id": actor.id,
        "action": action,
        "target_id": target_id,
        "detail": detail,
        "address": actor.address,
    }
