"""Accounts on the live admin service and a real broker: every route of the OpenAPI
document with another account's API key, an expired portal link, a revoked key, a
revoked link and a read-only link; what an own key and a manage link may do; the webhook
limit; the audit trail; a revoke reaching a second admin replica within seconds.

Account B owns a webhook whose id, URL and dead letter must never show in an answer to
account A's credentials (`assert_no_foreign_data`), whatever the route or the status.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from synctec_webhooks import deadletters, portal_links
from synctec_webhooks.admin.openapi import build_spec
from synctec_webhooks.admin.sample_events import build_test_delivery
from synctec_webhooks.kafka import new_producer
from synctec_webhooks.matching import Subscription
from synctec_webhooks.schemas import DEAD_LETTER
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics
from tests.integration.admin_client import AdminClient, Answer
from tests.integration.harness import ADMIN, Pipeline, wait_until

pytestmark = pytest.mark.broker

METHODS = ("get", "post", "patch", "delete", "put")
LIMIT = 4  # SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT of this module's service


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(
        kafka_bootstrap,
        f"acc{os.urandom(4).hex()}",
        tmp_path_factory.mktemp("accounts"),
        SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT=str(LIMIT),
    )
    try:
        yield p.start([ADMIN])
    finally:
        p.stop_and_check()


@pytest.fixture(scope="module")
def op(pipeline: Pipeline) -> AdminClient:
    return AdminClient(pipeline.admin_url(), pipeline.admin_token)


@dataclass(frozen=True)
class World:
    """Accounts A and B, a key of each, a webhook and a dead letter of each."""

    a: str
    b: str
    key_a: str
    key_b_id: str
    webhook_a: str
    webhook_b: str
    url_b: str
    dead_letter_b: str

    @property
    def foreign(self) -> tuple[str, ...]:
        return (self.b, self.webhook_b, self.url_b, self.key_b_id, self.dead_letter_b)


def ok(answer: Answer, status: int = 200) -> Any:
    assert answer.status == status, answer.body
    return answer.body


def make_account(op: AdminClient, account_id: str, **fields: Any) -> None:
    ok(op.post("/accounts", {"id": account_id, **fields}), 201)


def make_key(op: AdminClient, account_id: str) -> dict[str, Any]:
    return ok(op.post(f"/accounts/{account_id}/api-keys", {"name": "tests"}), 201)


def make_link(op: AdminClient, account_id: str, scope: str = "manage") -> dict[str, Any]:
    return ok(op.post(f"/accounts/{account_id}/portal-links", {"scope": scope}), 201)


def write_dead_letter(pipeline: Pipeline, webhook: dict[str, Any]) -> str:
    """A dead letter of `webhook` (an API view) on the topic, as the delivery worker
    writes one; its id."""
    sub = Subscription(
        webhook["id"], "https://x.example/", ("*",), "", account_id=webhook["account_id"]
    )
    planned = build_test_delivery(sub, "product.synced", datetime.now(UTC))
    topic = Topics(pipeline.settings.topic_prefix).deadletters
    source = deadletters.Source(topic.replace("deadletters", "deliveries.x"), 0, 1)
    record = deadletters.build(
        deadletters.RETRIES_EXHAUSTED, "HTTP 500", source, int(time.time() * 1000),
        delivery=planned.record,
    )  # fmt: skip
    producer = new_producer(pipeline.settings, "test-deadletters")
    value = make_codec(None).encode(topic, DEAD_LETTER, record)
    producer.produce(topic, value=value, key=deadletters.key_of(record))
    assert producer.flush(30) == 0
    return str(record["dead_letter_id"])


@pytest.fixture(scope="module")
def world(op: AdminClient, pipeline: Pipeline) -> World:
    a, b = "acct_a", "acct_b"
    make_account(op, a, name="Shop A")
    make_account(op, b, name="Shop B")
    key_a = make_key(op, a)["key"]
    key_b_id = make_key(op, b)["id"]
    url_b = f"http://127.0.0.1:9/only-b-{secrets.token_hex(6)}"
    hook_b = ok(op.post("/webhooks", {"url": url_b, "events": ["*"], "account_id": b}), 201)
    hook_a = ok(
        AdminClient(pipeline.admin_url(), key_a).post(
            "/webhooks", {"url": "http://127.0.0.1:9/a", "events": ["product.synced"]}
        ),
        201,
    )
    assert (hook_a["account_id"], hook_b["account_id"]) == (a, b)
    dl_b = write_dead_letter(pipeline, hook_b)
    write_dead_letter(pipeline, hook_a)
    wait_until(lambda: len(op.get("/dead-letters").body["dead_letters"]) == 2, 30)
    return World(a, b, key_a, key_b_id, hook_a["id"], hook_b["id"], url_b, dl_b)


def assert_no_foreign_data(world: World, answers: list[tuple[str, Answer]]) -> None:
    """Nothing of account B in any answer, beyond what the request itself named (a 404
    may say which id it did not find)."""
    for asked, answer in answers:
        text = repr(answer.body) + repr(answer.headers)
        for secret in world.foreign:
            if secret not in asked:
                assert secret not in text, (asked, secret, answer.body)


# --- every route, every refused credential -------------------------------------------


def operations() -> list[tuple[str, str, str]]:
    """(method, path, x-required-credential) of every operation of the document."""
    return [
        (method, path, op["x-required-credential"])
        for path, item in build_spec()["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def foreign_call(world: World, method: str, path: str) -> tuple[str, Any]:
    """The route aimed at account B's resources: path, body."""
    concrete = (
        path.replace("{id}", world.webhook_b)
        .replace("{account}", world.b)
        .replace("{key_id}", world.key_b_id)
    )
    bodies: dict[tuple[str, str], Any] = {
        ("post", "/webhooks"): {
            "url": "http://127.0.0.1:9/x",
            "events": ["*"],
            "account_id": world.b,
        },
        ("patch", "/webhooks/{id}"): {"description": "taken over"},
        ("post", "/webhooks/{id}/test"): {},
        ("post", "/dead-letters/replay"): {"account_id": world.b},
        ("post", "/accounts"): {"id": "acct_new_" + secrets.token_hex(3)},
        ("patch", "/accounts/{account}"): {"max_webhooks": 1000},
        ("post", "/accounts/{account}/api-keys"): {},
        ("post", "/accounts/{account}/portal-links"): {},
    }
    if method == "get" and path in ("/webhooks", "/dead-letters", "/audit"):
        concrete += f"?account_id={world.b}"
    return concrete, bodies.get((method, path))


