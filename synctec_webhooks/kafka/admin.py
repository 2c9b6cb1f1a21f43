"""Topics: what the platform's topics look like (`TopicSpec`, `core_topics`) and the
admin client that creates them on demand (`TopicAdmin`).

Topic *names* come from `synctec_webhooks.topics`; this module creates and inspects them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from synctec_webhooks.config import Settings
from synctec_webhooks.kafka.config import base_config
from synctec_webhooks.topics import Topics


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


_ASK_BEFORE_CREATING = 50  # missing topics above which ensure() lists what exists first


class TopicAdmin:
    """Creates topics on demand, remembering what exists so the hot path asks once."""

    def __init__(self, settings: Settings) -> None:
        self._admin = AdminClient(base_config(settings, "admin"))
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, specs: Iterable[TopicSpec], timeout: float = 30.0) -> None:
        with self._lock:
            missing = list({s.name: s for s in specs if s.name not in self._known}.values())
            if len(missing) > _ASK_BEFORE_CREATING:
                # Many at once (a fan-out starting with thousands of webhooks): one
                # metadata request says which exist, rather than a CreateTopics naming
                # thousands of topics that mostly exist (it held the fan-out's first
                # transaction for a minute with 10,000 webhooks).
                existing = set(self._admin.list_topics(timeout=timeout).topics)
                self._known |= existing
                missing = [s for s in missing if s.name not in existing]
            if not missing:
                return
            new = [
                NewTopic(
                    s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config
                )
                for s in missing
            ]
            futures = self._admin.create_topics(new, operation_timeout=timeout)
            for name, fut in futures.items():
                try:
                    fut.result(timeout)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
                except TimeoutError:
                    # An AdminClient is never polled otherwise, so a refused login (a
                    # wrong SASL password) would end as a bare timeout: serve error_cb
                    # now, so the log says why the broker did not answer.
                    self._admin.poll(0)
                    raise
                self._known.add(name)

    def known(self, topic: str) -> bool:
        return topic in self._known

    def partitions(self, topic: str, timeout: float = 10.0) -> int:
        """Partition count; waits while a topic just created elsewhere is not in metadata yet."""
        deadline = time.monotonic() + timeout
        while True:
            meta = self._admin.list_topics(topic, timeout=timeout)
            info = meta.topics.get(topic)
            if info is not None and info.error is None and info.partitions:
                return len(info.partitions)
            if time.monotonic() > deadline:
                raise KafkaException(
                    info.error
                    if info and info.error
                    else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                )
            time.sleep(0.1)

    def list_topics(self, timeout: float = 10.0) -> list[str]:
        return list(self._admin.list_topics(timeout=timeout).topics)


def core_topics(settings: Settings) -> list[TopicSpec]:
    t = Topics(settings.topic_prefix)
    specs = [
        TopicSpec(t.events, settings.events_partitions),
        TopicSpec(
            t.subscriptions,
            1,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        # Dead letters are the record of what failed for good: kept until removed by hand.
        TopicSpec(t.deadletters, 3, {"retention.ms": "-1"}),
        TopicSpec(f"{t.deadletters}.replayed", 1, {"cleanup.policy": "compact"}),
        # Recent attempts for people to look at, not a record to keep: a week is plenty.
        TopicSpec(t.attempts, 3, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        # Accounts and API keys (hashes), read whole by every admin replica: compacted.
        TopicSpec(t.accounts, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(t.api_keys, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        # Who changed what: kept as long as the operator's audit policy says.
        TopicSpec(
            t.audit, 3, {"retention.ms": str(settings.audit_retention_days * 24 * 3600 * 1000)}
        ),
    ]
    specs += [
        TopicSpec(t.retry(tier), settings.delivery_partitions)
        for tier in range(1, len(settings.retry.delays) + 1)
    ]
    return specs


def delivery_topic_spec(settings: Settings, webhook_id: str) -> TopicSpec:
    return TopicSpec(
        Topics(settings.topic_prefix).delivery(webhook_id), settings.delivery_partitions
    )
