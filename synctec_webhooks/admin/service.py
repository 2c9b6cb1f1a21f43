"""The admin service: what the API does, behind the HTTP layer (admin/api.py).

Served by `AdminServer` (admin/server.py), the `admin` process role. It keeps its own view
of the subscriptions (the shared `SubscriptionTable`) and of recent attempts
(`AttemptLog`), writes subscriptions through the same `SubscriptionWriter` as the CLI,
and disables webhooks that `HealthTracker` judges unhealthy. Every write waits for the
broker's ack and for the table to have applied it, so a GET right after a write sees it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import time
from datetime import UTC, datetime
from typing import Any

from synctec_webhooks import schemas, webhooks
from synctec_webhooks.admin.errors import ApiError, not_found
from synctec_webhooks.admin.sample_events import build_test_delivery, default_type
from synctec_webhooks.attempts.endpoint_health import HealthTracker
from synctec_webhooks.attempts.log import AttemptLog
from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.listing import Filters
from synctec_webhooks.deadletters.replay import DeadLetters, ReplayReport
from synctec_webhooks.errors import ConfigError, SecretKeyError
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked
from synctec_webhooks.matching import Subscription
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import Codec
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16


def check_token(token: str | None) -> str:
    if not token:
        raise ConfigError(
            "SYNCTEC_ADMIN_TOKEN is not set: the admin API needs a bearer token; set it to a "
            "long random string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"SYNCTEC_ADMIN_TOKEN: use at least {MIN_TOKEN_LENGTH} characters")
    return token


class AdminService:
    def __init__(self, settings: Settings, codec: Codec, table: SubscriptionTable) -> None:
        self.settings = settings
        self.token = check_token(settings.admin_token)
        self.codec = codec
        self.table = table
        self.topics = Topics(settings.topic_prefix)
        self.health = HealthTracker(settings.disable_after_failures)
        self.attempts = AttemptLog(settings, codec, self._on_attempt)
        self._writer: SubscriptionWriter | None = None
        self._dead_letters: DeadLetters | None = None
        self._producer: AsyncProducer | None = None
        self._lock = asyncio.Lock()  # one read-modify-write of a subscription at a time

    # --- lifecycle (driven by admin/server.py) ----------------------------------------

    async def start(self) -> None:
        """Open the writers and replay the attempts topic; the API may serve after this."""
        self._writer = await asyncio.to_thread(SubscriptionWriter, self.settings, self.codec)
        self._writer.box  # noqa: B018 - load the key now (none: SecretKeyError), not on a request
        self._dead_letters = await asyncio.to_thread(DeadLetters, self.settings, self.codec)
        self._producer = AsyncProducer(self.settings, "admin")
        await self.attempts.start()
        release_free_memory()  # what reading the whole attempts topic left behind

    async def close(self) -> None:
        await self.attempts.stop()
        if self._producer is not None:
            self._producer.close()

    @property
    def writer(self) -> SubscriptionWriter:
        assert self._writer is not None, "AdminService.start() first"
        return self._writer

    # --- webhooks -------------------------------------------------------------------

    def all(self) -> list[Subscription]:
        return sorted(self.table.index.all(), key=lambda s: (s.created_at, s.id))

    def get(self, webhook_id: str) -> Subscription:
        sub = self.table.get(webhook_id)
        if sub is None:
            raise not_found(f"webhook {webhook_id}")
        return sub

    async def _saved(self, sub: Subscription) -> None:
        await asyncio.to_thread(self.writer.put, sub)
        await self.table.sync(time.time())

    async def create(self, url: str, events: list[str], description: str | None) -> Subscription:
        sub = await asyncio.to_thread(self.writer.add, url, events, description)
        await self.table.sync(time.time())
        return sub

    async def patch(self, webhook_id: str, changes: dict[str, Any]) -> Subscription:
        async with self._lock:
            sub = self.get(webhook_id)
            new = await asyncio.to_thread(
                webhooks.patched, sub, changes, guard=self.writer.guard, now_ms=_now_ms()
            )
            await self._saved(new)
        return self.get(webhook_id)

    async def delete(self, webhook_id: str) -> None:
        async with self._lock:
            self.get(webhook_id)
            await asyncio.to_thread(self.writer.remove, webhook_id, True)
            await self.table.sync(time.time())
        self.attempts.forget(webhook_id)
        self.health.forget(webhook_id)

    async def rotate(self, webhook_id: str) -> Subscription:
        async with self._lock:
            sub = self.get(webhook_id)
            grace_ms = int(self.settings.rotation_grace * 1000)
            try:
                new = webhooks.rotated(
                    sub, box=self.writer.box, now_ms=_now_ms(), grace_ms=grace_ms
                )
            except SecretKeyError:
                # The old secret must keep signing through the grace period, so without
                # it there is no rotation: say what fixes it rather than a 500.
                raise ApiError(
                    409,
                    "secret_unavailable",
                    f"the current secret of webhook {webhook_id} cannot be opened with this "
                    "service's SYNCTEC_SECRET_KEY: give it the key the webhook was sealed "
                    "with (then `synctec-webhooks webhooks reseal`), or remove the webhook "
                    "and add it again",
                ) from None
            await self._saved(new)
        return new

    async def send_test(self, webhook_id: str, event_type: str | None) -> dict[str, Any]:
        sub = self.get(webhook_id)
        if not sub.enabled:
            raise ApiError(
                409,
                "webhook_disabled",
                f"webhook {webhook_id} is disabled; enable it first "
                '(PATCH {"enabled": true}), then send a test',
            )
        planned = build_test_delivery(sub, event_type or default_type(sub), datetime.now(UTC))
        topic = self.topics.delivery(sub.id)
        await asyncio.to_thread(self.writer.ensure_delivery_topic, sub.id)
        value = self.codec.encode(topic, schemas.DELIVERY, planned.record)
        assert self._producer is not None
        await produce_until_acked(self._producer, topic, value, planned.key)
        rec = planned.record
        return {
            "webhook_id": sub.id,
            "event_id": rec["event_id"],
            "event_type": rec["event_type"],
            "delivery_id": rec["delivery_id"],
        }

    # --- health ---------------------------------------------------------------------

    async def _on_attempt(self, record: dict[str, Any]) -> None:
        webhook_id = record["webhook_id"]
        reason = self.health.observe(record, self.table.get(webhook_id))
        if reason is None:
            return
        async with self._lock:
            sub = self.table.get(webhook_id)
            if sub is None or not sub.enabled:
                return
            logger.warning("disabling webhook %s: %s", webhook_id, reason)
            await self._saved(webhooks.disabled(sub, reason, _now_ms()))

    # --- dead letters -----------------------------------------------------------------

    async def dead_letters(
        self, filters: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page, newest first, and the next page's cursor. The topic is read through
        and only a page is kept (deadletters/listing.py): any number of dead letters."""
        assert self._dead_letters is not None
        views, next_cursor = await asyncio.to_thread(
            self._dead_letters.page, _filters(filters), limit, cursor
        )
        release_free_memory()
        return [v.summary() for v in views], next_cursor

    async def replay(self, filters: dict[str, Any]) -> ReplayReport:
        """No filter (`{"all": true}`, checked by admin/requests.py) replays everything.
        A webhook that does not exist in the table, caught up now, is not replayed to."""
        assert self._dead_letters is not None
        await self.table.sync(time.time())
        try:
            return await asyncio.to_thread(
                self._dead_letters.replay_report,
                _filters(filters),
                everything=not filters,
                webhook_exists=lambda webhook_id: self.table.get(webhook_id) is not None,
            )
        finally:
            release_free_memory()


def release_free_memory() -> None:
    """Hand the memory malloc keeps free back to the system (glibc's `malloc_trim`).

    Reading a whole topic churns through buffers and records that are freed at once,
    but glibc keeps the freed memory (in every thread's arena) for later: the admin
    service's RSS stayed about 60 MB above what it uses after reading a million
    attempts (docs/benchmarks.md). Nothing to do elsewhere than glibc.
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _filters(filters: dict[str, Any]) -> Filters:
    ids = filters.get("dead_letter_ids")
    return Filters(
        filters.get("webhook_id"),
        filters.get("event_id"),
        filters.get("event_type"),
        frozenset(ids) if ids is not None else None,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
