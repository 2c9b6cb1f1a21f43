"""The admin API against the live service, the real workers and a real broker: auth,
validation, secrets (shown once, sealed on the topic, rotated), test sends, attempts,
endpoint health and dead letters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from synctec_webhooks.signing import verify_standard, verify_storelink
from synctec_webhooks.topics import Topics
from tests.integration.admin_client import AdminClient
from tests.integration.harness import (
    ADMIN,
    ROLES,
    Pipeline,
    Receiver,
    always,
    product_synced,
    wait_until,
)

pytestmark = pytest.mark.broker

FAILURES_TO_DISABLE = 2


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    prefix = f"adm{os.urandom(4).hex()}"
    p = Pipeline(
        kafka_bootstrap,
        prefix,
        tmp_path_factory.mktemp("admin"),
        SYNCTEC_DISABLE_AFTER_FAILURES=str(FAILURES_TO_DISABLE),
    )
    try:
        yield p.start([*ROLES, ADMIN])
    finally:
        p.stop_and_check()


@pytest.fixture
def api(pipeline: Pipeline) -> AdminClient:
    return AdminClient(pipeline.admin_url(), pipeline.admin_token)


def add(api: AdminClient, url: str, events: list[str] | None = None) -> dict:
    answer = api.post("/webhooks", {"url": url, "events": events or ["*"]})
    assert answer.status == 201, answer.body
    return answer.body


def webhook(api: AdminClient, webhook_id: str) -> dict:
    answer = api.get(f"/webhooks/{webhook_id}")
    assert answer.status == 200, answer.body
    return answer.body


def dead_letters(api: AdminClient, query: str) -> list[dict]:
    answer = api.get(f"/dead-letters?{query}")
    assert answer.status == 200, answer.body
    return answer.body["dead_letters"]


def end_offset(pipeline: Pipeline, topic: str) -> int:
    consumer = Consumer(
        {"bootstrap.servers": pipeline.settings.bootstrap_servers, "group.id": "unused"}
    )
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def raw_records(pipeline: Pipeline, topic: str) -> list[bytes]:
    consumer = Consumer(
        {"bootstrap.servers": pipeline.settings.bootstrap_servers, "group.id": "unused"}
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        found: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(found) < high and time.monotonic() < deadline:
            for msg in consumer.consume(100, 1.0):
                if msg.error() is None and msg.value() is not None:
                    found.append(msg.value())
                elif msg.error() is None:
                    found.append(b"")  # tombstone
        return found
    finally:
        consumer.close()


# --- auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/openapi.json"),
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("GET", "/webhooks/wh_0123456789abcdef01234567"),
        ("PATCH", "/webhooks/wh_0123456789abcdef01234567"),
        ("DELETE", "/webhooks/wh_0123456789abcdef01234567"),
        ("POST", "/webhooks/wh_0123456789abcdef01234567/rotate-secret"),
        ("POST", "/webhooks/wh_0123456789abcdef01234567/test"),
        ("GET", "/webhooks/wh_0123456789abcdef01234567/attempts"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/replay"),
        ("GET", "/me"),
        ("GET", "/audit"),
        ("GET", "/accounts"),
        ("POST", "/accounts"),
        ("GET", "/accounts/default"),
        ("PATCH", "/accounts/default"),
        ("POST", "/accounts/default/api-keys"),
        ("GET", "/accounts/default/api-keys"),
        ("DELETE", "/accounts/default/api-keys/key_0123456789abcdef01234567"),
        ("POST", "/accounts/default/portal-links"),
        ("POST", "/accounts/default/portal-links/revoke"),
        ("GET", "/no-such-route"),
    ],
)
def test_every_api_route_needs_the_bearer_token(pipeline: Pipeline, method: str, path: str) -> None:
    url = pipeline.admin_url()
    forged_link = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZWZhdWx0In0.c2lnbmF0dXJl"
    for token in (
        None,
        "wrong-token-of-some-length",
        pipeline.admin_token[:-1],
        "slk_" + "x" * 43,
        forged_link,
    ):
        answer = AdminClient(url, token).call(method, path, {"url": "https://example.com"})
        assert answer.status == 401, (token, answer.body)
        assert answer.body["error"]["code"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    # The right token in another scheme is still refused.
    answer = AdminClient(url, pipeline.admin_token, scheme="Basic").call(method, path)
    assert answer.status == 401


# --- CRUD, secrets --------------------------------------------------------------------


def test_add_list_get_patch_delete_and_the_cli_sees_the_same(
    api: AdminClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    created = add(api, receiver.url("/crud"), ["product.synced", "sync.failed"])
    assert created["id"].startswith("wh_") and created["secret"].startswith("whsec_")
    assert created["state"] == "enabled" and created["account_id"] == "default"

    listed = api.get("/webhooks").body["webhooks"]
    assert created["id"] in [w["id"] for w in listed]
    assert all("secret" not in w for w in listed)
    got = webhook(api, created["id"])
    assert "secret" not in got and got["events"] == ["product.synced", "sync.failed"]

    patched = api.patch(f"/webhooks/{created['id']}", {"events": ["*"], "description": "all"})
    assert patched.status == 200, patched.body
    assert (patched.body["events"], patched.body["description"]) == (["*"], "all")

    cli = subprocess.run(
        [sys.executable, "-m", "synctec_webhooks.cli", "webhooks", "list", "--json"],
        env={**os.environ, **pipeline.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {r["id"]: r for r in map(json.loads, cli.stdout.splitlines())}
    assert rows[created["id"]]["events"] == ["*"]
    assert "secret" not in rows[created["id"]]

    assert api.delete(f"/webhooks/{created['id']}").status == 204
    assert api.get(f"/webhooks/{created['id']}").status == 404
    assert api.delete(f"/webhooks/{created['id']}").status == 404


@pytest.mark.parametrize(
    ("raw", "status", "field", "needle"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 400, None, "expected a JSON object"),
        (b"", 400, None, "got nothing"),
        (b'{"events": ["*"]}', 422, "url", "required"),
        (b'{"url": "ftp://example.com/x", "events": ["*"]}', 422, "url", "http(s)"),
        (b'{"url": "https://example.com/' + b"x" * 2100 + b'", "events": ["*"]}', 422, "url",
         "at most 2048"),
        (b'{"url": 5, "events": ["*"]}', 422, "url", "expected a string"),
        (b'{"url": "https://example.com/x", "events": []}', 422, "events", "at least one"),
        (b'{"url": "https://example.com/x", "events": ["product.deleted"]}', 422, "events",
         "unknown event type 'product.deleted'"),
        (b'{"url": "https://example.com/x", "events": ["*"], "secret": "whsec_x"}', 422,
         "secret", "unknown field"),
        (b'{"url": "http://169.254.169.254/latest", "events": ["*"]}', 422, "url",
         "cloud metadata"),
        (b'{"url": "http://10.1.2.3/x", "events": ["*"]}', 422, "url", "private"),
        (b'{"url": "http://[::ffff:192.168.0.1]/x", "events": ["*"]}', 422, "url", "private"),
    ],
)  # fmt: skip
def test_refused_requests_name_the_field_and_write_nothing(
    api: AdminClient, pipeline: Pipeline, raw: bytes, status: int, field: str | None, needle: str
) -> None:
    topic = Topics(pipeline.settings.topic_prefix).subscriptions
    before = end_offset(pipeline, topic)
    answer = api.call("POST", "/webhooks", raw=raw)
    assert answer.status == status, answer.body
    error = answer.body["error"]
    assert error.get("field") == field
    assert needle in error["message"]
    assert end_offset(pipeline, topic) == before


def test_patch_refusals(api: AdminClient, receiver: Receiver) -> None:
    wid = add(api, receiver.url("/patch"))["id"]
    for body, field in [
        ({}, "body"),
        ({"enabled": "yes"}, "enabled"),
        ({"url": "http://127.0.0.1:1/x", "colour": "red"}, "colour"),
        ({"url": "http://metadata.google.internal/x"}, "url"),
    ]:
        answer = api.patch(f"/webhooks/{wid}", body)
        assert answer.status == 422 and answer.body["error"]["field"] == field, answer.body
    assert webhook(api, wid)["url"] == receiver.url("/patch")


def test_secrets_are_sealed_on_the_subscriptions_topic(
    api: AdminClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    created = add(api, receiver.url("/sealed"))
    rotated = api.post(f"/webhooks/{created['id']}/rotate-secret").body["secret"]
    records = raw_records(pipeline, Topics(pipeline.settings.topic_prefix).subscriptions)
    ours = [r for r in records if created["id"].encode() in r]
    assert len(ours) >= 2
    for secret in (created["secret"], rotated):
        key = secret.removeprefix("whsec_").encode()
        assert not any(key in r or secret.encode() in r for r in records)


# --- test sends, attempts, rotation ----------------------------------------------------


def test_send_test_reaches_only_that_endpoint_and_shows_in_attempts(
    api: AdminClient, receiver: Receiver
) -> None:
    target = add(api, receiver.url("/test-a"), ["inventory.updated"])
    add(api, receiver.url("/test-b"))
    sent = api.post(f"/webhooks/{target['id']}/test")
    assert sent.status == 202, sent.body
    assert sent.body["event_type"] == "inventory.updated"
    assert sent.body["event_id"].startswith("evt_test_")

    [got] = receiver.wait_for(1, "/test-a")
    assert got.json["id"] == sent.body["event_id"] and got.json["event"] == "inventory.updated"
    assert verify_storelink(target["secret"], got.body, got.header("X-StoreLink-Signature"))
    assert verify_standard(target["secret"], got.headers, got.body, now=int(time.time()))

    def attempts() -> list[dict]:
        return api.get(f"/webhooks/{target['id']}/attempts").body["attempts"]

    wait_until(lambda: len(attempts()) == 1, 30, lambda: str(attempts()))
    [attempt] = attempts()
    assert (attempt["status"], attempt["result"], attempt["attempt"]) == (200, "delivered", 1)
    assert attempt["delivery_id"] == sent.body["delivery_id"]
    assert webhook(api, target["id"])["last_attempt"]["status"] == 200
    time.sleep(1)
    assert receiver.received("/test-b") == []

    typed = api.post(f"/webhooks/{target['id']}/test", {"event_type": "collection.synced"})
    assert typed.status == 202 and typed.body["event_type"] == "collection.synced"
    assert api.post(f"/webhooks/{target['id']}/test", {"event_type": "nope"}).status == 422


def test_rotated_secret_old_and_new_both_sign(api: AdminClient, receiver: Receiver) -> None:
    created = add(api, receiver.url("/rotate"))
    rotated = api.post(f"/webhooks/{created['id']}/rotate-secret")
    assert rotated.status == 200, rotated.body
    new = rotated.body["secret"]
    time.sleep(1)  # the delivery worker follows the subscriptions topic within a moment
    assert new != created["secret"]
    assert rotated.body["rotation_ends_at"] > time.time() * 1000 + 23 * 3600 * 1000
    assert webhook(api, created["id"])["rotation_ends_at"] == rotated.body["rotation_ends_at"]

    api.post(f"/webhooks/{created['id']}/test")
    [got] = receiver.wait_for(1, "/rotate")
    entries = got.header("webhook-signature").split()
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    now = int(time.time())
    assert verify_standard(new, got.headers, got.body, now=now)
    assert verify_standard(created["secret"], got.headers, got.body, now=now)
    # X-StoreLink-Signature carries one signature only: the newest secret's.
    assert verify_storelink(new, got.body, got.header("X-StoreLink-Signature"))
    assert not verify_storelink(created["secret"], got.body, got.header("X-StoreLink-Signature"))


# --- endpoint health and dead letters ---------------------------------------------------


def test_410_disables_then_events_are_dead_lettered_until_reenabled_and_replayed(
    api: AdminClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.script("/gone", always(410))
    wid = add(api, receiver.url("/gone"), ["product.synced"])["id"]
    api.post(f"/webhooks/{wid}/test")
    receiver.wait_for(1, "/gone")
    wait_until(lambda: not webhook(api, wid)["enabled"], 30, lambda: str(webhook(api, wid)))
    state = webhook(api, wid)
    assert state["state"] == "disabled" and "410" in state["disabled_reason"]
    assert api.post(f"/webhooks/{wid}/test").status == 409
    # The platform's own change is in the account's audit trail, by "system".
    trail = api.get("/audit?account_id=default&limit=1000").body["entries"]
    [auto] = [e for e in trail if e["target_id"] == wid and e["action"] == "webhook.disabled"]
    assert auto["actor"] == {"kind": "system", "id": "system"} and auto["address"] is None
    assert "410" in auto["detail"]

    [event_id] = pipeline.emit(product_synced("p-410"))
    wait_until(lambda: len(dead_letters(api, f"webhook_id={wid}")) == 2, 30)
    found = {d["event_id"]: d for d in dead_letters(api, f"webhook_id={wid}")}
    assert found[event_id]["reason"] == "webhook_disabled"
    assert found[event_id]["attempts"] == 0
    assert len(receiver.received("/gone")) == 1  # the disabled webhook got no POST

    receiver.script("/gone", always(200))
    enabled = api.patch(f"/webhooks/{wid}", {"enabled": True})
    assert enabled.body["state"] == "enabled" and enabled.body["disabled_reason"] is None
    replay = api.post("/dead-letters/replay", {"webhook_id": wid, "event_id": event_id})
    assert replay.body == {"replayed": 1, "not_replayable": 0, "not_replayable_reasons": {}}
    got = receiver.wait_for(2, "/gone")
    assert got[-1].json["id"] == event_id
    assert webhook(api, wid)["enabled"]


def test_consecutive_failed_events_disable_and_a_success_resets(
    api: AdminClient, pipeline: Pipeline, receiver: Receiver
) -> None:
    receiver.script("/flaky", always(500))
    wid = add(api, receiver.url("/flaky"), ["sync.failed"])["id"]
    pipeline.emit(product_synced("p-x"))  # not subscribed: no attempt, no count
    first = dead_letter_for(api, pipeline, wid, "p-1")
    assert first["reason"] == "retries_exhausted" and first["attempts"] == 4
    assert webhook(api, wid)["consecutive_failures"] == 1
    assert webhook(api, wid)["enabled"]
    dead_letter_for(api, pipeline, wid, "p-2")
    wait_until(lambda: not webhook(api, wid)["enabled"], 30, lambda: str(webhook(api, wid)))
    assert (
        webhook(api, wid)["disabled_reason"] == f"{FAILURES_TO_DISABLE} consecutive events failed"
    )

    # The dead letters can be listed by webhook and by event type, and replayed.
    assert len(dead_letters(api, f"webhook_id={wid}&event_type=sync.failed")) == 2
    assert dead_letters(api, f"webhook_id={wid}&event_type=product.synced") == []
    receiver.script("/flaky", always(200))
    assert api.patch(f"/webhooks/{wid}", {"enabled": True}).status == 200
    assert webhook(api, wid)["consecutive_failures"] == 0
    assert api.post("/dead-letters/replay", {"webhook_id": wid}).body["replayed"] == 2
    wait_until(lambda: len(receiver.received("/flaky")) == 2 * 4 + 2, 30)
    assert api.post("/dead-letters/replay", {"webhook_id": wid}).body["replayed"] == 0
    listed = dead_letters(api, f"webhook_id={wid}")
    assert all(d["replayed_at"] for d in listed)
    assert api.post("/dead-letters/replay", {}).status == 422


def dead_letter_for(api: AdminClient, pipeline: Pipeline, wid: str, product: str) -> dict:
    [event_id] = pipeline.emit({**product_synced(product), "event": "sync.failed",
                                "status": "failed",
                                "error": {"code": "x", "message": "y"}})  # fmt: skip

    def finished() -> list[dict]:
        # The attempts view is in memory: cheap to poll, unlike the dead-letter topic.
        found = api.get(f"/webhooks/{wid}/attempts?limit=100").body["attempts"]
        return [a for a in found if a["event_id"] == event_id and a["result"] != "retry"]

    wait_until(lambda: len(finished()) == 1, 60, lambda: str(finished()))
    wait_until(lambda: len(dead_letters(api, f"event_id={event_id}")) == 1, 30)
    return dead_letters(api, f"event_id={event_id}")[0]


def test_settings_page_is_served_without_a_token(pipeline: Pipeline) -> None:
    import urllib.request

    with urllib.request.urlopen(pipeline.admin_url() + "/", timeout=10) as resp:
        html = resp.read().decode()
        assert "Settings" in html and "/static/app.js" in html
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


def test_the_admin_service_is_ready_on_its_ops_port(pipeline: Pipeline) -> None:
    """What its Kubernetes readiness probe and compose health check ask."""
    import urllib.request

    with urllib.request.urlopen(pipeline.ops_url(ADMIN) + "/readyz", timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["ready"] is True
    assert set(body["checks"]) == {"admin", "subscriptions"}
    assert pipeline.admin_url() in body["checks"]["admin"]["detail"]
