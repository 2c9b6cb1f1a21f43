"""The HTTP ceiling: the delivery worker's own client (`Sender`) against the receiver.

    python -m bench.httpload BASE_URL PATHS COUNT RATE  # env: SYNCTEC_* (limits, timeout)

No Kafka, no signing: COUNT POSTs of an event-sized body spread over PATHS paths, with
the worker's concurrency (SYNCTEC_MAX_IN_FLIGHT in all, SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT
per path), as fast as possible (RATE 0) or paced at RATE requests/s. Each body carries
its send time as "timestamp", so the receiver measures latency as it does for the
pipeline. Prints `{"count": n, "seconds": s}`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time

from bench.common import make_event, stamp
from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.sender import Sender
from synctec_webhooks.events import render_body, validate_event


async def run(base: str, paths: int, count: int, rate: float) -> dict[str, float]:
    settings = Settings.from_env()
    sender = Sender(settings)
    await sender.start()
    _, record = validate_event(make_event("product.synced", 1, 0.0))
    template = render_body(record).decode()
    marker = record["timestamp"]
    concurrency = min(settings.max_in_flight, paths * settings.max_in_flight_per_endpoint)
    tickets = itertools.count()
    began = time.monotonic()

    async def lane(path: int) -> None:
        url = f"{base}/h{path}"
        while (i := next(tickets)) < count:
            if rate:
                await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            body = template.replace(marker, stamp(time.time()), 1).encode()
            await sender.post(url, body, {"Content-Type": "application/json"})

    await asyncio.gather(*(lane(i % paths) for i in range(concurrency)))
    elapsed = time.monotonic() - began
    await sender.close()
    return {"count": count, "seconds": elapsed}


def main() -> None:
    import uvloop

    base, paths, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(uvloop.run(run(base, paths, count, rate))), flush=True)


if __name__ == "__main__":
    main()
