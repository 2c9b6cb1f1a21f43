"""Accounts through the real pipeline (issue 12), as a property: random accounts with
random webhooks (some "*", some per type, some sharing one URL with another account's),
random events of random accounts, and every POST counted.

For every (event, webhook of the event's account that wants its type) exactly the
expected POSTs arrive (one, or every attempt then a dead letter for an endpoint that
always fails), each naming the event's account in `X-StoreLink-Account`, signed with
that webhook's secret, with no account in the body; nothing arrives for any other pair.
Dead letters, attempt records and Kafka keys are the event's account's too.

The random draw is seeded (ACCOUNTS_TEST_SEED overrides it), so a failure reproduces.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synctec_webhooks.deliveries import delivery_id
from synctec_webhooks.kafka.follower import read_to_end
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.signing import verify_storelink
from synctec_webhooks.topics import Topics
from tests.integration.harness import (
    Pipeline,
    Received,
    Receiver,
    always,
    collection_synced,
    inventory_updated,
    product_synced,
    sync_failed,
    wait_until,
)

pytestmark = pytest.mark.broker

SEED = int(os.environ.get("ACCOUNTS_TEST_SEED", "20261201"))
ACCOUNTS = ("default", "acct_eu", "acct_us", "shop.fr", "m-42")
QUIET = "acct_quiet"  # emits events, has no webhooks: nobody gets them
EVENTS = 120
ATTEMPTS = 4  # the pipeline's SYNCTEC_RETRY_DELAYS has three tiers
BUILDERS = {
    "product.synced": product_synced,
    "sync.failed": sync_failed,
    "inventory.updated": inventory_updated,
    "collection.synced": collection_synced,
}


@dataclass(frozen=True)
class Hook:
    sub: Subscription
    path: str
    fails: bool

    @property
    def account(self) -> str:
        return self.sub.account_id


@dataclass(frozen=True)
class Emitted:
    account: str
    event_type: str
    entity: str  # the product or collection id: the second half of the Kafka key


def _draw_webhooks(rng: random.Random) -> list[tuple[str, str, str]]:
    """(account, events, path) of every webhook: a random draw plus the hard cases."""
    drawn = []
    for account in ACCOUNTS:
        for n in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                events = "*"
            else:
                events = ",".join(rng.sample(sorted(BUILDERS), rng.randint(1, 2)))
            shared = rng.random() < 0.3
            path = f"/shared/{rng.randrange(3)}" if shared else f"/{account}/{n}"
            drawn.append((account, events, path))
    # Two accounts' "*" webhooks at one URL; two accounts' failing ones at another.
    drawn += [
        ("acct_eu", "*", "/shared/star"),
        ("acct_us", "*", "/shared/star"),
        ("acct_eu", "sync.failed,product.synced", "/shared/failing"),
        ("m-42", "sync.failed", "/shared/failing"),
    ]
    return drawn


def _draw_events(rng: random.Random) -> list[tuple[dict[str, Any], Emitted]]:
    out = []
    for _ in range(EVENTS):
        account = rng.choice([*ACCOUNTS, QUIET])
        event_type = rng.choice(sorted(BUILDERS))
        # Few entity ids, so that two accounts' events often share one.
        entity = str(rng.randrange(4))
        body = BUILDERS[event_type](entity)
        out.append(({**body, "account_id": account}, Emitted(account, event_type, entity)))
    return out


def _read(p: Pipeline, topic: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, decoded record) of every record of `topic` so far."""
    codec = make_codec(None)
    return [
        ((m.key() or b"").decode(), codec.decode(topic, m.value() or b"")[1])
        for m in read_to_end(p.settings, topic, "accounts-test")
    ]


def _webhook_of(post: Received, hooks: list[Hook]) -> Hook:
    """The one webhook at the POST's path whose delivery id it carries."""
    event_id = post.json["id"]
    sent = post.header("X-StoreLink-Delivery-Id")
    [hook] = [h for h in hooks if h.path == post.path and delivery_id(event_id, h.sub.id) == sent]
    return hook


