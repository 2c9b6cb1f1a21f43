"""What a sync service imports to emit events.

    from synctec_webhooks.producers import EventProducer
    with EventProducer.from_env() as p:
        event_id = p.emit({"event": "product.synced", ...})

Each event is validated before anything is sent (an `InvalidEvent` names the bad
field), encoded with its Avro schema, and produced idempotently with `acks=all`, keyed
by product (or collection) id so that events about one product keep their order.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message

from synctec_webhooks import schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import EmitError, InvalidEvent
from synctec_webhooks.events import partition_key, validate_event
from synctec_webhooks.kafka import TopicAdmin, core_topics, new_producer, produce_when_queued
from synctec_webhooks.serialization import Codec, make_codec
from synctec_webhooks.topics import Topics

__all__ = ["EmitError", "EventProducer", "InvalidEvent"]


class EventProducer:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self._settings = settings
        self._codec = codec or make_codec(settings.schema_registry_url)
        self._topic = Topics(settings.topic_prefix).events
        TopicAdmin(settings).ensure(core_topics(settings))
        self._producer = new_producer(settings, "events-producer")
        self._errors: list[str] = []

    @classmethod
    def from_env(cls) -> EventProducer:
        return cls(Settings.from_env())

    def encode(self, event: object, account: str | None = None) -> tuple[str, bytes, str]:
        """Validate and encode one event: (event id, Avro bytes, partition key).

        The event belongs to `account`, or to its own "account_id" field: one of the two
        is required (InvalidEvent otherwise), and both given must agree."""
        event_type, record = validate_event(event, account=account)
        value = self._codec.encode(self._topic, schemas.EVENT_SCHEMA[event_type], record)
        return record["id"], value, partition_key(event_type, record)

    def emit(self, event: object, account: str | None = None) -> str:
        """Queue one event of `account` (or of its "account_id" field); returns its id.
        Call flush() to wait for the broker."""
        return self.emit_many([event], account)[0]

    def emit_many(self, events: Iterable[object], account: str | None = None) -> list[str]:
        """Validate every event first: one invalid event means none is sent."""
        encoded = [self.encode(e, account) for e in events]
        for _, value, key in encoded:
            self._produce(value, key)
        return [event_id for event_id, _, _ in encoded]

    def _produce(self, value: bytes, key: str) -> None:
        produce_when_queued(self._producer, self._topic, value, key, on_delivery=self._on_delivery)
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the broker acknowledged every queued event; raise if any failed."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise EmitError(
                f"{remaining} events not acknowledged within {timeout} s; is the broker up?"
            )
        if self._errors:
            errors, self._errors = self._errors, []
            raise EmitError(f"{len(errors)} events were not written: {errors[0]}")

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._producer.flush(5)

    def raw_produce(self, value: bytes, key: Any = None) -> None:
        """Write bytes as they are to the events topic (for tests and poison-record drills)."""
        self._produce(value, key)
