"""The sealing key on a real broker (issue 11): a webhook sealed with a key the workers do
not have is dead-lettered on its own while the others are delivered; `webhooks reseal`
moves it under the current key and a replay delivers it; only `run` makes a key file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.signing import verify_storelink
from tests.integration.harness import Pipeline, Receiver, product_synced, wait_until

pytestmark = pytest.mark.broker

CLI = [sys.executable, "-m", "synctec_webhooks.cli"]
REASON = "secret_unavailable"
# Whatever the test runner's shell holds must not leak a key or a state folder in.
_UNSET = ("SYNCTEC_SECRET_KEY", "SYNCTEC_STATE_DIR", "SYNCTEC_ADMIN_TOKEN")


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in _UNSET}
    return subprocess.run(
        [*CLI, *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("state_dir", [None, "state"])
def test_webhooks_add_without_a_key_refuses_and_makes_no_key_file(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, state_dir: str | None
) -> None:
    """From a folder where `run` never ran (default `.state`, or a given state folder)."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SYNCTEC_TOPIC_PREFIX": unique_name}
    if state_dir is not None:
        env["SYNCTEC_STATE_DIR"] = str(tmp_path / state_dir)
    res = cli(
        env, "webhooks", "add", "--url", "https://example.com/h", "--events", "*", cwd=tmp_path
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "SYNCTEC_SECRET_KEY is not set" in res.stderr
    assert "synctec-webhooks run" in res.stderr  # says where a key file comes from
    assert _files(tmp_path) == []
    assert cli(env, "webhooks", "list", "--json", cwd=tmp_path).stdout == ""  # nothing saved


def test_admin_without_a_key_refuses_to_start_and_makes_no_key_file(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SYNCTEC_TOPIC_PREFIX": unique_name,
        "SYNCTEC_ADMIN_TOKEN": "t" * 32,
        "SYNCTEC_ADMIN_PORT": "0",
    }
    res = cli(env, "admin", cwd=tmp_path, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "SYNCTEC_SECRET_KEY is not set" in res.stderr
    assert _files(tmp_path) == []


def _error_lines(log: Path, needle: str) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [e for e in entries if e["level"] == "ERROR" and needle in e["msg"]]


def test_a_webhook_sealed_with_another_key_is_dead_lettered_alone_then_resealed_and_replayed(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path, SYNCTEC_LOG_FORMAT="json")
    current, stray_key = p.env["SYNCTEC_SECRET_KEY"], Fernet.generate_key().decode()
    healthy = p.add_webhook(receiver.url("/healthy"))
    # As `webhooks add` run elsewhere with a key file of its own used to do.
    stray = SubscriptionWriter(p.settings.with_(secret_keys=(stray_key,))).add(
        receiver.url("/stray"), "*"
    )
    p.start()
    try:
        ids = p.emit(*[product_synced(str(i)) for i in range(5)])
        receiver.wait_for(5, "/healthy")
        dls = DeadLetters(p.settings, make_codec(None))
        wait_until(lambda: len(dls.list(stray.id)) == 5, 60, lambda: p.all_logs())
        records = [d.record for d in dls.list(stray.id)]
        assert {r["reason"] for r in records} == {REASON}
        assert {r["event_id"] for r in records} == set(ids)
        assert "SYNCTEC_SECRET_KEY" in records[0]["detail"]
        assert "replay" in records[0]["detail"]
        assert receiver.received("/stray") == []
        assert sorted(r.json["id"] for r in receiver.received("/healthy")) == sorted(ids)
        assert all(proc.poll() is None for proc in p.procs.values()), p.all_logs()
        # One error line for the webhook, however many records; the metric counts them.
        assert len(_error_lines(p.log_path("deliver"), stray.id)) == 1, p.all_logs()
        with urllib.request.urlopen(p.ops_url("deliver") + "/metrics", timeout=10) as resp:
            exposition = resp.read().decode()
        series = f'synctec_dead_letters_total{{event_type="product.synced",reason="{REASON}"}}'
        assert f"{series} 5.0" in exposition

        # Rotation's second step, while the workers run: reseal under the first key.
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SYNCTEC_TOPIC_PREFIX": unique_name}
        res = cli({**env, "SYNCTEC_SECRET_KEY": current}, "webhooks", "reseal", cwd=tmp_path)
        assert res.returncode == 1, res.stdout + res.stderr  # the stray key is not listed
        assert stray.id in res.stderr and "SYNCTEC_SECRET_KEY" in res.stderr
        both = {**env, "SYNCTEC_SECRET_KEY": f"{current},{stray_key}"}
        res = cli(both, "webhooks", "reseal", "--json", cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        assert (report["resealed"], report["current"], report["unopened"]) == (
            [stray.id],
            [healthy.id],
            {},
        )
        res = cli(both, "webhooks", "reseal", "--json", cwd=tmp_path)  # idempotent
        assert json.loads(res.stdout)["resealed"] == [], res.stdout + res.stderr

        # The workers, which never had the stray key, now sign its deliveries.
        replayed, _ = dls.replay(stray.id)
        assert replayed == 5
        got = receiver.wait_for(5, "/stray")
        assert sorted(r.json["id"] for r in got) == sorted(ids)
        assert all(
            verify_storelink(stray.secret, r.body, r.header("X-StoreLink-Signature")) for r in got
        )
        time.sleep(1)
        assert len(receiver.received("/healthy")) == 5  # nothing sent twice
    finally:
        p.stop_and_check()
