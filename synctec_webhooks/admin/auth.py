"""Bearer-token authentication for everything under /api/.

The token (SYNCTEC_ADMIN_TOKEN) is compared in constant time, as bytes, so neither its
content nor its length leaks through timing; a missing, malformed or wrong header is
the same 401. The settings page itself (/) holds no data and needs no token: its script
sends the token the user gives it with every API call.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from synctec_webhooks.admin.errors import ApiError, Handler

API_PREFIX = "/api/"


def token_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    # Always compare, even when the scheme is wrong, so all refusals take as long.
    same = hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))
    return same and scheme.lower() == "bearer"


def auth_middleware(token: str) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX) and not token_matches(
            request.headers.get("Authorization"), token
        ):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <SYNCTEC_ADMIN_TOKEN>'",
            )
        return await handler(request)

    return authenticate
