"""librdkafka's statistics, turned into consumer-lag gauges and a readiness answer.

A consumer built with `ConsumerStats.config()` emits a JSON document every
`statistics.interval.ms` from inside `consume()` (so on the consume thread). From it
we take, per assigned partition, the records between the committed offset and the
end of the partition (the lag a Kafka lag exporter would show), whether a broker
connection is up, and whether the consumer group is joined. Parsing is pure
(`partition_lags`, `consumer_state`) so it is tested on recorded documents.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

_INVALID = -1001  # librdkafka's RD_KAFKA_OFFSET_INVALID


def partition_lag(
    p: Mapping[str, Any], committed_elsewhere: int = _INVALID, settled: bool = False
) -> int | None:
    """Records left in one partition past its committed offset, or None if unknown.

    librdkafka reports -1 until the group has committed an offset; such a partition
    is read from its start (auto.offset.reset=earliest), so its lag is everything
    from the low watermark to the end. Offsets committed through a producer's
    transaction never reach the consumer's statistics: `committed_elsewhere` says
    where they are. `settled`: the worker has nothing of this partition in flight, so
    what lies between the committed offset and the consumer's position can only be
    records the consumer skipped: the markers that end each transaction the fan-out
    commits, one per partition, which no stored offset ever covers.
    """
    end = p.get("ls_offset", _INVALID)  # last stable offset: we read read_committed
    if end is None or end < 0:
        end = p.get("hi_offset", _INVALID)
    if end is None or end < 0:
        return None
    reported = p.get("committed_offset")
    committed = max(_INVALID if reported is None else reported, committed_elsewhere)
    position = p.get("app_offset")
    if settled and position is not None and position > committed:
        committed = position
    if committed is not None and committed >= 0:
        return max(0, end - committed)
    low = p.get("lo_offset", _INVALID)
    if low is None or low < 0:
        return None
    return max(0, end - low)


def partition_lags(
    stats: Mapping[str, Any],
    committed: Mapping[tuple[str, int], int] | None = None,
    settled: Callable[[str, int], bool] | None = None,
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> lag for every partition this consumer holds."""
    committed = committed or {}
    lags: dict[tuple[str, int], int] = {}
    for topic, t in (stats.get("topics") or {}).items():
        for pid, p in (t.get("partitions") or {}).items():
            partition = int(pid)
            # -1 is librdkafka's internal "unassigned" partition; not desired = not ours.
            if partition < 0 or not p.get("desired"):
                continue
            lag = partition_lag(
                p,
                committed.get((topic, partition), _INVALID),
                settled is not None and settled(topic, partition),
            )
            if lag is not None:
                lags[(topic, partition)] = lag
    return lags


@dataclass(frozen=True)
class ConsumerState:
    broker_up: bool
    group_joined: bool
    assigned: int
    detail: str


def consumer_state(stats: Mapping[str, Any]) -> ConsumerState:
    brokers = (stats.get("brokers") or {}).values()
    # Bootstrap entries (nodeid -1) and the logical coordinator do not prove much;
    # a connection to a real broker, learned from metadata, does.
    up = sum(1 for b in brokers if b.get("nodeid", -1) >= 0 and b.get("state") == "UP")
    cgrp = stats.get("cgrp") or {}
    steady = cgrp.get("state") == "up" and cgrp.get("join_state") == "steady"
    # librdkafka joins no group while a pattern subscription matches no topic (the
    # delivery worker before the first webhook): nothing to hold, nothing to wait for.
    idle = cgrp.get("join_state") == "init" and not stats.get("topics")
    assigned = int(cgrp.get("assignment_size", 0))
    detail = (
        f"{up} broker(s) up; group {cgrp.get('state', '?')}/{cgrp.get('join_state', '?')}, "
        f"{assigned} partition(s) assigned"
        + ("; no topic matches the subscription yet" if idle else "")
    )
    return ConsumerState(up > 0, steady or idle, assigned, detail)


def topic_label(topics: Topics, topic: str) -> str:
    """Delivery topics (one per webhook) share one label: no per-webhook series."""
    if topic.startswith(f"{topics.prefix}.deliveries."):
        return f"{topics.prefix}.deliveries.*"
    return topic


