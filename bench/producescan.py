"""What one `produce()` costs when the producer writes to many topics.

    python -m bench.producescan 1 1000 10000   # prints {"1": us, "1000": us, ...}

The fan-out writes each delivery record to its webhook's own topic. librdkafka looks a
topic up by name in a list of every topic the producer has used (`rd_kafka_topic_find`,
a linear scan), so the cost of `produce()` grows with the number of webhooks. This
measures it without a broker: the producer points at a closed port, so records only
queue (and are purged at the end); the lookup and the enqueue are the same work either
way.
"""

from __future__ import annotations

import json
import sys
import time

from confluent_kafka import Producer


def cost(topics: int, records: int = 20_000) -> float:
    """Microseconds per produce() once the producer knows `topics` topics."""
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:9",  # nothing listens: records stay queued
            "queue.buffering.max.messages": 2_000_000,
            "message.timeout.ms": 600_000,
            "log_level": 0,
        }
    )
    names = [f"scan.delivery.wh_{i:08d}" for i in range(topics)]
    value = b"x" * 600  # about a delivery record
    for name in names:  # every topic known, as after the first event to 10,000 webhooks
        producer.produce(name, value, b"key")
    began = time.perf_counter()
    for i in range(records):
        producer.produce(names[i % topics], value, b"key")
    spent = time.perf_counter() - began
    producer.purge()
    producer.flush(0)
    return spent / records * 1e6


def main() -> None:
    print(json.dumps({n: cost(int(n)) for n in sys.argv[1:]}), flush=True)


if __name__ == "__main__":
    main()
