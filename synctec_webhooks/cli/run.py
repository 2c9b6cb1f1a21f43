"""`synctec-webhooks run`: the whole pipeline in one command, broker included."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from synctec_webhooks.admin import AdminServer, check_token
from synctec_webhooks.cli.process import (
    ADMIN,
    ROLES,
    Role,
    install_stop_handlers,
    leave_stuck_threads,
    run_loop,
    run_workers,
    setup_logging,
)
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import ConfigError
from synctec_webhooks.localkafka import BrokerError, LocalBroker
from synctec_webhooks.ops.server import OpsServer
from synctec_webhooks.secrets_crypto import KEY_FILE, ensure_key_file

logger = logging.getLogger(__name__)

_EXAMPLE_EVENT = (
    '{"event": "product.synced", "timestamp": "2025-01-29T14:30:00Z", '
    '"product": {"id": "1234567890", "title": "Merino Wool Sweater", "sku": "MWS-001"}, '
    '"source_store": "main-store.myshopify.com", "destination_store": "eu-store.myshopify.com", '
    '"status": "success"}'
)


def _walkthrough(settings: Settings, admin_url: str, token: str | None) -> str:
    cli = ".venv/bin/synctec-webhooks"
    bootstrap = settings.bootstrap_servers
    opened = ",".join(settings.allow_private_networks)
    exports = f"  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
    if opened:
        exports += f"\n  export SYNCTEC_ALLOW_PRIVATE_NETWORKS={opened}"
    guard = (
        f"The SSRF guard lets deliveries reach {opened} (SYNCTEC_ALLOW_PRIVATE_NETWORKS)."
        if opened
        else "The SSRF guard refuses 127.0.0.1: start with "
        "SYNCTEC_ALLOW_PRIVATE_NETWORKS=127.0.0.0/8,::1/128 (as `make run` does) to use a "
        "local receiver."
    )
    if not settings.secret_keys:
        # The other terminals seal with run's key file; only run makes one (secrets_crypto).
        where = f"{Path(settings.state_dir) / KEY_FILE}, relative to this folder"
        if settings.state_dir != Settings.state_dir:
            state = Path(settings.state_dir).absolute()
            exports += f"\n  export SYNCTEC_STATE_DIR={state}"
            where = f"{state / KEY_FILE} (SYNCTEC_STATE_DIR)"
        guard += f"\nWebhook secrets are sealed with the key in {where}."
    page = f"{admin_url}/#token={token}" if token else f"{admin_url}/ (token: $SYNCTEC_ADMIN_TOKEN)"
    token_line = f"\n  admin token (generated for this run): {token}" if token else ""
    return f"""
StoreLink webhooks are running: fan-out, delivery and retry workers on Kafka at {bootstrap},
and the admin service.
  settings page: {page}
  admin API:     {admin_url}/api/v1 (Authorization: Bearer <token>){token_line}
{guard}

In a second terminal, in this folder:

{exports}
  {cli} webhooks add --url http://127.0.0.1:8000/hooks --events '*'
      (prints the webhook id and its secret; or use the settings page)
  {cli} receive --port 8000 --secret <the secret>     # leave it running
In a third terminal:
{exports}
  {cli} emit '{_EXAMPLE_EVENT}'

The receiver prints the signed POST. Ctrl-C here stops everything.
"""


def run_all(json_output: bool, data_dir: Path | None) -> int:
    setup_logging()
    settings = Settings.from_env()
    broker: LocalBroker | None = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        directory = data_dir or Path(settings.state_dir) / "kafka"
        try:
            broker = LocalBroker(data_dir=directory).start()
        except BrokerError as exc:
            print(f"error: {exc}", flush=True)
            return 1
        settings = settings.with_(bootstrap_servers=broker.bootstrap_servers)
    generated = None
    if settings.admin_token is None:
        # A fresh token per run, printed below: nothing to set up for local use.
        generated = secrets.token_urlsafe(24)
        settings = settings.with_(admin_token=generated)
    try:
        check_token(settings.admin_token)
        ensure_key_file(settings)  # the workers, and commands run here, read the same file
    except ConfigError as exc:
        if broker is not None:
            broker.stop()
        print(f"configuration error: {exc}", flush=True)
        return 2

    async def announce(ops: OpsServer, workers: Mapping[str, Role]) -> None:
        # Every worker is consuming; wait for /readyz to agree (joined groups, the first
        # librdkafka statistics) so what we print is true when it is read.
        await wait_ready(ops)
        admin = workers[ADMIN]
        assert isinstance(admin, AdminServer) and admin.url is not None
        if json_output:
            line = {
                "bootstrap_servers": settings.bootstrap_servers,
                "admin_url": admin.url,
                **ops_urls(ops),
            }
            if generated:
                line["admin_token"] = generated
            print(json.dumps(line), flush=True)
        else:
            print(_walkthrough(settings, admin.url, generated), flush=True)
            print(f"Metrics: {ops.url}/metrics (health: /healthz, readiness: /readyz)\n")

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        tasks: set[asyncio.Task[None]] = set()
        async with OpsServer(settings, [*ROLES, ADMIN]) as ops:

            def on_ready(workers: Mapping[str, Role]) -> None:
                tasks.add(asyncio.get_running_loop().create_task(announce(ops, workers)))

            await run_workers(settings, (*ROLES, ADMIN), stop, on_ready, ops=ops)
        for task in tasks:
            task.cancel()

    code = 0
    try:
        run_loop(main())
    except Exception:
        logger.exception("a worker failed; stopping everything")
        code = 1
    finally:
        if broker is not None:
            broker.stop()
    logger.info("stopped")
    return leave_stuck_threads(code)


def ops_urls(ops: OpsServer) -> dict[str, str]:
    """The operations endpoint's URLs, as `run --json` reports them."""
    return {
        "metrics_url": f"{ops.url}/metrics",
        "healthz_url": f"{ops.url}/healthz",
        "readyz_url": f"{ops.url}/readyz",
    }


async def wait_ready(ops: OpsServer, timeout: float = 60.0) -> None:
    """Until every readiness check passes, or `timeout` (then say which do not)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        results = await ops.readiness()
        if all(ok for ok, _ in results.values()):
            return
        if asyncio.get_running_loop().time() > deadline:
            failing = "; ".join(d for ok, d in results.values() if not ok)
            logger.warning("not ready after %.0f s: %s", timeout, failing)
            return
        await asyncio.sleep(0.2)
