"""The console entry point as a user drives it: `run`, `webhooks`, `emit`, `dead-letters`,
with and without `--account`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Producer
from cryptography.fernet import Fernet

from synctec_webhooks import deadletters, deliveries, schemas
from synctec_webhooks.accounts import Account
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import read_to_end
from synctec_webhooks.producers.accounts import AccountWriter
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics
from tests.integration.admin_client import AdminClient
from tests.integration.harness import LOOPBACK, Receiver, always, product_synced, wait_until

pytestmark = pytest.mark.broker

CLI = [sys.executable, "-m", "synctec_webhooks.cli"]


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_webhooks_add_list_remove(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SYNCTEC_TOPIC_PREFIX": unique_name,
        # `add` seals the secret with it (without one, and with no `run` key file in the
        # state folder, it refuses: tests/integration/test_secret_keys.py).
        "SYNCTEC_SECRET_KEY": Fernet.generate_key().decode(),
        "SYNCTEC_STATE_DIR": str(tmp_path),
    }
    res = cli(
        env,
        "webhooks",
        "add",
        "--url",
        "https://example.com/h",
        "--events",
        "product.synced,sync.failed",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    added = json.loads(res.stdout)
    assert added["id"].startswith("wh_")
    assert added["secret"].startswith("whsec_")
    assert len(base64.b64decode(added["secret"][6:])) >= 24

    listed = [
        json.loads(line) for line in cli(env, "webhooks", "list", "--json").stdout.splitlines()
    ]
    assert [(w["id"], w["events"]) for w in listed] == [
        (added["id"], ["product.synced", "sync.failed"])
    ]
    assert all("secret" not in w for w in listed)  # shown once, at creation

    assert cli(env, "webhooks", "remove", added["id"]).returncode == 0
    assert cli(env, "webhooks", "list", "--json").stdout == ""
    res = cli(env, "webhooks", "remove", added["id"])
    assert res.returncode == 1 and "no webhook" in res.stderr


@pytest.mark.parametrize(
    ("url", "events", "needle"),
    [
        ("ftp://example.com/x", "*", "url"),
        ("not a url", "*", "url"),
        ("https://example.com/x", "product.deleted", "unknown event type 'product.deleted'"),
        ("https://example.com/x", ",", "at least one event type"),
    ],
)
def test_webhooks_add_refuses_bad_input_and_saves_nothing(
    kafka_bootstrap: str, unique_name: str, url: str, events: str, needle: str
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SYNCTEC_TOPIC_PREFIX": unique_name}
    res = cli(env, "webhooks", "add", "--url", url, "--events", events)
    assert res.returncode == 2
    assert needle in res.stderr and "nothing was saved" in res.stderr
    assert cli(env, "webhooks", "list", "--json").stdout == ""


def test_run_starts_its_own_broker_and_delivers_then_stops_cleanly(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The README walk-through: `run --json`, add a webhook, emit, see the POST, Ctrl-C."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "SYNCTEC_ADMIN_TOKEN", "SYNCTEC_SECRET_KEY")
    }
    state = str(tmp_path / "state")
    env.update(
        {
            "SYNCTEC_STATE_DIR": state,
            "SYNCTEC_RETRY_DELAYS": "0.2,0.2,0.2",
            "SYNCTEC_ALLOW_PRIVATE_NETWORKS": LOOPBACK,  # as `make run` does
            "SYNCTEC_ADMIN_PORT": "0",
        }
    )
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "run", "--json"], env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        bootstrap = ready["bootstrap_servers"]
        assert bootstrap.startswith("127.0.0.1:")
        assert {"metrics_url", "healthz_url", "readyz_url"} <= set(ready)
        with urllib.request.urlopen(ready["readyz_url"], timeout=10) as resp:
            assert json.loads(resp.read())["ready"]
        # The admin service came up too, with a token generated for this run.
        admin = AdminClient(ready["admin_url"], ready["admin_token"])
        assert admin.get("/webhooks").body == {"webhooks": []}
        assert AdminClient(ready["admin_url"], "not-the-token").get("/webhooks").status == 401
        # A second terminal in the same folder: same state dir (so the same secret key).
        user = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SYNCTEC_STATE_DIR": state,
            "SYNCTEC_ALLOW_PRIVATE_NETWORKS": LOOPBACK,
        }
        added = json.loads(
            cli(
                user, "webhooks", "add", "--url", receiver.url("/hooks"), "--events", "*", "--json"
            ).stdout
        )
        receiver.script("/failing", always(500))
        failing = json.loads(
            cli(
                user,
                "webhooks",
                "add",
                "--url",
                receiver.url("/failing"),
                "--events",
                "product.synced",
                "--json",
            ).stdout
        )
        res = cli(user, "emit", json.dumps(product_synced()))
        assert res.returncode == 0, res.stderr
        [got] = receiver.wait_for(1, "/hooks")
        assert got.json["id"] == res.stdout.strip()
        assert got.header("X-StoreLink-Delivery-Id")

        def listed() -> list[dict]:
            out = cli(user, "dead-letters", "list", "--json").stdout
            return [json.loads(line) for line in out.splitlines()]

        wait_until(lambda: len(listed()) == 1, 60)
        [dl] = listed()
        assert {"webhook_id", "event_id", "delivery_id", "attempts", "reason"} <= set(dl)
        assert (dl["webhook_id"], dl["attempts"], dl["reason"]) == (
            failing["id"],
            4,
            "retries_exhausted",
        )
        assert added["id"] != failing["id"]
        # The one process's /metrics counted what just happened.
        with urllib.request.urlopen(ready["metrics_url"], timeout=10) as resp:
            exposition = resp.read().decode()
        assert 'synctec_deliveries_total{event_type="product.synced",outcome="2xx"} 1.0' in (
            exposition
        )
        assert (
            'synctec_dead_letters_total{event_type="product.synced",reason="retries_exhausted"} 1.0'
            in exposition
        )
        assert {w["id"] for w in admin.get("/webhooks").body["webhooks"]} == {
            added["id"],
            failing["id"],
        }
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        log.close()
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    # The broker went with it.
    time.sleep(0.5)
    pids = subprocess.run(["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True)
    assert pids.stdout.strip() == ""


# --- accounts (issue 12) -------------------------------------------------------------


def account_env(kafka_bootstrap: str, unique_name: str, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SYNCTEC_TOPIC_PREFIX": unique_name,
        "SYNCTEC_SECRET_KEY": Fernet.generate_key().decode(),
        **extra,
    }


def create_accounts(env: dict[str, str], *accounts: Account) -> None:
    """As the admin service's POST /api/v1/accounts writes them."""

    async def put() -> None:
        writer = AccountWriter(Settings.from_env(env))
        try:
            for account in accounts:
                await writer.put_account(account)
        finally:
            writer.close()

    asyncio.run(put())


