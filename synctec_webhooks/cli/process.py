"""Wiring: start one or more workers in one process, sharing a subscription table.

Each `synctec-webhooks fanout|deliver|retry|admin` runs one role; `run` runs all four
(and a broker). Every role starts the same way: settings, logging, the operations
endpoint (/metrics, /healthz, /readyz: `ops/server.py`), a stop event set by SIGINT/SIGTERM,
then the worker loops until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.worker import DeliveryWorker
from synctec_webhooks.consumers.fanout.worker import FanoutWorker
from synctec_webhooks.consumers.retry.worker import RetryWorker
from synctec_webhooks.deadletters.writer import DeadLetterWriter
from synctec_webhooks.errors import ConfigError
from synctec_webhooks.kafka import AsyncProducer
from synctec_webhooks.ops import logs
from synctec_webhooks.ops.server import OpsServer, subscriptions_check
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

ROLES = ("fanout", "deliver", "retry")
ADMIN = "admin"  # the admin service (synctec_webhooks/admin), a role of its own


class Role(Protocol):
    """A process role: a consumer worker (fanout, deliver, retry) or the admin server."""

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None: ...


def setup_logging() -> None:
    """SYNCTEC_LOG_LEVEL, and SYNCTEC_LOG_FORMAT=text|json (ops/logs.py)."""
    try:
        logs.configure(
            os.environ.get("SYNCTEC_LOG_LEVEL", "INFO"),
            os.environ.get("SYNCTEC_LOG_FORMAT", "text"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Limit glibc to a few malloc arenas (as MALLOC_ARENA_MAX does), before any thread.

    Every librdkafka client runs a dozen threads, and glibc gives each thread that
    allocates its own arena: a delivery worker's RSS with 6,040 POSTs open went from 204
    to 197 MB with two in the one pair of runs measured, within the run-to-run noise
    (docs/benchmarks.md). Not glibc (musl, macOS): nothing to do.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the operator chose
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop: its event loop and transports cost a delivery worker much
    less CPU per POST than the default loop's (docs/benchmarks.md)."""
    cap_malloc_arenas()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency, but not on every platform
        asyncio.run(main)
        return
    uvloop.run(main)


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_workers(
    settings: Settings,
    roles: Iterable[str],
    stop: asyncio.Event,
    on_ready: Callable[[Mapping[str, Role]], None] | None = None,
    ops: OpsServer | None = None,
) -> None:
    """Run the given roles until `stop` is set; a worker that fails stops the others.

    `on_ready` gets the workers by role once every one is ready. Serves /metrics,
    /healthz and /readyz on `ops`, or on a server of its own.
    """
    roles = list(roles)
    async with contextlib.AsyncExitStack() as stack:
        if ops is None:
            ops = await stack.enter_async_context(OpsServer(settings, roles))
        await _run_workers(settings, roles, stop, on_ready, ops)


async def _run_workers(
    settings: Settings,
    roles: list[str],
    stop: asyncio.Event,
    on_ready: Callable[[Mapping[str, Role]], None] | None,
    ops: OpsServer,
) -> None:
    codec = make_codec(settings.schema_registry_url)
    # The fan-out's process dead-letters poison subscription records; others skip them.
    poison_producer = AsyncProducer(settings, "subscriptions-dlq") if "fanout" in roles else None
    table = SubscriptionTable(
        settings,
        codec,
        dead_letters=DeadLetterWriter(settings, codec, poison_producer, metrics=ops.metrics)
        if poison_producer
        else None,
    )
    ops.on_scrape(lambda: _count_subscriptions(ops, table))
    ops.follow(stop)
    workers: dict[str, Role] = {}
    for role in roles:
        if role == "fanout":
            workers[role] = FanoutWorker(settings, codec, table, ops.metrics)
            ops.add_check("subscriptions", subscriptions_check(table))
        elif role == "deliver":
            workers[role] = DeliveryWorker(settings, codec, table, ops.metrics)
        elif role == "retry":
            workers[role] = RetryWorker(settings, codec, table, ops.metrics)
        elif role == ADMIN:
            from synctec_webhooks.admin import AdminServer

            admin = workers[role] = AdminServer(settings, codec, table)
            # Ready: the API listens (after replaying the attempts) on a caught-up table.
            ops.add_check(role, admin.readiness)
            ops.add_check("subscriptions", subscriptions_check(table))
        else:
            raise ValueError(f"unknown role {role!r}; choose from {', '.join((*ROLES, ADMIN))}")
        stats = getattr(workers[role], "kafka_stats", None)
        if stats is not None:
            ops.add_check(role, stats.readiness)
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
        ops.stopping = True
        await table.stop()
        if poison_producer is not None:
            poison_producer.close()


def leave_stuck_threads(code: int, grace: float = 3.0) -> int:
    """Return `code`, or end the process now if a thread is stuck in the Kafka client.

    A librdkafka call can block past its timeout (see docs/guarantees.md); Python would
    then wait for that thread forever at exit, and the worker would never stop. Its
    work is unfinished and uncommitted, so leaving it is safe: it is redone.
    """
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.error("thread %s is stuck in a client call; exiting without it", thread.name)
            logging.shutdown()
            os._exit(code)
    return code


def _count_subscriptions(ops: OpsServer, table: SubscriptionTable) -> None:
    subs = table.index.all()
    enabled = sum(1 for s in subs if s.enabled)
    ops.metrics.subscription_states(enabled, len(subs) - enabled)