FOREIGN_STATUS = {"any": 404, "manage": 404, "operator": 403}
# What an own account may call, whatever else is asked of it.
OWN_ONLY = {("get", "/openapi.json"), ("get", "/me")}


def test_another_accounts_key_gets_404s_and_403s_and_never_its_data(
    pipeline: Pipeline, world: World
) -> None:
    api = AdminClient(pipeline.admin_url(), world.key_a)
    answers: list[tuple[str, Answer]] = []
    for method, path, need in operations():
        concrete, body = foreign_call(world, method, path)
        answer = api.call(method.upper(), concrete, body)
        answers.append((f"{method} {concrete} {body}", answer))
        if (method, path) in OWN_ONLY:
            assert answer.status == 200, (method, path, answer.body)
            continue
        expected = FOREIGN_STATUS[need]
        assert answer.status == expected, (method, concrete, answer.body)
        code = "not_found" if expected == 404 else "operator_only"
        assert answer.body["error"]["code"] == code, (method, concrete, answer.body)
    # Without naming B: A's own, nothing of B's.
    for path in ("/webhooks", "/dead-letters", f"/dead-letters?webhook_id={world.webhook_b}",
                 "/audit", "/me", f"/accounts/{world.a}"):  # fmt: skip
        answers.append((path, api.get(path)))
        assert answers[-1][1].status == 200, answers[-1]
    listed = api.get("/webhooks").body["webhooks"]
    assert [w["id"] for w in listed] == [world.webhook_a]
    assert api.get(f"/dead-letters?webhook_id={world.webhook_b}").body["dead_letters"] == []
    replay = api.post("/dead-letters/replay", {"webhook_id": world.webhook_b})
    answers.append((f"replay {world.webhook_b}", replay))
    assert replay.body["replayed"] == 0
    assert_no_foreign_data(world, answers)
    # B's webhook and dead letter are as they were.
    op = AdminClient(pipeline.admin_url(), pipeline.admin_token)
    assert ok(op.get(f"/webhooks/{world.webhook_b}"))["description"] is None
    [dl] = op.get(f"/dead-letters?account_id={world.b}").body["dead_letters"]
    assert dl["dead_letter_id"] == world.dead_letter_b and dl["replayed_at"] is None


