"""`make bench`: one run of every scenario, the ratios printed, the results appended to
docs/benchmarks.md with a plot beside them.

    python -m bench.run [--events N] [--subscriptions K] [--workers W] [--max-in-flight C] ...

Uses the broker at KAFKA_BOOTSTRAP_SERVERS when set, else starts a local one. The
receiver runs in its own process; the workers are the real `synctec-webhooks` processes.
Baselines, ceilings and the pipeline are measured in the same run so their ratios
compare like with like on a machine whose load changes from minute to minute.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench import latency, report
from bench.cluster import ReceiverProcess, kill_all
from bench.common import parse_mix
from bench.scenarios import (
    Bench,
    KafkaOnly,
    PipelineRun,
    Result,
    admin_memory,
    fanout_wide,
    http_ceiling,
    naive,
    produce_scan,
    rss_in_flight,
)
from synctec_webhooks.localkafka import LocalBroker

SCENARIOS = (
    "http",
    "pipeline",
    "naive",
    "kafka",
    "half",
    "endpoint",
    "isolation",
    "rss",
    "fanout",
    "scan",
    "admin",
    "latency",
)
# Scenarios that need the pipeline run (its rate is their yardstick).
_ON_THE_PIPELINE = {"pipeline", "naive", "kafka", "half", "endpoint"}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=8000, help="N events per full-load run")
    p.add_argument("--subscriptions", type=int, default=10, help="K webhooks on '*'")
    p.add_argument("--workers", type=int, default=2, help="delivery worker processes")
    p.add_argument("--max-in-flight", type=int, default=1000, help="POSTs in flight per worker")
    p.add_argument("--per-endpoint", type=int, default=20, help="POSTs in flight per webhook")
    p.add_argument(
        "--mix",
        default="product.synced=4,inventory.updated=3,sync.failed=1,collection.synced=2",
        help="event types and weights",
    )
    p.add_argument(
        "--endpoint-ms",
        type=float,
        default=50.0,
        help="answer time of the endpoint in the naive-vs-pipeline run at a real endpoint's pace",
    )
    p.add_argument("--half-seconds", type=float, default=15.0, help="length of half-rate runs")
    p.add_argument("--naive-seconds", type=float, default=10.0)
    p.add_argument("--fanout-subscriptions", type=int, default=10_000)
    p.add_argument("--fanout-records", type=int, default=50_000, help="delivery records to write")
    p.add_argument("--in-flight", type=int, default=10_000, help="records in flight (RSS run)")
    p.add_argument("--admin-webhooks", type=int, default=10_000, help="webhooks (admin run)")
    p.add_argument(
        "--admin-attempts", type=int, default=100, help="attempts per webhook (admin run)"
    )
    p.add_argument(
        "--admin-dead-letters", type=int, default=100_000, help="dead letters (admin run)"
    )
    p.add_argument("--latency-seconds", type=float, default=30.0, help="measured part (latency)")
    p.add_argument("--latency-rate", type=float, default=10.0, help="events/s, one at a time")
    p.add_argument("--latency-warmup", type=float, default=5.0, help="seconds before measuring")
    p.add_argument(
        "--latency-env",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="a configuration to measure besides the defaults (repeatable): SYNCTEC_* "
        "settings, producer.<librdkafka key>, consumer.<librdkafka key>, consume=eager",
    )
    p.add_argument(
        "--latency-sweep", action="store_true", help="also one knob at a time (latency.SWEEP)"
    )
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated subset")
    p.add_argument("--doc", default="docs/benchmarks.md", help="append results here ('' = don't)")
    p.add_argument("--label", default="", help="a note for this run's heading")
    return p.parse_args(argv)


@contextlib.contextmanager
def _broker(logs: Path) -> Iterator[tuple[str, int | None, str]]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured, None, f"the broker at {configured}"
        return
    # Its log beside the run's others: the broker's data dir goes when it stops.
    with LocalBroker(heap="1g", log_file=logs / "broker.log") as broker:
        yield broker.bootstrap_servers, broker.pid, "a local single-node KRaft broker (1 GB heap)"


def run(args: argparse.Namespace) -> dict[str, Result]:
    only = set(args.only.split(","))
    logs = Path(".state/bench") / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        "SYNCTEC_MAX_IN_FLIGHT": str(args.max_in_flight),
        "SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT": str(args.per_endpoint),
        "SYNCTEC_HTTP_TIMEOUT": "10",
        "SYNCTEC_RETRY_DELAYS": "1,2,4",
        # The receiver is on loopback, which the SSRF guard refuses unless allowed.
        "SYNCTEC_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128",
        "SYNCTEC_LOG_LEVEL": "INFO",  # the harness waits for the "consuming" line
    }
    args.machine = report.machine()  # the load average at the start, not at the end
    print(f"machine: {args.machine}")
    print(f"logs: {logs}")
    results: dict[str, Result] = {}
    with _broker(logs) as (bootstrap, broker_pid, broker_text):
        print(f"broker: {broker_text}")
        receiver = ReceiverProcess(logs)
        bench = Bench(
            bootstrap,
            receiver,
            logs,
            args.events,
            args.subscriptions,
            args.workers,
            parse_mix(args.mix),
            env,
            broker_pid,
            args.half_seconds,
            args.naive_seconds,
        )
        try:
            _scenarios(bench, args, only, results)
        finally:
            kill_all()
            receiver.stop()
    return results


def bench_default_posts(args: argparse.Namespace) -> int:
    """POSTs open in the RSS run: the worker's default max in flight, at most the records."""
    return min(args.in_flight, 1000)


