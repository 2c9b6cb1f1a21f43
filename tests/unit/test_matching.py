"""The subscription index: by account, then by event type; one account never sees
another's webhooks."""

from __future__ import annotations

import dataclasses
import random
from typing import Any, ClassVar

import pytest

from synctec_webhooks.errors import InvalidSubscription
from synctec_webhooks.matching import Subscription, SubscriptionIndex

A = "acct_a"  # the account of the fixture's webhooks
B = "acct_b"


def _sub(sub_id: str, *events: str, enabled: bool = True, account: str = A) -> Subscription:
    return Subscription(
        id=sub_id,
        url=f"https://example.test/{sub_id}",
        events=events,
        secret="whsec_c2VjcmV0",
        enabled=enabled,
        account_id=account,
    )


def _ids(subs: list[Subscription]) -> list[str]:
    return [sub.id for sub in subs]


@pytest.fixture
def index() -> SubscriptionIndex:
    idx = SubscriptionIndex()
    for sub in [
        _sub("orders", "order.created", "order.updated"),
        _sub("products", "product.updated"),
        _sub("everything", "*"),
        _sub("off", "order.created", enabled=False),
        _sub("both", "order.created", "*"),
    ]:
        idx.upsert(sub)
    return idx


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("order.created", ["orders", "everything", "both"]),
        ("order.updated", ["orders", "everything", "both"]),
        ("product.updated", ["products", "everything", "both"]),
        ("inventory.changed", ["everything", "both"]),
        ("ORDER.CREATED", ["everything", "both"]),  # event types are case-sensitive
    ],
)
def test_match(index: SubscriptionIndex, event_type: str, expected: list[str]) -> None:
    assert _ids(index.match(A, event_type)) == expected


@pytest.mark.parametrize(
    ("events", "enabled", "event_type", "wanted"),
    [
        (("a",), True, "a", True),
        (("a",), True, "b", False),
        (("*",), True, "b", True),
        (("a", "*"), True, "b", True),
        (("a",), False, "a", False),
        (("*",), False, "a", False),
        ((), True, "a", False),
    ],
)
def test_wants(events: tuple[str, ...], enabled: bool, event_type: str, wanted: bool) -> None:
    assert _sub("s", *events, enabled=enabled).wants(event_type) is wanted


def test_match_agrees_with_wants(index: SubscriptionIndex) -> None:
    for event_type in ["order.created", "product.updated", "x", "*"]:
        expected = {sub.id for sub in index.all() if sub.wants(event_type)}
        assert set(_ids(index.match(A, event_type))) == expected


def test_disabled_kept_but_not_matched(index: SubscriptionIndex) -> None:
    assert index.get("off") == _sub("off", "order.created", enabled=False)
    assert "off" not in _ids(index.match(A, "order.created"))
    assert len(index) == 5
    assert "off" in index


def test_upsert_replaces_event_types(index: SubscriptionIndex) -> None:
    index.upsert(_sub("orders", "product.updated"))
    assert _ids(index.match(A, "order.created")) == ["everything", "both"]
    assert _ids(index.match(A, "product.updated")) == ["products", "orders", "everything", "both"]
    assert index.get("orders") == _sub("orders", "product.updated")
    assert len(index) == 5


def test_upsert_enable_and_disable(index: SubscriptionIndex) -> None:
    index.upsert(_sub("orders", "order.created", enabled=False))
    index.upsert(_sub("off", "order.created"))
    assert _ids(index.match(A, "order.created")) == ["off", "everything", "both"]


def test_upsert_wildcard_to_specific(index: SubscriptionIndex) -> None:
    index.upsert(_sub("everything", "inventory.changed"))
    assert _ids(index.match(A, "inventory.changed")) == ["everything", "both"]
    assert _ids(index.match(A, "product.updated")) == ["products", "both"]


def test_remove(index: SubscriptionIndex) -> None:
    index.remove("orders")
    index.remove("everything")
    index.remove("never-existed")
    assert index.get("orders") is None
    assert _ids(index.match(A, "order.created")) == ["both"]
    assert sorted(_ids(index.all())) == ["both", "off", "products"]


def test_removal_leaves_no_empty_buckets() -> None:
    index = SubscriptionIndex()
    index.upsert(_sub("a", "x", "y"))
    index.upsert(_sub("a", "y"))
    index.upsert(_sub("w", "*", account=B))
    index.upsert(_sub("off", "x", enabled=False, account=B))
    index.remove("a")
    assert A not in index._accounts
    index.remove("w")
    index.remove("off")
    # No empty account left behind either: accounts come and go with their webhooks.
    assert index._accounts == {}
    assert index._ids_by_account == {}
    assert index.accounts() == []
    assert len(index) == 0


def test_events_list_becomes_tuple() -> None:
    sub = Subscription(id="s", url="u", events=["a", "b"], secret="x")  # type: ignore[arg-type]
    assert sub.events == ("a", "b")


def test_secret_not_in_repr() -> None:
    assert "whsec_" not in repr(_sub("s", "a"))


@dataclasses.dataclass(frozen=True)
class _CountingSubscription(Subscription):
    """Counts every attribute read, to prove which subscriptions `match` looks at."""

    reads: ClassVar[int] = 0

    def __getattribute__(self, name: str) -> Any:
        type(self).reads += 1
        return super().__getattribute__(name)


