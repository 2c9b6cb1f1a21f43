"""Webhook changes, the rules both the CLI and the admin API follow.

Each function takes the subscription as it is and returns it as it should be written;
nothing here does I/O except resolving a URL's host for the SSRF check. Every problem is
an `InvalidSubscription` naming the field, raised before anything is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from synctec_webhooks import schemas
from synctec_webhooks.accounts import DEFAULT_ACCOUNT, account_id_problem
from synctec_webhooks.errors import InvalidSubscription
from synctec_webhooks.matching import WILDCARD, Subscription
from synctec_webhooks.secrets_crypto import SecretBox, SigningSecret
from synctec_webhooks.signing import generate_secret
from synctec_webhooks.ssrf import Guard, check_host

MAX_DESCRIPTION = 500
MAX_URL_LENGTH = 2048


def new_webhook_id() -> str:
    return "wh_" + uuid.uuid4().hex[:24]


def parse_event_types(text: str | Sequence[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    types = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if not types:
        raise InvalidSubscription("events", "give at least one event type, or '*' for all")
    unknown = [t for t in types if t != WILDCARD and t not in schemas.EVENT_TYPES]
    if unknown:
        raise InvalidSubscription(
            "events",
            f"unknown event type {unknown[0]!r}; choose from {', '.join(schemas.EVENT_TYPES)} "
            "or '*'",
        )
    return (WILDCARD,) if WILDCARD in types else types


def check_url(url: str, guard: Guard) -> str:
    """The normalised URL, or InvalidSubscription: not http(s), too long, or an address
    the SSRF guard refuses (the host is resolved now; delivery checks it again)."""
    try:
        normalised = validate_webhook_url(url)
    except ValueError as exc:
        problem = str(exc).removeprefix("url: ")
        raise InvalidSubscription("url", redact_url(problem, url)) from None
    host = urlsplit(normalised).hostname or ""
    refused = check_host(guard, host)
    if refused is not None:
        raise InvalidSubscription("url", f"refused by the SSRF guard: {refused}")
    return normalised


def check_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidSubscription(
            "description", f"must be at most {MAX_DESCRIPTION} characters, got {len(description)}"
        )
    return description


def redact_url(text: str, url: str) -> str:
    """`text` with the password of `url` (basic auth some receivers use) masked."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def create(
    url: str,
    events: str | Sequence[str],
    description: str | None,
    *,
    guard: Guard,
    box: SecretBox | Callable[[], SecretBox],
    now_ms: int,
    secret: str | None = None,
    account_id: str = DEFAULT_ACCOUNT,
) -> Subscription:
    """A new, enabled webhook of `account_id` with a fresh secret. The secret is sealed
    for the topic and also kept in clear in the returned object, to be shown this once.
    `box` may be given as a callable, so that no key is made for a request that is
    refused."""
    problem = account_id_problem(account_id)
    if problem is not None:
        raise InvalidSubscription("account_id", problem)
    events = parse_event_types(events)
    description = check_description(description)
    url = check_url(url, guard)
    webhook_id = new_webhook_id()
    secret = secret or generate_secret()
    return Subscription(
        id=webhook_id,
        url=url,
        events=events,
        secret=secret,
        description=description,
        enabled=True,
        created_at=now_ms,
        updated_at=now_ms,
        sealed_secrets=(box() if callable(box) else box).seal(webhook_id, [SigningSecret(secret)]),
        account_id=account_id,
    )


PATCHABLE = ("url", "events", "description", "enabled")


def patched(
    sub: Subscription, changes: Mapping[str, Any], *, guard: Guard, now_ms: int
) -> Subscription:
    """`sub` with `changes` (keys from PATCHABLE, values already of the right JSON type)
    applied. Re-enabling clears the disabled reason and forgives earlier failures
    (enabled_at), so the health count starts afresh."""
    new: dict[str, Any] = {"updated_at": now_ms}
    if "events" in changes:
        new["events"] = parse_event_types(changes["events"])
    if "description" in changes:
        new["description"] = check_description(changes["description"])
    if "url" in changes:
        new["url"] = check_url(changes["url"], guard)
    enabled = changes.get("enabled")
    if enabled is True and not sub.enabled:
        new.update(enabled=True, disabled_reason=None, disabled_at=0, enabled_at=now_ms)
    elif enabled is False and sub.enabled:
        new.update(enabled=False, disabled_reason="disabled by an operator", disabled_at=now_ms)
    return replace(sub, **new)


def disabled(sub: Subscription, reason: str, now_ms: int) -> Subscription:
    return replace(
        sub, enabled=False, disabled_reason=reason, disabled_at=now_ms, updated_at=now_ms
    )


def rotated(
    sub: Subscription, *, box: SecretBox, now_ms: int, grace_ms: int, secret: str | None = None
) -> Subscription:
    """A new current secret; the old one keeps signing for `grace_ms`. Only one old secret
    is kept: a second rotation within the grace period retires the oldest at once."""
    if sub.sealed_secrets:
        old = box.open(sub.id, sub.sealed_secrets)[0].secret
    else:
        old = sub.secret
    new = secret or generate_secret()
    ends = now_ms + grace_ms
    sealed = box.seal(sub.id, [SigningSecret(new), SigningSecret(old, ends)])
    return replace(
        sub,
        secret=new,
        sealed_secrets=sealed,
        rotation_ends_at=ends if grace_ms > 0 else 0,
        updated_at=now_ms,
    )


def validate_webhook_url(url: str) -> str:
    """The URL as aiohttp will request it, or ValueError with a message for the merchant.

    Requires http or https, a host, no whitespace, at most 2048 characters. Userinfo
    ("https://user:pass@host/") is allowed, as some receivers use basic auth, so treat
    the result as a secret in logs.
    """
    shown = url if len(url) <= 100 else url[:100] + "..."
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url: must be at most {MAX_URL_LENGTH} characters, got {len(url)}")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"url: must not contain whitespace, got {shown!r}")
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise ValueError(f"url: {exc}, got {shown!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"url: must be an absolute http(s) URL, got {shown!r}")
    # yarl lowercases scheme and host, IDNA-encodes the host, percent-encodes the path.
    return str(parsed)