def _every_route_refuses(
    pipeline: Pipeline, world: World, token: str, status: int, code: str
) -> None:
    api = AdminClient(pipeline.admin_url(), token)
    answers = []
    for method, path, _ in operations():
        concrete, body = foreign_call(world, method, path)
        for target in {concrete, concrete.replace(world.b, world.a)}:
            answer = api.call(method.upper(), target, body)
            answers.append((f"{method} {target} {body}", answer))
            assert (answer.status, answer.body["error"]["code"]) == (status, code), (
                method,
                target,
                answer.body,
            )
    assert_no_foreign_data(world, answers)


def test_an_expired_portal_link_is_refused_everywhere(pipeline: Pipeline, world: World) -> None:
    key = portal_links.signing_key(None, pipeline.admin_token)
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    token, _ = portal_links.issue(world.a, "manage", 3600, key, two_hours_ago)
    _every_route_refuses(pipeline, world, token, 401, "link_expired")
    answer = AdminClient(pipeline.admin_url(), token).get("/me")
    assert "ask for a new link from your dashboard" in answer.body["error"]["message"]


def test_a_forged_link_and_unknown_key_are_unauthorized(pipeline: Pipeline, world: World) -> None:
    forged, _ = portal_links.issue(
        world.a, "manage", 600, b"not the key" * 3, int(time.time() * 1000)
    )
    for token in (forged, "slk_" + secrets.token_urlsafe(32)):
        answer = AdminClient(pipeline.admin_url(), token).get("/me")
        assert (answer.status, answer.body["error"]["code"]) == (401, "unauthorized")


def test_a_revoked_key_is_refused_everywhere(
    op: AdminClient, pipeline: Pipeline, world: World
) -> None:
    key = make_key(op, world.a)
    api = AdminClient(pipeline.admin_url(), key["key"])
    assert ok(api.get("/me"))["credential_id"] == key["id"]
    assert op.delete(f"/accounts/{world.a}/api-keys/{key['id']}").status == 204
    _every_route_refuses(pipeline, world, key["key"], 401, "unauthorized")
    listed = {k["id"]: k for k in ok(op.get(f"/accounts/{world.a}/api-keys"))["api_keys"]}
    assert listed[key["id"]]["revoked_at"] and "key" not in listed[key["id"]]
    assert "key_hash" not in repr(listed)
    # Revoking again is harmless; another account's key is not found there.
    assert op.delete(f"/accounts/{world.a}/api-keys/{key['id']}").status == 204
    assert op.delete(f"/accounts/{world.a}/api-keys/{world.key_b_id}").status == 404


