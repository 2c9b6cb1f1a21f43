"""Knobs the latency scenario turns inside the worker processes, for measurement only.

Some of what issue 13 asks to measure is not a setting: the librdkafka properties the
package sets itself (`linger.ms`, `fetch.wait.max.ms`, `isolation.level`: see
synctec_webhooks/kafka/config.py; `kafka_properties` refuses them as pass-through) and
`consume(n, timeout)`, which waits for n records or the whole timeout. Rather than
change the package to measure them, the benchmark loads this module in each worker
through a `sitecustomize` it writes beside the run's logs (`hook_env`), before anything
imports confluent-kafka, and replaces its `Producer` and `Consumer` by subclasses:

    BENCH_RDKAFKA_PRODUCER="linger.ms=0"          properties every producer gets
    BENCH_RDKAFKA_CONSUMER="fetch.wait.max.ms=5"  properties every consumer gets
    BENCH_CONSUME_EAGER=1                         consume() returns at the first record
    BENCH_TRACE=path                              append the fan-out's steps' durations
                                                  to path (`trace`), to see where it waits

With none of them set nothing is replaced: the defaults run exactly as shipped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRODUCER_VAR = "BENCH_RDKAFKA_PRODUCER"
CONSUMER_VAR = "BENCH_RDKAFKA_CONSUMER"
EAGER_VAR = "BENCH_CONSUME_EAGER"
TRACE_VAR = "BENCH_TRACE"
HOOK_VARS = (PRODUCER_VAR, CONSUMER_VAR, EAGER_VAR, TRACE_VAR)


def parse_properties(text: str) -> dict[str, str]:
    """ "a.b=1;c.d=x" -> {"a.b": "1", "c.d": "x"}."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if key and sep:
            out[key] = value
    return out


def format_properties(props: Mapping[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in props.items())


def hook_env(folder: Path, env: Mapping[str, str]) -> dict[str, str]:
    """PYTHONPATH for a worker to load `install` at start, when `env` turns any knob;
    {} (no hook at all) when it turns none."""
    if not any(env.get(var) for var in HOOK_VARS):
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text("import bench.knobs\n\nbench.knobs.install()\n")
    root = Path(__file__).resolve().parent.parent
    paths = [str(folder), str(root), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def install(env: Mapping[str, str] = os.environ) -> None:
    """Replace confluent_kafka.Producer and .Consumer as the variables above ask."""
    producer_props = parse_properties(env.get(PRODUCER_VAR, ""))
    consumer_props = parse_properties(env.get(CONSUMER_VAR, ""))
    eager = env.get(EAGER_VAR, "") == "1"
    if env.get(TRACE_VAR):
        _replace_classes(producer_props, consumer_props, eager)
        trace(Path(env[TRACE_VAR]))
    elif producer_props or consumer_props or eager:
        _replace_classes(producer_props, consumer_props, eager)


def _replace_classes(
    producer_props: dict[str, str], consumer_props: dict[str, str], eager: bool
) -> None:
    import confluent_kafka

    base_producer: Any = confluent_kafka.Producer
    base_consumer: Any = confluent_kafka.Consumer

    class Producer(base_producer):  # type: ignore[misc]
        def __init__(self, conf: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            super().__init__({**conf, **producer_props}, *args, **kwargs)

    class Consumer(base_consumer):  # type: ignore[misc]
        def __init__(self, conf: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            super().__init__({**conf, **consumer_props}, *args, **kwargs)

        def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
            if not eager or num_messages <= 1:
                return super().consume(num_messages, timeout)  # type: ignore[no-any-return]
            # At the first record, take what else is already fetched and return.
            first: list[Any] = super().consume(1, timeout)
            if not first:
                return first
            return first + super().consume(num_messages - 1, 0)  # type: ignore[no-any-return]

    confluent_kafka.Producer = Producer  # type: ignore[misc,assignment]
    confluent_kafka.Consumer = Consumer  # type: ignore[misc,assignment]


def trace(path: Path) -> None:
    """Time the fan-out's steps: each call appends "name start end" (epoch seconds)."""
    import functools
    import time

    from synctec_webhooks.consumers.fanout.worker import FanoutWorker
    from synctec_webhooks.kafka import follower
    from synctec_webhooks.subscriptions import SubscriptionTable

    out = path.open("a", buffering=1)

    def timed_async(cls: Any, name: str) -> None:
        fn = getattr(cls, name)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.time()
            try:
                return await fn(*args, **kwargs)
            finally:
                out.write(f"{cls.__name__}.{name} {began:.6f} {time.time():.6f}\n")

        setattr(cls, name, wrapper)

    for cls, name in (
        (FanoutWorker, "_next_batch"),
        (FanoutWorker, "_process"),
        (FanoutWorker, "_commit"),
        (SubscriptionTable, "sync"),
        (follower.TopicFollower, "catch_up"),
        (follower.TopicFollower, "_ends"),
    ):
        timed_async(cls, name)
