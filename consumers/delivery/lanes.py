"""One lane per webhook: the records a worker holds for it, and how fast it may go.

A lane keeps its records FIFO per key (topic, partition, Kafka key), so one product's
deliveries to one endpoint go one after the other, and hands out at most `limit` at
once, the limit being the webhook's max in flight adjusted by `AdaptiveLimit`. What it
holds is bounded by the worker, which pauses the lane's partitions when it holds too
much: a slow endpoint then waits in Kafka, not in the worker's memory or slots.

Pure bookkeeping: no asyncio, no Kafka; the worker drives it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from synctec_webhooks.limits import AdaptiveLimit, TokenBucket
from synctec_webhooks.offsets import PartitionOffsets

logger = logging.getLogger(__name__)

ChainKey = tuple[str, int, bytes | None]


@dataclass(slots=True)
class Item:
    """One consumed record waiting for, or in, its delivery attempt."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    record: dict[str, Any] | None  # None: bytes that could not be decoded
    raw: bytes | None = None
    detail: str = ""
    # The partition's tracking generation it was added to (a rewind starts a new one).
    tracked: PartitionOffsets | None = None

    @property
    def chain(self) -> ChainKey:
        return (self.topic, self.partition, self.key)


@dataclass(eq=False)  # identity: lanes go in sets
class Lane:
    webhook_id: str
    control: AdaptiveLimit
    bucket: TokenBucket | None = None
    held: int = 0  # queued + in flight
    in_flight: int = 0
    runners: int = 0  # coroutines working this lane (the worker's)
    paused: bool = False
    subscription: object = None  # the Subscription its limits were last taken from
    paused_partitions: set[tuple[str, int]] = field(default_factory=set)
    _queues: dict[ChainKey, deque[Item]] = field(default_factory=dict)
    _ready: deque[ChainKey] = field(default_factory=deque)  # keys with work, none in flight
    _busy: set[ChainKey] = field(default_factory=set)

    @classmethod
    def new(
        cls, webhook_id: str, max_in_flight: int, rate: float | None, retry_after_max: float
    ) -> Lane:
        lane = cls(webhook_id, AdaptiveLimit(max(1, max_in_flight), retry_after_max))
        lane.configure(max_in_flight, rate, 0.0)
        return lane

    def configure(self, max_in_flight: int, rate: float | None, now: float) -> None:
        """Apply the webhook's limits (they may change while the lane lives). Unusable
        ones, which subscription records are checked against when read, fall back to one
        POST at a time and no rate rather than stop the worker."""
        if max_in_flight < 1 or (rate is not None and not (math.isfinite(rate) and rate > 0)):
            logger.warning("lane %s: unusable limits (max in flight %s, rate %s) ignored",
                           self.webhook_id, max_in_flight, rate)  # fmt: skip
            max_in_flight, rate = max(1, max_in_flight), None
        if max_in_flight != self.control.ceiling:
            self.control.set_ceiling(max_in_flight)
        if rate is None:
            self.bucket = None
        elif self.bucket is None or self.bucket.rate != rate:
            self.bucket = TokenBucket(rate, now=now)

    # --- records ---------------------------------------------------------------------

    def push(self, item: Item) -> None:
        chain = item.chain
        queue = self._queues.get(chain)
        if queue is None:
            queue = self._queues[chain] = deque()
            if chain not in self._busy:
                self._ready.append(chain)
        queue.append(item)
        self.held += 1

    @property
    def ready(self) -> int:
        """Records that could start now (one per key)."""
        return len(self._ready)

    def take(self) -> Item:
        chain = self._ready.popleft()
        queue = self._queues[chain]
        item = queue.popleft()
        if not queue:
            del self._queues[chain]
        self._busy.add(chain)
        self.in_flight += 1
        return item

    def done(self, item: Item) -> None:
        chain = item.chain
        self._busy.discard(chain)
        self.in_flight -= 1
        self.held -= 1
        if chain in self._queues:
            self._ready.append(chain)

    def drop(self, partitions: set[tuple[str, int]]) -> int:
        """Forget queued (not started) records of revoked partitions; how many."""
        dropped = 0
        for chain in [c for c in self._queues if (c[0], c[1]) in partitions]:
            dropped += len(self._queues.pop(chain))
        if dropped:
            self._ready = deque(c for c in self._ready if c in self._queues)
            self.held -= dropped
        return dropped

    # --- pacing ----------------------------------------------------------------------

    def wanted_runners(self) -> int:
        """Runners to add so that every record that may start has one."""
        want = min(self.control.limit, self.in_flight + len(self._ready))
        return max(0, want - self.runners)

    def blocked(self, now: float) -> float:
        """Seconds before any POST may start: what is left of a Retry-After or backoff."""
        return self.control.wait(now)

    def reserve(self, now: float) -> float:
        """Book the next POST under the rate limit; seconds to wait before sending it."""
        return self.bucket.reserve(now) if self.bucket is not None else 0.0

    def on_answer(self, status: int | None, retry_after: float | None, now: float) -> None:
        """Feed what the endpoint answered to the AIMD limit."""
        if status in (429, 503):
            self.control.on_throttle(now, retry_after)
        elif status is not None and 200 <= status < 300:
            self.control.on_success(now)
