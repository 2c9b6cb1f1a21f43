"""The rules both the CLI and the API follow when creating and changing webhooks."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from synctec_webhooks.secrets_crypto import SecretBox
from synctec_webhooks.ssrf import Guard
from synctec_webhooks.webhooks import (
    InvalidSubscription,
    create,
    disabled,
    parse_event_types,
    patched,
    redact_url,
)

NOW = 1_738_161_000_000
BOX = SecretBox([Fernet.generate_key().decode()])
GUARD = Guard()


def _new(url: str = "https://example.com/h", events: list[str] | None = None):  # type: ignore[no-untyped-def]
    return create(url, events or ["*"], None, guard=GUARD, box=BOX, now_ms=NOW)


@pytest.mark.parametrize(
    ("url", "events", "description", "field", "needle"),
    [
        ("ftp://example.com", ["*"], None, "url", "http(s)"),
        ("https://example.com/" + "x" * 2048, ["*"], None, "url", "at most 2048"),
        ("https://exa mple.com", ["*"], None, "url", "whitespace"),
        ("http://127.0.0.1:8000/h", ["*"], None, "url", "loopback"),
        ("http://localhost/h", ["*"], None, "url", "internal host name"),
        ("http://[fd00::1]/h", ["*"], None, "url", "unique-local"),
        ("https://example.com", [], None, "events", "at least one"),
        ("https://example.com", ["order.created"], None, "events", "unknown event type"),
        ("https://example.com", ["*"], "d" * 501, "description", "at most 500"),
    ],
)
def test_refusals_name_the_field(
    url: str, events: list[str], description: str | None, field: str, needle: str
) -> None:
    with pytest.raises(InvalidSubscription) as info:
        create(url, events, description, guard=GUARD, box=BOX, now_ms=NOW)
    assert info.value.field == field and needle in info.value.problem


def test_errors_mask_a_password_in_the_url() -> None:
    with pytest.raises(InvalidSubscription) as info:
        create("ftp://user:hunter22@example.com/", ["*"], None, guard=GUARD, box=BOX, now_ms=NOW)
    assert "hunter22" not in str(info.value)
    assert redact_url("https://u:pw@h/x", "https://u:pw@h/x") == "https://u:***@h/x"


def test_wildcard_swallows_the_rest() -> None:
    assert parse_event_types(["product.synced", "*"]) == ("*",)
    assert parse_event_types("product.synced, sync.failed,") == ("product.synced", "sync.failed")


def test_create_gives_a_fresh_secret_and_seals_it() -> None:
    a, b = _new(), _new()
    assert a.id != b.id and a.secret != b.secret and a.secret.startswith("whsec_")
    assert a.sealed_secrets and a.secret not in a.sealed_secrets


def test_patch_changes_only_what_is_given_and_reenabling_forgives() -> None:
    sub = _new()
    changed = patched(sub, {"events": ["sync.failed"]}, guard=GUARD, now_ms=NOW + 1)
    assert changed.events == ("sync.failed",) and changed.url == sub.url
    assert changed.updated_at == NOW + 1
    off = disabled(sub, "the endpoint answered 410 Gone", NOW + 2)
    assert not off.enabled and off.disabled_at == NOW + 2
    on = patched(off, {"enabled": True}, guard=GUARD, now_ms=NOW + 3)
    assert on.enabled and on.disabled_reason is None and on.enabled_at == NOW + 3
    by_hand = patched(sub, {"enabled": False}, guard=GUARD, now_ms=NOW + 4)
    assert by_hand.disabled_reason == "disabled by an operator"
    cleared = patched(sub, {"description": None}, guard=GUARD, now_ms=NOW + 5)
    assert cleared.description is None
    with pytest.raises(InvalidSubscription, match="url"):
        patched(sub, {"url": "http://10.0.0.1/"}, guard=GUARD, now_ms=NOW)
