"""The oracle: which (event, endpoint) pairs must happen, and what actually did.

Every emitted event and every webhook subscribed to its type when it was emitted make
one expected pair. A pair is accounted for when the endpoint answered one of its POSTs
with a 2xx in time (delivered) or it sits in the dead-letter topic (dead-lettered).
Anything else is missing, and missing must be 0. Two more counts:

- duplicate POSTs: 2xx answers beyond the first for one pair (allowed only after a
  worker crash, for the records it had in flight; each carries the same delivery id);
- fan-out duplicates: delivery records written more than once for one pair, read
  back from the delivery topics with read_committed (must be 0: exactly-once fan-out).

A webhook removed mid-flight expects only the pairs the fan-out wrote a delivery
record for before it saw the removal (an event fanned out after it is rightly not
sent); those must still be delivered or dead-lettered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from synctec_webhooks.config import Settings
from synctec_webhooks.deadletters.replay import DeadLetters
from synctec_webhooks.serialization import SerializationError, make_codec
from synctec_webhooks.topics import Topics
from tests.integration.harness import Receiver

Pair = tuple[str, str]  # (event id, webhook id)


@dataclass
class Report:
    scenario: str
    expected: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    missing: int = 0
    duplicate_posts: int = 0
    fanout_duplicates: int = 0
    poison_dead_lettered: int = 0
    why: str = ""
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.expected} | {self.delivered} | {self.dead_lettered} | "
            f"{self.missing} | {self.duplicate_posts} | {self.fanout_duplicates} | {self.why} |"
        )


HEADER = (
    "| scenario | expected | delivered | dead-lettered | missing | duplicate POSTs "
    "| fan-out duplicates | duplicates because |\n|---|---|---|---|---|---|---|---|"
)


class Oracle:
    def __init__(self, settings: Settings, receiver: Receiver, http_timeout: float) -> None:
        self.settings = settings
        self.receiver = receiver
        self.http_timeout = http_timeout
        self.expected: set[Pair] = set()
        self.webhook_of_path: dict[str, str] = {}
        self._removed: set[str] = set()

    def removed(self, webhook_id: str) -> None:
        self._removed.add(webhook_id)

    def _expected(self, fanned_out: set[Pair]) -> set[Pair]:
        return {
            pair for pair in self.expected if pair[1] not in self._removed or pair in fanned_out
        }

    def subscribe(self, path: str, webhook_id: str) -> None:
        self.webhook_of_path[path] = webhook_id

    def emitted(self, event_ids: list[str], webhook_ids: list[str]) -> None:
        self.expected |= {(e, w) for e in event_ids for w in webhook_ids}

    def successful_posts(self) -> Counter[Pair]:
        ok: Counter[Pair] = Counter()
        for r in self.receiver.received():
            webhook = self.webhook_of_path.get(r.path)
            # A 2xx sent after the client gave up is not a delivery: it will be retried.
            if webhook and 200 <= r.status < 300 and r.delay < self.http_timeout * 0.8:
                ok[(r.json["id"], webhook)] += 1
        return ok

    def dead_lettered(self) -> tuple[set[Pair], int]:
        letters = DeadLetters(self.settings, make_codec(None)).list()
        pairs = {
            (d.record["event_id"], d.record["webhook_id"]) for d in letters if d.record["event_id"]
        }
        poison = sum(1 for d in letters if d.record["event_id"] is None)
        return pairs, poison

    def accounted(self) -> bool:
        delivered = set(self.successful_posts())
        dead, _ = self.dead_lettered()
        fanned_out = set(fanout_records(self.settings)) if self._removed else set()
        return self._expected(fanned_out) <= delivered | dead

    def report(self, scenario: str, why: str = "") -> Report:
        ok = self.successful_posts()
        dead, poison = self.dead_lettered()
        records = fanout_records(self.settings)
        expected = self._expected(set(records))
        delivered = expected & set(ok)
        dead_only = (expected & dead) - delivered
        return Report(
            scenario=scenario,
            expected=len(expected),
            delivered=len(delivered),
            dead_lettered=len(dead_only),
            missing=len(expected - delivered - dead),
            duplicate_posts=sum(n - 1 for n in ok.values()),
            fanout_duplicates=sum(n - 1 for n in records.values()),
            poison_dead_lettered=poison,
            why=why,
        )


def fanout_records(settings: Settings) -> Counter[Pair]:
    """First-attempt delivery records per (event, webhook), in committed data."""
    topics = Topics(settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.topic_prefix}.oracle",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        meta = consumer.list_topics(timeout=10)
        prefix = topics.delivery("")
        parts = [
            TopicPartition(name, p, OFFSET_BEGINNING)
            for name, t in meta.topics.items()
            if name.startswith(prefix)
            for p in t.partitions
        ]
        if not parts:
            return Counter()
        consumer.assign(parts)
        codec = make_codec(settings.schema_registry_url)
        seen: Counter[Pair] = Counter()
        remaining = {(tp.topic, tp.partition) for tp in parts}
        while remaining:
            for msg in consumer.consume(500, 2.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.discard((msg.topic(), msg.partition()))
                    continue
                try:
                    _, rec = codec.decode(msg.topic() or "", msg.value() or b"")
                except SerializationError:
                    continue  # a poison record planted by a scenario
                if rec["replays"] == 0 and rec["attempt"] == 1:
                    seen[(rec["event_id"], rec["webhook_id"])] += 1
        return seen
    finally:
        consumer.close()
