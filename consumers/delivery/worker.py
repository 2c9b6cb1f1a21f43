"""The delivery worker: every per-endpoint delivery topic, by pattern, POSTed concurrently."""

from __future__ import annotations

from synctec_webhooks.consumers.consume_loop import ConsumeDispatchWorker
from synctec_webhooks.topics import Topics


class DeliveryWorker(ConsumeDispatchWorker):
    role = "deliver"

    def group(self) -> str:
        return Topics(self.settings.topic_prefix).group("deliver")

    def settled(self, topic: str, partition: int) -> bool:
        # The fan-out writes these topics in transactions: each leaves a marker that no
        # stored offset covers. With nothing in flight, the position is the true end.
        return self.tracker.in_flight(topic, partition) == 0

    def subscription(self) -> list[str]:
        # A regex subscription: new webhooks' topics are picked up on the next metadata
        # refresh (SYNCTEC_METADATA_REFRESH_MS) and read from their beginning.
        return [Topics(self.settings.topic_prefix).delivery_pattern]