def test_revoked_links_are_refused_everywhere_and_new_ones_work(
    op: AdminClient, pipeline: Pipeline, world: World
) -> None:
    account = "acct_revoke"
    make_account(op, account)
    link = make_link(op, account)
    api = AdminClient(pipeline.admin_url(), link["token"])
    assert ok(api.get("/me"))["account_id"] == account
    assert op.post(f"/accounts/{account}/portal-links/revoke").status == 204
    answer = api.get("/me")
    assert (answer.status, answer.body["error"]["code"]) == (401, "link_revoked")
    # The links of other accounts still work; a link issued after the revoke works.
    assert (
        AdminClient(pipeline.admin_url(), make_link(op, world.a)["token"]).get("/me").status == 200
    )
    time.sleep(0.01)
    fresh = make_link(op, account)
    assert AdminClient(pipeline.admin_url(), fresh["token"]).get("/me").status == 200
    # Every route, with a revoked link of account A.
    link_a = make_link(op, world.a)
    assert op.post(f"/accounts/{world.a}/portal-links/revoke").status == 204
    _every_route_refuses(pipeline, world, link_a["token"], 401, "link_revoked")


def test_a_read_only_link_reads_its_own_account_and_changes_nothing(
    op: AdminClient, pipeline: Pipeline, world: World
) -> None:
    time.sleep(0.01)  # after any revoke of A's links in the test before
    link = make_link(op, world.a, "read")
    assert link["scope"] == "read" and link["url"].endswith(f"/#token={link['token']}")
    api = AdminClient(pipeline.admin_url(), link["token"])
    answers = []
    for method, path, need in operations():
        concrete, body = foreign_call(world, method, path)
        own = concrete.replace(world.b, world.a).replace(world.webhook_b, world.webhook_a)
        answer = api.call(method.upper(), own, body)
        answers.append((f"{method} {own} {body}", answer))
        if method != "get":
            assert (answer.status, answer.body["error"]["code"]) == (403, "read_only"), own
        elif need == "operator":
            assert (answer.status, answer.body["error"]["code"]) == (403, "operator_only"), own
        else:
            assert answer.status == 200, (own, answer.body)
    me = ok(api.get("/me"))
    assert (me["kind"], me["account_id"], me["scope"]) == ("portal", world.a, "read")
    assert me["expires_at"] == link["expires_at"]
    assert_no_foreign_data(world, answers)


# --- what an account credential may do -------------------------------------------------


@pytest.mark.parametrize("credential", ["api_key", "manage_link"])
def test_an_own_key_and_a_manage_link_manage_their_webhooks(
    op: AdminClient, pipeline: Pipeline, world: World, credential: str
) -> None:
    time.sleep(0.01)
    token = world.key_a if credential == "api_key" else make_link(op, world.a)["token"]
    api = AdminClient(pipeline.admin_url(), token)
    answers = []
    created = ok(api.post("/webhooks", {"url": "http://127.0.0.1:9/own", "events": ["*"]}), 201)
    assert created["account_id"] == world.a and created["secret"].startswith("whsec_")
    wid = created["id"]
    for method, path, body, status in [
        ("GET", f"/webhooks/{wid}", None, 200),
        ("PATCH", f"/webhooks/{wid}", {"description": "mine", "enabled": False}, 200),
        ("PATCH", f"/webhooks/{wid}", {"enabled": True}, 200),
        ("POST", f"/webhooks/{wid}/rotate-secret", None, 200),
        ("POST", f"/webhooks/{wid}/test", {}, 202),
        ("GET", f"/webhooks/{wid}/attempts", None, 200),
        ("GET", f"/webhooks?account_id={world.a}", None, 200),
        ("GET", "/dead-letters", None, 200),
        ("GET", f"/accounts/{world.a}", None, 200),
        ("DELETE", f"/webhooks/{wid}", None, 204),
    ]:
        answer = api.call(method, path, body)
        answers.append((path, answer))
        assert answer.status == status, (method, path, answer.body)
    assert api.get(f"/webhooks/{wid}").status == 404
    account = ok(api.get(f"/accounts/{world.a}"))
    assert (account["id"], account["name"]) == (world.a, "Shop A")
    assert_no_foreign_data(world, answers)


