"""Test harness: a scriptable webhook receiver and the pipeline's workers as processes.

The receiver is an in-process aiohttp server on 127.0.0.1 (its own thread and loop) that
records every request and answers as each path is scripted to. The workers run as real
`synctec-webhooks <role>` processes against the session's broker, with a topic prefix
of their own, so they can be stopped, killed and restarted like in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.fernet import Fernet

from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.config import Settings
from synctec_webhooks.matching import Subscription
from synctec_webhooks.producers.events import EventProducer
from synctec_webhooks.producers.subscriptions import SubscriptionWriter

# --- receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 200  # what the script answered
    delay: float = 0.0  # how long it waited before answering

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        return {k.lower(): v for k, v in self.headers.items()}[name.lower()]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'


Script = Callable[[int], Reply]  # n-th request to the path (1-based) -> reply


def fail_times(n: int, status: int = 500) -> Script:
    return lambda i: Reply(status) if i <= n else Reply(200)


def always(status: int) -> Script:
    return lambda _i: Reply(status)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, Script] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            n = self._counts[request.path] = self._counts.get(request.path, 0) + 1
            script = self._scripts.get(request.path)
            reply = script(n) if script else Reply()
            self.requests.append(
                Received(request.path, dict(request.headers), body, time.time(),
                         reply.status, reply.delay)
            )  # fmt: skip
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, script: Script) -> None:
        with self._lock:
            self._scripts[path] = script

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 60.0
    ) -> list[Received]:
        wait_until(
            lambda: len(self.received(path)) >= count,
            timeout,
            lambda: f"{len(self.received(path))} of {count} requests to {path or 'any path'}",
        )
        return self.received(path)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def wait_until(
    predicate: Callable[[], bool], timeout: float, describe: Callable[[], str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {describe() if describe else ''}")
        time.sleep(0.05)


# --- pipeline ---------------------------------------------------------------------

ROLES = ("fanout", "deliver", "retry")
_OPS_URL = re.compile(r'serving /metrics, /healthz, /readyz on (http://[^\s"]+)')
ADMIN = "admin"
# The receivers listen on loopback, which the SSRF guard refuses unless opened.
LOOPBACK = "127.0.0.0/8,::1/128"


class Pipeline:
    """The three workers (and the admin service, when asked) as processes, plus
    producer/writer clients, for one prefix. Every process gets the same secret key and
    admin token; loopback is opened to the SSRF guard."""

    def __init__(self, bootstrap: str, prefix: str, logs: Path, **env: str) -> None:
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SYNCTEC_TOPIC_PREFIX": prefix,
            "SYNCTEC_RETRY_DELAYS": "0.3,0.6,0.9",
            "SYNCTEC_METADATA_REFRESH_MS": "300",
            "SYNCTEC_HTTP_TIMEOUT": "2",
            "SYNCTEC_LOG_LEVEL": "INFO",
            # Several workers of a role on one machine: each its own free metrics port.
            "SYNCTEC_METRICS_PORT": "0",
            "SYNCTEC_SECRET_KEY": Fernet.generate_key().decode(),
            "SYNCTEC_ALLOW_PRIVATE_NETWORKS": LOOPBACK,
            "SYNCTEC_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "SYNCTEC_ADMIN_PORT": "0",
        }
        self.env.update(env)
        self.settings = Settings.from_env(self.env)
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._starts: dict[str, int] = {}
        self._producer: EventProducer | None = None
        self._writer: SubscriptionWriter | None = None

    # workers

    def start(self, roles: Iterable[str] = ROLES, timeout: float = 60.0) -> Pipeline:
        for role in roles:
            self._spawn(role)
        for role in roles:
            self.wait_ready(role, timeout)
        return self

    def _spawn(self, name: str) -> None:
        """Start worker `name`: a role ("deliver"), or a role's extra replica ("deliver@2")."""
        n = self._starts[name] = self._starts.get(name, 0) + 1
        log = self.log_path(name, n)
        role, _, replica = name.partition("@")
        env = {**os.environ, **self.env}
        if replica:
            env["SYNCTEC_INSTANCE_ID"] = f"{role}-{replica}"
        with log.open("wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "synctec_webhooks.cli", role],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log_path(self, role: str, n: int | None = None) -> Path:
        return self.logs / f"{role}.{n or self._starts[role]}.log"

    def wait_ready(self, role: str, timeout: float = 60.0) -> None:
        proc, log = self.procs[role], self.log_path(role)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{role} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            return " consuming " in log.read_text()

        wait_until(ready, timeout, lambda: f"{role} not ready:\n{log.read_text()[-3000:]}")

    def ops_url(self, role: str) -> str:
        """http://host:port of the role's /metrics, /healthz and /readyz, from its log."""
        found = _OPS_URL.search(self.log_path(role).read_text())
        if found is None:
            raise AssertionError(f"{role} logged no ops URL:\n{self.log_path(role).read_text()}")
        return found.group(1)

    def admin_url(self) -> str:
        """http://127.0.0.1:PORT of the admin service (started with role "admin")."""
        found = re.search(r"API on (http://\S+)/api/v1", self.log_path(ADMIN).read_text())
        assert found, "the admin service has not logged its address"
        return found.group(1)

    @property
    def admin_token(self) -> str:
        return self.env["SYNCTEC_ADMIN_TOKEN"]

    def kill(self, role: str) -> None:
        proc = self.procs[role]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, role: str, timeout: float = 30.0) -> int:
        proc = self.procs[role]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def restart(self, role: str) -> None:
        self._spawn(role)
        self.wait_ready(role)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every worker still running; their exit codes (killed ones left out)."""
        codes: dict[str, int | None] = {}
        running = {name: proc for name, proc in self.procs.items() if proc.poll() is None}
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        for role, proc in running.items():
            try:
                codes[role] = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[role] = proc.wait(10)
        if self._producer is not None:
            self._producer.flush()
        return codes

    def stop_and_check(self) -> None:
        """Stop every worker, print their logs (pytest shows them for a failing test) and
        check each exited 0: a clean SIGTERM stop, in-flight work finished, is part of
        the contract."""
        codes = self.stop()
        print(self.all_logs())
        assert all(code == 0 for code in codes.values()), codes

    def all_logs(self) -> str:
        return "\n".join(
            f"==== {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.logs.glob("*.log"))
        )

    # clients

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = EventProducer(self.settings)
        return self._producer

    @property
    def writer(self) -> SubscriptionWriter:
        if self._writer is None:
            self._writer = SubscriptionWriter(self.settings)
        return self._writer

    def add_webhook(
        self, url: str, events: str = "*", account_id: str = DEFAULT_ACCOUNT
    ) -> Subscription:
        return self.writer.add(url, events, account_id=account_id)

    def emit(self, *events: dict[str, Any], account: str | None = None) -> list[str]:
        """Emit `events` of `account`; with none given, each of its own "account_id"
        or, without one, of the default account (the account every webhook added
        without one belongs to)."""
        if account is None:
            events = tuple(with_account(e) for e in events)
        ids = self.producer.emit_many(events, account)
        self.producer.flush()
        return ids


# --- events -----------------------------------------------------------------------
# The builders make what a webhook body holds (no account: it is not in the body);
# `with_account` makes the event a producer sends.


def with_account(event: dict[str, Any], account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
    """`event` of `account`, unless it names an account of its own."""
    return event if "account_id" in event else {**event, "account_id": account}


def product_synced(product_id: str = "1234567890", **extra: Any) -> dict[str, Any]:
    return {
        "event": "product.synced",
        "timestamp": "2025-01-29T14:30:00Z",
        "product": {"id": product_id, "title": "Merino Wool Sweater", "sku": "MWS-001"},
        "source_store": "main-store.myshopify.com",
        "destination_store": "eu-store.myshopify.com",
        "status": "success",
        **extra,
    }


def sync_failed(product_id: str = "1234567890") -> dict[str, Any]:
    return {
        **product_synced(product_id),
        "event": "sync.failed",
        "status": "failed",
        "error": {"code": "rate_limited", "message": "Shopify API rate limit exceeded"},
    }


def inventory_updated(product_id: str = "1234567890") -> dict[str, Any]:
    return {
        "event": "inventory.updated",
        "timestamp": "2025-01-29T14:31:00Z",
        "product": {"id": product_id, "title": "Merino Wool Sweater", "sku": "MWS-001"},
        "location_group": {"id": "lg_1", "name": "EU warehouses"},
        "available": 42,
        "source_store": "main-store.myshopify.com",
        "destination_store": "eu-store.myshopify.com",
    }


def collection_synced(collection_id: str = "c_1") -> dict[str, Any]:
    return {
        "event": "collection.synced",
        "timestamp": "2025-01-29T14:32:00Z",
        "collection": {"id": collection_id, "title": "Winter", "products_count": 12},
        "source_store": "main-store.myshopify.com",
        "destination_store": "eu-store.myshopify.com",
        "status": "success",
    }
