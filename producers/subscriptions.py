"""Writes webhook subscriptions to the compacted subscriptions topic.

The topic is the source of truth: `add` writes a record keyed by the webhook id,
`remove` writes a tombstone, `list` reads the topic to its end. The per-endpoint
delivery topic is created when the webhook is added, so the delivery workers' pattern
subscription finds it before the first delivery record arrives. `reseal` writes every
webhook back with its secrets sealed under the first key of SYNCTEC_SECRET_KEY, the
middle step of a key rotation (docs/operations.md, "Rotating the sealing key").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaError, Message

from synctec_webhooks import schemas, webhooks
from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import InvalidSubscription, SecretKeyError, SerializationError
from synctec_webhooks.kafka import (
    TopicAdmin,
    core_topics,
    delivery_topic_spec,
    new_producer,
    position,
    read_to_end,
)
from synctec_webhooks.matching import Subscription
from synctec_webhooks.secrets_crypto import SecretBox, SigningSecret, sealing_box
from synctec_webhooks.serialization import Codec, make_codec
from synctec_webhooks.ssrf import Guard
from synctec_webhooks.subscriptions import SubscriptionTable, from_record, to_record
from synctec_webhooks.topics import Topics
from synctec_webhooks.webhooks import new_webhook_id, parse_event_types

__all__ = [
    "InvalidSubscription",
    "Resealed",
    "SubscriptionWriter",
    "new_webhook_id",
    "parse_event_types",
]

logger = logging.getLogger(__name__)

_REPAIR_ROUNDS = 3

# A webhook's records on the topic, oldest first: (offset, webhook, or None for a tombstone).
History = list[tuple[int, Subscription | None]]


@dataclass
class Resealed:
    """What `reseal` did, by webhook id."""

    resealed: list[str] = field(default_factory=list)  # now sealed under the first key
    current: list[str] = field(default_factory=list)  # already were: nothing written
    plain: list[str] = field(default_factory=list)  # had a clear secret (older record), now sealed
    unopened: dict[str, str] = field(default_factory=dict)  # no listed key opens it: why
    # Changed by someone else between our read and our write: their change written again.
    repaired: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def overwritten(
    history: History, read_at: int, ours: set[int]
) -> tuple[int, Subscription | None] | None:
    """The record someone else wrote for a webhook after we read it (at `read_at`) and
    before our latest write (offsets in `ours`), which our write therefore hid: it must be
    written again. None when there is none, or when theirs came after ours (theirs stands)."""
    others = [(offset, sub) for offset, sub in history if offset > read_at and offset not in ours]
    if not others or others[-1][0] > max(ours):
        return None
    return others[-1]


class SubscriptionWriter:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self._settings = settings
        self._codec = codec or make_codec(settings.schema_registry_url)
        self._topics = Topics(settings.topic_prefix)
        self._admin = TopicAdmin(settings)
        self._admin.ensure(core_topics(settings))
        self._producer = new_producer(settings, "subscriptions-writer")
        self.guard = Guard.from_cidrs(settings.allow_private_networks)
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        """The key that seals secrets; SecretKeyError when there is none (only `run`
        makes a key file, see secrets_crypto)."""
        if self._box is None:
            self._box = sealing_box(self._settings)
        return self._box

    def add(
        self,
        url: str,
        events: str | Sequence[str],
        description: str | None = None,
        secret: str | None = None,
        max_in_flight: int | None = None,
        rate_limit: float | None = None,
        account_id: str = DEFAULT_ACCOUNT,
    ) -> Subscription:
        """Validate, then write. The returned subscription's `secret` is the clear secret,
        to be shown once; the topic only gets it sealed. The account's webhook limit is
        the caller's check (it needs the account table)."""
        sub = webhooks.create(
            url,
            events,
            description,
            guard=self.guard,
            box=lambda: self.box,
            now_ms=int(time.time() * 1000),
            secret=secret,
            account_id=account_id,
        )
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidSubscription("max_in_flight", f"must be at least 1, got {max_in_flight}")
        if rate_limit is not None and not (math.isfinite(rate_limit) and rate_limit > 0):
            raise InvalidSubscription("rate_limit", f"must be a number > 0, got {rate_limit}")
        sub = replace(sub, max_in_flight=max_in_flight, rate_limit=rate_limit)
        self._admin.ensure([delivery_topic_spec(self._settings, sub.id)])
        self.put(sub)
        return sub

    def ensure_delivery_topic(self, webhook_id: str) -> None:
        self._admin.ensure([delivery_topic_spec(self._settings, webhook_id)])

    def put(self, sub: Subscription) -> None:
        self._write(sub.id, self._encode(sub))

    def _encode(self, sub: Subscription) -> bytes:
        return self._codec.encode(self._topics.subscriptions, schemas.SUBSCRIPTION, to_record(sub))

    def remove(self, sub_id: str, known: bool = False) -> bool:
        """Write a tombstone; False when no such webhook exists (`known`: the caller
        checked already)."""
        if not known and not any(s.id == sub_id for s in self.list()):
            return False
        self._write(sub_id, None)
        return True

    def list(self) -> list[Subscription]:
        async def read() -> list[Subscription]:
            table = SubscriptionTable(self._settings, self._codec, client_id="subscriptions-list")
            await table.start()
            await table.stop()
            return sorted(table.index.all(), key=lambda s: (s.created_at, s.id))

        return asyncio.run(read())

    # --- key rotation -----------------------------------------------------------------

    def reseal(self) -> Resealed:
        """Write every webhook whose secrets are not sealed under the first key back, so
        sealed under it; those no listed key opens are left as they are and reported.
        Idempotent. Safe beside running workers when they hold the whole key list. A change
        another writer makes between this read and this write (the admin service, another
        CLI) is found by reading the topic again afterwards and written again, resealed."""
        box = self.box
        report = Resealed()
        latest = {k: h[-1] for k, h in self._history().items() if h[-1][1] is not None}
        writes: dict[str, bytes | None] = {}
        for webhook_id, (_, sub) in sorted(latest.items()):
            assert sub is not None
            new = self._resealed(box, sub, report)
            if new is not None:
                writes[webhook_id] = self._encode(new)
        read_at = {k: latest[k][0] for k in writes}
        ours = {k: {offset} for k, offset in self._write_many(writes).items()}
        for _ in range(_REPAIR_ROUNDS):
            if not ours:
                break
            history = self._history()
            again: dict[str, bytes | None] = {}
            for webhook_id, offsets in ours.items():
                hidden = overwritten(history.get(webhook_id, []), read_at[webhook_id], offsets)
                if hidden is None:
                    continue
                read_at[webhook_id], sub = hidden
                logger.warning(
                    "webhook %s changed while resealing: writing that change again", webhook_id
                )
                again[webhook_id] = (
                    None if sub is None else self._encode(self._resealed(box, sub) or sub)
                )
                report.repaired.append(webhook_id)
            written = self._write_many(again)
            ours = {k: ours[k] | {offset} for k, offset in written.items()}
        return report

    def _resealed(
        self, box: SecretBox, sub: Subscription, report: Resealed | None = None
    ) -> Subscription | None:
        """`sub` sealed under the first key, or None when it already is or cannot be."""
        report = report or Resealed()
        if not sub.sealed_secrets:
            report.plain.append(sub.id)
            return replace(sub, sealed_secrets=box.seal(sub.id, [SigningSecret(sub.secret)]))
        try:
            token = box.resealed(sub.id, sub.sealed_secrets)
        except SecretKeyError as exc:
            report.unopened[sub.id] = str(exc)
            return None
        if token is None:
            report.current.append(sub.id)
            return None
        report.resealed.append(sub.id)
        return replace(sub, sealed_secrets=token)

    def _history(self) -> dict[str, History]:
        """Every record still on the topic, by webhook id, oldest first. Records that are
        not a usable webhook are left out, as the subscription table skips them."""
        topic = self._topics.subscriptions
        found: dict[str, History] = defaultdict(list)
        for msg in read_to_end(self._settings, topic, "subscriptions-reseal", self._admin):
            key, value = msg.key(), msg.value()
            if key is None:
                continue
            sub = None
            if value is not None:
                try:
                    sub = from_record(self._codec.decode(topic, value)[1])
                except (SerializationError, KeyError, TypeError, ValueError):
                    continue
            found[key.decode()].append((position(msg)[2], sub))
        return found

    # --- producing ------------------------------------------------------------------

    def _write(self, key: str, value: bytes | None) -> None:
        self._write_many({key: value})

    def _write_many(self, values: Mapping[str, bytes | None]) -> dict[str, int]:
        """Produce every (key, value), wait for the broker's acks; the offset of each."""
        errors: list[KafkaError] = []
        offsets: dict[str, int] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(err)
            else:
                key = msg.key()
                assert key is not None  # every write here has one
                offsets[key.decode()] = position(msg)[2]

        topic = self._topics.subscriptions
        for key, value in values.items():
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            except BufferError:  # the local queue is full: let it drain, then go on
                self._producer.flush(30)
                self._producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        if self._producer.flush(30):
            raise RuntimeError("the broker did not acknowledge the subscription write within 30 s")
        if errors:
            raise RuntimeError(f"subscription write failed: {errors[0]}")
        return offsets
