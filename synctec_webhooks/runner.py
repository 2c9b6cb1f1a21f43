"""`synctec-webhooks run`: the whole pipeline in one command, broker included."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from synctec_webhooks.app import (
    ROLES,
    install_stop_handlers,
    leave_stuck_threads,
    run_workers,
    setup_logging,
)
from synctec_webhooks.broker import BrokerError, LocalBroker
from synctec_webhooks.config import Settings
from synctec_webhooks.ops import OpsServer

logger = logging.getLogger(__name__)

_EXAMPLE_EVENT = (
    '{"event": "product.synced", "timestamp": "2025-01-29T14:30:00Z", '
    '"product": {"id": "1234567890", "title": "Merino Wool Sweater", "sku": "MWS-001"}, '
    '"source_store": "main-store.myshopify.com", "destination_store": "eu-store.myshopify.com", '
    '"status": "success"}'
)


def _walkthrough(bootstrap: str) -> str:
    cli = ".venv/bin/synctec-webhooks"
    return f"""
StoreLink webhooks are running: fan-out, delivery and retry workers on Kafka at {bootstrap}.
In a second terminal, in this folder:

  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}
  {cli} webhooks add --url http://127.0.0.1:8000/hooks --events '*'
      (prints the webhook id and its secret)
  {cli} receive --port 8000 --secret <the secret>     # leave it running
In a third terminal:
  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}
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

    async def announce(ops: OpsServer) -> None:
        # Every worker is consuming; wait for /readyz to agree (joined groups, the first
        # librdkafka statistics) so what we print is true when it is read.
        await wait_ready(ops)
        if json_output:
            ready = {"bootstrap_servers": settings.bootstrap_servers, **ops_urls(ops)}
            print(json.dumps(ready), flush=True)
        else:
            print(_walkthrough(settings.bootstrap_servers), flush=True)
            print(f"Metrics: {ops.url}/metrics (health: /healthz, readiness: /readyz)\n")

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_handlers(stop)
        tasks: set[asyncio.Task[None]] = set()
        async with OpsServer(settings, ROLES) as ops:

            def on_ready() -> None:
                tasks.add(asyncio.get_running_loop().create_task(announce(ops)))

            await run_workers(settings, ROLES, stop, on_ready, ops=ops)
        for task in tasks:
            task.cancel()

    code = 0
    try:
        asyncio.run(main())
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