class ConsumerStats:
    """The stats callback of one group consumer: lag gauges and readiness."""

    def __init__(
        self,
        metrics: Metrics,
        topics: Topics,
        group: str,
        interval_ms: int,
        clock: Callable[[], float] = time.monotonic,
        settled: Callable[[str, int], bool] | None = None,
    ) -> None:
        self._metrics = metrics
        self._topics = topics
        self._group = group
        self._interval_ms = interval_ms
        self._clock = clock
        self._settled = settled
        self._lock = threading.Lock()
        self._series: set[tuple[str, str]] = set()
        self._tiers: set[int] = set()
        self._state: ConsumerState | None = None
        self._at = 0.0
        self._committed: dict[tuple[str, int], int] = {}

    def config(self) -> dict[str, Any]:
        """librdkafka settings that make the consumer call us."""
        return {"statistics.interval.ms": self._interval_ms, "stats_cb": self.on_stats}

    def on_stats(self, document: str) -> None:
        try:
            stats = json.loads(document)
            self.update(stats)
        except (ValueError, TypeError, AttributeError) as exc:
            # A malformed document costs one reading, never the consumer.
            logger.warning("unreadable librdkafka statistics for %s: %s", self._group, exc)

    def note_committed(self, offsets: Iterable[TopicPartition]) -> None:
        """Offsets committed in a transaction (`send_offsets_to_transaction`)."""
        with self._lock:
            for tp in offsets:
                key = (tp.topic, tp.partition)
                self._committed[key] = max(self._committed.get(key, _INVALID), tp.offset)

    def update(self, stats: Mapping[str, Any]) -> None:
        with self._lock:
            committed = dict(self._committed)
        lags = partition_lags(stats, committed, self._settled)
        summed: dict[tuple[str, str], int] = {}
        for (topic, partition), lag in lags.items():
            key = (topic_label(self._topics, topic), str(partition))
            summed[key] = summed.get(key, 0) + lag
        waiting = self._retry_waiting(lags)
        with self._lock:
            for key in self._series - summed.keys():
                # A partition handed to another process: its series is the new owner's.
                self._metrics.consumer_lag.remove(self._group, *key)
            for (label, pid), total in summed.items():
                self._metrics.consumer_lag.labels(self._group, label, pid).set(total)
            self._series = set(summed)
            # A tier whose partitions all went elsewhere waits for nothing here.
            self._tiers |= waiting.keys()
            for tier in self._tiers:
                self._metrics.retry_waiting.labels(str(tier)).set(waiting.get(tier, 0))
            previous, self._state = self._state, consumer_state(stats)
            self._at = self._clock()
        self._log_change(previous, self._state)

    def _log_change(self, before: ConsumerState | None, now: ConsumerState) -> None:
        """One line when readiness or the assignment changes, none otherwise."""
        was_ready = before is not None and before.broker_up and before.group_joined
        ready = now.broker_up and now.group_joined
        if ready != was_ready:
            log = logger.info if ready else logger.warning
            log("%s %s: %s", self._group, "ready" if ready else "not ready", now.detail)
        elif before is not None and before.assigned != now.assigned:
            logger.info(
                "%s now holds %d partition(s) (was %d)", self._group, now.assigned, before.assigned
            )

    def _retry_waiting(self, lags: Mapping[tuple[str, int], int]) -> dict[int, int]:
        retry_prefix = f"{self._topics.prefix}.retry."
        waiting: dict[int, int] = {}
        for (topic, _partition), lag in lags.items():
            if topic.startswith(retry_prefix):
                tier = self._topics.retry_tier_of(topic)
                waiting[tier] = waiting.get(tier, 0) + lag
        return waiting

    def readiness(self) -> tuple[bool, str]:
        """Connected to a broker and joined to the group (its assignment may be empty:
        a replica beyond the partition count stands by)."""
        with self._lock:
            state, at = self._state, self._at
        if state is None:
            return False, f"{self._group}: no statistics from librdkafka yet"
        # Statistics come from consume(); a loop that stopped consuming goes stale.
        stale_after = max(30.0, 10 * self._interval_ms / 1000.0)
        age = self._clock() - at
        if age > stale_after:
            return False, f"{self._group}: last statistics {age:.0f} s ago"
        ok = state.broker_up and state.group_joined
        return ok, f"{self._group}: {state.detail}"
