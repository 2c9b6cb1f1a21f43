"""A webhook's lane: FIFO per key, at most `limit` in flight, queued records droppable."""

from __future__ import annotations

from pathlib import Path

import pytest

from synctec_webhooks import schemas
from synctec_webhooks.consumers.delivery.lanes import Item, Lane
from synctec_webhooks.schemas import SCHEMA_DIR, SchemaStore
from synctec_webhooks.serialization import SingleObjectCodec
from synctec_webhooks.subscriptions import from_record


def item(offset: int, key: bytes, partition: int = 0) -> Item:
    return Item("t.deliveries.wh_1", partition, offset, key, {"webhook_id": "wh_1"})


def test_records_of_one_key_go_one_after_the_other() -> None:
    lane = Lane.new("wh_1", max_in_flight=10, rate=None, retry_after_max=60)
    for offset, key in enumerate([b"a", b"a", b"b", b"a"]):
        lane.push(item(offset, key))
    first, second = lane.take(), lane.take()
    assert (first.offset, second.offset) == (0, 2)  # one per key
    assert lane.ready == 0  # "a" has more, but one of its records is in flight
    lane.done(first)
    assert lane.take().offset == 1
    assert (lane.held, lane.in_flight) == (3, 2)


def test_the_same_key_in_two_partitions_is_two_chains() -> None:
    lane = Lane.new("wh_1", 10, None, 60)
    lane.push(item(0, b"a", partition=0))
    lane.push(item(0, b"a", partition=1))
    assert lane.ready == 2


def test_wanted_runners_is_bounded_by_the_limit() -> None:
    lane = Lane.new("wh_1", max_in_flight=3, rate=None, retry_after_max=60)
    for offset in range(10):
        lane.push(item(offset, str(offset).encode()))
    assert lane.wanted_runners() == 3
    lane.runners = 3
    assert lane.wanted_runners() == 0
    lane.on_answer(429, 1.0, now=0.0)
    assert lane.control.limit == 1
    assert lane.wanted_runners() == 0


def test_drop_forgets_queued_records_of_revoked_partitions_only() -> None:
    lane = Lane.new("wh_1", 10, None, 60)
    started = item(0, b"a", partition=0)
    lane.push(started)
    lane.push(item(1, b"a", partition=0))
    lane.push(item(0, b"b", partition=1))
    assert lane.take() is started
    assert lane.drop({("t.deliveries.wh_1", 0)}) == 1
    assert lane.held == 2  # the started one and partition 1's
    lane.done(started)
    assert lane.take().partition == 1
    assert lane.ready == 0


def test_a_lane_is_blocked_by_retry_after_and_paced_by_its_rate() -> None:
    lane = Lane.new("wh_1", 10, rate=2.0, retry_after_max=60)
    lane.on_answer(503, 3.0, now=10.0)
    assert lane.blocked(11.0) == pytest.approx(2.0)
    assert lane.blocked(13.0) == 0.0
    assert lane.reserve(13.0) == 0.0
    assert lane.reserve(13.0) == pytest.approx(0.5)
    assert Lane.new("wh_2", 10, rate=None, retry_after_max=60).reserve(0.0) == 0.0


def test_configure_changes_the_limits_of_a_live_lane() -> None:
    lane = Lane.new("wh_1", 10, None, 60)
    lane.configure(4, 5.0, now=0.0)
    assert lane.control.limit == 4 and lane.bucket is not None and lane.bucket.rate == 5.0
    lane.configure(4, None, now=0.0)
    assert lane.bucket is None


def test_successes_do_not_raise_the_limit_of_a_lane_that_was_not_slowed() -> None:
    lane = Lane.new("wh_1", 2, None, 60)
    for _ in range(10):
        lane.on_answer(200, None, now=0.0)
    lane.on_answer(500, None, now=0.0)  # an error, not throttling: no slow-down
    assert lane.control.limit == 2


def test_a_subscription_written_before_the_limit_fields_reads_with_none(tmp_path: Path) -> None:
    # schemas/history/subscription.v1.avsc is the writer; the current schema reads it.
    (tmp_path / "subscription.avsc").write_text(
        (SCHEMA_DIR / "history" / "subscription.v1.avsc").read_text()
    )
    old = SingleObjectCodec(SchemaStore(tmp_path))
    record = {"id": "wh_1", "url": "https://m.example/h", "events": ["*"], "secret": "whsec_dA==",
              "description": None, "enabled": True, "created_at": 1, "updated_at": 0}  # fmt: skip
    data = old.encode("t.subscriptions", schemas.SUBSCRIPTION, record)
    _, read = SingleObjectCodec().decode("t.subscriptions", data)
    sub = from_record(read)
    assert (sub.max_in_flight, sub.rate_limit) == (None, None)
