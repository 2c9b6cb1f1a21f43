"""Per-endpoint limits on a real broker: a rate limit holds, a 429's Retry-After is
honoured, a slow endpoint does not hold the others back, and pausing a webhook's
partitions and resuming them loses, doubles and reorders nothing."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.integration.harness import Pipeline, Receiver, Reply, product_synced

pytestmark = pytest.mark.broker


def _pipeline(bootstrap: str, prefix: str, logs: Path, **env: str) -> Pipeline:
    return Pipeline(bootstrap, prefix, logs, **env).start()


def test_a_webhooks_rate_limit_holds_and_others_are_not_slowed(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    p = _pipeline(kafka_bootstrap, unique_name, tmp_path)
    try:
        p.writer.add(receiver.url("/limited"), "*", rate_limit=20.0)
        p.add_webhook(receiver.url("/free"))
        p.emit(*(product_synced(str(i)) for i in range(80)))
        free = receiver.wait_for(80, "/free", timeout=60)
        limited = receiver.wait_for(80, "/limited", timeout=60)
    finally:
        p.stop_and_check()
    times = sorted(r.at for r in limited)
    # A limit, not a speed: at most rate + burst (2) in any one-second window, with slack
    # for the receiver's own timestamps.
    busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert busiest <= 24, busiest
    # 80 at 20/s take about 4 s; the unlimited webhook was done long before.
    assert max(r.at for r in free) < times[-1] - 1.0


def test_retry_after_on_429_holds_the_endpoints_next_post(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script(
        "/busy", lambda i: Reply(429, headers={"Retry-After": "2"}) if i == 1 else Reply(200)
    )
    p = _pipeline(kafka_bootstrap, unique_name, tmp_path, SYNCTEC_RETRY_DELAYS="0.3")
    try:
        p.writer.add(receiver.url("/busy"), "*", max_in_flight=1)
        p.emit(*(product_synced(str(i)) for i in range(3)))
        got = receiver.wait_for(4, "/busy", timeout=60)  # 3 + the retry of the first
    finally:
        p.stop_and_check()
    first = got[0]
    # The delivery worker's next POST; the retry worker (another process, its own
    # pacing) may send the retried first record sooner, as its tier's delay says.
    second = next(r for r in got[1:] if r.header("X-StoreLink-Attempt") == "1")
    assert first.status == 429
    assert second.at - first.at >= 1.8, second.at - first.at


def test_a_slow_endpoint_does_not_take_the_workers_slots(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/slow", lambda _i: Reply(delay=4.0))
    # 40 POSTs in flight per worker, 10 per endpoint: a slow endpoint's records once
    # took every slot (they queued for its endpoint slot while holding a global one).
    p = _pipeline(
        kafka_bootstrap, unique_name, tmp_path,
        SYNCTEC_MAX_IN_FLIGHT="40", SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT="10",
        SYNCTEC_LANE_CAP="50", SYNCTEC_HTTP_TIMEOUT="10",
    )  # fmt: skip
    try:
        p.add_webhook(receiver.url("/slow"))
        p.add_webhook(receiver.url("/fast"))
        began = time.time()
        p.emit(*(product_synced(str(i % 50)) for i in range(300)))
        receiver.wait_for(300, "/fast", timeout=60)
        took = time.time() - began
        slow_started = len(receiver.received("/slow"))
    finally:
        p.stop_and_check()
    assert took < 20, took  # with the slow lane holding all 40 slots: 300 / 40 * 4 s = 30 s
    assert slow_started <= 30  # it only ever had its own 10 at once


def test_pausing_and_resuming_a_webhook_loses_doubles_and_reorders_nothing(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.script("/paced", lambda _i: Reply(delay=0.01))
    # A lane cap of 16 and 2 in flight: the partitions pause and resume many times.
    p = _pipeline(
        kafka_bootstrap, unique_name, tmp_path,
        SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT="2", SYNCTEC_LANE_CAP="16",
    )  # fmt: skip
    try:
        p.add_webhook(receiver.url("/paced"))
        ids = p.emit(*(product_synced(f"p{i % 7}") for i in range(200)))
        receiver.wait_for(200, "/paced", timeout=90)
        time.sleep(1.0)
    finally:
        p.stop_and_check()
    got = receiver.received("/paced")
    counts = Counter(r.json["id"] for r in got)
    assert set(counts) == set(ids) and sum(counts.values()) == 200
    by_product: dict[str, list[int]] = defaultdict(list)
    for r in got:
        by_product[r.json["product"]["id"]].append(ids.index(r.json["id"]))
    assert all(seq == sorted(seq) for seq in by_product.values())
