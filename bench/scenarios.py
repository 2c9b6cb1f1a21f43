"""The scenarios of one benchmark run. Each returns a `Result`; `run.py` orders them.

Throughput is counted where the work ends (the receiver for POSTs, the consumers for
the Kafka ceiling), from the first to the last arrival; latency is from the event's
emit time (its "timestamp") to its arrival, so it includes every hop in between.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from tqdm import tqdm

from bench import adminload
from bench.cluster import (
    Helper,
    ReceiverProcess,
    bulk_webhooks,
    kill_pipeline,
    new_pipeline,
    start_pipeline,
)
from bench.common import EventSource, Sampler, Usage, percentiles, unstamp
from synctec_webhooks.config import Settings
from synctec_webhooks.producers.events import EventProducer
from synctec_webhooks.topics import Topics
from tests.integration.harness import Pipeline


@dataclass
class Result:
    name: str
    what: str
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    usage: list[Usage] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def p(self) -> list[float]:
        return percentiles(self.latencies)


@dataclass
class Bench:
    bootstrap: str
    receiver: ReceiverProcess
    logs: Path
    events: int
    subscriptions: int
    workers: int
    mix: dict[str, float]
    env: dict[str, str]  # SYNCTEC_* for every worker
    broker_pid: int | None
    seconds_at_half: float = 15.0
    naive_seconds: float = 10.0
    _n: int = 0

    def sampler(self) -> Sampler:
        s = Sampler()
        s.watch("receiver", self.receiver.proc.pid)
        if self.broker_pid is not None:
            s.watch("broker", self.broker_pid)
        return s.start()

    def prefix(self, what: str) -> str:
        self._n += 1
        return f"bench{int(time.time()) % 100000}{what}{self._n}"

    def settings(self, prefix: str, **env: str) -> Settings:
        return Settings.from_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "SYNCTEC_TOPIC_PREFIX": prefix,
                **self.env,
                **env,
            }
        )

    def worker_roles(self, n: int | None = None) -> list[str]:
        n = self.workers if n is None else n
        return ["fanout", "retry", "deliver", *(f"deliver@{i}" for i in range(2, n + 1))]


# --- helpers -------------------------------------------------------------------------


def _wait(total: int, desc: str, progress: Callable[[], int], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with tqdm(total=total, desc=desc, unit="rec", leave=False, dynamic_ncols=True) as bar:
        while (n := progress()) < total:
            bar.update(n - bar.n)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{desc}: {n} of {total} after {timeout} s")
            time.sleep(0.25)
        bar.update(total - bar.n)


def _emit(producer: EventProducer, source: EventSource, n: int, rate: float = 0.0) -> float:
    """Emit n events, as fast as possible or paced at `rate` per second; the first emit time."""
    began = time.monotonic()
    first, sent = time.time(), 0
    while sent < n:
        due = n if not rate else min(n, int((time.monotonic() - began) * rate) + 1)
        if due > sent:
            batch = min(due - sent, 500)
            producer.emit_many(source.take(batch))
            sent += batch
        else:
            time.sleep(0.002)
    producer.flush(60)
    return first


def _from_receiver(
    result: Result, records: list[tuple[float, str, str]], keep: Callable[[str], bool]
) -> Result:
    arrivals = [(t, s) for t, s, path in records if keep(path)]
    if arrivals:
        times = [t for t, _ in arrivals]
        result.count = len(arrivals)
        result.seconds = max(times) - min(times)
        result.latencies = [t - unstamp(s) for t, s in arrivals if s]
    return result


def _collect(bench: Bench, result: Result, keep: Callable[[str], bool]) -> Result:
    """The receiver's records into `result`, with the mean number of POSTs open at it."""
    area = bench.receiver.count()["open_area"]
    _from_receiver(result, bench.receiver.dump(), keep)
    if result.seconds > 0:
        result.extra["mean_open"] = area / result.seconds
    return result


def _receiver_progress(bench: Bench) -> Callable[[], int]:
    return lambda: int(bench.receiver.count()["count"])


