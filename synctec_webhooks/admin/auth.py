"""Bearer credentials for everything under /api/: who is calling, and for which account.

Three kinds of token open the API:

    operator   SYNCTEC_ADMIN_TOKEN: every account, every route
    api_key    `slk_...`, made by the operator for one account: that account, manage
    portal     a portal link's JWT (`eyJ...`): one account, scope read or manage,
               until it expires or the account's links are revoked

The operator token is compared in constant time, as bytes, so neither its content nor
its length leaks through timing; the comparison is made for every token, whatever it
looks like. An API key is looked up by its SHA-256 (256 random bits: a dict lookup is
safe). A missing, malformed, unknown or revoked credential is the same 401; an expired
or revoked portal link says so, for the person who opened it. The settings page itself
(/) holds no data and needs no token: its script sends the one it was given.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from synctec_webhooks import audit, portal_links
from synctec_webhooks.account_table import AccountTable
from synctec_webhooks.accounts import KEY_PREFIX, hash_key
from synctec_webhooks.admin.errors import ApiError, Handler
from synctec_webhooks.errors import CredentialRefused

API_PREFIX = "/api/"
_READ_METHODS = ("GET", "HEAD")

OPERATOR = "operator"
API_KEY = "api_key"
PORTAL = "portal"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the kind of credential, its account (None: the operator,
    every account), its scope ("read" or "manage"), its id, when it expires (epoch s),
    and the client's address."""

    kind: str
    account_id: str | None
    scope: str
    credential_id: str
    expires_at: int | None = None
    address: str | None = None

    @property
    def operator(self) -> bool:
        return self.kind == OPERATOR

    def sees(self, account_id: str | None) -> bool:
        """Whether this credential may see the account's resources."""
        return self.operator or (account_id is not None and account_id == self.account_id)

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(self.kind, self.credential_id, self.address)

    def me(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "account_id": self.account_id,
            "scope": self.scope,
            "credential_id": self.credential_id,
            "expires_at": self.expires_at,
        }


_PRINCIPAL = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    """The caller of an /api/ request (set by the middleware)."""
    return request[_PRINCIPAL]


def token_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    # Always compare, even when the scheme is wrong, so all refusals take as long.
    same = hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))
    return same and scheme.lower() == "bearer"


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "missing, unknown or revoked bearer token: send 'Authorization: Bearer <token>' "
        "with the operator token, an account API key or a portal link's token",
    )


class Authenticator:
    def __init__(self, operator_token: str, accounts: AccountTable, link_key: bytes) -> None:
        self._token = operator_token
        self._accounts = accounts
        self._link_key = link_key

    def resolve(self, header: str | None, address: str | None) -> Principal:
        """The principal of an Authorization header; ApiError 401 when it opens nothing."""
        if token_matches(header, self._token):
            return Principal(OPERATOR, None, "manage", OPERATOR, None, address)
        scheme, _, given = (header or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise unauthorized()
        if given.startswith(KEY_PREFIX):
            key = self._accounts.key_by_hash(hash_key(given))
            if key is None or key.revoked or self._accounts.account(key.account_id) is None:
                raise unauthorized()
            return Principal(API_KEY, key.account_id, "manage", key.id, None, address)
        if portal_links.looks_like_link_token(given):
            return self._portal(given, address)
        raise unauthorized()

    def _portal(self, token: str, address: str | None) -> Principal:
        try:
            claims = portal_links.verify(token, self._link_key, time.time())
        except CredentialRefused as exc:
            if exc.reason == "expired":
                raise ApiError(401, "link_expired", str(exc)) from None
            raise unauthorized() from None
        account = self._accounts.account(claims.account_id)
        if account is None:
            raise unauthorized()
        if claims.issued_at_ms < account.links_not_before:
            raise ApiError(
                401,
                "link_revoked",
                "this portal link was revoked: ask for a new link from your dashboard",
            )
        return Principal(
            PORTAL,
            claims.account_id,
            claims.scope,
            f"portal:{claims.link_id}",
            claims.expires_at,
            address,
        )


def auth_middleware(authenticator: Authenticator) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX):
            who = authenticator.resolve(request.headers.get("Authorization"), request.remote)
            if who.scope == "read" and request.method not in _READ_METHODS:
                raise ApiError(
                    403,
                    "read_only",
                    "this portal link can only look: ask for a link that may manage webhooks",
                )
            request[_PRINCIPAL] = who
        return await handler(request)

    return authenticate
