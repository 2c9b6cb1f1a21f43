"""librdkafka statistics -> lag gauges and readiness, on documents shaped like the real
ones (fields and values as a 2.x consumer emits them)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import CollectorRegistry

from synctec_webhooks.ops.kafka_stats import (
    ConsumerStats,
    consumer_state,
    partition_lag,
    partition_lags,
)
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.topics import Topics

INVALID = -1001


def part(lo: int, hi: int, committed: int, desired: bool = True, ls: int | None = None) -> dict:
    return {
        "desired": desired,
        "fetch_state": "active" if desired else "none",
        "lo_offset": lo,
        "hi_offset": hi,
        "ls_offset": hi if ls is None else ls,
        "committed_offset": committed,
        "consumer_lag": hi - committed if committed >= 0 else -1,
    }


UNASSIGNED = part(INVALID, INVALID, INVALID, desired=False)


def document(topics: dict[str, dict[str, dict]], join_state: str = "steady") -> dict[str, Any]:
    return {
        "type": "consumer",
        "brokers": {
            "127.0.0.1:9092/bootstrap": {"state": "UP", "nodeid": -1},
            "127.0.0.1:9092/1": {"state": "UP", "nodeid": 1},
            "GroupCoordinator": {"state": "UP", "nodeid": -1},
        },
        "cgrp": {
            "state": "up",
            "join_state": join_state,
            "assignment_size": sum(
                1 for t in topics.values() for k, p in t.items() if k != "-1" and p["desired"]
            ),
        },
        "topics": {name: {"topic": name, "partitions": ps} for name, ps in topics.items()},
    }


@pytest.mark.parametrize(
    ("partition", "lag"),
    [
        (part(0, 10, 4), 6),
        (part(0, 10, 10), 0),
        (part(5, 10, INVALID), 5),  # nothing committed yet: read from the low watermark
        (part(0, 0, INVALID), 0),  # an empty partition
        (part(0, 10, 4, ls=8), 4),  # read_committed: up to the last stable offset
        ({**part(0, 10, 4), "ls_offset": INVALID}, 6),  # no LSO reported: high watermark
        (part(INVALID, INVALID, INVALID), None),  # nothing known yet
        (part(0, 10, 12), 0),  # committed past a truncated end: never negative
        (part(0, 10, 0), 10),  # offset 0 committed is an offset like any other
    ],
)
def test_partition_lag(partition: dict, lag: int | None) -> None:
    assert partition_lag(partition) == lag


def test_a_settled_partition_counts_skipped_transaction_markers_as_read() -> None:
    """Records 0-2 and 4-6 delivered and committed (7); 3 and 7 are transaction markers
    the consumer skipped (position 8). Only the worker knows nothing is in flight."""
    p = {**part(0, 8, 7), "app_offset": 8}
    assert partition_lag(p) == 1
    assert partition_lag(p, settled=True) == 0
    behind = {**part(0, 8, 4), "app_offset": 6}  # 4 and 5 were still in flight: not settled
    assert partition_lag(behind) == 4
    metrics = Metrics.create(CollectorRegistry())
    stats = ConsumerStats(
        metrics, Topics("t"), "t.deliver", 1000, Clock(), settled=lambda _t, p: p == 0
    )
    stats.update(document({"t.deliveries.a": {"0": p, "1": p}}))
    assert lag(metrics, "t.deliver", "t.deliveries.*", "0") == 0
    assert lag(metrics, "t.deliver", "t.deliveries.*", "1") == 1


def test_offsets_committed_in_a_transaction_count() -> None:
    """The fan-out commits through its producer; the consumer's statistics keep the
    offset they fetched at assignment."""
    stale = part(0, 10, 2)
    assert partition_lag(stale, committed_elsewhere=9) == 1
    assert partition_lag(part(0, 10, INVALID), committed_elsewhere=10) == 0
    assert partition_lag(stale, committed_elsewhere=1) == 8  # the newer one wins
    metrics, stats = stats_for("t.fanout", Clock())
    stats.note_committed([TopicPartition("t.events", 0, 7), TopicPartition("t.events", 0, 6)])
    stats.update(document({"t.events": {"0": stale}}))
    assert lag(metrics, "t.fanout", "t.events", "0") == 3


def test_only_assigned_partitions_count() -> None:
    stats = document(
        {
            "t.events": {"0": part(0, 10, 7), "1": part(0, 3, 3), "2": part(0, 9, 1, False)},
            "t.other": {"-1": UNASSIGNED},
        }
    )
    assert partition_lags(stats) == {("t.events", 0): 3, ("t.events", 1): 0}


@pytest.mark.parametrize(
    ("change", "broker_up", "joined"),
    [
        (lambda d: None, True, True),
        (lambda d: d["cgrp"].update(join_state="wait-join"), True, False),
        # A pattern that matches no topic yet: no group to join, nothing to wait for.
        (lambda d: (d["cgrp"].update(join_state="init"), d.update(topics={})), True, True),
        (lambda d: d["cgrp"].update(join_state="init"), True, False),
        (lambda d: d["brokers"]["127.0.0.1:9092/1"].update(state="DOWN"), False, True),
        (lambda d: d["brokers"].pop("127.0.0.1:9092/1"), False, True),  # bootstrap only
    ],
)
def test_consumer_state(change: Any, broker_up: bool, joined: bool) -> None:
    stats = document({"t.events": {"0": part(0, 1, 1)}})
    change(stats)
    state = consumer_state(stats)
    assert (state.broker_up, state.group_joined) == (broker_up, joined)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats_for(group: str, clock: Clock) -> tuple[Metrics, ConsumerStats]:
    metrics = Metrics.create(CollectorRegistry())
    return metrics, ConsumerStats(metrics, Topics("t"), group, 1000, clock)


def lag(metrics: Metrics, group: str, topic: str, partition: str) -> float | None:
    labels = {"group": group, "topic": topic, "partition": partition}
    return metrics.registry.get_sample_value("synctec_consumer_lag_records", labels)


def test_delivery_topics_share_one_label_summed_per_partition() -> None:
    metrics, stats = stats_for("t.deliver", Clock())
    stats.on_stats(
        json.dumps(
            document(
                {
                    "t.deliveries.wh_a": {"0": part(0, 10, 8), "1": part(0, 5, 5)},
                    "t.deliveries.wh_b": {"0": part(0, 4, 1), "-1": UNASSIGNED},
                }
            )
        )
    )
    assert lag(metrics, "t.deliver", "t.deliveries.*", "0") == 5
    assert lag(metrics, "t.deliver", "t.deliveries.*", "1") == 0
    assert lag(metrics, "t.deliver", "t.deliveries.wh_a", "0") is None


def test_revoked_partitions_lose_their_series_and_tiers_drop_to_zero() -> None:
    metrics, stats = stats_for("t.retry", Clock())
    both = document({"t.retry.1": {"0": part(0, 10, 2)}, "t.retry.2": {"0": part(0, 6, 0)}})
    stats.update(both)
    waiting = metrics.registry.get_sample_value
    assert waiting("synctec_retry_waiting_records", {"tier": "1"}) == 8
    assert waiting("synctec_retry_waiting_records", {"tier": "2"}) == 6
    one = copy.deepcopy(both)
    del one["topics"]["t.retry.2"]
    stats.update(one)
    assert lag(metrics, "t.retry", "t.retry.2", "0") is None
    assert lag(metrics, "t.retry", "t.retry.1", "0") == 8
    assert waiting("synctec_retry_waiting_records", {"tier": "2"}) == 0


def test_readiness_follows_the_statistics_and_goes_stale() -> None:
    clock = Clock()
    _, stats = stats_for("t.fanout", clock)
    ok, detail = stats.readiness()
    assert not ok and "no statistics" in detail
    stats.update(document({"t.events": {"0": part(0, 1, 1)}}))
    ok, detail = stats.readiness()
    assert ok and "1 partition(s) assigned" in detail, detail
    clock.now += 31  # statistics every second, none for 31 s: the loop is stuck
    ok, detail = stats.readiness()
    assert not ok and "31 s ago" in detail
    stats.update(document({"t.events": {"0": part(0, 1, 1)}}, join_state="wait-join"))
    assert not stats.readiness()[0]


def test_a_malformed_document_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    _, stats = stats_for("t.fanout", Clock())
    stats.on_stats("{not json")
    stats.on_stats(json.dumps({"topics": {"t.events": {"partitions": {"x": {}}}}}))
    assert "unreadable librdkafka statistics" in caplog.text
    assert not stats.readiness()[0]


def test_one_log_line_per_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="synctec_webhooks.ops.kafka_stats")
    _, stats = stats_for("t.deliver", Clock())
    joining = document({"t.d.a": {"0": part(0, 1, 1)}}, join_state="wait-join")
    steady = document({"t.d.a": {"0": part(0, 1, 1)}})
    grown = document({"t.d.a": {"0": part(0, 1, 1), "1": part(0, 2, 2)}})
    for doc in (joining, steady, steady, steady, grown, grown, joining):
        stats.update(doc)
    assert [r.getMessage() for r in caplog.records] == [
        "t.deliver ready: 1 broker(s) up; group up/steady, 1 partition(s) assigned",
        "t.deliver now holds 2 partition(s) (was 1)",
        "t.deliver not ready: 1 broker(s) up; group up/wait-join, 1 partition(s) assigned",
    ]