# --- HTTP ceiling --------------------------------------------------------------------


def http_ceiling(bench: Bench, rate: float = 0.0, count: int | None = None) -> Result:
    name = "HTTP only" + (" at half rate" if rate else "")
    total = count or bench.events * bench.subscriptions
    bench.receiver.dump()
    sampler = bench.sampler()
    per = total // bench.workers
    helpers = []
    for i in range(bench.workers):
        h = Helper(
            "bench.httpload",
            [bench.receiver.base, str(bench.subscriptions), str(per), str(rate / bench.workers)],
            bench.env,
            bench.logs / f"httpload{i}.log",
        )
        sampler.watch(f"http client {i + 1}", h.proc.pid)
        helpers.append(h)
    _wait(per * bench.workers, name, _receiver_progress(bench))
    for h in helpers:
        h.result()
    result = Result(name, "aiohttp client (the worker's Sender) -> receiver; no Kafka")
    result.usage = sampler.stop()
    return _collect(bench, result, lambda _p: True)


# --- Kafka ceiling -------------------------------------------------------------------


class KafkaOnly:
    """Fan-out plus W consumers that decode the delivery records and do no HTTP."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.prefix = bench.prefix("k")
        self.settings = bench.settings(self.prefix)
        bulk_webhooks(
            self.settings,
            [f"{bench.receiver.base}/k{i}" for i in range(bench.subscriptions)],
            self.settings.delivery_partitions,
        )
        self.producer = EventProducer(self.settings)
        self.source = EventSource(bench.mix, seed=1)
        self.group = 0

    def run(
        self, name: str, events: int, rate: float = 0.0, fanout: bool = True, group: int = 0
    ) -> Result:
        """Consume with a new consumer group (from the beginning), or go on with `group`."""
        bench = self.bench
        sampler = bench.sampler()
        pipeline = None
        if fanout:
            pipeline = start_pipeline(
                bench.bootstrap, self.prefix, bench.logs, ["fanout"], sampler, bench.env
            )
        if not group:
            self.group += 1
        env = {
            **bench.env,
            "SYNCTEC_TOPIC_PREFIX": self.prefix,
            "KAFKA_BOOTSTRAP_SERVERS": bench.bootstrap,
            "BENCH_GROUP": str(group or self.group),
        }
        status = [
            bench.logs / f"{self.prefix}-{self.group}-{i}.count" for i in range(bench.workers)
        ]
        helpers = []
        for i, path in enumerate(status):
            path.write_text("0")
            h = Helper("bench.kafkaonly", [str(path)], env, bench.logs / f"{path.name}.log")
            sampler.watch(f"consumer {i + 1}", h.proc.pid)
            helpers.append(h)
        began = time.time()
        if events:
            _emit(self.producer, self.source, events, rate)
        total = (events or self.backlog) * bench.subscriptions
        _wait(total, name, lambda: sum(int(p.read_text() or 0) for p in status))
        outs = [h.terminate() for h in helpers]
        if pipeline is not None:
            kill_pipeline(pipeline)
        result = Result(
            name,
            "fan-out + consumers that decode, no HTTP"
            if fanout
            else "consumers that decode the records already written, no HTTP",
        )
        result.usage = sampler.stop()
        result.count = sum(o["count"] for o in outs)
        # From the first record decoded to the last, as the pipeline's arrivals are.
        firsts = [o["first"] for o in outs if o.get("first")]
        lasts = [o["last"] for o in outs if o.get("last")]
        result.seconds = max(lasts) - min(firsts) if firsts else time.time() - began
        result.latencies = [x for o in outs for x in o["latencies"]] if fanout else []
        self.backlog = events or self.backlog
        return result

    backlog = 0


# --- the pipeline ----------------------------------------------------------------------


class PipelineRun:
    def __init__(
        self,
        bench: Bench,
        what: str,
        paths: list[str],
        roles: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.bench = bench
        self.prefix = bench.prefix(what)
        self.env = {**bench.env, **(env or {})}
        starting = bench.sampler()  # start-up is not part of any run's figures
        self.pipeline: Pipeline = start_pipeline(
            bench.bootstrap,
            self.prefix,
            bench.logs,
            roles or bench.worker_roles(),
            starting,
            self.env,
        )
        starting.stop()
        self.webhooks = {}
        for path in paths:
            sub = self.pipeline.add_webhook(f"{bench.receiver.base}{path}")
            self.webhooks[sub.id] = [sub.url, sub.secret]
        self.source = EventSource(bench.mix, seed=2)

    def sampler(self) -> Sampler:
        """The broker, the receiver and this pipeline's workers, from now on."""
        sampler = self.bench.sampler()
        for name, proc in self.pipeline.procs.items():
            sampler.watch(name, proc.pid)
        return sampler

    def run(
        self,
        name: str,
        events: int,
        healthy: Callable[[str], bool],
        expected: int,
        rate: float = 0.0,
    ) -> Result:
        bench = self.bench
        bench.receiver.dump()
        sampler = self.sampler()
        _emit(self.pipeline.producer, self.source, events, rate)
        key = "healthy" if expected and not healthy("/slow/") else "count"
        _wait(expected, name, lambda: int(bench.receiver.count()[key]))
        result = Result(name, f"emit -> fan-out -> {bench.workers} delivery workers -> receiver")
        result.usage = sampler.stop()
        return _collect(bench, result, healthy)

    def stop(self) -> None:
        kill_pipeline(self.pipeline)


