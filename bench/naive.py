"""The naive baseline: what a user writes first. One consumer; poll, POST, commit.

    python -m bench.naive WEBHOOKS_JSON SECONDS   # env: KAFKA_BOOTSTRAP_SERVERS, SYNCTEC_*

It reads the same delivery topics as the delivery worker, signs each record the same
way, POSTs it with `requests.post` (a new connection each time, as in most webhook
tutorials) and commits the message (`consumer.commit(msg)`, confluent-kafka's default,
asynchronous). Prints `{"count": n, "seconds": s}` after SECONDS.
"""

from __future__ import annotations

import json
import sys
import time

import requests
from confluent_kafka import Consumer

from synctec_webhooks.config import Settings
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.signing import signature_headers
from synctec_webhooks.topics import Topics


def main() -> None:
    webhooks: dict[str, list[str]] = json.loads(open(sys.argv[1]).read())  # id -> [url, secret]
    seconds = float(sys.argv[2])
    settings = Settings.from_env()
    topics = Topics(settings.topic_prefix)
    codec = make_codec(None)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": topics.group("bench-naive"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topics.delivery_pattern])
    count, started = 0, None
    while started is None or time.monotonic() - started < seconds:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        started = started or time.monotonic()
        _, record = codec.decode(msg.topic() or "", msg.value() or b"")
        url, secret = webhooks[record["webhook_id"]]
        body = record["payload"].encode()
        headers = signature_headers(
            secrets=[secret],
            event_type=record["event_type"],
            event_id=record["event_id"],
            delivery_id=record["delivery_id"],
            attempt=record["attempt"],
            timestamp=int(time.time()),
            body=body,
        )
        requests.post(url, data=body, headers=headers, timeout=10, allow_redirects=False)
        consumer.commit(message=msg)
        count += 1
    elapsed = time.monotonic() - (started or time.monotonic())
    consumer.close()
    print(json.dumps({"count": count, "seconds": elapsed}), flush=True)


if __name__ == "__main__":
    main()