def read_topic(env: dict[str, str], topic: str) -> list[tuple[str, dict]]:
    """(key, decoded record) of every record on `topic`."""
    settings = Settings.from_env(env)
    codec = make_codec(None)
    found = []
    for msg in read_to_end(settings, topic, f"{settings.topic_prefix}-test-reader"):
        key, value = msg.key(), msg.value()
        assert key is not None and value is not None
        found.append((key.decode(), codec.decode(topic, value)[1]))
    return found


def audited(env: dict[str, str]) -> list[dict]:
    return [entry for _, entry in read_topic(env, Topics(env["SYNCTEC_TOPIC_PREFIX"]).audit)]


def add(env: dict[str, str], url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(env, "webhooks", "add", "--url", url, "--events", "*", "--json", *extra)


def listed_webhooks(env: dict[str, str], *extra: str) -> list[dict]:
    res = cli(env, "webhooks", "list", "--json", *extra)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_webhooks_belong_to_an_account_listed_by_account_and_limited_per_account(
    kafka_bootstrap: str, unique_name: str
) -> None:
    env = account_env(kafka_bootstrap, unique_name, SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT="2")
    # An account the operator has not created: refused, as the API refuses it.
    res = add(env, "https://a.example.com/1", "--account", "acct_a")
    assert res.returncode == 1 and "no account 'acct_a'" in res.stderr
    assert "nothing was saved" in res.stderr
    create_accounts(env, Account("acct_a", "Merchant A"), Account("acct_big", max_webhooks=3))
    a1 = json.loads(add(env, "https://a.example.com/1", "--account", "acct_a").stdout)
    a2 = json.loads(add(env, "https://a.example.com/2", "--account", "acct_a").stdout)
    mine = json.loads(add(env, "https://local.example.com/h").stdout)  # no --account
    assert (a1["account_id"], a2["account_id"], mine["account_id"]) == (
        "acct_a",
        "acct_a",
        "default",
    )

    # The limit is per account: a third for acct_a is refused, naming the setting, and
    # nothing is written; the default account still has room.
    res = add(env, "https://a.example.com/3", "--account", "acct_a")
    assert res.returncode == 1, res.stdout
    assert "acct_a" in res.stderr and "SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT=2" in res.stderr
    assert "nothing was saved" in res.stderr and res.stdout == ""
    assert add(env, "https://local.example.com/2").returncode == 0

    assert {(w["id"], w["account_id"]) for w in listed_webhooks(env, "--account", "acct_a")} == {
        (a1["id"], "acct_a"),
        (a2["id"], "acct_a"),
    }
    everyone = listed_webhooks(env)
    assert len(everyone) == 4
    assert {w["account_id"] for w in everyone} == {"acct_a", "default"}
    assert all("secret" not in w for w in everyone)
    assert listed_webhooks(env, "--account", "acct_nobody") == []

    # The text listing has an account column.
    text = cli(env, "webhooks", "list", "--account", "acct_a").stdout.splitlines()
    assert sorted(line.split()[:2] for line in text) == sorted(
        [[a1["id"], "acct_a"], [a2["id"], "acct_a"]]
    )
    assert (
        "no webhooks yet in account acct_nobody"
        in cli(env, "webhooks", "list", "--account", "acct_nobody").stdout
    )

    # A malformed account id is refused before anything is read or written.
    res = add(env, "https://a.example.com/4", "--account", "not an id")
    assert res.returncode == 2 and "--account" in res.stderr and "not an account id" in res.stderr
    assert len(listed_webhooks(env)) == 4

    # An account's own max_webhooks wins over the setting.
    for n in range(3):
        assert add(env, f"https://big.example.com/{n}", "--account", "acct_big").returncode == 0
    res = add(env, "https://big.example.com/3", "--account", "acct_big")
    assert res.returncode == 1 and "max_webhooks=3" in res.stderr

    # Every change is on the account's audit trail, by the CLI.
    assert cli(env, "webhooks", "remove", a1["id"]).returncode == 0
    trail = {(e["account_id"], e["action"], e["target_id"], e["actor_kind"]) for e in audited(env)}
    assert {
        ("acct_a", "webhook.created", a1["id"], "cli"),
        ("acct_a", "webhook.created", a2["id"], "cli"),
        ("default", "webhook.created", mine["id"], "cli"),
        ("acct_a", "webhook.deleted", a1["id"], "cli"),
    } <= trail
    assert len(trail) == 4 + 3 + 1  # added, added to acct_big, removed: nothing refused


def test_emit_takes_the_account_from_the_flag_or_the_event_else_the_default(
    kafka_bootstrap: str, unique_name: str
) -> None:
    env = account_env(kafka_bootstrap, unique_name)
    flagged = cli(env, "emit", "--account", "acct_a", json.dumps(product_synced("p1")))
    in_event = cli(env, "emit", json.dumps({**product_synced("p2"), "account_id": "acct_b"}))
    # The README walk-through: no account anywhere, the default account's.
    neither = cli(env, "emit", json.dumps(product_synced("p3")))
    both = cli(
        env,
        "emit",
        "--account",
        "acct_c",
        json.dumps({**product_synced("p4"), "account_id": "acct_c"}),
    )
    for res in (flagged, in_event, neither, both):
        assert res.returncode == 0, res.stderr
    # NDJSON on stdin: --account applies to every line.
    lines = "\n".join(json.dumps(product_synced(p)) for p in ("p5", "p6"))
    ndjson = cli(env, "emit", "--account", "acct_d", "-", stdin=lines)
    assert ndjson.returncode == 0, ndjson.stderr

    # Refused, nothing sent: the flag and the event disagree; a malformed account.
    disagree = cli(
        env,
        "emit",
        "--account",
        "acct_a",
        json.dumps({**product_synced("p7"), "account_id": "acct_b"}),
    )
    assert disagree.returncode == 2
    assert "account_id" in disagree.stderr and "nothing was sent" in disagree.stderr
    malformed = cli(env, "emit", "--account", "no spaces", json.dumps(product_synced("p8")))
    assert malformed.returncode == 2 and "not an account id" in malformed.stderr

    events = {
        record["id"]: (key, record) for key, record in read_topic(env, Topics(unique_name).events)
    }
    expected = {
        flagged.stdout.strip(): ("acct_a", "p1"),
        in_event.stdout.strip(): ("acct_b", "p2"),
        neither.stdout.strip(): ("default", "p3"),
        both.stdout.strip(): ("acct_c", "p4"),
        **{
            event_id: ("acct_d", p)
            for event_id, p in zip(ndjson.stdout.split(), ("p5", "p6"), strict=True)
        },
    }
    assert set(events) == set(expected)
    for event_id, (account, product) in expected.items():
        key, record = events[event_id]
        assert record["account_id"] == account
        assert key == f"{account}/{product}"  # one account's products keep their own order


def test_dead_letters_list_and_replay_by_account(kafka_bootstrap: str, unique_name: str) -> None:
    env = account_env(kafka_bootstrap, unique_name)
    settings = Settings.from_env(env)
    create_accounts(env, Account("acct_a"), Account("acct_b"))
    writer = SubscriptionWriter(settings)
    subs = {
        acct: writer.add(f"https://{acct}.example.com/h", "*", account_id=acct)
        for acct in ("acct_a", "acct_b")
    }
    topic, codec = Topics(unique_name).deadletters, make_codec(None)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    dead: dict[str, str] = {}
    for offset, (acct, sub) in enumerate(subs.items()):
        event = {**product_synced(f"p-{acct}"), "id": f"evt_{acct}", "account_id": acct}
        [plan] = deliveries.plan("product.synced", event, [sub], int(time.time() * 1000))
        record = {
            **deadletters.build(
                "retries_exhausted",
                "retries_exhausted: see history",
                deadletters.Source("retry.3", 0, offset),
                int(time.time() * 1000),
                delivery=plan.record,
            ),
            "account_id": acct,
        }
        dead[acct] = record["dead_letter_id"]
        value = codec.encode(topic, schemas.DEAD_LETTER, record)
        producer.produce(topic, value=value, key=deadletters.key_of(record))
    assert producer.flush(30) == 0

    def listed(*extra: str) -> list[dict]:
        res = cli(env, "dead-letters", "list", "--json", *extra)
        assert res.returncode == 0, res.stderr
        return [json.loads(line) for line in res.stdout.splitlines()]

    [only_a] = listed("--account", "acct_a")
    assert (only_a["dead_letter_id"], only_a["account_id"]) == (dead["acct_a"], "acct_a")
    assert only_a["webhook_id"] == subs["acct_a"].id
    assert {d["account_id"] for d in listed()} == {"acct_a", "acct_b"}
    assert listed("--account", "acct_nobody") == []
    text = cli(env, "dead-letters", "list", "--account", "acct_b").stdout
    assert "account=acct_b" in text and dead["acct_a"] not in text

    # --account alone is a filter: it replays that account's dead letters, no other's.
    res = cli(env, "dead-letters", "replay", "--account", "acct_a")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("replayed 1 dead letter")
    [a] = listed("--account", "acct_a")
    [b] = listed("--account", "acct_b")
    assert a["replayed_at"] and not b["replayed_at"]
    [entry] = [e for e in audited(env) if e["action"] == "dead_letters.replayed"]
    assert (entry["account_id"], entry["actor_kind"]) == ("acct_a", "cli")
    assert entry["detail"] == "1 replayed (account_id=acct_a)"
    # A foreign webhook under an account filter matches nothing.
    res = cli(env, "dead-letters", "replay", "--account", "acct_a", "--webhook", subs["acct_b"].id)
    assert res.stdout.startswith("replayed 0 dead letters")
    assert not listed("--account", "acct_b")[0]["replayed_at"]

    res = cli(env, "dead-letters", "list", "--account", "bad id")
    assert res.returncode == 2 and "not an account id" in res.stderr
