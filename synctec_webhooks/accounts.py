"""Accounts and their API keys, as data. Pure.

Every event, webhook, delivery, attempt and dead letter belongs to one StoreLink account
(one merchant). An account is named by an id the StoreLink backend chooses (its own
merchant id, say), so producers need no lookup to tag an event. The default account,
`DEFAULT_ACCOUNT`, exists without a record: it is where local use (`make run`, the CLI
without `--account`) and records written before accounts existed belong.

An API key is `slk_` + 43 url-safe characters (256 random bits). Only its SHA-256 is
stored, on a compacted topic: with that much entropy a fast hash cannot be searched, so
the key check is one dict lookup, as GitHub and Stripe do for their tokens.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, replace

from synctec_webhooks.errors import InvalidAccount

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_ACCOUNT",
    "KEY_ID",
    "KEY_PREFIX",
    "Account",
    "ApiKey",
    "account_id_problem",
    "check_account_id",
    "hash_key",
    "new_api_key",
]

DEFAULT_ACCOUNT = "default"
# Safe in a Kafka key, a URL path, a JWT subject and a log line, without escaping.
ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEY_ID = re.compile(r"key_[0-9a-f]{24}")
KEY_PREFIX = "slk_"
_PREFIX_SHOWN = len(KEY_PREFIX) + 8


def account_id_problem(value: object) -> str | None:
    """What is wrong with `value` as an account id, or None."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not ACCOUNT_ID.fullmatch(value):
        return (
            f"{value[:70]!r} is not an account id: use 1 to 64 letters, digits, '_', '-' "
            "or '.', starting with a letter or digit"
        )
    return None


def check_account_id(value: object, field: str = "account_id") -> str:
    problem = account_id_problem(value)
    if problem is not None:
        raise InvalidAccount(field, problem)
    assert isinstance(value, str)
    return value


@dataclass(frozen=True)
class Account:
    id: str
    name: str | None = None
    created_at: int = 0
    updated_at: int = 0
    # None: the deployment's SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT.
    max_webhooks: int | None = None
    # Portal links issued (iat) before this epoch ms are refused: "expire all links".
    links_not_before: int = 0

    def __post_init__(self) -> None:
        check_account_id(self.id, "id")
        if self.max_webhooks is not None and self.max_webhooks < 0:
            raise InvalidAccount("max_webhooks", f"must be 0 or more, got {self.max_webhooks}")

    def webhook_limit(self, default: int) -> int:
        return default if self.max_webhooks is None else self.max_webhooks

    def record(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "max_webhooks": self.max_webhooks,
            "links_not_before": self.links_not_before,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Account:
        return cls(**record)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Account:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ApiKey:
    id: str
    account_id: str
    prefix: str
    key_hash: str  # hex SHA-256 of the key
    name: str | None = None
    created_at: int = 0
    created_by: str = "operator"
    revoked_at: int = 0

    @property
    def revoked(self) -> bool:
        return self.revoked_at > 0

    def record(self) -> dict[str, object]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "prefix": self.prefix,
            "key_hash": self.key_hash,
            "name": self.name,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> ApiKey:
        return cls(**record)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> ApiKey:
        return replace(self, **changes)  # type: ignore[arg-type]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def new_api_key(
    account_id: str, name: str | None, now_ms: int, created_by: str
) -> tuple[ApiKey, str]:
    """A new key for `account_id`: (what is stored, the key itself, to show once)."""
    check_account_id(account_id)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    stored = ApiKey(
        id="key_" + secrets.token_hex(12),
        account_id=account_id,
        prefix=key[:_PREFIX_SHOWN],
        key_hash=hash_key(key),
        name=name,
        created_at=now_ms,
        created_by=created_by,
    )
    return stored, key
