"""The admin app without a broker: the OpenAPI document matches the routes and says who
may call each, every API route refuses a missing token, credentials resolve to the right
principal (operator, API key, portal link; revoked, expired, read-only), operator-only
routes refuse account credentials, the page is served with a strict CSP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from synctec_webhooks import portal_links
from synctec_webhooks.accounts import Account, new_api_key
from synctec_webhooks.admin.api import API, build_app
from synctec_webhooks.admin.auth import Authenticator, Principal, token_matches
from synctec_webhooks.admin.errors import ApiError
from synctec_webhooks.admin.openapi import build_spec
from synctec_webhooks.admin.server import AdminServer
from synctec_webhooks.admin.service import AdminService
from synctec_webhooks.config import ConfigError, Settings
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.subscriptions import SubscriptionTable

TOKEN = "a-token-long-enough-1234"
METHODS = ("get", "post", "patch", "delete", "put")
OPERATOR = Principal("operator", None, "manage", "operator")
WEBHOOK = "wh_0123456789abcdef01234567"
KEY_ID = "key_0123456789abcdef01234567"


def _service() -> AdminService:
    settings = Settings(admin_token=TOKEN)
    codec = make_codec(None)
    return AdminService(settings, codec, SubscriptionTable(settings, codec))


def _with_client(
    check: Callable[[TestClient[Any, Any]], Awaitable[None]], service: AdminService | None = None
) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(service or _service()))) as client:
            await check(client)

    asyncio.run(main())


def _concrete(path: str) -> str:
    return path.replace("{id}", WEBHOOK).replace("{account}", "acct_b").replace("{key_id}", KEY_ID)


def _routes() -> set[tuple[str, str]]:
    app = build_app(_service())
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(API) and route.method != "HEAD":
            found.add((route.method.lower(), path.removeprefix(API)))
    return found


def _documented() -> set[tuple[str, str]]:
    spec = build_spec()
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_spec_is_valid_openapi_3_1() -> None:
    spec = build_spec()
    validate(spec)
    assert spec["openapi"].startswith("3.1") and spec["servers"] == [{"url": API}]


def test_the_spec_describes_every_route_and_nothing_else() -> None:
    assert _documented() == _routes()


def test_every_operation_documents_401_and_its_success() -> None:
    for path, item in build_spec()["paths"].items():
        for method in (m for m in item if m in METHODS):
            codes = set(item[method]["responses"])
            assert "401" in codes, (method, path)
            assert codes & {"200", "201", "202", "204"}, (method, path)


def test_every_api_route_refuses_without_the_token() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for method, path in sorted(_routes()):
            resp = await client.request(method.upper(), API + _concrete(path))
            assert resp.status == 401, (method, path)
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized"
            assert resp.headers["Cache-Control"] == "no-store"

    _with_client(check)


def test_the_page_and_its_assets_are_public_and_locked_down() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        for path, kind in [
            ("/", "text/html"),
            ("/static/app.js", "text/javascript"),
            ("/static/app.css", "text/css"),
        ]:
            resp = await client.get(path)
            assert resp.status == 200 and resp.content_type == kind
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert "aiohttp" not in resp.headers["Server"]

    _with_client(check)


def test_openapi_json_is_the_spec() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.get(f"{API}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200 and await resp.json() == build_spec()

    _with_client(check)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        ("Bearer", False),
        (None, False),
        ("Bearer \u00e9\u00e9", False),
    ],
)
def test_token_comparison(header: str | None, ok: bool) -> None:
    assert token_matches(header, TOKEN) is ok


@pytest.mark.parametrize("token", [None, "", "short"])
def test_the_admin_refuses_to_start_without_a_proper_token(token: str | None) -> None:
    settings = Settings(admin_token=token)
    codec = make_codec(None)
    with pytest.raises(ConfigError, match="SYNCTEC_ADMIN_TOKEN"):
        AdminService(settings, codec, SubscriptionTable(settings, codec))


def test_not_ready_until_the_api_listens() -> None:
    settings = Settings(admin_token="t" * 32)
    codec = make_codec(None)
    server = AdminServer(settings, codec, SubscriptionTable(settings, codec))
    ok, detail = server.readiness()
    assert not ok and "attempts" in detail
    server.url = "http://127.0.0.1:8080"
    assert server.readiness() == (True, "API on http://127.0.0.1:8080/api/v1")


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # the C parser recurses: RecursionError
        '{"url": ' + "[" * 50 + "1" + "]" * 50 + "}",  # parses, but deeper than any body
        '{"a": ' * 5_000 + "1" + "}" * 5_000,
    ],
)
def test_deeply_nested_json_is_a_400_not_a_500(body: str) -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for path in ("/webhooks", "/dead-letters/replay"):
            resp = await client.post(API + path, data=body, headers=headers)
            answer = await resp.json()
            assert resp.status == 400, (path, answer)
            assert answer["error"]["code"] == "invalid_body"
            assert "nested" in answer["error"]["message"]

    _with_client(check)


def test_rotating_a_secret_no_key_opens_is_a_409_naming_the_fix() -> None:
    from types import SimpleNamespace

    from cryptography.fernet import Fernet

    from synctec_webhooks.matching import Subscription
    from synctec_webhooks.secrets_crypto import SecretBox, SigningSecret

    service = _service()
    stray = SecretBox([Fernet.generate_key().decode()])
    sub = Subscription(
        id="wh_0123456789abcdef01234567",
        url="https://m.example/hook",
        events=("*",),
        secret="",
        sealed_secrets=stray.seal("wh_0123456789abcdef01234567", [SigningSecret("whsec_x")]),
    )
    service.table.index.upsert(sub)
    service._writer = cast(Any, SimpleNamespace(box=SecretBox([Fernet.generate_key().decode()])))
    with pytest.raises(ApiError) as refused:
        asyncio.run(service.rotate(OPERATOR, sub.id))
    assert refused.value.status == 409 and refused.value.code == "secret_unavailable"
    assert "SYNCTEC_SECRET_KEY" in refused.value.message


# --- who may call what -------------------------------------------------------------------


def test_every_operation_says_which_credential_it_needs() -> None:
    spec = build_spec()
    schemes = set(spec["components"]["securitySchemes"])
    assert schemes == {"operator", "apiKey", "portalLink"}
    for path, item in spec["paths"].items():
        for method in (m for m in item if m in METHODS):
            op = item[method]
            need = op["x-required-credential"]
            assert need in ("any", "manage", "operator"), (method, path)
            named = {name for req in op["security"] for name in req}
            assert named <= schemes
            if need == "operator":
                assert op["security"] == [{"operator": []}]
                assert "403" in op["responses"], (method, path)
            elif need == "manage":
                assert {"portalLink": ["read"]} not in op["security"]
                assert "403" in op["responses"], (method, path)
            else:
                assert {"portalLink": ["read"]} in op["security"]
            if method != "get":
                assert need != "any", (method, path)


def _resolver(*, links_not_before: int = 0) -> tuple[Authenticator, dict[str, str]]:
    service = _service()
    table = service.accounts
    table._apply_account("acct_a", Account("acct_a", links_not_before=links_not_before))
    live, live_key = new_api_key("acct_a", "ci", 1, "operator")
    gone, gone_key = new_api_key("acct_a", "old", 1, "operator")
    table._apply_key(live.id, live)
    table._apply_key(gone.id, gone.with_(revoked_at=2))
    auth = Authenticator(TOKEN, table, service.link_key)
    return auth, {"live": live_key, "live_id": live.id, "revoked": gone_key}


def _link(
    scope: str = "manage", ttl: int = 600, now_ms: int | None = None, key: bytes = b""
) -> str:
    service = _service()
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    token, _ = portal_links.issue("acct_a", scope, ttl, key or service.link_key, now_ms)
    return token


def test_credentials_resolve_to_their_principal() -> None:
    auth, keys = _resolver()
    assert auth.resolve(f"Bearer {TOKEN}", "10.0.0.1") == Principal(
        "operator", None, "manage", "operator", None, "10.0.0.1"
    )
    who = auth.resolve(f"Bearer {keys['live']}", None)
    assert (who.kind, who.account_id, who.scope, who.credential_id) == (
        "api_key",
        "acct_a",
        "manage",
        keys["live_id"],
    )
    who = auth.resolve(f"Bearer {_link('read')}", None)
    assert (who.kind, who.account_id, who.scope) == ("portal", "acct_a", "read")
    assert who.credential_id.startswith("portal:lnk_") and who.expires_at


@pytest.mark.parametrize(
    ("which", "code"),
    [
        ("revoked", "unauthorized"),
        ("unknown", "unauthorized"),
        ("expired", "link_expired"),
        ("forged", "unauthorized"),
        ("issued_before_revoke", "link_revoked"),
        ("no_scheme", "unauthorized"),
    ],
)
def test_refused_credentials(which: str, code: str) -> None:
    now_ms = int(time.time() * 1000)
    auth, keys = _resolver(links_not_before=now_ms)
    token = {
        "revoked": keys["revoked"],
        "unknown": "slk_" + "x" * 43,
        "expired": _link(ttl=60, now_ms=now_ms - 3_600_000),
        "forged": _link(key=b"another key entirely, 32 bytes!!"),
        "issued_before_revoke": _link(now_ms=now_ms - 1000),
        "no_scheme": keys["live"],
    }[which]
    header = token if which == "no_scheme" else f"Bearer {token}"
    with pytest.raises(ApiError) as refused:
        auth.resolve(header, None)
    assert (refused.value.status, refused.value.code) == (401, code)
    if code == "link_expired":
        assert "ask for a new link from your dashboard" in refused.value.message


def test_account_credentials_are_refused_on_operator_routes_and_read_links_on_writes() -> None:
    service = _service()
    live, key = new_api_key("acct_a", None, 1, "operator")
    service.accounts._apply_key(live.id, live)
    service.accounts._apply_account("acct_a", Account("acct_a"))
    spec = build_spec()
    operator_only = {
        (m, p)
        for p, item in spec["paths"].items()
        for m, op in item.items()
        if m in METHODS and op["x-required-credential"] == "operator"
    }
    writes = {(m, p) for m, p in _routes() if m != "get"}
    read_link = _link("read", key=service.link_key)

    async def check(client: TestClient[Any, Any]) -> None:
        for method, path in sorted(operator_only):
            resp = await client.request(
                method.upper(), API + _concrete(path), headers={"Authorization": f"Bearer {key}"}
            )
            body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (403, "operator_only"), (method, path)
        for method, path in sorted(writes):
            resp = await client.request(
                method.upper(),
                API + _concrete(path),
                headers={"Authorization": f"Bearer {read_link}"},
            )
            body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (403, "read_only"), (method, path)
        resp = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {read_link}"})
        me = await resp.json()
        assert (me["kind"], me["account_id"], me["scope"]) == ("portal", "acct_a", "read")

    _with_client(check, service)