def naive(bench: Bench, run: PipelineRun, name: str = "naive") -> Result:
    """The naive consumer on the delivery topics the pipeline run filled (a second call
    goes on where the first one's commits stopped)."""
    sampler = bench.sampler()
    path = bench.logs / "naive-webhooks.json"
    path.write_text(json.dumps(run.webhooks))
    env = {
        **bench.env,
        "SYNCTEC_TOPIC_PREFIX": run.prefix,
        "KAFKA_BOOTSTRAP_SERVERS": bench.bootstrap,
    }
    bench.receiver.dump()
    h = Helper("bench.naive", [str(path), str(bench.naive_seconds)], env, bench.logs / "naive.log")
    sampler.watch("naive consumer", h.proc.pid)
    out = h.result()
    result = Result(name, "1 consumer: poll, requests.post, commit(msg)")
    result.usage = sampler.stop()
    _from_receiver(result, bench.receiver.dump(), lambda _p: True)
    result.latencies = []  # old events: their emit times say nothing about this consumer
    result.count, result.seconds = out["count"], out["seconds"]
    return result


# With thousands of delivery topics one transaction of 50,000 records takes longer than
# the default transaction timeout on this machine (librdkafka finds each record's topic
# by a linear search of its topic list): smaller transactions, a longer timeout.
_WIDE_FANOUT_ENV = {
    "SYNCTEC_DELIVERY_PARTITIONS": "1",
    "SYNCTEC_FANOUT_MAX_RECORDS": "10000",
    "SYNCTEC_TRANSACTION_TIMEOUT_MS": "60000",
}


def _settle(broker_pid: int | None, timeout: float = 120.0) -> None:
    """Wait until the broker is done creating the topics just asked for.

    CreateTopics returns once the controller has recorded them; the broker then creates
    each partition's log (about 4 s of its CPU for 1,000 topics, measured), work that
    is not the fan-out's and stays out of its figures. A broker of our own counts as
    settled below a fifth of a core.
    """
    if broker_pid is None:
        return  # someone else's broker: nothing to watch
    proc = psutil.Process(broker_pid)
    deadline = time.monotonic() + timeout
    with tqdm(total=1, desc="waiting for the broker to settle", leave=False):
        while time.monotonic() < deadline and proc.cpu_percent(interval=1.0) > 20.0:
            pass


