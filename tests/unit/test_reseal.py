"""`webhooks reseal` against another writer: which record our write hid, if any."""

from __future__ import annotations

import pytest

from synctec_webhooks.matching import Subscription
from synctec_webhooks.producers.subscriptions import History, overwritten

A = Subscription(id="wh_1", url="https://example.com/a", events=("*",), secret="")
B = Subscription(id="wh_1", url="https://example.com/b", events=("*",), secret="")
MINE = Subscription(id="wh_1", url="https://example.com/a", events=("*",), secret="x")


@pytest.mark.parametrize(
    ("history", "read_at", "ours", "hidden"),
    [
        # Read at 3, wrote at 7, nothing between: done.
        ([(3, A), (7, MINE)], 3, {7}, None),
        # An admin change at 5, between our read and our write: ours hid it.
        ([(3, A), (5, B), (7, MINE)], 3, {7}, (5, B)),
        # A removal at 5: the tombstone must be written again.
        ([(3, A), (5, None), (7, MINE)], 3, {7}, (5, None)),
        # Two changes between: the last one is what stands.
        ([(3, A), (4, A), (5, B), (7, MINE)], 3, {7}, (5, B)),
        # A change after ours: theirs is the latest, it stands.
        ([(3, A), (7, MINE), (9, B)], 3, {7}, None),
        # Repaired once (read moved to 5, our rewrite at 8): nothing new between.
        ([(3, A), (5, B), (7, MINE), (8, B)], 5, {7, 8}, None),
        # Compaction left only ours.
        ([(7, MINE)], 3, {7}, None),
    ],
)
def test_the_record_our_write_hid(
    history: History, read_at: int, ours: set[int], hidden: tuple[int, object] | None
) -> None:
    assert overwritten(history, read_at, ours) == hidden
