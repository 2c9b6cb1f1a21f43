"""A webhook's lane: FIFO per key, at most `limit` in flight, queued records droppable."""

from __future__ import annotations

from pathlib import Path

import pytest

from synctec_webhooks import deadletters, schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.lanes import Item, Lane
from synctec_webhooks.schemas import SCHEMA_DIR, SchemaStore
from synctec_webhooks.serialization import SingleObjectCodec
from synctec_webhooks.subscriptions import SubscriptionTable, from_record
from synctec_webhooks.topics import Topics


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


# --- subscription records with unusable limits (issue 11) ------------------------------

BAD_LIMITS = [
    pytest.param({"max_in_flight": -1}, "max_in_flight", id="negative-max-in-flight"),
    pytest.param({"max_in_flight": 0}, "max_in_flight", id="zero-max-in-flight"),
    pytest.param({"rate_limit": -5.0}, "rate_limit", id="negative-rate"),
    pytest.param({"rate_limit": 0.0}, "rate_limit", id="zero-rate"),
    pytest.param({"rate_limit": float("nan")}, "rate_limit", id="nan-rate"),
    pytest.param({"rate_limit": float("inf")}, "rate_limit", id="infinite-rate"),
]


def _sub_record(sub_id: str, **limits: object) -> dict[str, object]:
    return {"id": sub_id, "url": "https://m.example/h", "events": ["*"], "secret": "whsec_dA==",
            "description": None, "enabled": True, "created_at": 1, "updated_at": 0,
            "max_in_flight": None, "rate_limit": None, **limits}  # fmt: skip


@pytest.mark.parametrize(("limits", "field"), BAD_LIMITS)
def test_a_subscription_with_unusable_limits_is_refused_when_read(
    limits: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        from_record(_sub_record("wh_bad", **limits))


@pytest.mark.parametrize(("limits", "field"), BAD_LIMITS)
def test_the_table_skips_such_a_record_naming_the_field(
    limits: dict[str, object], field: str
) -> None:
    settings = Settings()
    codec = SingleObjectCodec()
    table = SubscriptionTable(settings, codec)
    topic = Topics(settings.topic_prefix).subscriptions

    def value(rec: dict[str, object]) -> bytes:
        return codec.encode(topic, schemas.SUBSCRIPTION, rec)

    assert table._apply(b"wh_ok", value(_sub_record("wh_ok", max_in_flight=3))) is None
    problem = table._apply(b"wh_bad", value(_sub_record("wh_bad", **limits)))
    assert problem is not None
    reason, detail = problem
    assert reason == deadletters.INVALID_SUBSCRIPTION and field in detail
    assert "wh_bad" not in table.index and table.index.get("wh_ok") is not None


@pytest.mark.parametrize(("max_in_flight", "rate"), [(-1, None), (0, None), (2, -5.0),
                                                     (2, float("nan")), (2, 0.0)])  # fmt: skip
def test_a_lane_given_unusable_limits_falls_back_instead_of_raising(
    max_in_flight: int, rate: float | None
) -> None:
    lane = Lane.new("wh_1", max_in_flight=max_in_flight, rate=rate, retry_after_max=60)
    assert lane.control.ceiling >= 1
    assert lane.bucket is None or lane.bucket.rate > 0
    lane.configure(max_in_flight, rate, now=1.0)
    lane.push(item(0, b"a"))
    assert lane.wanted_runners() >= 1 and lane.reserve(1.0) == 0.0
