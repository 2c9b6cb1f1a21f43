"""A webhook whose secret this worker cannot open: dead-lettered on its own, without a POST
and without stopping the worker, while the other webhooks are delivered (issue 11).

The dispatcher runs here on fakes of the table, the producer and the sender: no broker.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.fernet import Fernet

from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.dispatcher import Dispatcher, Handled
from synctec_webhooks.consumers.delivery.outcome import Outcome, OutcomeKind
from synctec_webhooks.deadletters import Source
from synctec_webhooks.matching import Subscription
from synctec_webhooks.secrets_crypto import SecretBox
from synctec_webhooks.serialization import SingleObjectCodec
from synctec_webhooks.ssrf import Guard
from synctec_webhooks.webhooks import create

NOW_MS = 1_738_161_000_000
KEY = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()
REASON = "secret_unavailable"


class FakeTable:
    def __init__(self, *subs: Subscription) -> None:
        self.subs = {s.id: s for s in subs}

    async def lookup(self, sub_id: str) -> Subscription | None:
        return self.subs.get(sub_id)

    async def sync(self, not_before: float) -> None:
        return None

    def get(self, sub_id: str) -> Subscription | None:
        return self.subs.get(sub_id)


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    async def produce(
        self, topic: str, value: bytes | None, key: Any = None, headers: Any = None
    ) -> None:
        self.records.append((topic, value))

    def produce_nowait(self, topic: str, value: bytes | None, key: Any = None) -> None:
        self.records.append((topic, value))


class FakeSender:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        self.posts.append((url, headers))
        return Outcome(OutcomeKind.SUCCESS, 200, None, None, 1.0)


def _webhook(key: str, path: str, account: str = "acct_eu") -> Subscription:
    return create(
        f"https://example.com/{path}", ["*"], None, guard=Guard(), box=SecretBox([key]), now_ms=0,
        account_id=account,
    )  # fmt: skip


def _record(sub: Subscription, n: int) -> dict[str, Any]:
    """A delivery record as the fan-out plans it: of its webhook's account."""
    return {
        "delivery_id": f"msg_{n:032x}",
        "webhook_id": sub.id,
        "account_id": sub.account_id,
        "event_id": f"evt_{n}",
        "event_type": "product.synced",
        "partition_key": f"{sub.account_id}/1234567890",
        "payload": '{"id": "evt_1"}',
        "event_timestamp": "2025-01-29T14:30:00Z",
        "created_at": NOW_MS,
        "attempt": 1,
        "not_before": NOW_MS,
        "history": [],
        "replays": 0,
    }


def _dispatcher(
    settings: Settings, *subs: Subscription
) -> tuple[Dispatcher, FakeProducer, FakeSender]:
    producer, sender = FakeProducer(), FakeSender()
    dispatcher = Dispatcher(
        settings,
        SingleObjectCodec(),
        cast(Any, FakeTable(*subs)),
        cast(Any, producer),
        cast(Any, sender),
        clock=lambda: NOW_MS / 1000,
    )
    return dispatcher, producer, sender


def _handle(dispatcher: Dispatcher, record: dict[str, Any], offset: int) -> Handled:
    source = Source(f"t.deliveries.{record['webhook_id']}", 0, offset)
    return asyncio.run(dispatcher.handle(record, source, asyncio.Event()))


def _dead_letters(settings: Settings, producer: FakeProducer) -> list[dict[str, Any]]:
    topic = f"{settings.topic_prefix}.deadletters"
    codec = SingleObjectCodec()
    return [codec.decode(t, v)[1] for t, v in producer.records if t == topic and v is not None]


def test_a_webhook_sealed_with_another_key_is_dead_lettered_and_the_others_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(secret_keys=(KEY,))
    healthy, stray = _webhook(KEY, "healthy"), _webhook(OTHER_KEY, "stray")
    dispatcher, producer, sender = _dispatcher(settings, healthy, stray)
    caplog.set_level(logging.INFO)
    results = [
        _handle(dispatcher, _record(sub, n), n)
        for n, sub in enumerate([stray, healthy, stray, healthy, stray])
    ]
    assert [r.result for r in results] == [REASON, "delivered", REASON, "delivered", REASON]
    assert [url for url, _ in sender.posts] == [healthy.url, healthy.url]  # never the stray
    dls = _dead_letters(settings, producer)
    assert [(d["reason"], d["webhook_id"]) for d in dls] == [(REASON, stray.id)] * 3
    assert "SYNCTEC_SECRET_KEY" in dls[0]["detail"] and "replay" in dls[0]["detail"]
    assert dls[0]["delivery"]["event_id"] == "evt_0"  # the record itself, to replay
    assert {d["account_id"] for d in dls} == {stray.account_id}  # listed to its account
    # One error line for the webhook, not one per record; never a secret in it.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and stray.id in errors[0].getMessage()
    assert stray.secret not in caplog.text
    counted = dispatcher.metrics.registry.get_sample_value(
        "synctec_dead_letters_total", {"reason": REASON, "event_type": "product.synced"}
    )
    assert counted == 3


def test_with_the_old_key_listed_the_same_webhook_is_delivered() -> None:
    stray = _webhook(OTHER_KEY, "stray")
    dispatcher, _, sender = _dispatcher(Settings(secret_keys=(KEY, OTHER_KEY)), stray)
    assert _handle(dispatcher, _record(stray, 1), 1).result == "delivered"
    assert len(sender.posts) == 1


def test_no_key_at_all_dead_letters_sealed_webhooks_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path / "state"))  # no key, no key file
    sealed = _webhook(KEY, "sealed")
    dispatcher, producer, sender = _dispatcher(settings, sealed)
    assert _handle(dispatcher, _record(sealed, 1), 1).result == REASON
    assert sender.posts == []
    [dl] = _dead_letters(settings, producer)
    assert "SYNCTEC_SECRET_KEY is not set" in dl["detail"]
    assert not (tmp_path / "state").exists()  # a worker never makes a key
