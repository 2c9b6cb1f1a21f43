"""The Kafka ceiling: consume the delivery records the fan-out wrote, decode them, no HTTP.

    python -m bench.kafkaonly STATUS_FILE      # env: KAFKA_BOOTSTRAP_SERVERS, SYNCTEC_*

One member of the consumer group `<prefix>.bench-kafka`, configured as the delivery
worker's consumer is (read_committed, offsets stored after the work). Writes its count
to STATUS_FILE every 250 ms; on SIGTERM prints
`{"count": n, "latencies": [...], "first": t, "last": t}`: the latencies from each
event's emit time (its "timestamp") to the record being decoded, and the wall-clock
times of the first and the last record decoded (the pipeline's rate is counted from its
first to its last arrival too).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from bench.common import unstamp
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import consumer_config
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics


def main() -> None:
    status = Path(sys.argv[1])
    settings = Settings.from_env()
    topics = Topics(settings.topic_prefix)
    codec = make_codec(settings.schema_registry_url)
    consumer = Consumer(
        consumer_config(
            settings, topics.group("bench-kafka" + os.environ.get("BENCH_GROUP", "")), "bench-kafka"
        )
    )
    consumer.subscribe([topics.delivery_pattern])
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    count, latencies, shown = 0, [], 0.0
    first = last_at = 0.0
    print("consuming", file=sys.stderr, flush=True)
    while not stopping:
        msgs = consumer.consume(1000, 0.1)
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is not None:
                continue
            _, record = codec.decode(m.topic() or "", m.value() or b"")
            latencies.append(time.time() - unstamp(record["event_timestamp"]))
            last[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
            count += 1
        if last:
            last_at = time.time()
            first = first or last_at
            consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in last.items()])
        if time.monotonic() - shown > 0.25:
            status.write_text(str(count))
            shown = time.monotonic()
    status.write_text(str(count))
    consumer.close()
    out = {"count": count, "latencies": latencies, "first": first, "last": last_at}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
