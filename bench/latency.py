"""Light-load latency (issue 13, point 4): one webhook, one event at a time.

Events are emitted one by one at `rate` per second; each is timed from `emit` returning
(its producer flushed: the broker acknowledged it) to its POST arriving at the receiver.
A warm-up goes first (the delivery worker finds the new webhook's topic, the fan-out's
first transaction, connections), then `seconds` of measured events.

Where the time goes, per event, from three clocks of this one machine:

    fan-out in    emit acknowledged -> the fan-out planned the delivery record (the
                  record's `created_at`): its fetch, consume round, batch window and the
                  subscription table's catch-up
    transaction   planned -> the record visible to a read_committed probe consumer in
                  this process (fetch.wait.max.ms 10): produce, send_offsets, commit,
                  the probe's own fetch
    delivery      visible to the probe -> POST arrived: the delivery worker's fetch and
                  consume round, dispatch, signing, HTTP on loopback

A configuration ("knobs") changes settings or, through `bench.knobs`, librdkafka
properties and consume(), one run of the pipeline each: `--latency-env`, `--latency-sweep`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bench import knobs
from bench.common import make_event, percentiles, stamp, unstamp
from bench.scenarios import Bench, PipelineRun, Result
from synctec_webhooks.kafka import base_config, producer_config
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics

TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0

# One knob at a time from the defaults, then the ones that gained together.
SWEEP: tuple[str, ...] = (
    "SYNCTEC_FANOUT_BATCH_MS=1",
    "consume=eager",
    "consumer.fetch.wait.max.ms=5",
    "producer.linger.ms=0",
    "SYNCTEC_KAFKA_SOCKET_NAGLE_DISABLE=true",
    "consumer.isolation.level=read_uncommitted",
    "SYNCTEC_FANOUT_BATCH_MS=1,consume=eager",
    "SYNCTEC_FANOUT_BATCH_MS=1,consume=eager,consumer.fetch.wait.max.ms=5",
    "SYNCTEC_FANOUT_BATCH_MS=1,consume=eager,consumer.isolation.level=read_uncommitted",
)


@dataclass(frozen=True)
class Knobs:
    """One configuration: SYNCTEC_* settings plus librdkafka properties and consume()."""

    label: str
    settings: dict[str, str] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, str] = field(default_factory=dict)
    eager: bool = False

    def env(self) -> dict[str, str]:
        env = dict(self.settings)
        if self.producer:
            env[knobs.PRODUCER_VAR] = knobs.format_properties(self.producer)
        if self.consumer:
            env[knobs.CONSUMER_VAR] = knobs.format_properties(self.consumer)
        if self.eager:
            env[knobs.EAGER_VAR] = "1"
        return env


DEFAULTS = Knobs("defaults")


def parse_knobs(text: str) -> Knobs:
    """ "SYNCTEC_FANOUT_BATCH_MS=1,consumer.fetch.wait.max.ms=5,consume=eager": settings
    by their variable, `producer.<property>` and `consumer.<property>` for librdkafka,
    `consume=eager` for consume() returning at the first record, BENCH_TRACE=path for
    the fan-out's steps' durations."""
    found = Knobs(text.strip() or "defaults")
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not key:
            continue
        if not sep:
            raise ValueError(f"--latency-env: {part!r} is not KEY=VALUE")
        if key == "consume":
            if value != "eager":
                raise ValueError("--latency-env: consume=eager is the one consume knob")
            found = Knobs(found.label, found.settings, found.producer, found.consumer, True)
        elif key.startswith("producer."):
            found.producer[key.removeprefix("producer.")] = value
        elif key.startswith("consumer."):
            found.consumer[key.removeprefix("consumer.")] = value
        elif key.startswith(("SYNCTEC_", "BENCH_")):  # BENCH_TRACE=path: see bench.knobs
            found.settings[key] = value
        else:
            raise ValueError(
                f"--latency-env: {key}: use SYNCTEC_*, BENCH_*, producer.*, consumer.*"
            )
    return found


def configurations(given: Iterable[str], sweep: bool) -> list[Knobs]:
    """The defaults first (every table's yardstick), then `given`, then the sweep."""
    texts = [*given, *(SWEEP if sweep else ())]
    return [DEFAULTS, *(parse_knobs(t) for t in dict.fromkeys(texts) if t.strip())]


# --- the probe ---------------------------------------------------------------------------


class Probe:
    """A read_committed consumer of the webhook's delivery topic in this process: when each
    record became visible, and the fan-out's `created_at` for it, by event timestamp."""

    def __init__(self, run: PipelineRun, webhook_id: str) -> None:
        settings = run.pipeline.settings
        topic = Topics(run.prefix).delivery(webhook_id)
        conf = base_config(settings, "latency-probe") | {
            "group.id": f"{run.prefix}.latency-probe",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
        }
        self._consumer = Consumer(conf)
        parts = range(settings.delivery_partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        self._codec = make_codec(settings.schema_registry_url)
        self.seen: dict[float, tuple[float, float]] = {}  # event time -> (visible, created)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.05)
            if msg is None or msg.error() is not None:
                continue
            now = time.time()
            _, record = self._codec.decode(msg.topic() or "", msg.value() or b"")
            key = round(unstamp(record["event_timestamp"]), 6)
            self.seen[key] = (now, record["created_at"] / 1000)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


# --- one configuration -------------------------------------------------------------------


@dataclass
class Emitted:
    created: float  # the event's own timestamp (the key the receiver reads back)
    called: float  # emit called
    acked: float  # emit + flush returned


def _emit_paced(run: PipelineRun, n: int, rate: float, first: int) -> list[Emitted]:
    """n events, one at a time, each flushed before the next: `rate` per second."""
    producer = run.pipeline.producer
    out: list[Emitted] = []
    began = time.monotonic()
    for i in range(n):
        wait = began + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        created = time.time()
        event = make_event("product.synced", first + i, created)
        called = time.time()
        producer.emit(event)
        producer.flush(10)
        out.append(Emitted(round(unstamp(stamp(created)), 6), called, time.time()))
    return out


def _wait_for(run: PipelineRun, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while int(run.bench.receiver.count()["count"]) < n and time.monotonic() < deadline:
        time.sleep(0.1)


def _ms(values: list[float]) -> float:
    return median(values) * 1000 if values else math.nan


def measure(bench: Bench, config: Knobs, seconds: float, rate: float, warmup: float) -> Result:
    """One pipeline (fan-out, one delivery worker) under `config`, one webhook."""
    env = config.env()
    env |= knobs.hook_env(bench.logs / f"hook-{abs(hash(config.label))}", env)
    run = PipelineRun(bench, "l", [], roles=["fanout", "deliver"], env=env)
    probe: Probe | None = None
    try:
        sub = run.pipeline.add_webhook(f"{bench.receiver.base}/latency")
        if config.producer:
            # The emit producer lives in this process, which the hook does not reach.
            settings = run.pipeline.settings
            run.pipeline.producer._producer = Producer(
                producer_config(settings, "events-producer", **config.producer)
            )
        bench.receiver.dump()
        warm = max(1, int(warmup * rate))
        probe = Probe(run, sub.id)
        _emit_paced(run, warm, rate, 0)
        _wait_for(run, warm, 60)
        bench.receiver.dump()
        sampler = run.sampler()
        n = max(1, int(seconds * rate))
        emitted = _emit_paced(run, n, rate, warm)
        _wait_for(run, n, 30)
        result = Result(
            f"latency, {config.label}",
            f"1 webhook, {rate:g} events/s one at a time: emit acknowledged -> POST",
        )
        result.usage = sampler.stop()
        arrived = {round(unstamp(s), 6): t for t, s, _path in bench.receiver.dump() if s}
        return _figures(result, emitted, arrived, probe.seen)
    finally:
        if probe is not None:
            probe.stop()
        run.stop()


def _figures(
    result: Result,
    emitted: list[Emitted],
    arrived: dict[float, float],
    seen: dict[float, tuple[float, float]],
) -> Result:
    got = [e for e in emitted if e.created in arrived]
    result.count = len(got)
    result.seconds = (got[-1].acked - got[0].acked) if len(got) > 1 else 0.0
    result.latencies = [arrived[e.created] - e.acked for e in got]
    probed = [(e, *seen[e.created]) for e in got if e.created in seen]
    result.extra = {
        "emitted": len(emitted),
        "lost": len(emitted) - len(got),
        "max_ms": max(result.latencies, default=math.nan) * 1000,
        "emit_ms": percentiles([e.acked - e.called for e in emitted], (50, 99)),
        "fanout_in_ms": _ms([created - e.acked for e, _vis, created in probed]),
        "transaction_ms": _ms([vis - created for _e, vis, created in probed]),
        "delivery_ms": _ms([arrived[e.created] - vis for e, vis, _c in probed]),
        "probed": len(probed),
    }
    return result


# --- what run.py prints ------------------------------------------------------------------


def _verdict(ms: float, target: float) -> str:
    return "met" if ms <= target else "**missed**"


def table(results: list[Result]) -> str:
    rows = [
        "| configuration | p50 ms | p95 ms | p99 ms | max ms | emit p50 ms | fan-out in | "
        "transaction | delivery | events |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p50, p95, p99 = (x * 1000 for x in r.p)
        x = r.extra
        lost = f" ({x['lost']} lost)" if x.get("lost") else ""
        rows.append(
            f"| {r.name.removeprefix('latency, ')} | {p50:.1f} | {p95:.1f} | {p99:.1f} | "
            f"{x['max_ms']:.1f} | {x['emit_ms'][0] * 1000:.1f} | {x['fanout_in_ms']:.1f} | "
            f"{x['transaction_ms']:.1f} | {x['delivery_ms']:.1f} | {r.count}{lost} |"
        )
    return "\n".join(rows)


def targets(r: Result) -> str:
    p50, _p95, p99 = (x * 1000 for x in r.p)
    return (
        f"{r.name}: p50 {p50:.0f} ms (target <= {TARGET_P50_MS:.0f}: "
        f"{_verdict(p50, TARGET_P50_MS)}), p99 {p99:.0f} ms (target <= {TARGET_P99_MS:.0f}: "
        f"{_verdict(p99, TARGET_P99_MS)}), max {r.extra['max_ms']:.0f} ms"
    )


def show(r: Result) -> None:
    """One configuration's line as it finishes."""
    x: dict[str, Any] = r.extra
    print(
        f"{targets(r)}; emit {x['emit_ms'][0] * 1000:.1f} ms; medians: fan-out in "
        f"{x['fanout_in_ms']:.1f}, transaction {x['transaction_ms']:.1f}, delivery "
        f"{x['delivery_ms']:.1f} ms ({x['probed']} of {r.count} seen by the probe)",
        flush=True,
    )
