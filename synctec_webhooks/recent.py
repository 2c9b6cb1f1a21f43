"""The newest records per key, bounded per key and in all. Pure.

The admin service keeps recent attempts per webhook (attempts/log.py) and recent audit
entries per account (audit_log.py) from topics that may hold millions of records, so
what it keeps is bounded twice: at most `per_key` records per key, among the newest
`budget` of all keys. Records are kept as given (the record's bytes, decoded when asked
for: a decoded dict takes four times the memory).

Eviction is O(1) per record: one queue holds the key of every record kept, in arrival
order; a record its own key's ring dropped already leaves a "stale" mark in that queue,
which eviction skips by counting rather than searching.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

__all__ = ["RecentByKey"]


class RecentByKey:
    def __init__(self, per_key: int, budget: int) -> None:
        self._per_key = per_key
        self._budget = budget
        self._rings: dict[str, deque[bytes]] = {}  # per key, oldest first
        # The key of every record kept, in the order they came (the eviction order),
        # and per key how many of its oldest entries there name a record its own ring
        # dropped already.
        self._order: deque[str] = deque()
        self._stale: dict[str, int] = {}
        self.kept = 0  # records held in the rings

    def keep(self, key: str, raw: bytes) -> None:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque()
        ring.append(raw)
        self._order.append(key)
        self.kept += 1
        if len(ring) > self._per_key:
            ring.popleft()
            self.kept -= 1
            self._stale[key] = self._stale.get(key, 0) + 1
        while len(self._order) > self._budget:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        key = self._order.popleft()
        stale = self._stale.get(key, 0)
        if stale > 1:
            self._stale[key] = stale - 1
        elif stale == 1:
            del self._stale[key]
        else:
            ring = self._rings[key]
            ring.popleft()
            self.kept -= 1
            if not ring:
                del self._rings[key]

    def newest(self, key: str) -> Iterator[bytes]:
        """The key's records, newest first."""
        return reversed(self._rings.get(key, deque()))

    def keys(self) -> list[str]:
        return list(self._rings)

    def forget(self, key: str) -> None:
        ring = self._rings.pop(key, None)
        if ring:  # their entries in the eviction order now name nothing
            self.kept -= len(ring)
            self._stale[key] = self._stale.get(key, 0) + len(ring)
