"""The delivery side of accounts (issue 12), on the dispatcher's fakes: every POST says
whose it is in `X-StoreLink-Account` (not signed, not in the body), and its attempt
record, dead letter and per-account metrics are that delivery's account's."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from prometheus_client import CollectorRegistry

from synctec_webhooks import schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.dispatcher import Dispatcher
from synctec_webhooks.consumers.delivery.outcome import Outcome, OutcomeKind
from synctec_webhooks.deadletters import Source
from synctec_webhooks.matching import Subscription
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.serialization import SingleObjectCodec
from synctec_webhooks.signing import signature_headers, verify_storelink
from tests.unit.test_dispatcher_secrets import (
    KEY,
    NOW_MS,
    FakeProducer,
    FakeTable,
    _record,
    _webhook,
)

SETTINGS = Settings(secret_keys=(KEY,))
CODEC = SingleObjectCodec()


class AnsweringSender:
    """Records every POST; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        self.posts.append((url, body, headers))
        kind = OutcomeKind.SUCCESS if self.status < 300 else OutcomeKind.HTTP_ERROR
        return Outcome(kind, self.status, None if self.status < 300 else "HTTP 410", None, 1.0)


def _dispatcher(
    *subs: Subscription, status: int = 200, per_account: tuple[str, ...] = ()
) -> tuple[Dispatcher, FakeProducer, AnsweringSender]:
    producer, sender = FakeProducer(), AnsweringSender(status)
    metrics = Metrics.create(CollectorRegistry(), per_account=per_account, per_account_cap=5)
    dispatcher = Dispatcher(
        SETTINGS,
        CODEC,
        cast(Any, FakeTable(*subs)),
        cast(Any, producer),
        cast(Any, sender),
        clock=lambda: NOW_MS / 1000,
        metrics=metrics,
    )
    return dispatcher, producer, sender


def _run(dispatcher: Dispatcher, record: dict[str, Any], offset: int) -> str:
    source = Source(f"synctec.deliveries.{record['webhook_id']}", 0, offset)
    return asyncio.run(dispatcher.handle(record, source, asyncio.Event())).result


def _decoded(producer: FakeProducer, topic: str) -> list[dict[str, Any]]:
    return [CODEC.decode(t, v)[1] for t, v in producer.records if t == topic and v is not None]


def test_every_post_names_its_account_beside_the_signed_headers() -> None:
    eu, us = _webhook(KEY, "eu", account="acct_eu"), _webhook(KEY, "us", account="acct_us")
    dispatcher, _, sender = _dispatcher(eu, us)
    records = [_record(eu, 1), _record(us, 2), _record(eu, 3)]
    assert [_run(dispatcher, r, n) for n, r in enumerate(records)] == ["delivered"] * 3

    assert [h["X-StoreLink-Account"] for _, _, h in sender.posts] == [
        "acct_eu", "acct_us", "acct_eu",
    ]  # fmt: skip
    for (url, body, headers), record, sub in zip(sender.posts, records, [eu, us, eu], strict=True):
        assert url == sub.url
        # The header is the only one added to what signing produces: nothing else changes.
        signed = signature_headers(
            secrets=[sub.secret],
            event_type=record["event_type"],
            event_id=record["event_id"],
            delivery_id=record["delivery_id"],
            attempt=record["attempt"],
            timestamp=NOW_MS // 1000,
            body=body,
        )
        assert headers == {**signed, "X-StoreLink-Account": record["account_id"]}
        assert verify_storelink(sub.secret, body, headers["X-StoreLink-Signature"])
        # The body is the delivery's payload, byte for byte: no account in it.
        assert body == record["payload"].encode()


def test_the_header_is_the_delivery_records_account() -> None:
    # A record written before accounts decodes as the default account's.
    old = _webhook(KEY, "old", account="default")
    dispatcher, _, sender = _dispatcher(old)
    assert _run(dispatcher, _record(old, 1), 1) == "delivered"
    [(_, _, headers)] = sender.posts
    assert headers["X-StoreLink-Account"] == "default"


def test_attempt_records_and_dead_letters_carry_the_account() -> None:
    eu = _webhook(KEY, "eu", account="acct_eu")
    dispatcher, producer, _ = _dispatcher(eu, status=410)  # 410: dead-lettered at once
    assert _run(dispatcher, _record(eu, 1), 1) == "webhook_disabled"

    [attempt] = _decoded(producer, "synctec.attempts")
    assert (attempt["webhook_id"], attempt["account_id"]) == (eu.id, "acct_eu")
    assert list(attempt) == [
        f["name"] for f in schemas.load().parsed(schemas.DELIVERY_ATTEMPT)["fields"]
    ]
    [letter] = _decoded(producer, "synctec.deadletters")
    assert letter["account_id"] == letter["delivery"]["account_id"] == "acct_eu"


def test_a_removed_webhooks_dead_letter_keeps_the_records_account() -> None:
    gone = _webhook(KEY, "gone", account="acct_us")
    dispatcher, producer, sender = _dispatcher()  # the table no longer has it
    assert _run(dispatcher, _record(gone, 1), 1) == "webhook_not_found"
    assert sender.posts == []
    [letter] = _decoded(producer, "synctec.deadletters")
    assert letter["account_id"] == "acct_us"


def test_per_account_metrics_only_for_accounts_opted_in() -> None:
    eu, us = _webhook(KEY, "eu", account="acct_eu"), _webhook(KEY, "us", account="acct_us")
    dispatcher, _, _ = _dispatcher(eu, us, per_account=("acct_eu",))
    for n, sub in enumerate([eu, us, us, eu, eu]):
        _run(dispatcher, _record(sub, n), n)

    def count(account: str) -> float | None:
        return dispatcher.metrics.registry.get_sample_value(
            "synctec_account_deliveries_total", {"account": account, "outcome": "2xx"}
        )

    assert (count("acct_eu"), count("_other"), count("acct_us")) == (3, 2, None)