def test_replay_all_with_a_key_replays_only_its_own_account(
    op: AdminClient, pipeline: Pipeline, world: World
) -> None:
    api = AdminClient(pipeline.admin_url(), world.key_a)
    [own] = ok(api.get("/dead-letters"))["dead_letters"]
    assert own["account_id"] == world.a and own["webhook_id"] == world.webhook_a
    report = ok(api.post("/dead-letters/replay", {"all": True}))
    assert report["replayed"] == 1, report
    [theirs] = ok(op.get(f"/dead-letters?account_id={world.b}"))["dead_letters"]
    assert theirs["replayed_at"] is None


def test_the_webhook_limit_per_account(op: AdminClient, pipeline: Pipeline) -> None:
    make_account(op, "acct_small", max_webhooks=2)
    make_account(op, "acct_usual")
    for account, limit in (("acct_small", 2), ("acct_usual", LIMIT)):
        for n in range(limit):
            body = {"url": f"http://127.0.0.1:9/{n}", "events": ["*"], "account_id": account}
            ok(op.post("/webhooks", body), 201)
        refused = op.post("/webhooks", {**body, "url": "http://127.0.0.1:9/more"})
        assert refused.status == 409 and refused.body["error"]["code"] == "webhook_limit"
        message = refused.body["error"]["message"]
        assert account in message and f"({limit})" in message and "max_webhooks" in message
    listed = ok(op.get("/accounts?limit=1000"))["accounts"]
    counts = {a["id"]: (a["webhooks"], a["max_webhooks"]) for a in listed}
    assert counts["acct_small"] == (2, 2) and counts["acct_usual"] == (LIMIT, None)
    ok(op.patch("/accounts/acct_small", {"max_webhooks": 3}))
    ok(
        op.post(
            "/webhooks",
            {"url": "http://127.0.0.1:9/3", "events": ["*"], "account_id": "acct_small"},
        ),
        201,
    )