def test_every_post_belongs_to_its_endpoints_account_and_none_is_missing(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    rng = random.Random(SEED)
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    topics = Topics(p.settings.topic_prefix)
    webhooks = _draw_webhooks(rng)
    # Endpoints that always answer 500: every attempt, then a dead letter.
    own = sorted({path for _, _, path in webhooks if not path.startswith("/shared/")})
    failing = {"/shared/failing", *(path for path in own if rng.random() < 0.15)}
    for path in failing:
        receiver.script(path, always(500))
    hooks = [
        Hook(p.writer.add(receiver.url(path), events, account_id=account), path, path in failing)
        for account, events, path in webhooks
    ]
    drawn = _draw_events(rng)

    p.start()
    try:
        ids = p.producer.emit_many([event for event, _ in drawn])
        p.producer.flush()
        emitted = {event_id: e for event_id, (_, e) in zip(ids, drawn, strict=True)}
        # Every (event, webhook) pair that must be served, and how many POSTs it gets.
        expected: Counter[tuple[str, str]] = Counter()
        for event_id, e in emitted.items():
            for h in hooks:
                if h.account == e.account and h.sub.wants(e.event_type):
                    expected[(event_id, h.sub.id)] = ATTEMPTS if h.fails else 1
        dead = {pair for pair, n in expected.items() if n == ATTEMPTS}
        assert expected and dead, f"seed {SEED} drew no deliveries or no failing ones"
        assert any(e.account == QUIET for e in emitted.values())

        receiver.wait_for(sum(expected.values()), timeout=60)
        wait_until(
            lambda: len(_read(p, topics.deadletters)) >= len(dead),
            30,
            lambda: f"{len(_read(p, topics.deadletters))} of {len(dead)} dead letters",
        )
        wait_until(
            lambda: len(_read(p, topics.attempts)) >= sum(expected.values()),
            30,
            lambda: f"{len(_read(p, topics.attempts))} attempts logged",
        )
        time.sleep(2)  # time enough for a foreign or doubled POST to show up

        # Every POST: its event's account, its webhook's account, and the header agree.
        got: Counter[tuple[str, str]] = Counter()
        for post in receiver.received():
            event_id = post.json["id"]
            assert event_id in emitted, f"seed {SEED}: a POST of an event never emitted"
            hook, e = _webhook_of(post, hooks), emitted[event_id]
            account = e.account
            assert hook.account == account, f"seed {SEED}: {event_id} of {account} to {hook}"
            assert post.header("X-StoreLink-Account") == account
            assert verify_storelink(
                hook.sub.secret, post.body, post.header("X-StoreLink-Signature")
            )
            assert "account_id" not in post.json
            assert post.json == {**BUILDERS[e.event_type](e.entity), "id": event_id}
            got[(event_id, hook.sub.id)] += 1
        # No pair missing, none foreign, none doubled.
        assert got == expected, f"seed {SEED}"

        by_id = {h.sub.id: h for h in hooks}
        letters = [record for _, record in _read(p, topics.deadletters)]
        assert {(d["event_id"], d["webhook_id"]) for d in letters} == dead
        assert len(letters) == len(dead)
        for d in letters:
            account = by_id[d["webhook_id"]].account
            assert d["reason"] == "retries_exhausted" and d["attempts"] == ATTEMPTS
            assert d["account_id"] == d["delivery"]["account_id"] == account
            assert emitted[d["event_id"]].account == account

        logged = [record for _, record in _read(p, topics.attempts)]
        assert Counter((a["event_id"], a["webhook_id"]) for a in logged) == expected
        assert all(a["account_id"] == by_id[a["webhook_id"]].account for a in logged)

        # Kafka keys: the account, then the entity, on the delivery topics.
        for h in hooks[:6]:
            for key, record in _read(p, topics.delivery(h.sub.id)):
                e = emitted[record["event_id"]]
                assert record["account_id"] == h.account == e.account
                assert key == record["partition_key"] == f"{e.account}/{e.entity}"
    finally:
        p.stop_and_check()