def test_match_touches_only_matching_subscriptions() -> None:
    index = SubscriptionIndex()
    for n in range(100_000):
        sub = _CountingSubscription(id=f"s{n}", url="u", events=("a",), secret="x", account_id=A)
        index.upsert(sub)
    index.upsert(_CountingSubscription(id="b1", url="u", events=("b",), secret="x", account_id=A))
    # Another account's webhooks, "*" ones included, are not looked at either.
    for n in range(1000):
        index.upsert(_CountingSubscription(id=f"o{n}", url="u", events=("*",), secret="x"))

    _CountingSubscription.reads = 0
    none, one = index.match(A, "c"), index.match(A, "b")
    # A scan would read `enabled`/`events` of all 100k; the index reads none of them.
    assert _CountingSubscription.reads == 0
    assert none == []
    assert _ids(one) == ["b1"]
    # The buckets show the same: 100k under "a", none scanned for "b" or "c".
    assert {t: len(b) for t, b in index._accounts[A].by_type.items()} == {"a": 100_000, "b": 1}


# --- accounts ------------------------------------------------------------------------


@pytest.fixture
def two_accounts() -> SubscriptionIndex:
    idx = SubscriptionIndex()
    for sub in [
        _sub("a_orders", "order.created"),
        _sub("a_all", "*"),
        _sub("a_off", "order.created", enabled=False),
        _sub("b_orders", "order.created", account=B),
        _sub("b_all", "*", account=B),
        _sub("b_off", "*", enabled=False, account=B),
    ]:
        idx.upsert(sub)
    return idx


@pytest.mark.parametrize(
    ("account", "event_type", "expected", "with_disabled"),
    [
        (A, "order.created", ["a_orders", "a_all"], ["a_orders", "a_all", "a_off"]),
        (A, "product.updated", ["a_all"], ["a_all"]),
        (B, "order.created", ["b_orders", "b_all"], ["b_orders", "b_all", "b_off"]),
        (B, "product.updated", ["b_all"], ["b_all", "b_off"]),
        ("acct_c", "order.created", [], []),  # an account without webhooks
        ("default", "order.created", [], []),
    ],
)
def test_an_event_matches_its_own_accounts_webhooks_only(
    two_accounts: SubscriptionIndex,
    account: str,
    event_type: str,
    expected: list[str],
    with_disabled: list[str],
) -> None:
    assert _ids(two_accounts.match(account, event_type)) == expected
    assert _ids(two_accounts.match(account, event_type, include_disabled=True)) == with_disabled


def test_lists_and_counts_per_account(two_accounts: SubscriptionIndex) -> None:
    assert _ids(two_accounts.all(A)) == ["a_orders", "a_all", "a_off"]
    assert _ids(two_accounts.all(B)) == ["b_orders", "b_all", "b_off"]
    assert _ids(two_accounts.all("acct_c")) == []
    assert len(two_accounts.all()) == len(two_accounts) == 6
    assert (two_accounts.count(A), two_accounts.count(B), two_accounts.count("x")) == (3, 3, 0)
    assert sorted(two_accounts.accounts()) == [A, B]


def test_a_webhook_upserted_under_another_account_leaves_the_first(
    two_accounts: SubscriptionIndex,
) -> None:
    two_accounts.upsert(_sub("a_all", "*", account=B))
    assert _ids(two_accounts.match(A, "product.updated")) == []
    assert _ids(two_accounts.match(B, "product.updated")) == ["b_all", "a_all"]
    assert (two_accounts.count(A), two_accounts.count(B)) == (2, 4)


def test_old_subscriptions_belong_to_the_default_account() -> None:
    sub = Subscription(id="s", url="u", events=("*",), secret="x")
    assert sub.account_id == "default"
    index = SubscriptionIndex()
    index.upsert(sub)
    assert _ids(index.match("default", "a")) == ["s"]
    assert index.match(A, "a") == []


@pytest.mark.parametrize("bad", ["", "_x", "a/b", "x" * 65, "a b"])
def test_a_subscription_of_a_malformed_account_is_refused(bad: str) -> None:
    with pytest.raises(InvalidSubscription) as info:
        _sub("s", "*", account=bad)
    assert info.value.field == "account_id"


@pytest.mark.parametrize("seed", range(5))
def test_matching_is_isolated_per_account_whatever_the_mix(seed: int) -> None:
    """Random webhooks of random accounts, upserted, changed and removed in a random
    order: `match` is exactly the account's own webhooks that want the type."""
    rng = random.Random(seed)
    accounts = [f"acct_{n}" for n in range(5)]
    types = ["t1", "t2", "t3", "t4"]
    index = SubscriptionIndex()
    for _ in range(400):
        sub_id = f"s{rng.randrange(60)}"
        if rng.random() < 0.15:
            index.remove(sub_id)
            continue
        events = tuple(rng.sample([*types, "*"], rng.randint(1, 3)))
        index.upsert(_sub(sub_id, *events, enabled=rng.random() < 0.8,
                          account=rng.choice(accounts)))  # fmt: skip
    for account in [*accounts, "acct_none"]:
        own = [s for s in index.all() if s.account_id == account]
        assert _ids(index.all(account)) == [s.id for s in own]
        for event_type in types:
            matched = index.match(account, event_type)
            assert {s.account_id for s in matched} <= {account}
            assert {s.id for s in matched} == {s.id for s in own if s.wants(event_type)}
            every = index.match(account, event_type, include_disabled=True)
            assert {s.id for s in every} == {s.id for s in own if s.subscribed(event_type)}
            assert len(every) == len({s.id for s in every})  # never twice
