"""The only package that builds confluent-kafka clients, and the asyncio bridges to them.

    config     what every client sets; error_cb and its listeners (the metrics)
    admin      TopicSpec, core_topics, delivery_topic_spec; TopicAdmin creates topics
    producer   new_producer, AsyncProducer, produce_until_acked, TransactionalProducer
    consumer   AsyncConsumer; data_messages, position, is_benign
    follower   TopicFollower and read_to_end: a whole topic, read without a group
    probe      probe_admin, probe_consumer: the local broker's readiness probe

Why not `confluent_kafka.aio`: `AIOConsumer` serialises every call behind the one in
flight, so `store_offsets` would wait for a blocking `consume`, and `AIOProducer`
buffers produce calls for up to a second and refuses `headers=`. The workers need
offsets stored the moment a POST finishes and headers on dead letters, so they use the
plain clients: a `Producer` polled by its own thread, whose delivery reports resolve
asyncio futures through `call_soon_threadsafe`, and a `Consumer` whose `consume()` runs
on a dedicated thread while the event loop stores offsets and pauses; resumes are made
on that thread, between two `consume()` calls (see `AsyncConsumer.consume`).
"""

from synctec_webhooks.errors import DeliveryFailed
from synctec_webhooks.kafka.admin import TopicAdmin, TopicSpec, core_topics, delivery_topic_spec
from synctec_webhooks.kafka.config import (
    add_error_listener,
    base_config,
    consumer_config,
    producer_config,
)
from synctec_webhooks.kafka.consumer import AsyncConsumer, data_messages, is_benign, position
from synctec_webhooks.kafka.follower import (
    READER_GROUP,
    CatchUps,
    TopicFollower,
    read_to_end,
    reader_config,
)
from synctec_webhooks.kafka.probe import probe_admin, probe_consumer
from synctec_webhooks.kafka.producer import (
    AsyncProducer,
    TransactionalProducer,
    new_producer,
    produce_until_acked,
    produce_when_queued,
)

__all__ = [
    "READER_GROUP",
    "AsyncConsumer",
    "AsyncProducer",
    "CatchUps",
    "DeliveryFailed",
    "TopicAdmin",
    "TopicFollower",
    "TopicSpec",
    "TransactionalProducer",
    "add_error_listener",
    "base_config",
    "consumer_config",
    "core_topics",
    "data_messages",
    "delivery_topic_spec",
    "is_benign",
    "new_producer",
    "position",
    "probe_admin",
    "probe_consumer",
    "produce_until_acked",
    "produce_when_queued",
    "producer_config",
    "read_to_end",
    "reader_config",
]