def _drop_topics(bootstrap: str, prefix: str) -> None:
    """Delete a scenario's topics once it is measured. With one delivery topic per
    webhook, 10,000 webhooks hold about 20,000 files open in the broker, and the local
    broker's limit is 20,000 (`ulimit -n`): left in place, they took the broker down in
    the next scenario (issue 13 replaces the topic per webhook)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(f"{prefix}.")]
    for start in range(0, len(names), 1000):
        futures = admin.delete_topics(names[start : start + 1000], operation_timeout=120)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:  # the figures are taken: say so, go on
                print(f"could not delete {name}: {exc}", file=sys.stderr)


def fanout_wide(bench: Bench, subscriptions: int, events: int) -> Result:
    """Fan-out alone, `subscriptions` webhooks on "*": delivery records written per second."""
    prefix = bench.prefix("f")
    settings = bench.settings(prefix, **_WIDE_FANOUT_ENV)
    began = time.monotonic()
    with tqdm(total=1, desc=f"creating {subscriptions} webhooks and topics", leave=False):
        bulk_webhooks(settings, [f"{bench.receiver.base}/f{i}" for i in range(subscriptions)], 1)
    _settle(bench.broker_pid)
    setup = time.monotonic() - began
    producer = EventProducer(settings)
    _emit(producer, EventSource(bench.mix, seed=3), events)
    sampler = bench.sampler()
    pipeline = start_pipeline(
        bench.bootstrap, prefix, bench.logs, ["fanout"], sampler, {**bench.env, **_WIDE_FANOUT_ENV}
    )
    began_fanout = time.monotonic()
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topics = Topics(prefix)
    probe = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": topics.group("fanout")})
    parts = [TopicPartition(topics.events, p) for p in range(settings.events_partitions)]

    def done_events(before: int) -> int:
        try:
            return sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))
        except KafkaException:
            # The broker, busy with transactions over thousands of partitions, did not
            # answer in time; it has not died (its log says so): ask again.
            return before

    first: tuple[float, int] | None = None
    last = (time.monotonic(), 0)
    # The first transaction also fetches metadata for every topic: up to 150 s for it,
    # then at most 60 s of steady state (keeps `make bench` under 10 minutes).
    deadline = time.monotonic() + 150
    with tqdm(total=events * subscriptions, desc="fan-out", unit="rec", leave=False) as bar:
        while last[1] < events and time.monotonic() < deadline:
            n = done_events(last[1])
            now = time.monotonic()
            if n and first is None:
                first = (now, n)
                deadline = now + 60
            last = (now, n)
            bar.update(n * subscriptions - bar.n)
            time.sleep(0.1)
    probe.close()
    kill_pipeline(pipeline)
    _drop_topics(bench.bootstrap, prefix)
    result = Result(
        f"fan-out, {subscriptions:,} webhooks", "fan-out alone: delivery records written"
    )
    result.usage = sampler.stop()
    if first is not None:
        result.count = (last[1] - first[1]) * subscriptions
        result.seconds = last[0] - first[0]
    result.extra = {
        "setup_seconds": setup,
        "events": last[1],
        "first_commit_seconds": (first[0] - began_fanout) if first else None,
    }
    return result


def rss_in_flight(bench: Bench, records: int, open_posts: int, endpoints: int = 10) -> Result:
    """One delivery worker holding `records` records, `open_posts` of them as POSTs open
    at the receiver (which answers after 30 s, so that all of them are open at once):
    its peak RSS."""
    per = records // endpoints
    run = PipelineRun(
        bench,
        "m",
        [f"/hold/m{i}" for i in range(endpoints)],
        roles=["fanout", "deliver"],
        env={
            "SYNCTEC_MAX_IN_FLIGHT": str(open_posts),
            "SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT": str(max(1, open_posts // endpoints)),
            # Neither pause may stop the worker short of holding every record.
            "SYNCTEC_LANE_CAP": str(per + 1),
            "SYNCTEC_MAX_UNCOMMITTED": str(records),
        },
    )
    bench.receiver.dump()
    sampler = run.sampler()
    _emit(run.pipeline.producer, run.source, per)
    peak_open, full_since = 0, None
    deadline = time.monotonic() + 120
    with tqdm(total=open_posts, desc="POSTs open", leave=False) as bar:
        while time.monotonic() < deadline:
            peak_open = max(peak_open, int(bench.receiver.count()["max_open"]))
            bar.update(min(open_posts, peak_open) - bar.n)
            if peak_open >= open_posts and full_since is None:
                full_since = time.monotonic()
            if full_since is not None and time.monotonic() - full_since > 3.0:
                break  # every record consumed long since; RSS sampled meanwhile
            time.sleep(0.2)
    result = Result(
        f"{records:,} held, {open_posts:,} POSTs open",
        "one delivery worker; the receiver answers after 30 s",
    )
    result.usage = sampler.stop()
    result.extra = {"max_open": peak_open, "records": records}
    run.stop()
    bench.receiver.dump()
    return result


def produce_scan(bench: Bench, topic_counts: list[int]) -> Result:
    """The cost of one `produce()` by the number of topics the producer writes to: what
    bounds a fan-out to one topic per webhook (see bench/producescan.py)."""
    h = Helper(
        "bench.producescan", [str(n) for n in topic_counts], {}, bench.logs / "producescan.log"
    )
    costs = {int(n): us for n, us in h.result(300).items()}
    most = max(costs)
    result = Result(
        f"produce() to {most:,} topics",
        "one producer, no broker: the topic lookup and the enqueue alone",
    )
    result.count, result.seconds = 1_000_000, costs[most]  # records/s = 1e6 / us per record
    result.extra = {"us_per_produce": costs}
    return result


# --- the admin service's memory ---------------------------------------------------------


def _get(url: str, token: str) -> tuple[float, dict[str, Any]]:
    """(seconds, JSON body) of one GET to the admin API."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    began = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as resp:
        body = json.loads(resp.read())
    return time.monotonic() - began, body


