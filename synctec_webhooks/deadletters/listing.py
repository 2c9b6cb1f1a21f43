"""Listing dead letters, pure: which rows are one dead letter, in what order, a page at a
time, holding no more than a page.

Identity: `identity(record)`, the dead-letter id of what failed. For a delivery it is
recomputed from the delivery and its replay round (records.dead_letter_id), so dead
letters written before ids came from the delivery (one per retry chain) merge too.

Order, newest first, by `sort_key`: a delivery's dead letters by the time its round
began (the fan-out's `created_at`, or the replay's), which every dead letter of one
identity shares, so duplicates sort together and a cursor never splits them; a dead
letter without a delivery (bytes that were never a delivery, or one too large to keep)
by when it failed, its first time.

Memory: a `PageBuilder` is fed the whole topic, record by record, and keeps the `limit`
newest deliveries' dead letters below its cursor (a heap), plus one row per distinct
dead letter without a delivery (rare: poison records), whose place is only known once
every copy was seen.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from typing import Any

from synctec_webhooks.deadletters.records import Source, dead_letter_id

_CURSOR = re.compile(r"^([0-9]{1,15})\.(dl_[0-9a-f]{32})$")

Key = tuple[int, str]  # (sort key, dead-letter id): unique per dead letter, ordered


def identity(record: dict[str, Any]) -> str:
    delivery = record.get("delivery")
    if delivery is None:
        return str(record["dead_letter_id"])
    source = Source(record["source_topic"], record["source_partition"], record["source_offset"])
    return dead_letter_id(source, delivery)


def sort_key(record: dict[str, Any]) -> int:
    delivery = record.get("delivery")
    return int(delivery["created_at"] if delivery is not None else record["failed_at"])


def encode_cursor(key: Key) -> str:
    return f"{key[0]}.{key[1]}"


def parse_cursor(text: str) -> Key:
    found = _CURSOR.fullmatch(text)
    if found is None:
        raise ValueError("cursor: not one this API gave; use next_cursor as it was given")
    return int(found.group(1)), found.group(2)


@dataclass(frozen=True)
class Filters:
    """Every filter given must match; `ids` matches the dead-letter id shown, or the one
    stored on records written before ids came from the delivery."""

    webhook_id: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    ids: frozenset[str] | None = None
    # One account's dead letters only: what every account credential is held to. A dead
    # letter with no account (a record nobody could read) matches no account filter.
    account_id: str | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.webhook_id
            or self.event_id
            or self.event_type
            or self.ids is not None
            or self.account_id
        )

    def may_match_key(self, key: bytes | None) -> bool:
        """False when the Kafka key alone rules the record out (dead letters are keyed
        by their webhook), so it need not be decoded."""
        return not self.webhook_id or key is None or key.decode(errors="replace") == self.webhook_id

    def match(self, record: dict[str, Any], dl_id: str) -> bool:
        if self.account_id and record.get("account_id") != self.account_id:
            return False
        if self.webhook_id and record["webhook_id"] != self.webhook_id:
            return False
        if self.event_id and record["event_id"] != self.event_id:
            return False
        if self.event_type and record["event_type"] != self.event_type:
            return False
        return self.ids is None or dl_id in self.ids or record["dead_letter_id"] in self.ids


def slim(record: dict[str, Any], dl_id: str) -> dict[str, Any]:
    """What a listing keeps of a record: its id made the identity, the bulky bytes and
    the delivery's payload left out (a page shows neither)."""
    delivery = record.get("delivery")
    return {
        **record,
        "dead_letter_id": dl_id,
        "stored_id": record["dead_letter_id"],
        "raw": None,
        "delivery": None if delivery is None else {**delivery, "payload": ""},
    }


class PageBuilder:
    """The newest `limit` dead letters older than `cursor` (None: from the newest) of
    all the records `add`ed, each dead letter once; `rows()` newest first, then
    `next_cursor` (None when nothing older is left)."""

    def __init__(self, limit: int, cursor: str | None, filters: Filters) -> None:
        self._limit = limit
        self._before: Key | None = parse_cursor(cursor) if cursor is not None else None
        self._filters = filters
        self._heap: list[Key] = []  # the page so far; smallest (oldest) first
        self._rows: dict[str, dict[str, Any]] = {}  # id -> row, for what is in the heap
        # Dead letters without a delivery: id -> [first failure, row]; see the docstring.
        self._loose: dict[str, tuple[int, dict[str, Any]]] = {}
        self._older = False  # a dead letter below the page was seen

    @property
    def held(self) -> int:
        return len(self._heap) + len(self._loose)

    def add(self, record: dict[str, Any]) -> None:
        dl_id = identity(record)
        if not self._filters.match(record, dl_id):
            return
        if record.get("delivery") is None:
            seen = self._loose.get(dl_id)
            if seen is None or record["failed_at"] < seen[0]:
                row = seen[1] if seen is not None else slim(record, dl_id)
                self._loose[dl_id] = (record["failed_at"], row)
            return
        key = (sort_key(record), dl_id)
        if dl_id in self._rows or not self._below(key):
            return  # a second chain of a dead letter held already, or on an earlier page
        if len(self._heap) < self._limit:
            heapq.heappush(self._heap, key)
        elif key > self._heap[0]:
            dropped = heapq.heapreplace(self._heap, key)
            del self._rows[dropped[1]]
            self._older = True
        else:
            self._older = True
            return
        self._rows[dl_id] = slim(record, dl_id)

    def _below(self, key: Key) -> bool:
        return self._before is None or key < self._before

    def _page(self) -> tuple[list[Key], bool]:
        loose = [(at, dl_id) for dl_id, (at, _) in self._loose.items() if self._below((at, dl_id))]
        keys = sorted([*self._heap, *loose], reverse=True)
        return keys[: self._limit], self._older or len(keys) > self._limit

    def rows(self) -> list[dict[str, Any]]:
        keys, _ = self._page()
        return [self._rows[k[1]] if k[1] in self._rows else self._loose[k[1]][1] for k in keys]

    @property
    def next_cursor(self) -> str | None:
        keys, more = self._page()
        return encode_cursor(keys[-1]) if more and keys else None
