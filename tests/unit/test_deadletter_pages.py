"""Pages of dead letters without a broker: newest first, a cursor for the next page, one
row per dead letter (two retry chains of one delivery, or one poison record
dead-lettered again after a restart, are one), and never more than a page held."""

from __future__ import annotations

import random
from typing import Any

import pytest

from synctec_webhooks import deadletters
from synctec_webhooks.deadletters import Source, build
from synctec_webhooks.deadletters.listing import Filters, PageBuilder, identity, sort_key

NOW_MS = 1_738_161_000_000


def _account(n: int) -> str:
    # Webhook n % 3 belongs to one account: wh_0 and wh_2 to acct_a, wh_1 to acct_b.
    return "acct_b" if n % 3 == 1 else "acct_a"


def _delivery(n: int, created_at: int, replays: int = 0) -> dict[str, Any]:
    return {
        "delivery_id": f"msg_{n:032x}",
        "webhook_id": f"wh_{n % 3:024x}",
        "account_id": _account(n),
        "event_id": f"evt_{n}",
        "event_type": "sync.failed" if n % 2 else "product.synced",
        "partition_key": "p",
        "payload": "{}",
        "event_timestamp": "2025-01-29T14:30:00Z",
        "created_at": created_at,
        "attempt": 4,
        "not_before": created_at,
        "history": [],
        "replays": replays,
    }


def _dead(n: int, created_at: int, offset: int | None = None, **extra: Any) -> dict[str, Any]:
    source = Source("t.retry.3", 0, n if offset is None else offset)
    delivery = _delivery(n, created_at, **extra)
    return build(deadletters.RETRIES_EXHAUSTED, "why", source, created_at + 150_000, delivery)


def _poison(offset: int, failed_at: int) -> dict[str, Any]:
    return build(deadletters.UNDECODABLE, "bad", Source("t.events", 0, offset), failed_at, raw=b"x")


def _pages(records: list[dict[str, Any]], limit: int, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    for _ in range(100):
        page = PageBuilder(limit, cursor, Filters(**filters))
        for r in records:
            page.add(r)
        pages.append([row["dead_letter_id"] for row in page.rows()])
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("the cursor never ran out")


def test_pages_are_newest_first_and_cover_everything_once() -> None:
    records = [_dead(n, NOW_MS + n * 1000) for n in range(25)]
    random.Random(1).shuffle(records)
    pages = _pages(records, 10)
    assert [len(p) for p in pages] == [10, 10, 5]
    newest_first = sorted(records, key=lambda r: r["delivery"]["created_at"], reverse=True)
    assert [i for p in pages for i in p] == [r["dead_letter_id"] for r in newest_first]


def test_two_chains_of_one_delivery_are_one_row_on_one_page() -> None:
    records = [_dead(n, NOW_MS + n * 1000) for n in range(9)]
    # The second chain of delivery 4: another source offset, failed later, same round.
    records.append(_dead(4, NOW_MS + 4000, offset=999))
    # Delivery 4 replayed and failed again: a new round, a new dead letter.
    records.append(_dead(4, NOW_MS + 60_000, offset=1000, replays=1))
    ids = [i for p in _pages(records, 3) for i in p]
    assert len(ids) == len(set(ids)) == 10
    assert ids[0] == records[-1]["dead_letter_id"]  # the replay's round is the newest


def test_a_poison_record_dead_lettered_at_every_restart_is_one_row() -> None:
    records = [_dead(n, NOW_MS + n * 1000) for n in range(20)]
    # The same bad record, dead-lettered again by each restart, interleaved with the rest.
    for i, at in enumerate((NOW_MS + 500, NOW_MS + 9_500, NOW_MS + 19_500)):
        records.insert(i * 7, _poison(offset=42, failed_at=at))
    for limit in (1, 3, 4, 7, 50):
        ids = [i for p in _pages(records, limit) for i in p]
        assert len(ids) == len(set(ids)) == 21, limit
        # Listed where it first failed: between deliveries 0 and 1.
        assert ids[-2] == _poison(42, 0)["dead_letter_id"]


def test_legacy_dead_letters_of_one_delivery_merge_under_the_delivery_identity() -> None:
    # Written before ids came from the delivery: each chain has its source's id.
    a, b = _dead(7, NOW_MS, offset=1), _dead(7, NOW_MS, offset=2)
    a["dead_letter_id"] = deadletters.dead_letter_id(Source("t.retry.3", 0, 1))
    b["dead_letter_id"] = deadletters.dead_letter_id(Source("t.retry.3", 0, 2))
    assert identity(a) == identity(b) == _dead(7, NOW_MS)["dead_letter_id"]
    assert _pages([a, b], 10) == [[identity(a)]]


def test_filters_and_sort_key() -> None:
    records = [_dead(n, NOW_MS + n) for n in range(12)]
    [only] = _pages(records, 100, event_id="evt_5")
    assert only == [records[5]["dead_letter_id"]]
    by_webhook = _pages(records, 100, webhook_id=f"wh_{1:024x}", event_type="sync.failed")
    assert by_webhook == [[records[n]["dead_letter_id"] for n in (7, 1)]]
    assert sort_key(records[3]) == NOW_MS + 3
    assert sort_key(_poison(1, NOW_MS - 5)) == NOW_MS - 5


def test_an_account_filter_lists_that_accounts_dead_letters_only() -> None:
    records = [_dead(n, NOW_MS + n) for n in range(12)]
    records.append(_poison(3, NOW_MS + 100))  # nobody's: no account filter shows it
    newest_first = list(reversed(records[:12]))
    for account in ("acct_a", "acct_b"):
        [ids] = _pages(records, 100, account_id=account)
        assert ids == [r["dead_letter_id"] for r in newest_first if r["account_id"] == account]
    assert _pages(records, 100, account_id="acct_c") == [[]]
    [both] = _pages(records, 100, account_id="acct_b", event_type="sync.failed")
    assert both == [records[n]["dead_letter_id"] for n in (7, 1)]
    [everything] = _pages(records, 100)  # the operator's list: the poison record too
    assert len(everything) == 13


def test_a_page_holds_at_most_its_limit() -> None:
    page = PageBuilder(5, None, Filters())
    for n in range(5000):
        page.add(_dead(n, NOW_MS + (n * 7919) % 5000))
        assert page.held <= 5
    assert len(page.rows()) == 5 and page.next_cursor is not None


@pytest.mark.parametrize(
    "cursor", ["", "x", "12.dl_zz", "1.dl_" + "0" * 31, "-1.dl_" + "0" * 32, "1" * 20 + ".dl_"]
)
def test_a_bad_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        PageBuilder(10, cursor, Filters())
