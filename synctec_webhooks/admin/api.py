"""The routes of /api/v1 and of the settings page, as an aiohttp application.

Every /api/ request is authenticated first (admin/auth.py: operator token, account API
key or portal link). Routes about accounts, keys and links are the operator's
(`_operator`: a 403 operator_only for account credentials), except reading one's own
account; everything else is scoped by the service to what the credential may see.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from synctec_webhooks.accounts import Account
from synctec_webhooks.admin import requests as req
from synctec_webhooks.admin.auth import Authenticator, Principal, auth_middleware, principal
from synctec_webhooks.admin.errors import (
    ApiError,
    Handler,
    error_middleware,
    invalid,
    json_body,
    not_found,
)
from synctec_webhooks.admin.openapi import build_spec
from synctec_webhooks.admin.service import AdminService
from synctec_webhooks.admin.views import (
    account_view,
    attempt_view,
    audit_view,
    created,
    dead_letter_view,
    key_created,
    key_view,
    webhook_view,
)

API = "/api/v1"
_SERVICE = web.AppKey("admin_service", AdminService)
_STATIC = resources.files("synctec_webhooks.admin") / "static"
_PAGE_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
# The page loads only its own script and style; nothing inline, nothing from elsewhere.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _service(request: web.Request) -> AdminService:
    return request.app[_SERVICE]


def _webhook_id(request: web.Request) -> str:
    webhook_id = request.match_info["id"]
    if not req.WEBHOOK_ID.fullmatch(webhook_id):
        raise not_found(f"webhook {webhook_id[:40]}")
    return webhook_id


def _view(service: AdminService, webhook_id: str) -> dict[str, object]:
    sub = service.get(webhook_id)
    return webhook_view(sub, service.attempts.last(sub.id), service.health.failures(sub.id))


def _operator(request: web.Request) -> Principal:
    who = principal(request)
    if not who.operator:
        raise ApiError(
            403,
            "operator_only",
            f"{request.method} {request.path} is for the operator: an account's API key or "
            "portal link cannot call it",
        )
    return who


# --- who am I ---------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    return web.json_response(principal(request).me())


# --- webhooks -------------------------------------------------------------------------


async def list_webhooks(request: web.Request) -> web.Response:
    service = _service(request)
    account_id = req.query_account(request.query)
    views = [_view(service, s.id) for s in service.all(principal(request), account_id)]
    return web.json_response({"webhooks": views})


async def create_webhook(request: web.Request) -> web.Response:
    url, events, description, account_id = req.parse_create(await json_body(request))
    sub = await _service(request).create(principal(request), url, events, description, account_id)
    headers = {"Location": f"{API}/webhooks/{sub.id}"}
    return web.json_response(created(sub), status=201, headers=headers)


async def get_webhook(request: web.Request) -> web.Response:
    service = _service(request)
    sub = service.get(_webhook_id(request), principal(request))
    return web.json_response(_view(service, sub.id))


async def patch_webhook(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    who = principal(request)
    service = _service(request)
    service.get(webhook_id, who)  # a foreign webhook is a 404 before the body is judged
    changes = req.parse_patch(await json_body(request))
    await service.patch(who, webhook_id, changes)
    return web.json_response(_view(service, webhook_id))


async def delete_webhook(request: web.Request) -> web.Response:
    await _service(request).delete(principal(request), _webhook_id(request))
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    who = principal(request)
    _service(request).get(webhook_id, who)
    body = await json_body(request, required=False)
    if body:
        raise invalid(next(iter(body)), "unknown field; this request takes no body")
    sub = await _service(request).rotate(who, webhook_id)
    return web.json_response(
        {"id": sub.id, "secret": sub.secret, "rotation_ends_at": sub.rotation_ends_at or None}
    )


async def send_test(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    who = principal(request)
    _service(request).get(webhook_id, who)
    event_type = req.parse_test(await json_body(request, required=False))
    sent = await _service(request).send_test(who, webhook_id, event_type)
    return web.json_response(sent, status=202)


async def list_attempts(request: web.Request) -> web.Response:
    service = _service(request)
    webhook_id = _webhook_id(request)
    service.get(webhook_id, principal(request))
    limit = req.query_limit(request.query, 50, 1000)  # at most what is kept, in fact
    found = [attempt_view(a) for a in service.attempts.recent(webhook_id, limit)]
    return web.json_response({"webhook_id": webhook_id, "attempts": found})


# --- dead letters -----------------------------------------------------------------------


async def list_dead_letters(request: web.Request) -> web.Response:
    query = request.query
    limit = req.query_limit(query, 100, 1000)
    cursor = req.query_cursor(query)
    filters: dict[str, object] = {
        k: query[k] for k in ("webhook_id", "event_id", "event_type") if query.get(k)
    }
    filters["account_id"] = req.query_account(query)
    found, next_cursor = await _service(request).dead_letters(
        principal(request), filters, limit, cursor
    )
    views = [dead_letter_view(d) for d in found]
    return web.json_response({"dead_letters": views, "next_cursor": next_cursor})


async def replay_dead_letters(request: web.Request) -> web.Response:
    filters = req.parse_replay(await json_body(request))
    report = await _service(request).replay(principal(request), filters)
    return web.json_response(report.as_dict())


# --- audit ------------------------------------------------------------------------------


async def list_audit(request: web.Request) -> web.Response:
    limit = req.query_limit(request.query, 100, 1000)
    account_id = req.query_account(request.query)
    found = await _service(request).audit_entries(principal(request), account_id, limit)
    return web.json_response({"entries": [audit_view(e) for e in found]})


# --- accounts, API keys, portal links ---------------------------------------------------


def _account_id(request: web.Request) -> str:
    return req.path_account(request.match_info["account"])


def _account_view(service: AdminService, account: Account) -> dict[str, object]:
    return account_view(account, service.webhook_count(account.id))


async def list_accounts(request: web.Request) -> web.Response:
    _operator(request)
    service = _service(request)
    limit = req.query_limit(request.query, 100, 1000)
    after = request.query.get("after")
    found, next_after = service.account_list(limit, after)
    views = [_account_view(service, a) for a in found]
    return web.json_response({"accounts": views, "next_after": next_after})


async def create_account(request: web.Request) -> web.Response:
    who = _operator(request)
    account_id, name, max_webhooks = req.parse_account_create(await json_body(request))
    service = _service(request)
    account = await service.create_account(who, account_id, name, max_webhooks)
    headers = {"Location": f"{API}/accounts/{account.id}"}
    return web.json_response(_account_view(service, account), status=201, headers=headers)


async def get_account(request: web.Request) -> web.Response:
    service = _service(request)
    account = service.account(principal(request), _account_id(request))
    return web.json_response(_account_view(service, account))


async def patch_account(request: web.Request) -> web.Response:
    who = _operator(request)
    account_id = _account_id(request)
    service = _service(request)
    service.account(who, account_id)
    changes = req.parse_account_patch(await json_body(request))
    account = await service.update_account(who, account_id, changes)
    return web.json_response(_account_view(service, account))


async def create_key(request: web.Request) -> web.Response:
    who = _operator(request)
    account_id = _account_id(request)
    service = _service(request)
    service.account(who, account_id)
    name = req.parse_key_create(await json_body(request, required=False))
    key, secret = await service.create_key(who, account_id, name)
    return web.json_response(key_created(key, secret), status=201)


async def list_keys(request: web.Request) -> web.Response:
    who = _operator(request)
    keys = _service(request).keys(who, _account_id(request))
    return web.json_response({"api_keys": [key_view(k) for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    who = _operator(request)
    account_id = _account_id(request)
    key_id = req.path_key(request.match_info["key_id"])
    await _service(request).revoke_key(who, account_id, key_id)
    return web.Response(status=204)


async def issue_link(request: web.Request) -> web.Response:
    who = _operator(request)
    account_id = _account_id(request)
    service = _service(request)
    service.account(who, account_id)
    settings = service.settings
    scope, ttl = req.parse_link(
        await json_body(request, required=False),
        settings.portal_link_ttl,
        settings.portal_link_max_ttl,
    )
    token, claims = await service.issue_link(who, account_id, scope, ttl)
    base = (settings.portal_base_url or f"{request.scheme}://{request.host}").rstrip("/")
    return web.json_response(
        {
            "url": f"{base}/#token={token}",
            "token": token,
            "account_id": claims.account_id,
            "scope": claims.scope,
            "link_id": claims.link_id,
            "expires_at": claims.expires_at,
        },
        status=201,
    )


async def revoke_links(request: web.Request) -> web.Response:
    who = _operator(request)
    await _service(request).revoke_links(who, _account_id(request))
    return web.Response(status=204)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_spec())


# --- the page ---------------------------------------------------------------------------


def _static(name: str) -> Handler:
    body = (_STATIC / name).read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=_PAGE_TYPES[name], charset="utf-8")

    return serve


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers["Server"] = "StoreLink-Webhooks"  # not aiohttp's, which names its version
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")  # may hold a secret
    else:
        resp.headers.setdefault("Content-Security-Policy", _PAGE_CSP)
        resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


def build_app(service: AdminService) -> web.Application:
    authenticator = Authenticator(service.token, service.accounts, service.link_key)
    app = web.Application(
        middlewares=[security_headers, error_middleware, auth_middleware(authenticator)],
        # Room for a replay of 1000 dead-letter ids; anything bigger is a 413.
        client_max_size=1024 * 1024,
    )
    app[_SERVICE] = service
    r = app.router
    r.add_get(f"{API}/openapi.json", openapi)
    r.add_get(f"{API}/me", me)
    r.add_get(f"{API}/webhooks", list_webhooks)
    r.add_post(f"{API}/webhooks", create_webhook)
    r.add_get(f"{API}/webhooks/{{id}}", get_webhook)
    r.add_patch(f"{API}/webhooks/{{id}}", patch_webhook)
    r.add_delete(f"{API}/webhooks/{{id}}", delete_webhook)
    r.add_post(f"{API}/webhooks/{{id}}/rotate-secret", rotate_secret)
    r.add_post(f"{API}/webhooks/{{id}}/test", send_test)
    r.add_get(f"{API}/webhooks/{{id}}/attempts", list_attempts)
    r.add_get(f"{API}/dead-letters", list_dead_letters)
    r.add_post(f"{API}/dead-letters/replay", replay_dead_letters)
    r.add_get(f"{API}/audit", list_audit)
    r.add_get(f"{API}/accounts", list_accounts)
    r.add_post(f"{API}/accounts", create_account)
    r.add_get(f"{API}/accounts/{{account}}", get_account)
    r.add_patch(f"{API}/accounts/{{account}}", patch_account)
    r.add_post(f"{API}/accounts/{{account}}/api-keys", create_key)
    r.add_get(f"{API}/accounts/{{account}}/api-keys", list_keys)
    r.add_delete(f"{API}/accounts/{{account}}/api-keys/{{key_id}}", revoke_key)
    r.add_post(f"{API}/accounts/{{account}}/portal-links", issue_link)
    r.add_post(f"{API}/accounts/{{account}}/portal-links/revoke", revoke_links)
    r.add_get("/", _static("index.html"))
    r.add_get("/static/app.js", _static("app.js"))
    r.add_get("/static/app.css", _static("app.css"))
    return app
