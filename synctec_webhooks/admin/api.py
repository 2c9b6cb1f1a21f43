"""The routes of /api/v1 and of the settings page, as an aiohttp application."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from synctec_webhooks.admin import requests as req
from synctec_webhooks.admin.auth import auth_middleware
from synctec_webhooks.admin.errors import (
    Handler,
    error_middleware,
    invalid,
    json_body,
    not_found,
)
from synctec_webhooks.admin.openapi import build_spec
from synctec_webhooks.admin.service import AdminService
from synctec_webhooks.admin.views import attempt_view, created, dead_letter_view, webhook_view

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


# --- webhooks ---------------------------------------------------------------------------


async def list_webhooks(request: web.Request) -> web.Response:
    service = _service(request)
    views = [_view(service, s.id) for s in service.all()]
    return web.json_response({"webhooks": views})


async def create_webhook(request: web.Request) -> web.Response:
    url, events, description = req.parse_create(await json_body(request))
    sub = await _service(request).create(url, events, description)
    headers = {"Location": f"{API}/webhooks/{sub.id}"}
    return web.json_response(created(sub), status=201, headers=headers)


async def get_webhook(request: web.Request) -> web.Response:
    return web.json_response(_view(_service(request), _webhook_id(request)))


async def patch_webhook(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    changes = req.parse_patch(await json_body(request))
    service = _service(request)
    await service.patch(webhook_id, changes)
    return web.json_response(_view(service, webhook_id))


async def delete_webhook(request: web.Request) -> web.Response:
    await _service(request).delete(_webhook_id(request))
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    body = await json_body(request, required=False)
    if body:
        raise invalid(next(iter(body)), "unknown field; this request takes no body")
    sub = await _service(request).rotate(webhook_id)
    return web.json_response(
        {"id": sub.id, "secret": sub.secret, "rotation_ends_at": sub.rotation_ends_at or None}
    )


async def send_test(request: web.Request) -> web.Response:
    webhook_id = _webhook_id(request)
    event_type = req.parse_test(await json_body(request, required=False))
    sent = await _service(request).send_test(webhook_id, event_type)
    return web.json_response(sent, status=202)


async def list_attempts(request: web.Request) -> web.Response:
    service = _service(request)
    webhook_id = _webhook_id(request)
    service.get(webhook_id)
    limit = req.query_limit(request.query, 50, 1000)  # at most what is kept, in fact
    found = [attempt_view(a) for a in service.attempts.recent(webhook_id, limit)]
    return web.json_response({"webhook_id": webhook_id, "attempts": found})


# --- dead letters -----------------------------------------------------------------------


async def list_dead_letters(request: web.Request) -> web.Response:
    query = request.query
    limit = req.query_limit(query, 100, 1000)
    cursor = req.query_cursor(query)
    filters = {k: query[k] for k in ("webhook_id", "event_id", "event_type") if query.get(k)}
    found, next_cursor = await _service(request).dead_letters(filters, limit, cursor)
    views = [dead_letter_view(d) for d in found]
    return web.json_response({"dead_letters": views, "next_cursor": next_cursor})


async def replay_dead_letters(request: web.Request) -> web.Response:
    filters = req.parse_replay(await json_body(request))
    report = await _service(request).replay(filters)
    return web.json_response(report.as_dict())


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
    app = web.Application(
        middlewares=[security_headers, error_middleware, auth_middleware(service.token)],
        # Room for a replay of 1000 dead-letter ids; anything bigger is a 413.
        client_max_size=1024 * 1024,
    )
    app[_SERVICE] = service
    r = app.router
    r.add_get(f"{API}/openapi.json", openapi)
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
    r.add_get("/", _static("index.html"))
    r.add_get("/static/app.js", _static("app.js"))
    r.add_get("/static/app.css", _static("app.css"))
    return app
