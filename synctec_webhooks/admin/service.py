"""The admin service: what the API does, behind the HTTP layer (admin/api.py).

Served by `AdminServer` (admin/server.py), the `admin` process role. It keeps its own view
of the subscriptions (the shared `SubscriptionTable`), of accounts and API keys
(`AccountTable`), of recent attempts (`AttemptLog`) and of the audit trail (`AuditLog`),
writes subscriptions through the same `SubscriptionWriter` as the CLI, and disables
webhooks that `HealthTracker` judges unhealthy. Every write waits for the broker's ack
and for the table to have applied it, so a GET right after a write sees it, and every
change is written to the audit trail, naming who made it.

Scope: every method takes the caller (`auth.Principal`). An account credential sees its
own account only; another account's webhook, key or dead letter is a 404, exactly as
one that does not exist (`scope`, `get`, `account`). Which routes only the operator may
call is the API's business (admin/api.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from synctec_webhooks import audit, portal_links, schemas, webhooks
from synctec_webhooks.account_table import AccountTable
from synctec_webhooks.accounts import DEFAULT_ACCOUNT, Account, ApiKey, new_api_key
from synctec_webhooks.admin.auth import Principal
from synctec_webhooks.admin.errors import ApiError, not_found
from synctec_webhooks.admin.sample_events import build_test_delivery, default_type
from synctec_webhooks.attempts.endpoint_health import HealthTracker
from synctec_webhooks.attempts.log import AttemptLog
from synctec_webhooks.audit import Actor
from synctec_webhooks.audit_log import AuditLog
from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.listing import Filters
from synctec_webhooks.deadletters.replay import DeadLetters, ReplayReport
from synctec_webhooks.errors import ConfigError, SecretKeyError
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked
from synctec_webhooks.matching import Subscription
from synctec_webhooks.producers.accounts import AccountWriter
from synctec_webhooks.producers.audit import AuditWriter
from synctec_webhooks.producers.subscriptions import SubscriptionWriter
from synctec_webhooks.serialization import Codec
from synctec_webhooks.subscriptions import SubscriptionTable
from synctec_webhooks.topics import Topics
from synctec_webhooks.webhooks import redact_url

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
        self.accounts = AccountTable(settings, codec, client_id="admin-accounts")
        self.audit_log = AuditLog(settings, codec)
        self.link_key = portal_links.signing_key(settings.portal_signing_key, self.token)
        self._writer: SubscriptionWriter | None = None
        self._dead_letters: DeadLetters | None = None
        self._producer: AsyncProducer | None = None
        self._account_writer: AccountWriter | None = None
        self._audit: AuditWriter | None = None
        self._lock = asyncio.Lock()  # one read-modify-write of a subscription at a time
        self._account_lock = asyncio.Lock()  # and of an account or key

    # --- lifecycle (driven by admin/server.py) ----------------------------------------

    async def start(self) -> None:
        """Open the writers, load the accounts and keys, replay the attempts and audit
        topics; the API may serve after this."""
        self._writer = await asyncio.to_thread(SubscriptionWriter, self.settings, self.codec)
        self._writer.box  # noqa: B018 - load the key now (none: SecretKeyError), not on a request
        self._dead_letters = await asyncio.to_thread(DeadLetters, self.settings, self.codec)
        self._producer = AsyncProducer(self.settings, "admin")
        self._account_writer = AccountWriter(self.settings, self.codec, self._producer)
        self._audit = AuditWriter(self.settings, self.codec, self._producer)
        await self.accounts.start()
        await self.audit_log.start()
        await self.attempts.start()
        release_free_memory()  # what reading the whole attempts topic left behind

    async def close(self) -> None:
        await self.attempts.stop()
        await self.audit_log.stop()
        await self.accounts.stop()
        if self._producer is not None:
            self._producer.close()

    @property
    def writer(self) -> SubscriptionWriter:
        assert self._writer is not None, "AdminService.start() first"
        return self._writer

    async def _record(
        self,
        who: Principal | Actor,
        account_id: str,
        action: str,
        target_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        assert self._audit is not None, "AdminService.start() first"
        actor = who.actor if isinstance(who, Principal) else who
        await self._audit.record(account_id, action, actor, target_id, detail)

    # --- scope ----------------------------------------------------------------------

    def scope(self, who: Principal, account_id: str | None) -> str | None:
        """The account a request is about: `account_id` as asked (None: every account,
        for the operator) or, for an account credential, its own; asking for another
        account is a 404, as for one that does not exist."""
        if who.operator:
            return account_id
        if account_id is not None and account_id != who.account_id:
            raise not_found(f"account {account_id}")
        return who.account_id

    def account(self, who: Principal, account_id: str) -> Account:
        account = self.accounts.account(account_id)
        if account is None or not who.sees(account_id):
            raise not_found(f"account {account_id}")
        return account

    # --- webhooks -------------------------------------------------------------------

    def all(self, who: Principal, account_id: str | None = None) -> list[Subscription]:
        found = self.table.index.all(self.scope(who, account_id))
        return sorted(found, key=lambda s: (s.created_at, s.id))

    def get(self, webhook_id: str, who: Principal | None = None) -> Subscription:
        """The webhook; a 404 when there is none or it is another account's."""
        sub = self.table.get(webhook_id)
        if sub is None or (who is not None and not who.sees(sub.account_id)):
            raise not_found(f"webhook {webhook_id}")
        return sub

    def _visible(self, who: Principal, webhook_id: str) -> bool:
        sub = self.table.get(webhook_id)
        return sub is not None and who.sees(sub.account_id)

    async def _saved(self, sub: Subscription) -> None:
        await asyncio.to_thread(self.writer.put, sub)
        await self.table.sync(time.time())

    async def create(
        self,
        who: Principal,
        url: str,
        events: list[str],
        description: str | None,
        account_id: str | None = None,
    ) -> Subscription:
        account_id = self.scope(who, account_id) or DEFAULT_ACCOUNT
        async with self._lock:
            await self.accounts.sync()
            account = self.account(who, account_id)
            limit = account.webhook_limit(self.settings.max_webhooks_per_account)
            count = self.table.index.count(account_id)
            if count >= limit:
                raise ApiError(
                    409,
                    "webhook_limit",
                    f"account {account_id} has {count} webhooks, its limit ({limit}): delete "
                    "one it no longer needs, or ask the operator to raise the account's "
                    "max_webhooks",
                )
            sub = await asyncio.to_thread(
                functools.partial(self.writer.add, url, events, description, account_id=account_id)
            )
            await self.table.sync(time.time())
        await self._record(who, account_id, "webhook.created", sub.id, redact_url(url, url))
        return sub

    async def patch(self, who: Principal, webhook_id: str, changes: dict[str, Any]) -> Subscription:
        async with self._lock:
            sub = self.get(webhook_id, who)
            new = await asyncio.to_thread(
                webhooks.patched, sub, changes, guard=self.writer.guard, now_ms=_now_ms()
            )
            await self._saved(new)
        fields = sorted(k for k in changes if k != "enabled")
        if fields:
            await self._record(who, sub.account_id, "webhook.updated", sub.id, ", ".join(fields))
        if "enabled" in changes:
            action = "webhook.enabled" if changes["enabled"] else "webhook.disabled"
            await self._record(who, sub.account_id, action, sub.id)
        return self.get(webhook_id)

    async def delete(self, who: Principal, webhook_id: str) -> None:
        async with self._lock:
            sub = self.get(webhook_id, who)
            await asyncio.to_thread(self.writer.remove, webhook_id, True)
            await self.table.sync(time.time())
        self.attempts.forget(webhook_id)
        self.health.forget(webhook_id)
        await self._record(who, sub.account_id, "webhook.deleted", webhook_id)

    async def rotate(self, who: Principal, webhook_id: str) -> Subscription:
        async with self._lock:
            sub = self.get(webhook_id, who)
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
        await self._record(who, sub.account_id, "webhook.secret_rotated", webhook_id, "rotated")
        return new

    async def send_test(
        self, who: Principal, webhook_id: str, event_type: str | None
    ) -> dict[str, Any]:
        sub = self.get(webhook_id, who)
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
        await self._record(
            who,
            sub.account_id,
            "webhook.test_sent",
            sub.id,
            f"{rec['event_type']} {rec['event_id']}",
        )
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
        await self._record(audit.SYSTEM, sub.account_id, "webhook.disabled", webhook_id, reason)

    # --- dead letters -----------------------------------------------------------------

    async def dead_letters(
        self, who: Principal, filters: dict[str, Any], limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page, newest first, and the next page's cursor. The topic is read through
        and only a page is kept (deadletters/listing.py): any number of dead letters.
        An account credential sees its own account's only."""
        assert self._dead_letters is not None
        scoped = {**filters, "account_id": self.scope(who, filters.get("account_id"))}
        views, next_cursor = await asyncio.to_thread(
            self._dead_letters.page, _filters(scoped), limit, cursor
        )
        release_free_memory()
        return [v.summary() for v in views], next_cursor

    async def replay(self, who: Principal, filters: dict[str, Any]) -> ReplayReport:
        """No filter (`{"all": true}`, checked by admin/requests.py) replays everything
        the credential may see. A webhook that does not exist in the table, caught up
        now, is not replayed to."""
        assert self._dead_letters is not None
        account_id = self.scope(who, filters.get("account_id"))
        scoped = {**filters, "account_id": account_id}
        await self.table.sync(time.time())
        try:
            report = await asyncio.to_thread(
                self._dead_letters.replay_report,
                _filters(scoped),
                everything=not filters,
                webhook_exists=lambda webhook_id: self.table.get(webhook_id) is not None,
            )
        finally:
            release_free_memory()
        detail = _replay_detail(filters, lambda wid: self._visible(who, wid))
        for account, count in sorted(report.by_account.items()) or [
            (account_id or DEFAULT_ACCOUNT, 0)
        ]:
            await self._record(who, account, "dead_letters.replayed", None, f"{count} {detail}")
        return report

    # --- accounts, keys, links (operator, except reading one's own account) -----------

    def account_list(self, limit: int, after: str | None) -> tuple[list[Account], str | None]:
        found = [a for a in self.accounts.accounts() if after is None or a.id > after]
        page = found[:limit]
        return page, page[-1].id if len(found) > limit else None

    def webhook_count(self, account_id: str) -> int:
        return self.table.index.count(account_id)

    async def create_account(
        self, who: Principal, account_id: str, name: str | None, max_webhooks: int | None
    ) -> Account:
        now = _now_ms()
        async with self._account_lock:
            await self.accounts.sync()
            if self.accounts.account(account_id) is not None:
                raise ApiError(409, "already_exists", f"account {account_id} exists already", "id")
            account = Account(account_id, name, now, now, max_webhooks)
            await self._put_account(account)
        detail = f"name={name!r}, max_webhooks={max_webhooks}"
        await self._record(who, account_id, "account.created", account_id, detail)
        return account

    async def update_account(
        self, who: Principal, account_id: str, changes: dict[str, Any]
    ) -> Account:
        async with self._account_lock:
            await self.accounts.sync()
            account = self.account(who, account_id)
            new = account.with_(**changes, updated_at=_now_ms())
            await self._put_account(new)
        detail = ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items()))
        await self._record(who, account_id, "account.updated", account_id, detail)
        return new

    async def _put_account(self, account: Account) -> None:
        assert self._account_writer is not None
        await self._account_writer.put_account(account)
        await self.accounts.sync()

    async def create_key(
        self, who: Principal, account_id: str, name: str | None
    ) -> tuple[ApiKey, str]:
        self.account(who, account_id)
        key, secret = new_api_key(account_id, name, _now_ms(), who.credential_id)
        assert self._account_writer is not None
        await self._account_writer.put_key(key)
        await self.accounts.sync()
        await self._record(who, account_id, "api_key.created", key.id, f"prefix {key.prefix}")
        return key, secret

    def keys(self, who: Principal, account_id: str) -> list[ApiKey]:
        self.account(who, account_id)
        return self.accounts.keys(account_id)

    async def revoke_key(self, who: Principal, account_id: str, key_id: str) -> None:
        self.account(who, account_id)
        async with self._account_lock:
            await self.accounts.sync()
            key = self.accounts.key(key_id)
            if key is None or key.account_id != account_id:
                raise not_found(f"API key {key_id}")
            if key.revoked:
                return  # revoked before: nothing changes
            assert self._account_writer is not None
            await self._account_writer.put_key(key.with_(revoked_at=_now_ms()))
            await self.accounts.sync()
        await self._record(who, account_id, "api_key.revoked", key_id, f"prefix {key.prefix}")

    async def issue_link(
        self, who: Principal, account_id: str, scope: str, ttl_s: int
    ) -> tuple[str, portal_links.PortalClaims]:
        self.account(who, account_id)
        token, claims = portal_links.issue(account_id, scope, ttl_s, self.link_key, _now_ms())
        detail = f"scope {scope}, expires {claims.expires_at}"
        await self._record(who, account_id, "portal_link.issued", claims.link_id, detail)
        return token, claims

    async def revoke_links(self, who: Principal, account_id: str) -> None:
        async with self._account_lock:
            await self.accounts.sync()
            account = self.account(who, account_id)
            # +1: a link issued in this very millisecond, before the revoke, goes too.
            now = _now_ms()
            await self._put_account(account.with_(links_not_before=now + 1, updated_at=now))
        await self._record(who, account_id, "portal_links.revoked", account_id)

    # --- audit ----------------------------------------------------------------------

    async def audit_entries(
        self, who: Principal, account_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        await self.audit_log.sync()
        return self.audit_log.recent(self.scope(who, account_id), limit)


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
        filters.get("account_id"),
    )


def _replay_detail(filters: dict[str, Any], visible: Callable[[str], bool]) -> str:
    """What a replay asked for, for the audit trail: never the id of a webhook the caller
    cannot see (its own account's trail must not name another account's webhook)."""
    shown = []
    for key, value in sorted(filters.items()):
        if key == "dead_letter_ids":
            shown.append(f"{len(value)} dead-letter ids")
        elif key == "webhook_id" and not visible(value):
            shown.append("webhook_id=(not found)")
        else:
            shown.append(f"{key}={value}")
    return f"replayed ({', '.join(shown) or 'all'})"


def _now_ms() -> int:
    return int(time.time() * 1000)
