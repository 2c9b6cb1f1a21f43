"""Portal links: short-lived signed tokens that open the settings page for one account. Pure.

A link is `<admin URL>/#token=<JWT>`: the token rides in the fragment, which browsers
never send to a server, so it stays out of access logs. The JWT (PyJWT, HS256) says
which account (`sub`), what it may do (`scope`: read or manage), when it was issued
(`iat_ms`) and when it expires (`exp`). Nothing about a link is stored: revoking "all
links of an account" moves the account's `links_not_before` past their `iat_ms`, which
every admin replica learns from the accounts topic.

The signing key is SYNCTEC_PORTAL_SIGNING_KEY, or else derived from SYNCTEC_ADMIN_TOKEN
(HMAC, labelled), so replicas sharing the operator token agree on it with no more set-up;
changing either key expires every link at once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from synctec_webhooks.accounts import account_id_problem
from synctec_webhooks.errors import CredentialRefused, InvalidAccount

__all__ = [
    "SCOPES",
    "PortalClaims",
    "issue",
    "looks_like_link_token",
    "signing_key",
    "verify",
]

SCOPES = ("read", "manage")
_ISSUER = "storelink-webhooks"
_AUDIENCE = "storelink-webhooks-portal"
_ALGORITHM = "HS256"
# Clocks of admin replicas differ a little; a link is not refused for that.
_LEEWAY_S = 5


@dataclass(frozen=True)
class PortalClaims:
    account_id: str
    scope: str  # "read" or "manage"
    link_id: str  # jti: names the link in the audit trail
    issued_at_ms: int
    expires_at: int  # epoch seconds


def signing_key(portal_key: str | None, admin_token: str) -> bytes:
    if portal_key:
        return portal_key.encode("utf-8")
    return hmac.new(admin_token.encode("utf-8"), b"storelink portal links v1", "sha256").digest()


def issue(
    account_id: str, scope: str, ttl_s: int, key: bytes, now_ms: int
) -> tuple[str, PortalClaims]:
    """A signed token for `account_id`, valid `ttl_s` seconds from `now_ms`."""
    problem = account_id_problem(account_id)
    if problem is not None:
        raise InvalidAccount("account_id", problem)
    if scope not in SCOPES:
        raise InvalidAccount("scope", f"expected one of {', '.join(SCOPES)}, got {scope!r}")
    claims = PortalClaims(
        account_id=account_id,
        scope=scope,
        link_id="lnk_" + secrets.token_hex(12),
        issued_at_ms=now_ms,
        expires_at=now_ms // 1000 + ttl_s,
    )
    payload = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "sub": account_id,
        "scope": scope,
        "jti": claims.link_id,
        "iat": now_ms // 1000,
        "iat_ms": now_ms,
        "exp": claims.expires_at,
    }
    return jwt.encode(payload, key, algorithm=_ALGORITHM), claims


def looks_like_link_token(token: str) -> bool:
    """A JWT (three base64url parts, a JSON header), not an API key or the operator token."""
    return token.startswith("eyJ") and token.count(".") == 2


def verify(token: str, key: bytes, now_s: float) -> PortalClaims:
    """The claims of a valid, unexpired link; CredentialRefused (expired/invalid) if not.

    Whether the account still accepts links issued then (`links_not_before`) is the
    caller's check: it needs the account."""
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],  # one algorithm only: no "none", no key confusion
            audience=_AUDIENCE,
            issuer=_ISSUER,
            leeway=_LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"], "verify_iat": False},
        )
    except jwt.ExpiredSignatureError:
        raise CredentialRefused(
            "expired", "this portal link has expired: ask for a new link from your dashboard"
        ) from None
    except jwt.InvalidTokenError:
        raise CredentialRefused("invalid", "this portal link is not valid") from None
    # PyJWT checks exp against its own clock; check it against ours too (tests move it).
    exp = payload.get("exp")
    if not isinstance(exp, int) or exp + _LEEWAY_S < now_s:
        raise CredentialRefused(
            "expired", "this portal link has expired: ask for a new link from your dashboard"
        )
    sub, scope, jti, iat_ms = (payload.get(k) for k in ("sub", "scope", "jti", "iat_ms"))
    if (
        not isinstance(sub, str)
        or account_id_problem(sub) is not None
        or scope not in SCOPES
        or not isinstance(jti, str)
        or not isinstance(iat_ms, int)
    ):
        raise CredentialRefused("invalid", "this portal link is not valid")
    return PortalClaims(sub, str(scope), jti, iat_ms, exp)