def test_accounts_are_paged_and_the_default_account_always_exists(op: AdminClient) -> None:
    assert ok(op.get("/accounts/default"))["id"] == "default"
    assert op.get("/accounts/no-such-account").status == 404
    assert op.post("/accounts", {"id": "default"}).status == 409
    assert op.post("/accounts", {"id": "bad id"}).status == 422
    ok(op.patch("/accounts/default", {"name": "Local"}))
    assert ok(op.get("/accounts/default"))["name"] == "Local"
    seen: list[str] = []
    after = None
    while True:
        page = ok(op.get("/accounts?limit=2" + (f"&after={after}" if after else "")))
        seen += [a["id"] for a in page["accounts"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(seen) and "default" in seen and len(seen) == len(set(seen))


def test_portal_links_ttl_and_url(op: AdminClient, pipeline: Pipeline, world: World) -> None:
    link = ok(
        op.post(f"/accounts/{world.a}/portal-links", {"scope": "read", "ttl_seconds": 60}), 201
    )
    assert abs(link["expires_at"] - (time.time() + 60)) < 10
    assert link["url"] == f"{pipeline.admin_url()}/#token={link['token']}"
    for ttl in (0, 3601, "60"):
        answer = op.post(f"/accounts/{world.a}/portal-links", {"ttl_seconds": ttl})
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid"), ttl
    assert op.post("/accounts/nobody/portal-links", {}).status == 404
    assert op.post("/accounts/nobody/api-keys", {}).status == 404


# --- the audit trail ---------------------------------------------------------------------


def test_the_audit_trail_says_who_what_when_and_from_where_per_account(
    op: AdminClient, pipeline: Pipeline, world: World
) -> None:
    make_account(op, "acct_audit")
    key = make_key(op, "acct_audit")
    api = AdminClient(pipeline.admin_url(), key["key"])
    time.sleep(0.01)
    link = make_link(op, "acct_audit")
    portal = AdminClient(pipeline.admin_url(), link["token"])
    before = time.time()
    wid = ok(api.post("/webhooks", {"url": "http://127.0.0.1:9/audit", "events": ["*"]}), 201)["id"]
    ok(portal.patch(f"/webhooks/{wid}", {"enabled": False}))
    ok(op.patch(f"/webhooks/{wid}", {"description": "by the operator"}))
    assert portal.delete(f"/webhooks/{wid}").status == 204

    entries = ok(api.get("/audit"))["entries"]
    assert {e["account_id"] for e in entries} == {"acct_audit"}
    got = [(e["action"], e["actor"]["kind"], e["actor"]["id"], e["target_id"]) for e in entries]
    assert got[:4] == [
        ("webhook.deleted", "portal", f"portal:{link['link_id']}", wid),
        ("webhook.updated", "operator", "operator", wid),
        ("webhook.disabled", "portal", f"portal:{link['link_id']}", wid),
        ("webhook.created", "api_key", key["id"], wid),
    ]
    assert ("portal_link.issued", "operator", "operator", link["link_id"]) in got
    assert ("api_key.created", "operator", "operator", key["id"]) in got
    assert ("account.created", "operator", "operator", "acct_audit") in got
    for e in entries[:4]:
        assert e["address"] == "127.0.0.1"
        at = datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
        assert before - 1 < at < time.time() + 1
    assert "whsec_" not in repr(entries) and key["key"] not in repr(entries)
    # Per account: A's key sees none of it; the operator sees it by account or in all.
    mine = ok(AdminClient(pipeline.admin_url(), world.key_a).get("/audit?limit=1000"))["entries"]
    assert mine and {e["account_id"] for e in mine} == {world.a}
    assert (
        AdminClient(pipeline.admin_url(), world.key_a).get("/audit?account_id=acct_audit").status
        == 404
    )
    by_op = ok(op.get("/audit?account_id=acct_audit"))["entries"]
    assert [e["id"] for e in by_op] == [e["id"] for e in entries]
    everything = ok(op.get("/audit?limit=1000"))["entries"]
    assert {"acct_audit", world.a, world.b} <= {e["account_id"] for e in everything}
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)


# --- a second replica ----------------------------------------------------------------------


def test_a_revoke_reaches_a_second_admin_replica_within_seconds(
    op: AdminClient, pipeline: Pipeline, world: World, tmp_path: Path
) -> None:
    pipeline.restart("admin@2")
    try:
        found = re.search(r"API on (http://\S+)/api/v1", pipeline.log_path("admin@2").read_text())
        assert found, pipeline.log_path("admin@2").read_text()
        second = found.group(1)
        key = make_key(op, world.a)
        wait_until(lambda: AdminClient(second, key["key"]).get("/me").status == 200, 10)
        time.sleep(0.01)
        link = make_link(op, world.a)
        wait_until(lambda: AdminClient(second, link["token"]).get("/me").status == 200, 10)

        assert op.delete(f"/accounts/{world.a}/api-keys/{key['id']}").status == 204
        revoked_at = time.monotonic()
        wait_until(lambda: AdminClient(second, key["key"]).get("/me").status == 401, 5)
        key_took = time.monotonic() - revoked_at

        assert op.post(f"/accounts/{world.a}/portal-links/revoke").status == 204
        revoked_at = time.monotonic()
        wait_until(lambda: AdminClient(second, link["token"]).get("/me").status == 401, 5)
        link_took = time.monotonic() - revoked_at
        print(f"revoke seen on the second replica after {key_took:.2f} s (key), "
              f"{link_took:.2f} s (links)")  # fmt: skip
        answer = AdminClient(second, link["token"]).get("/webhooks")
        assert answer.body["error"]["code"] == "link_revoked"
    finally:
        assert pipeline.terminate("admin@2") == 0
