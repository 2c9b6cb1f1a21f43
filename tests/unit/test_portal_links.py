"""Portal links: signed, short-lived, one account, one scope; nothing else opens them."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from synctec_webhooks import portal_links
from synctec_webhooks.accounts import (
    DEFAULT_ACCOUNT,
    Account,
    account_id_problem,
    hash_key,
    new_api_key,
)
from synctec_webhooks.errors import CredentialRefused, InvalidAccount

KEY = portal_links.signing_key("k" * 32, "operator-token-0123456789")


def _now_ms() -> int:
    # Read per test, not at import: PyJWT checks expiry against the real clock, and the
    # whole suite runs for many minutes after this module is imported.
    return int(time.time() * 1000)


def test_a_link_names_its_account_scope_and_expiry() -> None:
    now_ms = _now_ms()
    token, claims = portal_links.issue("shop-1", "read", 600, KEY, now_ms)
    assert portal_links.looks_like_link_token(token)
    got = portal_links.verify(token, KEY, now_ms / 1000)
    assert got == claims
    assert (got.account_id, got.scope, got.issued_at_ms) == ("shop-1", "read", now_ms)
    assert got.expires_at == now_ms // 1000 + 600
    assert got.link_id.startswith("lnk_")


def test_links_have_distinct_ids() -> None:
    now_ms = _now_ms()
    ids = {portal_links.issue("shop-1", "manage", 60, KEY, now_ms)[1].link_id for _ in range(50)}
    assert len(ids) == 50


def test_an_expired_link_is_refused_as_expired() -> None:
    now_ms = _now_ms()
    token, _ = portal_links.issue("shop-1", "manage", 60, KEY, now_ms - 3_600_000)
    with pytest.raises(CredentialRefused) as exc:
        portal_links.verify(token, KEY, now_ms / 1000)
    assert exc.value.reason == "expired"
    assert "new link" in str(exc.value)


def test_a_link_expires_on_our_clock_too() -> None:
    now_ms = _now_ms()
    token, claims = portal_links.issue("shop-1", "manage", 60, KEY, now_ms)
    portal_links.verify(token, KEY, claims.expires_at)  # within the leeway
    with pytest.raises(CredentialRefused, match="expired"):
        portal_links.verify(token, KEY, claims.expires_at + 60)


def test_another_key_does_not_open_a_link() -> None:
    now_ms = _now_ms()
    token, _ = portal_links.issue("shop-1", "manage", 60, KEY, now_ms)
    other = portal_links.signing_key(None, "another-operator-token-xyz")
    with pytest.raises(CredentialRefused) as exc:
        portal_links.verify(token, other, now_ms / 1000)
    assert exc.value.reason == "invalid"


def test_the_derived_key_depends_on_the_operator_token_and_differs_from_it() -> None:
    a = portal_links.signing_key(None, "operator-token-aaaaaaaa")
    assert a == portal_links.signing_key(None, "operator-token-aaaaaaaa")
    assert a != portal_links.signing_key(None, "operator-token-bbbbbbbb")
    assert a != b"operator-token-aaaaaaaa"
    assert portal_links.signing_key("p" * 32, "x") == b"p" * 32


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_an_unsigned_or_tampered_link_is_refused() -> None:
    now_ms = _now_ms()
    token, _ = portal_links.issue("shop-1", "read", 600, KEY, now_ms)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # Another account, same signature.
    forged = ".".join((header, _b64({**claims, "sub": "shop-2"}), signature))
    # alg "none", no signature.
    unsigned = ".".join((_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""))
    # Upgraded scope, signed with a guessable key.
    guessed = jwt.encode({**claims, "scope": "manage"}, "s" * 32, algorithm="HS256")
    for bad in (forged, unsigned, guessed, "eyJ.x.y", "", "not-a-jwt"):
        with pytest.raises(CredentialRefused) as exc:
            portal_links.verify(bad, KEY, now_ms / 1000)
        assert exc.value.reason == "invalid"


def test_a_token_without_our_claims_is_refused() -> None:
    now_ms = _now_ms()
    now = now_ms // 1000
    base = {
        "iss": "storelink-webhooks",
        "aud": "storelink-webhooks-portal",
        "sub": "shop-1",
        "scope": "read",
        "jti": "lnk_1",
        "iat": now,
        "iat_ms": now_ms,
        "exp": now + 60,
    }
    for change in (
        {"aud": "someone-else"},
        {"iss": "someone-else"},
        {"scope": "admin"},
        {"sub": "../other"},
        {"iat_ms": "yesterday"},
    ):
        token = jwt.encode({**base, **change}, KEY, algorithm="HS256")
        with pytest.raises(CredentialRefused):
            portal_links.verify(token, KEY, now)
    missing_exp = {k: v for k, v in base.items() if k != "exp"}
    with pytest.raises(CredentialRefused):
        portal_links.verify(jwt.encode(missing_exp, KEY, algorithm="HS256"), KEY, now)


def test_issue_refuses_a_bad_account_or_scope() -> None:
    now_ms = _now_ms()
    with pytest.raises(InvalidAccount, match="account_id"):
        portal_links.issue("../x", "read", 60, KEY, now_ms)
    with pytest.raises(InvalidAccount, match="scope"):
        portal_links.issue("shop-1", "admin", 60, KEY, now_ms)


@pytest.mark.parametrize("good", ["default", "shop-1", "A.b_c-9", "x" * 64, "123"])
def test_good_account_ids(good: str) -> None:
    assert account_id_problem(good) is None


@pytest.mark.parametrize("bad", ["", "-x", ".x", "a/b", "a b", "x" * 65, "é", None, 7])
def test_bad_account_ids(bad: object) -> None:
    assert account_id_problem(bad) is not None


def test_an_api_key_is_stored_as_its_hash_and_recognised_by_its_prefix() -> None:
    now_ms = _now_ms()
    stored, key = new_api_key("shop-1", "ERP", now_ms, "operator")
    assert key.startswith("slk_") and len(key) > 40
    assert stored.key_hash == hash_key(key) and key not in repr(stored.record())
    assert key.startswith(stored.prefix) and len(stored.prefix) == 12
    assert stored.account_id == "shop-1" and not stored.revoked
    assert stored.with_(revoked_at=now_ms).revoked
    again, key2 = new_api_key("shop-1", None, now_ms, "operator")
    assert key2 != key and again.id != stored.id


def test_account_records_round_trip_and_limits() -> None:
    now_ms = _now_ms()
    account = Account("shop-1", "Shop", now_ms, max_webhooks=5)
    assert Account.from_record(account.record()) == account
    assert account.webhook_limit(100) == 5
    assert Account(DEFAULT_ACCOUNT).webhook_limit(100) == 100
    with pytest.raises(InvalidAccount):
        Account("bad id")
    with pytest.raises(InvalidAccount):
        Account("shop-1", max_webhooks=-1)
