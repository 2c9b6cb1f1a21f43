"""API errors: one JSON shape for every refusal, and the middleware that renders it.

    {"error": {"code": "invalid_field", "field": "url", "message": "url: must be ..."}}

`field` is present when one field is to blame. Messages never carry a secret: they
quote URLs with their password masked and never echo a token or a signing secret.
Anything unexpected becomes a 500 whose body says only that; the details go to the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from synctec_webhooks.errors import InvalidSubscription, SyncTecError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(SyncTecError):
    """A refusal of the admin API: its HTTP status and the JSON error body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self) -> web.Response:
        body: dict[str, str] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return web.json_response({"error": body}, status=self.status, headers=headers)


def invalid(field: str, problem: str) -> ApiError:
    return ApiError(422, "invalid_field", f"{field}: {problem}", field)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except InvalidSubscription as exc:
        return invalid(exc.field, exc.problem).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (unknown route, method not allowed, body too large) in
        # our JSON shape, keeping headers such as Allow.
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        err = ApiError(exc.status, code.get(exc.status, "http_error"), exc.reason)
        resp = err.response()
        for name in ("Allow",):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return ApiError(500, "internal_error", "internal error; see the service log").response()


async def json_body(request: web.Request, required: bool = True) -> dict[str, object]:
    """The request body as a JSON object; 400 when it is not one."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_body", "body: expected a JSON object, got nothing")
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        # The parser recurses per level; a body of "[[[[..." must not reach the 500 path.
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_body", f"body: not valid JSON ({exc})") from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise _too_deep()
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_body", "body: expected a JSON object")
    return value


# No request body of the API nests deeper than 3; a body that does is refused before any
# code walks it recursively.
MAX_JSON_DEPTH = 8


def _too_deep() -> ApiError:
    return ApiError(400, "invalid_body", f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _depth_over(value: object, limit: int) -> bool:
    """True when `value` nests more than `limit` containers deep; iterative, no recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False
