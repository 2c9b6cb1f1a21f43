"""Reading and replaying the dead-letter topic.

`list` and `page` read `<prefix>.deadletters` (see `listing` for what one dead letter,
its order and a page are). `replay` sends the selected dead letters round again: each
one's delivery record goes back to its webhook's delivery topic as attempt 1 of a new
round (same delivery id, so receivers can dedupe; `replays` counts the rounds), and a
marker keyed by the dead letter's id goes to the compacted
`<prefix>.deadletters.replayed` topic, so `list` shows it replayed and no replay sends
it again.

Replay once, however many replays run at once (a double click, two operators, the CLI
beside the API, several admin replicas): every replayer writes its records and markers
in Kafka transactions under one transactional id, `<prefix>.deadletters-replay`.
Starting a transaction producer under that id (`init_transactions`) waits for any
transaction of it being committed to finish and aborts one still open, fencing its
producer; only then are the markers read, and a dead letter with a marker is skipped.
So a replayer's commit succeeds only if no other replayer started after it read the
markers: a replayer that was fenced commits nothing (its records are aborted, and every
reader of delivery topics is `read_committed`), opens a new producer (fencing the
other in turn), reads the markers again and retries the batch, after a random pause
that lets the other one commit. Delivery records and their markers are committed
together, so a crash leaves both or neither. docs/guarantees.md says more.

A dead letter of a webhook that no longer exists is not replayed (its delivery topic is
neither created nor written, and librdkafka's auto-creation is off for this producer):
it is counted `not_replayable` with reason `webhook_not_found` and left as it is.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer

from synctec_webhooks import schemas
from synctec_webhooks.accounts import DEFAULT_ACCOUNT
from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.listing import Filters, PageBuilder, identity
from synctec_webhooks.errors import SerializationError
from synctec_webhooks.kafka import (
    TopicAdmin,
    core_topics,
    delivery_topic_spec,
    new_producer,
    produce_when_queued,
    read_to_end,
)
from synctec_webhooks.serialization import Codec
from synctec_webhooks.topics import Topics

logger = logging.getLogger(__name__)

NO_DELIVERY = "no_delivery"
WEBHOOK_NOT_FOUND = "webhook_not_found"
NOT_REPLAYABLE = {
    NO_DELIVERY: "no delivery to replay (bytes that were never one, or one too large to keep)",
    WEBHOOK_NOT_FOUND: "the webhook was deleted",
}
_BATCH = 500  # dead letters per replay transaction
_GIVE_UP_AFTER = 10  # failed transactions in a row


@dataclass
class DeadLetterView:
    record: dict[str, Any]
    replayed_at: int | None

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "dead_letter_id": r["dead_letter_id"],
            "account_id": r.get("account_id"),
            "webhook_id": r["webhook_id"],
            "event_id": r["event_id"],
            "delivery_id": r["delivery_id"],
            "event_type": r["event_type"],
            "attempts": r["attempts"],
            "reason": r["reason"],
            "detail": r["detail"],
            "failed_at": r["failed_at"],
            "source": f"{r['source_topic']}/{r['source_partition']}@{r['source_offset']}",
            "history": r["history"],
            "replayed_at": self.replayed_at,
            "replayable": r["delivery"] is not None,
        }


Views = list[DeadLetterView]  # `DeadLetters.list` hides the builtin in its class


@dataclass
class ReplayReport:
    replayed: int = 0
    not_replayable: Counter[str] = field(default_factory=Counter)  # reason -> count
    # replayed, by account (the audit trail has an entry per account); not in as_dict
    by_account: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "not_replayable": sum(self.not_replayable.values()),
            "not_replayable_reasons": dict(self.not_replayable),
        }


class DeadLetters:
    def __init__(self, settings: Settings, codec: Codec) -> None:
        self._settings = settings
        self._codec = codec
        self._topics = Topics(settings.topic_prefix)
        self._markers = f"{self._topics.deadletters}.replayed"
        self._admin = TopicAdmin(settings)
        self._admin.ensure(core_topics(settings))

    # --- reading ---------------------------------------------------------------------

    def _decoded(self, filters: Filters) -> Iterator[dict[str, Any]]:
        """Every record of the topic that may match, decoded, one at a time (the key
        rules out other webhooks' records without decoding them)."""
        topic = self._topics.deadletters
        for msg in read_to_end(self._settings, topic, "deadletters-reader", self._admin):
            if not filters.may_match_key(msg.key()):
                continue
            try:
                yield self._codec.decode(topic, msg.value() or b"")[1]
            except SerializationError:
                continue  # not ours to show; nothing else reads this topic's garbage

    def _records(self, filters: Filters) -> Iterator[dict[str, Any]]:
        """`_decoded` that match, their id made the dead letter's identity."""
        for rec in self._decoded(filters):
            dl_id = identity(rec)
            if filters.match(rec, dl_id):
                yield {**rec, "dead_letter_id": dl_id, "stored_id": rec["dead_letter_id"]}

    def _unique(self, filters: Filters) -> Iterator[dict[str, Any]]:
        """`_records`, each dead letter once (its first record in the topic)."""
        seen: set[str] = set()
        for rec in self._records(filters):
            if rec["dead_letter_id"] not in seen:
                seen.add(rec["dead_letter_id"])
                yield rec

    def _replayed(self, wanted: Collection[str] | None = None) -> dict[str, int]:
        """{dead-letter id: replayed at} from the markers (only `wanted` ids, if given)."""
        found: dict[str, int] = {}
        for msg in read_to_end(self._settings, self._markers, "deadletters-reader", self._admin):
            key, value = msg.key(), msg.value()
            if key and value and (wanted is None or key.decode() in wanted):
                found[key.decode()] = json.loads(value)["replayed_at"]
        return found

    def list(
        self,
        webhook_id: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
        account_id: str | None = None,
    ) -> list[DeadLetterView]:
        """Every dead letter that matches, in topic order (the CLI and tests; the API
        takes a `page`); of one account, if given."""
        filters = Filters(webhook_id, event_id, event_type, _ids(ids), account_id)
        return list(self.views(filters))

    def views(self, filters: Filters) -> Iterator[DeadLetterView]:
        """Every dead letter that matches, one at a time, in topic order."""
        replayed = self._replayed()
        for rec in self._unique(filters):
            yield DeadLetterView(rec, _replayed_at(replayed, rec))

    def page(
        self, filters: Filters, limit: int, cursor: str | None = None
    ) -> tuple[Views, str | None]:
        """The newest `limit` dead letters after `cursor`, and the next page's cursor
        (None on the last page). Holds one page, however large the topic."""
        builder = PageBuilder(limit, cursor, filters)  # a bad cursor raises ValueError
        for rec in self._decoded(filters):
            builder.add(rec)
        rows = builder.rows()
        replayed = self._replayed({i for r in rows for i in (r["dead_letter_id"], r["stored_id"])})
        return [DeadLetterView(r, _replayed_at(replayed, r)) for r in rows], builder.next_cursor

    def live_webhooks(self) -> set[str]:
        """Ids of the webhooks that exist: the subscriptions topic's keys whose latest
        record is not a tombstone."""
        live: set[str] = set()
        topic = self._topics.subscriptions
        for msg in read_to_end(self._settings, topic, "deadletters-webhooks", self._admin):
            key = msg.key()
            if key is None:
                continue
            if msg.value() is None:
                live.discard(key.decode())
            else:
                live.add(key.decode())
        return live

    # --- replaying -------------------------------------------------------------------

    def replay(
        self,
        webhook_id: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
        *,
        everything: bool = False,
        account_id: str | None = None,
    ) -> tuple[int, int]:
        """`replay_report`, counted: (replayed, not replayable); `account_id` holds the
        replay to one account's dead letters (with `everything`, all of them)."""
        filters = Filters(webhook_id, event_id, event_type, _ids(ids), account_id)
        report = self.replay_report(filters, everything=everything)
        return report.replayed, sum(report.not_replayable.values())

    def replay_report(
        self,
        filters: Filters,
        *,
        everything: bool = False,
        webhook_exists: Callable[[str], bool] | None = None,
    ) -> ReplayReport:
        """Replay what matches and was not replayed yet. No filter replays nothing
        unless `everything` says so. `webhook_exists` defaults to reading the
        subscriptions topic now (the admin service asks its followed table)."""
        if filters.empty and not everything:
            raise ValueError("give a filter, or everything=True to replay every dead letter")
        exists = webhook_exists or self.live_webhooks().__contains__
        report = ReplayReport()
        with _Replayer(self, exists) as replayer:
            for rec in self._unique(filters):
                if replayer.done(rec):
                    continue
                delivery = rec["delivery"]
                if delivery is None:
                    report.not_replayable[NO_DELIVERY] += 1
                elif not exists(delivery["webhook_id"]):
                    report.not_replayable[WEBHOOK_NOT_FOUND] += 1
                else:
                    replayer.add(rec)
            replayer.flush()
            report.replayed = replayer.count
            report.by_account = replayer.by_account
            if replayer.gone:  # deleted while the replay ran
                report.not_replayable[WEBHOOK_NOT_FOUND] += replayer.gone
        return report

    def _again(self, delivery: dict[str, Any], now_ms: int) -> tuple[str, bytes, str]:
        """(topic, value, key) of the delivery's next round: attempt 1, no history; its
        `created_at` is the round's start, which orders its dead letter if it fails."""
        again = {
            **delivery,
            "attempt": 1,
            "not_before": now_ms,
            "created_at": now_ms,
            "history": [],
            "replays": delivery["replays"] + 1,
        }
        topic = self._topics.delivery(delivery["webhook_id"])
        return topic, self._codec.encode(topic, schemas.DELIVERY, again), delivery["partition_key"]


class _Replayer:
    """One replay's transactions (see the module docstring): `add` dead letters, which
    are committed `_BATCH` at a time with their markers; `count` of them committed."""

    def __init__(self, dls: DeadLetters, exists: Callable[[str], bool]) -> None:
        self._dls = dls
        self._exists = exists
        self._settings = dls._settings
        self._producer: Producer | None = None
        self._markers: dict[str, int] = {}
        self._batch: list[dict[str, Any]] = []
        self._failures = 0
        self.count = 0
        self.by_account: Counter[str] = Counter()
        self.gone = 0  # left out: their webhook was deleted meanwhile

    def __enter__(self) -> _Replayer:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _open(self) -> Producer:
        producer = new_producer(
            self._settings,
            "deadletters-replay",
            **{
                "transactional.id": Topics(self._settings.topic_prefix).group("deadletters-replay"),
                "transaction.timeout.ms": self._settings.transaction_timeout_ms,
                # Only topics of existing webhooks are written, and made first if missing;
                # a topic deleted meanwhile must fail the write, not come back.
                "allow.auto.create.topics": False,
            },
        )
        producer.init_transactions(60)
        self._producer = producer
        # Only now: every replay committed before init_transactions returned is in it.
        self._markers = self._dls._replayed()
        return producer

    def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.abort_transaction(5)  # none open after a commit: a no-op error
            except KafkaException:
                pass

    def done(self, rec: dict[str, Any]) -> bool:
        return rec["dead_letter_id"] in self._markers or rec["stored_id"] in self._markers

    def add(self, rec: dict[str, Any]) -> None:
        self._batch.append(rec)
        if len(self._batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        while self._batch:
            try:
                self._commit(self._producer or self._open())
            except KafkaException as exc:
                self._failed(exc)

    def _commit(self, producer: Producer) -> None:
        batch = [rec for rec in self._batch if not self.done(rec)]
        live = [rec for rec in batch if self._exists(rec["delivery"]["webhook_id"])]
        if len(live) < len(batch):
            self.gone += len(batch) - len(live)
            self._batch = batch = live
        if not batch:  # all replayed by another replay meanwhile, or gone
            self._batch.clear()
            return
        for webhook_id in {rec["delivery"]["webhook_id"] for rec in batch}:
            self._dls._admin.ensure([delivery_topic_spec(self._settings, webhook_id)])
        now = int(time.time() * 1000)
        marker = json.dumps({"replayed_at": now}).encode()
        producer.begin_transaction()
        for rec in batch:
            topic, value, key = self._dls._again(rec["delivery"], now)
            produce_when_queued(producer, topic, value, key)
            produce_when_queued(producer, self._dls._markers, marker, rec["dead_letter_id"])
        producer.commit_transaction(60)
        for rec in batch:
            self._markers[rec["dead_letter_id"]] = now
        self.count += len(batch)
        self.by_account.update(_account(rec) for rec in batch)
        self._batch.clear()
        self._failures = 0

    def _failed(self, exc: KafkaException) -> None:
        """A transaction that did not commit: most often fenced by a replay that started
        after this one. Start afresh (a new producer, the markers read again) after a
        random pause, or give up after `_GIVE_UP_AFTER` in a row."""
        self._close()
        self._failures += 1
        if self._failures >= _GIVE_UP_AFTER:
            raise RuntimeError(f"replay not committed after {self._failures} tries: {exc}")
        pause = min(5.0, 0.1 * 2**self._failures) * random.uniform(0.5, 1.5)
        logger.info("replay transaction not committed (%s); trying again in %.1f s", exc, pause)
        time.sleep(pause)


def _account(rec: dict[str, Any]) -> str:
    return str(rec.get("account_id") or rec["delivery"].get("account_id") or DEFAULT_ACCOUNT)


def _ids(ids: Collection[str] | None) -> frozenset[str] | None:
    return frozenset(ids) if ids is not None else None


def _replayed_at(replayed: dict[str, int], rec: dict[str, Any]) -> int | None:
    # Markers written before ids came from the delivery are keyed by the stored id.
    return replayed.get(rec["dead_letter_id"], replayed.get(rec["stored_id"]))
