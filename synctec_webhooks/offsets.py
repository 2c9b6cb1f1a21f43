"""Which offset is safe to commit when records of a partition finish out of order.

Records are processed concurrently, but Kafka commits one position per partition: "all
before this is done". So the committable position is the first offset still unfinished
(or last + 1 once everything is done). Offsets may have gaps (compaction, transaction
markers); only offsets that were `add`ed count.

Cost: `add` O(1), `done` amortised O(1): every offset enters and leaves the deque once.
"""

from __future__ import annotations

import logging
from collections import deque

logger = logging.getLogger(__name__)


class PartitionOffsets:
    """Offsets of one partition that were started and not yet committed past."""

    def __init__(self) -> None:
        self._started: deque[int] = deque()  # increasing, head = oldest not yet passed
        self._in_flight: set[int] = set()
        self._last = -1  # Kafka offsets start at 0

    def add(self, offset: int) -> None:
        """Record that `offset` started; offsets must increase within a partition."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if offset <= self._last:
            raise ValueError(
                f"offset {offset} added after {self._last}: offsets must increase "
                "(forget the partition before seeking back)"
            )
        self._last = offset
        self._started.append(offset)
        self._in_flight.add(offset)

    def done(self, offset: int) -> int | None:
        """Mark `offset` finished. Returns the new committable position if it moved.

        An offset that is not in flight (finished twice, or started before a revoke)
        is ignored and gives None.
        """
        if offset not in self._in_flight:
            logger.debug("offset %s finished but not in flight; ignored", offset)
            return None
        self._in_flight.remove(offset)
        if offset != self._started[0]:
            return None  # an older offset is still running: the position cannot move
        started = self._started
        while started and started[0] not in self._in_flight:
            started.popleft()
        return started[0] if started else self._last + 1

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def last(self) -> int:
        """The last offset added (-1 before the first)."""
        return self._last

    @property
    def window(self) -> int:
        """Offsets held from the committable position to the last one added.

        One stuck record keeps everything after it here, finished or not, so a consumer
        should pause the partition when this grows, not only watch `in_flight`.
        """
        return len(self._started)


class OffsetTracker:
    """`PartitionOffsets` for each (topic, partition) a consumer is working on."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], PartitionOffsets] = {}

    def add(self, topic: str, partition: int, offset: int) -> None:
        self.partition(topic, partition).add(offset)

    def partition(self, topic: str, partition: int) -> PartitionOffsets:
        """The partition's tracker, created on first use."""
        key = (topic, partition)
        tracked = self._partitions.get(key)
        if tracked is None:
            tracked = self._partitions[key] = PartitionOffsets()
        return tracked

    def current(self, topic: str, partition: int) -> PartitionOffsets | None:
        """The partition's tracker now; after `forget` a new one replaces the old."""
        return self._partitions.get((topic, partition))

    def done(self, topic: str, partition: int, offset: int) -> int | None:
        """The new committable position of the partition, if it moved.

        None also for a partition that was forgotten (revoked) meanwhile: its new owner
        commits for it now.
        """
        tracked = self._partitions.get((topic, partition))
        return None if tracked is None else tracked.done(offset)

    def forget(self, topic: str, partition: int) -> None:
        """Drop a partition, on revoke or before seeking it back."""
        self._partitions.pop((topic, partition), None)

    def window(self, topic: str, partition: int) -> int:
        """See `PartitionOffsets.window`; 0 for a partition not tracked."""
        tracked = self._partitions.get((topic, partition))
        return 0 if tracked is None else tracked.window

    def in_flight(self, topic: str | None = None, partition: int | None = None) -> int:
        """Records in flight: all, of one topic, or of one partition."""
        if partition is not None:
            if topic is None:
                raise ValueError("in_flight: a partition needs its topic")
            tracked = self._partitions.get((topic, partition))
            return 0 if tracked is None else tracked.in_flight
        return sum(
            tracked.in_flight
            for (name, _), tracked in self._partitions.items()
            if topic is None or name == topic
        )
