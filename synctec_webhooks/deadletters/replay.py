"""Reading and replaying the dead-letter topic.

`list` reads `<prefix>.deadletters` to its end. `replay` sends the selected dead
letters round again: each one's delivery record goes back to its webhook's delivery
topic as attempt 1 (same delivery id, so receivers can dedupe; `replays` counts the
rounds), and a marker keyed by the dead letter's id goes to the compacted
`<prefix>.deadletters.replayed` topic, so the same dead letter is not replayed twice
and `list` can show it as replayed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from synctec_webhooks import schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import (
    TopicAdmin,
    base_config,
    core_topics,
    delivery_topic_spec,
    position,
    producer_config,
)
from synctec_webhooks.serialization import Codec, SerializationError
from synctec_webhooks.topics import Topics


@dataclass
class DeadLetterView:
    record: dict[str, Any]
    replayed_at: int | None

    def summary(self) -> dict[str, Any]:
        r = self.record
        return {
            "dead_letter_id": r["dead_letter_id"],
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


def _read_to_end(settings: Settings, topic: str) -> Iterator[Message]:
    """Every record of `topic` up to its current end, without a consumer group."""
    admin = TopicAdmin(settings)
    count = admin.partitions(topic)
    conf = base_config(settings, "deadletters-reader")
    conf.update(
        {
            "group.id": f"{settings.topic_prefix}.unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer = Consumer(conf)
    try:
        ends = {}
        for p in range(count):
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10, cached=False
            )
            if high > 0:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            # Short waits: consume() holds out for a full batch until its timeout, and the
            # position check below is what ends the read.
            for msg in consumer.consume(500, 0.1):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {err}")
                    continue
                yield msg
                _, partition, offset = position(msg)
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition)
    finally:
        consumer.close()


class DeadLetters:
    def __init__(self, settings: Settings, codec: Codec) -> None:
        self._settings = settings
        self._codec = codec
        self._topics = Topics(settings.topic_prefix)
        self._markers = f"{self._topics.deadletters}.replayed"
        self._admin = TopicAdmin(settings)
        self._admin.ensure(core_topics(settings))

    def list(
        self,
        webhook_id: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
    ) -> list[DeadLetterView]:
        replayed: dict[str, int] = {}
        for msg in _read_to_end(self._settings, self._markers):
            key, value = msg.key(), msg.value()
            if key and value:
                replayed[key.decode()] = json.loads(value)["replayed_at"]
        found: dict[str, DeadLetterView] = {}
        for msg in _read_to_end(self._settings, self._topics.deadletters):
            try:
                _, rec = self._codec.decode(self._topics.deadletters, msg.value() or b"")
            except SerializationError:
                continue  # not ours to show; nothing else reads this topic's garbage
            if webhook_id and rec["webhook_id"] != webhook_id:
                continue
            if event_id and rec["event_id"] != event_id:
                continue
            if event_type and rec["event_type"] != event_type:
                continue
            if ids is not None and rec["dead_letter_id"] not in ids:
                continue
            # Same id = the same source record dead-lettered again after a crash: keep one.
            found[rec["dead_letter_id"]] = DeadLetterView(rec, replayed.get(rec["dead_letter_id"]))
        return list(found.values())

    def replay(
        self,
        webhook_id: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
    ) -> tuple[int, int]:
        """Replay what matches and was not replayed yet: (replayed, not replayable)."""
        views = [
            v for v in self.list(webhook_id, event_id, event_type, ids) if v.replayed_at is None
        ]
        producer = Producer(producer_config(self._settings, "deadletters-replay"))
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        now = int(time.time() * 1000)
        replayed = skipped = 0
        for view in views:
            delivery = view.record["delivery"]
            if delivery is None:
                skipped += 1
                continue
            again = {
                **delivery,
                "attempt": 1,
                "not_before": now,
                "history": [],
                "replays": delivery["replays"] + 1,
            }
            topic = self._topics.delivery(delivery["webhook_id"])
            self._admin.ensure([delivery_topic_spec(self._settings, delivery["webhook_id"])])
            value = self._codec.encode(topic, schemas.DELIVERY, again)
            producer.produce(
                topic, value=value, key=delivery["partition_key"], on_delivery=on_delivery
            )
            replayed += 1
        # Markers only after the replayed records are acknowledged: a crash in between
        # leaves the dead letter unmarked, so it is replayed again, never lost.
        if producer.flush(30) or errors:
            raise RuntimeError(f"replay not acknowledged by the broker: {errors[:1] or 'timeout'}")
        for view in views:
            if view.record["delivery"] is not None:
                marker = json.dumps({"replayed_at": now}).encode()
                producer.produce(
                    self._markers,
                    key=view.record["dead_letter_id"],
                    value=marker,
                    on_delivery=on_delivery,
                )
        if producer.flush(30) or errors:
            raise RuntimeError(f"replay markers not acknowledged: {errors[:1] or 'timeout'}")
        return replayed, skipped
