"""Processes a benchmark run drives: the broker, the receiver, workers and helpers.

Each process is watched by the `Sampler` for CPU seconds and peak RSS. Worker roles
run through the test harness's `Pipeline` (the real `synctec-webhooks <role>`
processes), so the benchmark measures what production runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.common import Sampler
from synctec_webhooks import schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.kafka import TopicAdmin, core_topics, delivery_topic_spec, producer_config
from synctec_webhooks.localkafka.node import _die_with_parent
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.signing import generate_secret
from synctec_webhooks.subscriptions import to_record
from synctec_webhooks.topics import Topics
from tests.integration.harness import Pipeline

# Every worker pipeline a run started, so that an interrupted run leaves none behind.
_PIPELINES: list[Pipeline] = []


def kill_all() -> None:
    while _PIPELINES:
        kill_pipeline(_PIPELINES.pop())


class ReceiverProcess:
    def __init__(self, logs: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "0"],
            stdout=subprocess.PIPE,
            preexec_fn=_die_with_parent(),
            stderr=(logs / "receiver.log").open("wb"),
        )
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.base = f"http://127.0.0.1:{self.port}"

    def count(self) -> dict[str, float]:
        with urllib.request.urlopen(f"{self.base}/_count", timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def dump(self) -> list[tuple[float, str, str]]:
        """Every POST since the last dump: (arrival, event timestamp text, path)."""
        with urllib.request.urlopen(f"{self.base}/_dump", timeout=60) as r:
            return [tuple(x) for x in json.loads(r.read())]  # type: ignore[misc]

    def set_delay(self, ms: float) -> None:
        """Every healthy POST is answered `ms` milliseconds after it arrived."""
        with urllib.request.urlopen(f"{self.base}/_delay?ms={ms}", timeout=10) as r:
            r.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Helper:
    """A `python -m bench.<module>` process that prints one JSON object when done."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            preexec_fn=_die_with_parent(),
            stderr=log.open("wb"),
        )

    def result(self, timeout: float = 600) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=timeout)
        return json.loads(out)  # type: ignore[no-any-return]

    def terminate(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        return self.result(60)


def new_pipeline(bootstrap: str, prefix: str, logs: Path, env: dict[str, str]) -> Pipeline:
    """A pipeline with nothing started yet, stopped by `kill_all` at the end."""
    folder = logs / prefix
    folder.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(bootstrap, prefix, folder, **env)
    _PIPELINES.append(pipeline)
    return pipeline


def start_pipeline(
    bootstrap: str, prefix: str, logs: Path, roles: list[str], sampler: Sampler, env: dict[str, str]
) -> Pipeline:
    pipeline = new_pipeline(bootstrap, prefix, logs, env)
    pipeline.start(roles, timeout=120)
    for name, proc in pipeline.procs.items():
        sampler.watch(name, proc.pid)
    return pipeline


def kill_pipeline(pipeline: Pipeline) -> None:
    """SIGKILL: the benchmark does not need a clean stop, and a hung endpoint would make
    a clean one wait for the HTTP timeout."""
    for proc in pipeline.procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def bulk_webhooks(settings: Settings, urls: list[str], partitions: int) -> list[Subscription]:
    """Many webhooks at once: their topics in batches, their records in one flush
    (`SubscriptionWriter.add` does both one webhook at a time)."""
    admin = TopicAdmin(settings)
    admin.ensure(core_topics(settings))
    now = int(time.time() * 1000)
    subs = [
        Subscription(f"wh_bench{i:08d}", url, ("*",), generate_secret(), None, True, now, now)
        for i, url in enumerate(urls)
    ]
    specs = [
        delivery_topic_spec(settings.with_(delivery_partitions=partitions), s.id) for s in subs
    ]
    for i in range(0, len(specs), 500):
        admin.ensure(specs[i : i + 500], timeout=120)
    codec = make_codec(None)
    topic = Topics(settings.topic_prefix).subscriptions
    producer = Producer(producer_config(settings, "bench-webhooks"))
    for sub in subs:
        producer.produce(topic, codec.encode(topic, schemas.SUBSCRIPTION, to_record(sub)), sub.id)
        producer.poll(0)
    producer.flush(60)
    return subs
