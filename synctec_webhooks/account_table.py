"""The account table: the accounts and API-keys topics, followed into memory.

Like the subscription table, every admin replica follows both compacted topics from
their beginning without a consumer group (`kafka.TopicFollower`), so a key created or
revoked, or "expire all links", on one replica holds on every other within the
followers' poll interval (a fraction of a second while the broker is up). `sync()`
waits until everything written before it was called is applied: the replica that made
a change calls it before answering, so the change holds there when the request returns.

The default account always exists: without a record it is synthesized (no name, the
deployment's webhook limit, every link accepted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import Message

from synctec_webhooks.accounts import DEFAULT_ACCOUNT, Account, ApiKey
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import InvalidAccount, SerializationError
from synctec_webhooks.kafka import CatchUps, TopicAdmin, TopicFollower, core_topics
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

__all__ = ["AccountTable"]

logger = logging.getLogger(__name__)

_DEFAULT = Account(DEFAULT_ACCOUNT)


class AccountTable:
    def __init__(self, settings: Settings, codec: Codec, client_id: str = "accounts") -> None:
        self._settings = settings
        self._codec = codec
        topics = Topics(settings.topic_prefix)
        self._accounts: dict[str, Account] = {}
        self._keys: dict[str, ApiKey] = {}  # by key id
        self._by_hash: dict[str, ApiKey] = {}
        self._account_follower = TopicFollower(
            settings,
            topics.accounts,
            client_id,
            self._batch(topics.accounts, Account, self._apply_account),
        )
        self._key_follower = TopicFollower(
            settings,
            topics.api_keys,
            f"{client_id}-keys",
            self._batch(topics.api_keys, ApiKey, self._apply_key),
        )
        self._current = CatchUps(self._catch_up)

    async def start(self) -> None:
        """Create the topics if needed, load both to their ends, then follow them."""
        admin = TopicAdmin(self._settings)
        await asyncio.to_thread(admin.ensure, core_topics(self._settings))
        asked_at = time.time()
        await self._account_follower.start(admin)
        await self._key_follower.start(admin)
        self._current.loaded(asked_at)
        logger.info(
            "account table loaded: %d accounts, %d API keys", len(self._accounts), len(self._keys)
        )

    def _batch(
        self, topic: str, kind: type[Account] | type[ApiKey], apply: Callable[[str, Any], None]
    ) -> Callable[[list[Message]], Awaitable[None]]:
        async def on_batch(msgs: list[Message]) -> None:
            for msg in msgs:
                key = msg.key()
                if key is None:
                    continue
                value = msg.value()
                if value is None:
                    apply(key.decode(), None)
                    continue
                try:
                    _, rec = self._codec.decode(topic, value)
                    apply(key.decode(), kind.from_record(rec))
                except (SerializationError, InvalidAccount, KeyError, TypeError) as exc:
                    # A bad record must not stop the table (nor open a door): skip it.
                    logger.error("skipping %s record %r: %s", kind.__name__, key[:80], exc)

        return on_batch

    def _apply_account(self, key: str, account: Account | None) -> None:
        if account is None:
            self._accounts.pop(key, None)
        else:
            self._accounts[account.id] = account

    def _apply_key(self, key: str, api_key: ApiKey | None) -> None:
        old = self._keys.pop(key, None)
        if old is not None:
            self._by_hash.pop(old.key_hash, None)
        if api_key is not None:
            self._keys[api_key.id] = api_key
            self._by_hash[api_key.key_hash] = api_key

    async def sync(self, not_before: float | None = None) -> None:
        """Return once every record written to both topics before `not_before` (now,
        by default) is applied."""
        await self._current.wait(time.time() if not_before is None else not_before)

    async def _catch_up(self) -> None:
        await asyncio.gather(self._account_follower.catch_up(), self._key_follower.catch_up())

    # --- lookups ---------------------------------------------------------------------

    def account(self, account_id: str) -> Account | None:
        """The account, or None; the default account always exists."""
        found = self._accounts.get(account_id)
        if found is None and account_id == DEFAULT_ACCOUNT:
            return _DEFAULT
        return found

    def accounts(self) -> list[Account]:
        """Every account, the default one included, by id."""
        found = dict(self._accounts)
        found.setdefault(DEFAULT_ACCOUNT, _DEFAULT)
        return [found[k] for k in sorted(found)]

    def key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._by_hash.get(key_hash)

    def key(self, key_id: str) -> ApiKey | None:
        return self._keys.get(key_id)

    def keys(self, account_id: str) -> list[ApiKey]:
        """The account's keys, revoked ones included, oldest first."""
        found = [k for k in self._keys.values() if k.account_id == account_id]
        return sorted(found, key=lambda k: (k.created_at, k.id))

    async def stop(self) -> None:
        await self._key_follower.stop()
        await self._account_follower.stop()
