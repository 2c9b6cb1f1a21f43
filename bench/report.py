"""Turn one run's results into the printed summary, a Markdown section and a plot."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from pathlib import Path

import psutil

from bench.scenarios import Result

# Targets of issue 6, on this 2-core machine with broker and receiver on it too.
TARGET_NAIVE = 20.0
TARGET_HTTP = 0.5
TARGET_FANOUT = 50_000.0
TARGET_ISOLATION = 0.9
TARGET_RSS_MB = 200.0
# The admin Deployment's memory request (deploy/k8s/admin.yaml; its limit is 512 MiB).
TARGET_ADMIN_RSS_MB = 256.0


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
    return (
        f"{psutil.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"{java[0] if java else 'java ?'}; load average at start {load}"
    )


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 1000:.0f}"


def table(results: list[Result]) -> str:
    rows = [
        "| scenario | what | records/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        p50, p95, p99 = r.p
        rows.append(
            f"| {r.name} | {r.what} | {r.rate:,.0f} | {_ms(p50)} | {_ms(p95)} | {_ms(p99)} |"
        )
    return "\n".join(rows)


def usage_table(results: list[Result]) -> str:
    rows = ["| scenario | CPU seconds and peak RSS per process |", "|---|---|"]
    for r in results:
        cells = ", ".join(f"{u.name} {u.cpu:.1f} s / {u.peak_rss / 2**20:.0f} MB" for u in r.usage)
        rows.append(f"| {r.name} | {cells} |")
    return "\n".join(rows)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ratios(by: dict[str, Result]) -> list[str]:
    out = _admin(by)
    if "latency" in by:
        from bench.latency import targets  # bench.latency imports this module's neighbours

        out.append(f"light-load latency (issue 13), {targets(by['latency'])}")
    if "pipeline" not in by:
        return out
    pipe = by["pipeline"].rate
    if "naive" in by and by["naive"].rate:
        x = pipe / by["naive"].rate
        ok = _verdict(x >= TARGET_NAIVE)
        out.append(f"pipeline / naive = {x:.1f}x (target >= {TARGET_NAIVE:.0f}x: {ok})")
    slow = by.get("pipeline_endpoint"), by.get("naive_endpoint")
    if slow[0] is not None and slow[1] is not None and slow[1].rate:
        x = slow[0].rate / slow[1].rate
        ms = slow[1].name.split(", ")[1]
        ok = _verdict(x >= TARGET_NAIVE)
        out.append(
            f"with a {ms} (each POST answered after it): pipeline / naive = {x:.0f}x "
            f"(target >= {TARGET_NAIVE:.0f}x: {ok})"
        )
    if "http" in by and by["http"].rate:
        x = pipe / by["http"].rate
        ok = _verdict(x >= TARGET_HTTP)
        out.append(f"pipeline / HTTP ceiling = {x:.2f} (target >= {TARGET_HTTP}: {ok})")
    if "kafka_consume" in by and by["kafka_consume"].rate:
        out.append(
            f"pipeline / Kafka ceiling (consume + decode) = {pipe / by['kafka_consume'].rate:.2f}"
        )
    if "kafka" in by and by["kafka"].rate:
        out.append(
            f"pipeline / Kafka-only path (fan-out + consume) = {pipe / by['kafka'].rate:.2f}"
        )
    if {"pipeline_half", "kafka_half", "http_half"} <= by.keys():
        p99 = by["pipeline_half"].p[2] * 1000
        kafka, http = by["kafka_half"].p[2] * 1000, by["http_half"].p[2] * 1000
        bound = 2 * (kafka + http)
        out.append(
            f"p99 at half rate = {p99:.0f} ms, bound 2 x (Kafka-only {kafka:.0f} + HTTP-only "
            f"{http:.0f}) = {bound:.0f} ms ({_verdict(p99 <= bound)})"
        )
    if "isolation" in by:
        x = by["isolation"].rate / pipe
        ok = _verdict(x >= TARGET_ISOLATION)
        out.append(
            f"isolation: healthy endpoints' deliveries/s with a 5 s and a hung endpoint = "
            f"{x:.2f} of the pipeline's (target >= {TARGET_ISOLATION}: {ok})"
        )
    if "fanout_1000" in by and by["fanout_1000"].rate:
        out.append(f"fan-out to 1,000 webhooks = {by['fanout_1000'].rate:,.0f} delivery records/s")
    if "fanout" in by:
        x = by["fanout"].rate
        failed = by["fanout"].extra.get("error")
        shown = f"failed ({failed})" if failed else f"{x:,.0f} delivery records/s"
        started = by["fanout"].extra.get("first_commit_seconds")
        if not failed and started is not None:
            shown += f" once going (its first transaction committed {started:.0f} s after start)"
        elif not failed:
            shown += " (no transaction committed within 150 s)"
        out.append(
            f"fan-out to {by['fanout'].name.split(', ')[1]} = {shown} "
            f"(target >= {TARGET_FANOUT:,.0f} with 10,000: {_verdict(x >= TARGET_FANOUT)})"
        )
    if "scan" in by:
        costs = by["scan"].extra["us_per_produce"]
        shown = " / ".join(f"{us:.1f}" for us in costs.values())
        names = " / ".join(f"{n:,}" for n in costs)
        most = max(costs)
        out.append(
            f"one produce() costs {shown} us with {names} topics known to the producer "
            f"(no broker): one producer writes at most {1e6 / costs[most]:,.0f} records/s "
            f"to {most:,} per-webhook topics before any other work"
        )
    for key in ("rss", "rss_open"):
        if key not in by:
            continue
        worker = [u for u in by[key].usage if u.name == "deliver"]
        if worker:
            mb = worker[0].peak_rss / 2**20
            held, posts = by[key].extra.get("records", "?"), by[key].extra.get("max_open", "?")
            ok = _verdict(mb < TARGET_RSS_MB)
            out.append(
                f"delivery worker peak RSS holding {held:,} records, {posts:,} POSTs open at "
                f"the receiver = {mb:.0f} MB (target < {TARGET_RSS_MB:.0f}: {ok})"
            )
    return out


def _admin(by: dict[str, Result]) -> list[str]:
    if "admin" not in by:
        return []
    r = by["admin"]
    [admin] = [u for u in r.usage if u.name == "admin"]
    mb = admin.peak_rss / 2**20
    pages = " and ".join(f"{s:.1f}" for s in r.extra["page_seconds"])
    return [
        f"admin service peak RSS, from start to serving GET /dead-letters, with "
        f"{r.count:,} attempts and {r.extra['dead_letters']:,} dead letters on its topics = "
        f"{mb:.0f} MB (target < {TARGET_ADMIN_RSS_MB:.0f}, the pod's request: "
        f"{_verdict(mb < TARGET_ADMIN_RSS_MB)}); ready after {r.extra['ready_seconds']:.0f} s, "
        f"two pages of 100 dead letters in {pages} s"
    ]


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.rate]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    names = [r.name for r in shown]
    ax1.barh(names, [r.rate for r in shown], color="tab:blue")
    ax1.set_xscale("log")
    ax1.set_xlabel("records per second (log scale)")
    ax1.set_title("Throughput")
    ax1.invert_yaxis()
    for i, r in enumerate(shown):
        ax1.text(r.rate, i, f" {r.rate:,.0f}", va="center", fontsize=8)
    lat = [r for r in results if r.latencies]
    width = 0.27
    for j, (q, color) in enumerate(((0, "tab:green"), (1, "tab:orange"), (2, "tab:red"))):
        ys = [k + (j - 1) * width for k in range(len(lat))]
        ax2.barh(
            ys,
            [max(r.p[q] * 1000, 0.1) for r in lat],
            height=width,
            color=color,
            label=("p50", "p95", "p99")[j],
        )
    ax2.set_yticks(range(len(lat)), [r.name for r in lat])
    ax2.set_xscale("log")
    ax2.set_xlabel("emit -> receive latency, ms (log scale)")
    ax2.set_title("Latency")
    ax2.invert_yaxis()
    ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