def admin_memory(bench: Bench, webhooks: int, per_webhook: int, dead: int) -> Result:
    """The admin service started on `webhooks` x `per_webhook` attempts and `dead` dead
    letters: its peak RSS from start, through catching up with the attempts topic, to
    serving two pages of `GET /dead-letters` (each reads the whole dead-letter topic)."""
    prefix = bench.prefix("a")
    settings = bench.settings(prefix)
    total = webhooks * per_webhook
    began = time.monotonic()
    with tqdm(total=1, desc=f"writing {total:,} attempts, {dead:,} dead letters", leave=False):
        adminload.write(settings, webhooks, per_webhook, dead, f"{bench.receiver.base}/a")
    written = time.monotonic() - began
    pipeline = new_pipeline(bench.bootstrap, prefix, bench.logs, bench.env)
    sampler = bench.sampler()
    started = time.monotonic()
    # Spawned alone (not `start`, which waits for it), to be watched from its first moment.
    pipeline._spawn("admin")
    sampler.watch("admin", pipeline.procs["admin"].pid)
    with tqdm(total=1, desc="admin catching up", leave=False):
        pipeline.wait_ready("admin", timeout=900)
    ready = time.monotonic() - started
    base, token = pipeline.admin_url() + "/api/v1", pipeline.admin_token
    first_s, first = _get(f"{base}/dead-letters?limit=100", token)
    # A version without pages (no next_cursor) is asked the same first page again.
    cursor = first.get("next_cursor")
    more = f"&cursor={cursor}" if cursor else ""
    second_s, second = _get(f"{base}/dead-letters?limit=100{more}", token)
    hooks_s, hooks = _get(f"{base}/webhooks", token)
    result = Result(
        f"admin, {total:,} attempts + {dead:,} dead letters",
        "admin start: attempts read and kept; then 2 pages of GET /dead-letters",
    )
    result.usage = sampler.stop()
    kill_pipeline(pipeline)
    result.count, result.seconds = total, ready
    result.extra = {
        "written_seconds": written,
        "ready_seconds": ready,
        "page_seconds": [first_s, second_s],
        "page_rows": [len(first["dead_letters"]), len(second["dead_letters"])],
        "webhooks_seconds": hooks_s,
        "webhooks_listed": len(hooks["webhooks"]),
        "dead_letters": dead,
    }
    return result
