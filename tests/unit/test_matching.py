from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from synctec_webhooks.matching import Subscription, SubscriptionIndex


def _sub(sub_id: str, *events: str, enabled: bool = True) -> Subscription:
    return Subscription(
        id=sub_id,
        url=f"https://example.test/{sub_id}",
        events=events,
        secret="whsec_c2VjcmV0",
        enabled=enabled,
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
    assert _ids(index.match(event_type)) == expected


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
        assert set(_ids(index.match(event_type))) == expected


def test_disabled_kept_but_not_matched(index: SubscriptionIndex) -> None:
    assert index.get("off") == _sub("off", "order.created", enabled=False)
    assert "off" not in _ids(index.match("order.created"))
    assert len(index) == 5
    assert "off" in index


def test_upsert_replaces_event_types(index: SubscriptionIndex) -> None:
    index.upsert(_sub("orders", "product.updated"))
    assert _ids(index.match("order.created")) == ["everything", "both"]
    assert _ids(index.match("product.updated")) == ["products", "orders", "everything", "both"]
    assert index.get("orders") == _sub("orders", "product.updated")
    assert len(index) == 5


def test_upsert_enable_and_disable(index: SubscriptionIndex) -> None:
    index.upsert(_sub("orders", "order.created", enabled=False))
    index.upsert(_sub("off", "order.created"))
    assert _ids(index.match("order.created")) == ["off", "everything", "both"]


def test_upsert_wildcard_to_specific(index: SubscriptionIndex) -> None:
    index.upsert(_sub("everything", "inventory.changed"))
    assert _ids(index.match("inventory.changed")) == ["everything", "both"]
    assert _ids(index.match("product.updated")) == ["products", "both"]


def test_remove(index: SubscriptionIndex) -> None:
    index.remove("orders")
    index.remove("everything")
    index.remove("never-existed")
    assert index.get("orders") is None
    assert _ids(index.match("order.created")) == ["both"]
    assert sorted(_ids(index.all())) == ["both", "off", "products"]


def test_removal_leaves_no_empty_buckets() -> None:
    index = SubscriptionIndex()
    index.upsert(_sub("a", "x", "y"))
    index.upsert(_sub("a", "y"))
    index.remove("a")
    assert index._by_type == {}
    assert index._wildcard == {}
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
        index.upsert(_CountingSubscription(id=f"s{n}", url="u", events=("a",), secret="x"))
    index.upsert(_CountingSubscription(id="b1", url="u", events=("b",), secret="x"))

    _CountingSubscription.reads = 0
    none, one = index.match("c"), index.match("b")
    # A scan would read `enabled`/`events` of all 100k; the index reads none of them.
    assert _CountingSubscription.reads == 0
    assert none == []
    assert _ids(one) == ["b1"]
    # The buckets show the same: 100k under "a", none scanned for "b" or "c".
    assert {t: len(b) for t, b in index._by_type.items()} == {"a": 100_000, "b": 1}
