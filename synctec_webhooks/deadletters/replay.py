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
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message

from synctec_webhooks import schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import SerializationError
from synctec_webhooks.kafka import (
    TopicAdmin,
    core_topics,
    delivery_topic_spec,
    new_producer,
    read_to_end,
)
from synctec_webhooks.serialization import Codec
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
        for msg in read_to_end(self._settings, self._markers, "deadletters-reader", self._admin):
            key, value = msg.key(), msg.value()
            if key and value:
                replayed[key.decode()] = json.loads(value)["replayed_at"]
        found: dict[str, DeadLetterView] = {}
        dead_letters = read_to_end(
            self._settings, self._topics.deadletters, "deadletters-reader", self._admin
        )
        for msg in dead_letters:
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
        producer = new_producer(self._settings, "deadletters-replay")
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
