"""A local webhook receiver for debugging: prints every POST, checks its signatures.

    synctec-webhooks receive --port 8081 --secret whsec_...

Accepts POST on any path and answers a fixed status (200 unless told otherwise), so a
non-2xx status can be used to watch the retry tiers at work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from aiohttp import web

from synctec_webhooks.signing import secret_key_bytes, verify_standard, verify_storelink

logger = logging.getLogger(__name__)

_SHOWN_HEADERS = ("X-StoreLink-Event", "X-StoreLink-Delivery-Id", "X-StoreLink-Attempt")


@dataclass(frozen=True)
class _Config:
    secret: str | None
    out: TextIO
    status: int
    clock: Callable[[], float]


_CONFIG = web.AppKey("receiver_config", _Config)


def build_app(
    secret: str | None,
    out: TextIO,
    *,
    status: int = 200,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The receiver as an aiohttp app. `secret` must be a "whsec_" secret if given;
    `clock` (unix seconds) is what webhook-timestamp is checked against."""
    if secret is not None:
        secret_key_bytes(secret)  # fail at start, not on every request
    app = web.Application()
    app[_CONFIG] = _Config(secret=secret, out=out, status=status, clock=clock)
    app.router.add_post("/{tail:.*}", _handle)
    return app


async def _handle(request: web.Request) -> web.Response:
    config = request.app[_CONFIG]
    body = await request.read()
    config.out.write(_describe(request, body, config))
    config.out.flush()  # one block per request, visible at once even through a pipe
    return web.json_response({"received": True}, status=config.status)


def _describe(request: web.Request, body: bytes, config: _Config) -> str:
    now = config.clock()
    stamp = datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds")
    lines = [f"--- {stamp}  {request.method} {request.path_qs}"]
    lines += [
        f"{name}: {request.headers[name]}" for name in _SHOWN_HEADERS if name in request.headers
    ]
    if config.secret is not None:
        lines += _signature_lines(config.secret, request, body, int(now))
    lines += [_format_body(body), ""]
    return "\n".join(lines) + "\n"


def _signature_lines(secret: str, request: web.Request, body: bytes, now: int) -> list[str]:
    storelink = verify_storelink(secret, body, request.headers.get("X-StoreLink-Signature", ""))
    standard = verify_standard(secret, request.headers, body, now=now)
    return [
        f"X-StoreLink-Signature: {_verdict(storelink)}",
        f"webhook-signature: {_verdict(standard)}",
    ]


def _verdict(valid: bool) -> str:
    return "valid" if valid else "INVALID"


def _format_body(body: bytes) -> str:
    if not body:
        return "(empty body)"
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:  # not JSON (or not UTF-8): show it as text
        return body.decode("utf-8", errors="replace")


async def serve(
    host: str, port: int, secret: str | None, *, status: int = 200, out: TextIO | None = None
) -> None:
    """Run the receiver until cancelled."""
    out = sys.stdout if out is None else out
    runner = web.AppRunner(build_app(secret, out, status=status), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"listening on http://{host}:{port}/ (Ctrl-C stops)", file=out, flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main_receive(port: int, host: str, secret: str | None, status: int = 200) -> int:
    """Blocking entry point for `synctec-webhooks receive`; returns the exit code."""
    if secret is not None:
        try:
            secret_key_bytes(secret)
        except ValueError as exc:
            print(f"receive: {exc}", file=sys.stderr)
            return 2
    try:
        asyncio.run(_serve_until_signal(host, port, secret, status))
    except OSError as exc:  # port in use, address not available
        print(f"receive: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_until_signal(host: str, port: int, secret: str | None, status: int) -> None:
    task = asyncio.create_task(serve(host, port, secret, status=status))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # cancelled from outside, not stopped by a signal
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
