"""The console entry point as a user drives it: `run`, `webhooks`, `emit`, `dead-letters`."""

from __future__ import annotations

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
from cryptography.fernet import Fernet

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