def _show(r: Result) -> None:
    p50, p95, p99 = (x * 1000 for x in r.p)
    lat = f"  p50 {p50:.0f} / p95 {p95:.0f} / p99 {p99:.0f} ms" if r.latencies else ""
    open_ = r.extra.get("mean_open")
    # Only meaningful when the receiver holds its answers (a 0 ms one answers at once).
    conc = f"  ({open_:,.0f} POSTs open on average)" if open_ and open_ >= 1 else ""
    print(f"{r.name:<36} {r.rate:>10,.0f} /s{lat}{conc}", flush=True)
    for u in r.usage:
        print(f"    {u.name:<16} cpu {u.cpu:6.1f} s   peak rss {u.peak_rss / 2**20:6.0f} MB")


def _scenarios(
    bench: Bench, args: argparse.Namespace, only: set[str], out: dict[str, Result]
) -> None:
    def keep(key: str, r: Result) -> None:
        out[key] = r
        _show(r)

    k = bench.subscriptions
    if "http" in only:
        keep("http", http_ceiling(bench))
    if only & _ON_THE_PIPELINE:
        _pipeline_runs(bench, args, only, out, keep)
    if "isolation" in only:
        iso = PipelineRun(bench, "i", [f"/i{i}" for i in range(k)] + ["/slow/i", "/never/i"])
        try:
            healthy = lambda p: not p.startswith(("/slow/", "/never/"))  # noqa: E731
            r = iso.run("isolation (+1 slow, +1 hung)", bench.events, healthy, bench.events * k)
            keep("isolation", r)
        finally:
            iso.stop()
    if "rss" in only:
        keep("rss", rss_in_flight(bench, args.in_flight, bench_default_posts(args)))
        keep("rss_open", rss_in_flight(bench, args.in_flight, args.in_flight))
    if "fanout" in only:
        for n in sorted({args.fanout_subscriptions, 1000}):
            key = "fanout" if n == args.fanout_subscriptions else f"fanout_{n}"
            try:
                keep(key, fanout_wide(bench, n, max(1, args.fanout_records // n)))
            except Exception as exc:  # reported in the results rather than ending the run
                logging.getLogger("bench").exception("fan-out to %d webhooks failed", n)
                failed = Result(f"fan-out, {n:,} webhooks", f"FAILED: {exc}")
                failed.extra = {"error": str(exc)}
                keep(key, failed)
                break  # the broker is likely gone: nothing after this can run
    if "scan" in only:
        keep("scan", produce_scan(bench, sorted({1, 1000, args.fanout_subscriptions})))
    if "admin" in only:
        keep(
            "admin",
            admin_memory(bench, args.admin_webhooks, args.admin_attempts, args.admin_dead_letters),
        )
    if "latency" in only:
        _latency_runs(bench, args, keep)


def _latency_runs(
    bench: Bench, args: argparse.Namespace, keep: Callable[[str, Result], None]
) -> None:
    """The defaults, then each configuration asked for, one pipeline each."""
    configs = latency.configurations(args.latency_env, args.latency_sweep)
    for i, config in enumerate(configs):
        key = "latency" if i == 0 else f"latency_{i}"
        try:
            r = latency.measure(
                bench, config, args.latency_seconds, args.latency_rate, args.latency_warmup
            )
        except Exception as exc:  # one configuration failing leaves the others' figures
            logging.getLogger("bench").exception("latency with %s failed", config.label)
            print(f"latency, {config.label}: FAILED: {exc}", flush=True)
            continue
        keep(key, r)
        latency.show(r)


def _pipeline_runs(
    bench: Bench,
    args: argparse.Namespace,
    only: set[str],
    out: dict[str, Result],
    keep: Callable[[str, Result], None],
) -> None:
    """The pipeline run, and those measured on its topics or at half its rate."""
    k = bench.subscriptions
    pipe = PipelineRun(bench, "p", [f"/p{i}" for i in range(k)])
    try:
        keep("pipeline", pipe.run("pipeline", bench.events, lambda _p: True, bench.events * k))
        if "naive" in only:
            keep("naive", naive(bench, pipe))
        half = out["pipeline"].rate / 2
        kafka = KafkaOnly(bench) if "kafka" in only else None
        if kafka is not None:
            keep("kafka", kafka.run("Kafka only (fan-out + consume)", bench.events))
            keep("kafka_consume", kafka.run("Kafka ceiling (consume + decode)", 0, fanout=False))
        if "half" in only:
            n = max(1, int(half / k * bench.seconds_at_half))
            keep("http_half", http_ceiling(bench, rate=half, count=n * k))
            if kafka is not None:
                keep("kafka_half", kafka.run("Kafka only at half rate", n, rate=half / k, group=1))
            keep(
                "pipeline_half",
                pipe.run("pipeline at half rate", n, lambda _p: True, n * k, half / k),
            )
        if "endpoint" in only and args.endpoint_ms > 0 and "naive" in only:
            _endpoint_runs(bench, pipe, args.endpoint_ms, keep)
    finally:
        pipe.stop()


def _endpoint_runs(
    bench: Bench, pipe: PipelineRun, ms: float, keep: Callable[[str, Result], None]
) -> None:
    """Naive and pipeline again, the receiver answering each POST after `ms`: on loopback
    an endpoint answers in microseconds, real ones (Slack, Zapier, an ERP) in tens to
    hundreds of milliseconds, which is what a synchronous loop waits for every time."""
    k = bench.subscriptions
    bench.receiver.set_delay(ms)
    try:
        keep("naive_endpoint", naive(bench, pipe, f"naive, {ms:.0f} ms endpoint"))
        n = max(1, bench.events // 4)
        keep(
            "pipeline_endpoint",
            pipe.run(f"pipeline, {ms:.0f} ms endpoint", n, lambda _p: True, n * k),
        )
    finally:
        bench.receiver.set_delay(0)


def _append_doc(
    doc: Path, args: argparse.Namespace, results: list[Result], lines: list[str]
) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    png = doc.parent / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.png"
    report.plot(results, png)
    params = (
        f"N={args.events} events, K={args.subscriptions} webhooks, W={args.workers} delivery "
        f"workers, {args.max_in_flight} in flight per worker, {args.per_endpoint} per endpoint, "
        f"mix {args.mix}"
    )
    text = [
        "",
        f"### Run of {stamp} (commit {commit or '?'}){' — ' + args.label if args.label else ''}",
        "",
        f"Machine: {args.machine}. Shared with other engineers' test suites while it ran,",
        "so the absolute figures are noisy; the ratios compare scenarios of this one run.",
        "",
        f"Parameters: {params}.",
        "",
        report.table(results),
        "",
        f"![throughput and latency]({png.name})",
        "",
        *(f"- {line}" for line in lines),
        "",
        *_latency_doc(results),
        "<details><summary>CPU and memory per process</summary>",
        "",
        report.usage_table(results),
        "",
        "</details>",
        "",
    ]
    if not doc.exists():
        doc.write_text("# Benchmarks\n\nAppended by `make bench`, newest last.\n")
    with doc.open("a") as f:
        f.write("\n".join(text))
    print(f"appended to {doc}, plot {png}")


def _latency_doc(results: list[Result]) -> list[str]:
    measured = [r for r in results if r.name.startswith("latency, ")]
    if not measured:
        return []
    return ["Light-load latency by configuration:", "", latency.table(measured), ""]


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    # SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C, so every process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    keyed = run(args)
    results = list(keyed.values())
    lines = report.ratios(keyed)
    print()
    print(report.table(results))
    print()
    for line in lines:
        print(line)
    measured = [r for key, r in keyed.items() if key.startswith("latency")]
    if measured:
        print()
        print(latency.table(measured))
    if args.doc:
        _append_doc(Path(args.doc), args, results, lines)
    print(f"bench took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
