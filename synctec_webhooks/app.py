"""Wiring: start one or more workers in one process, sharing a subscription table.

Each `synctec-webhooks fanout|deliver|retry|admin` runs one role; `run` runs all four
(and a broker). Every role starts the same way: settings, logging, a stop event set by
SIGINT/SIGTERM, then the worker loops until stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from consumers.delivery.service import DeliveryService
from consumers.fanout.service import FanoutService
from consumers.retry.service import RetryService
from synctec_webhooks.config import Settings
from synctec_webhooks.dlq import DeadLetterWriter
from synctec_webhooks.kafka import AsyncProducer
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

ROLES = ("fanout", "deliver", "retry")
ADMIN = "admin"  # the admin service (synctec_webhooks/admin), a role of its own


class Worker(Protocol):
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None: ...


def setup_logging() -> None:
    level = os.environ.get("SYNCTEC_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_workers(
    settings: Settings,
    roles: Iterable[str],
    stop: asyncio.Event,
    on_ready: Callable[[Mapping[str, Worker]], None] | None = None,
) -> None:
    """Run the given roles until `stop` is set; a worker that fails stops the others.
    `on_ready` gets the workers by role once every one is ready."""
    roles = list(roles)
    codec = make_codec(settings.schema_registry_url)
    # The fan-out's process dead-letters poison subscription records; others skip them.
    poison_producer = AsyncProducer(settings, "subscriptions-dlq") if "fanout" in roles else None
    table = SubscriptionTable(
        settings,
        codec,
        dead_letters=DeadLetterWriter(settings, codec, poison_producer)
        if poison_producer
        else None,
    )
    workers: dict[str, Worker] = {}
    for role in roles:
        if role == "fanout":
            workers[role] = FanoutService(settings, codec, table)
        elif role == "deliver":
            workers[role] = DeliveryService(settings, codec, table)
        elif role == "retry":
            workers[role] = RetryService(settings, codec, table)
        elif role == ADMIN:
            from synctec_webhooks.admin import AdminService

            workers[role] = AdminService(settings, codec, table)
        else:
            raise ValueError(f"unknown role {role!r}; choose from {', '.join((*ROLES, ADMIN))}")
    # Started only now that every worker could be built (a bad setting raises above).
    await table.start()
    readies = {role: asyncio.Event() for role in workers}
    tasks = [
        asyncio.create_task(w.run(stop, readies[role]), name=role) for role, w in workers.items()
    ]
    try:
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(e.wait() for e in readies.values()))
        )
        first: set[asyncio.Future[Any]] = {all_ready, *tasks}
        done, _ = await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if all_ready in done and on_ready is not None:
            on_ready(workers)
        else:
            all_ready.cancel()
        # Any worker returning (by stop or by failure) stops the others.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
    finally:
        stop.set()
        await table.stop()
        if poison_producer is not None:
            poison_producer.close()
