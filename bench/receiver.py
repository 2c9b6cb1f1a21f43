"""The benchmark's webhook receiver: a minimal aiohttp server in its own process.

It does what a well-behaved endpoint does (read the body, answer 200 at once) and, so
the benchmark can measure produce-to-receive latency without parsing JSON per request,
keeps for each POST its arrival time and the raw `"timestamp"` of the event, which the
benchmark sets to the emit time. Paths under `/slow/` answer after 5 s, under `/hold/`
after 30 s, paths under
`/never/` never answer (the client's timeout ends them); everything else answers 200,
after the endpoint delay set with GET /_delay?ms=M (0 at start), which stands for the
time a real endpoint (Slack, Zapier, an ERP) takes to answer.

    python -m bench.receiver PORT     # prints {"port": P} once listening

GET /_count gives `{"count": n, "healthy": answered at once, "open": being answered now,
"max_open": m}`;
GET /_dump?path=P gives every record `[arrival, timestamp-text, path]` as JSON and
clears them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web
from aiohttp.web_request import BaseRequest

_TIMESTAMP = b'"timestamp":"'
_SLOW_SECONDS = 5.0
_HOLD_SECONDS = 30.0  # long enough for a worker to open 10,000 POSTs before any ends


class Receiver:
    def __init__(self) -> None:
        self.records: list[tuple[float, bytes, str]] = []
        self.count = 0
        self.healthy = 0  # POSTs answered at once (not /slow/, /hold/ or /never/)
        self.open = 0
        self.max_open = 0
        self.delay = 0.0  # seconds every healthy POST waits before its answer
        # The integral of `open` over time since the last dump: divided by the run's
        # length it is the mean number of POSTs the senders kept open (Little's law).
        self.open_area = 0.0
        self._changed = time.monotonic()

    def _opened(self, by: int) -> None:
        now = time.monotonic()
        self.open_area += self.open * (now - self._changed)
        self._changed = now
        self.open += by

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        if request.method == "GET":
            return self._control(request)
        self._opened(1)
        self.max_open = max(self.max_open, self.open)
        try:
            body = await request.read()
            path = request.path
            if path.startswith("/slow/"):
                await asyncio.sleep(_SLOW_SECONDS)
            elif path.startswith("/hold/"):
                await asyncio.sleep(_HOLD_SECONDS)
            elif path.startswith("/never/"):
                await asyncio.sleep(3600)
            else:
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.healthy += 1
            self.count += 1
            i = body.find(_TIMESTAMP)
            stamp = (
                body[i + len(_TIMESTAMP) : body.find(b'"', i + len(_TIMESTAMP))] if i >= 0 else b""
            )
            self.records.append((time.time(), stamp, path))
            return web.Response(status=200)
        finally:
            self._opened(-1)

    def _control(self, request: BaseRequest) -> web.StreamResponse:
        if request.path == "/_count":
            data = {
                "count": self.count,
                "healthy": self.healthy,
                "open": self.open,
                "max_open": self.max_open,
                "open_area": self.open_area,
            }
            return web.Response(text=json.dumps(data), content_type="application/json")
        if request.path == "/_delay":
            self.delay = float(request.query.get("ms", "0")) / 1000
            return web.Response(text=json.dumps({"delay_ms": self.delay * 1000}))
        if request.path == "/_dump":
            records, self.records = self.records, []
            self.count = self.healthy = 0
            self.max_open = self.open
            self._opened(0)
            self.open_area = 0.0
            out = [[t, s.decode(), p] for t, s, p in records]
            return web.Response(text=json.dumps(out), content_type="application/json")
        return web.Response(status=404)


async def serve(port: int) -> None:
    receiver = Receiver()
    # The low-level server: no router, no middlewares; the fastest aiohttp offers.
    server = web.Server(receiver.handle, access_log=None)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(server, "127.0.0.1", port, backlog=4096)
    print(json.dumps({"port": srv.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    import uvloop

    uvloop.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))


if __name__ == "__main__":
    main()
