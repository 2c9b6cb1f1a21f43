"""Pieces every benchmark scenario shares: events, timestamps, percentiles, processes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil

from synctec_webhooks.accounts import DEFAULT_ACCOUNT

EVENT_TYPES = ("product.synced", "sync.failed", "inventory.updated", "collection.synced")


def parse_mix(text: str) -> dict[str, float]:
    """ "product.synced=4,inventory.updated=3" -> weights; types left out get none."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        if name not in EVENT_TYPES:
            raise ValueError(f"--mix: unknown event type {name!r}")
        mix[name] = float(weight or 1)
    return mix


def stamp(t: float) -> str:
    """RFC 3339 with microseconds: the emit time the receiver reads back."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def unstamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def make_event(
    event_type: str, product: int, now: float, account: str = DEFAULT_ACCOUNT
) -> dict[str, Any]:
    """One event of `account` (every event belongs to one; the webhooks the benchmark
    adds are the default account's)."""
    product_ = {
        "id": str(product),
        "title": f"Merino Wool Sweater {product}",
        "sku": f"MWS-{product}",
    }
    common = {
        "account_id": account,
        "timestamp": stamp(now),
        "source_store": "main-store.myshopify.com",
        "destination_store": "eu-store.myshopify.com",
    }
    if event_type == "product.synced":
        return {"event": event_type, "product": product_, "status": "success", **common}
    if event_type == "sync.failed":
        error = {"code": "rate_limited", "message": "Shopify API rate limit exceeded"}
        return {
            "event": event_type,
            "product": product_,
            "status": "failed",
            "error": error,
            **common,
        }
    if event_type == "inventory.updated":
        group = {"id": "lg_1", "name": "EU warehouses"}
        return {
            "event": event_type,
            "product": product_,
            "location_group": group,
            "available": product % 97,
            **common,
        }
    collection = {"id": f"c_{product % 50}", "title": "Winter", "products_count": 12}
    return {"event": event_type, "collection": collection, "status": "success", **common}


class EventSource:
    """Events drawn from the mix, about `products` distinct products, stamped on creation,
    all of `account`."""

    def __init__(
        self,
        mix: dict[str, float],
        products: int = 1000,
        seed: int = 6,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self._account = account
        self._rng = random.Random(seed)
        self._types = list(mix)
        self._weights = [mix[t] for t in self._types]
        self._products = products

    def take(self, n: int) -> list[dict[str, Any]]:
        now = time.time()
        types = self._rng.choices(self._types, self._weights, k=n)
        return [
            make_event(t, self._rng.randrange(self._products), now, self._account) for t in types
        ]


def percentiles(values: Sequence[float], qs: Iterable[float] = (50, 95, 99)) -> list[float]:
    if not values:
        return [float("nan") for _ in qs]
    ordered = sorted(values)
    last = len(ordered) - 1
    return [ordered[min(last, round(q / 100 * last))] for q in qs]


@dataclass
class Usage:
    """CPU seconds and peak resident memory of one process over one scenario."""

    name: str
    cpu: float = 0.0
    peak_rss: int = 0


@dataclass
class _Watched:
    name: str
    proc: psutil.Process
    cpu0: float
    usage: Usage
    alive: bool = True


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@dataclass
class Sampler:
    """Samples the watched processes every 100 ms: peak RSS, and CPU time since `watch`.

    CPU is read at each sample, so a process that exits keeps its last reading (psutil
    cannot read a process that is gone); `stop()` reads once more.
    """

    interval: float = 0.1
    _watched: list[_Watched] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, name: str, pid: int) -> None:
        proc = psutil.Process(pid)
        with self._lock:
            self._watched.append(_Watched(name, proc, _cpu(proc), Usage(name)))

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        with self._lock:
            for w in self._watched:
                if not w.alive:
                    continue
                try:
                    w.usage.cpu = _cpu(w.proc) - w.cpu0
                    w.usage.peak_rss = max(w.usage.peak_rss, w.proc.memory_info().rss)
                except psutil.Error:
                    w.alive = False

    def stop(self) -> list[Usage]:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        return [w.usage for w in self._watched]
