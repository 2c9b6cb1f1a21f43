"""The SSRF guard on a real pipeline: refused when added, and refused again at delivery
time after DNS resolution, when a URL that was accepted now points somewhere private."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import make_codec
from tests.integration.harness import LOOPBACK, Pipeline, Receiver, product_synced, wait_until

pytestmark = pytest.mark.broker


def test_add_refuses_private_addresses_unless_opened(
    kafka_bootstrap: str, unique_name: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SYNCTEC_TOPIC_PREFIX": unique_name,
        "SYNCTEC_STATE_DIR": str(tmp_path),
        "SYNCTEC_SECRET_KEY": Fernet.generate_key().decode(),  # `add` never makes one
    }
    env.pop("SYNCTEC_ALLOW_PRIVATE_NETWORKS", None)
    cli = [sys.executable, "-m", "synctec_webhooks.cli", "webhooks", "add", "--events", "*"]
    for url in (receiver.url("/h"), "http://localhost/h", "http://169.254.169.254/latest"):
        res = subprocess.run([*cli, "--url", url], env=env, capture_output=True, text=True)
        assert res.returncode == 2, res.stdout
        assert "refused by the SSRF guard" in res.stderr and "nothing was saved" in res.stderr
    opened = {**env, "SYNCTEC_ALLOW_PRIVATE_NETWORKS": LOOPBACK}
    res = subprocess.run([*cli, "--url", receiver.url("/h")], env=opened, capture_output=True)
    assert res.returncode == 0, res.stderr


def test_delivery_time_check_refuses_and_dead_letters_without_connecting(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    # The workers run with the guard closed; the webhooks were accepted earlier (written
    # here with loopback open), as if their DNS had changed since: a rebinding.
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path, SYNCTEC_ALLOW_PRIVATE_NETWORKS="")
    writer = SubscriptionWriter(p.settings.with_(allow_private_networks=("127.0.0.0/8",)))
    by_name = writer.add(f"http://localhost:{receiver.port}/by-name", "*")
    by_ip = writer.add(receiver.url("/by-ip"), "*")
    p.start()
    try:
        [event_id] = p.emit(product_synced())
        dls = DeadLetters(p.settings, make_codec(None))
        wait_until(lambda: len(dls.list(event_id=event_id)) == 2, 60)
        found = {d.record["webhook_id"]: d.record for d in dls.list(event_id=event_id)}
        for sub, why in ((by_name, "localhost is an internal host name"), (by_ip, "loopback")):
            record = found[sub.id]
            assert record["reason"] == "refused", record
            assert record["attempts"] == 1  # not retried: the same answer would be refused
            assert "SSRF guard" in record["detail"] and why in record["detail"]
        time.sleep(0.5)
        assert receiver.received() == []
    finally:
        p.stop_and_check()
