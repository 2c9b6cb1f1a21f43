"""A record librdkafka refuses before queueing it (over message.max.bytes) fails like one
the broker refused: a DeliveryFailed that says `too_large`, never a bare KafkaException
that would stop a worker (issue 11). No broker: the refusal is local."""

from __future__ import annotations

import asyncio

import pytest

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import DeliveryFailed
from synctec_webhooks.kafka import AsyncProducer, produce_until_acked

SETTINGS = Settings(bootstrap_servers="127.0.0.1:1")  # never reached: refused locally


def test_a_record_over_message_max_bytes_fails_too_large_and_is_not_retried() -> None:
    async def main() -> None:
        producer = AsyncProducer(SETTINGS, "refusal-test")
        try:
            with pytest.raises(DeliveryFailed) as info:
                await asyncio.wait_for(
                    produce_until_acked(producer, "t", b"x" * 1_100_000, "k"), timeout=10
                )
            assert info.value.too_large and not info.value.retriable
        finally:
            producer.close(0.1)

    asyncio.run(main())


def test_the_attempt_log_only_logs_such_a_record(caplog: pytest.LogCaptureFixture) -> None:
    producer = AsyncProducer(SETTINGS, "refusal-test")
    try:
        producer.produce_nowait("t", b"x" * 1_100_000, "k")
    finally:
        producer.close(0.1)
    assert "best-effort record not written" in caplog.text
