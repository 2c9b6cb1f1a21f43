"""Operations, checked for real: the workers as processes serve /metrics, /healthz and
/readyz; a real Prometheus scrapes them while webhooks flow (some succeed, some are
retried, some dead-lettered); every query of the Grafana dashboard and of the alert
rules returns data through Prometheus' HTTP API; the alerts that should fire do; the
dashboard's panels are drawn from that data.

The scenario runs once for the module (about a minute); the tests read it. The last
test stops a worker, so it stays last.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from synctec_webhooks.matching import Subscription
from tests.integration.harness import (
    Pipeline,
    Receiver,
    Reply,
    always,
    collection_synced,
    inventory_updated,
    product_synced,
    sync_failed,
    wait_until,
)
from tests.integration.prometheus_server import PrometheusServer, scrape_config
from tools import dashboard as dash

pytestmark = pytest.mark.broker

ROLES = ("fanout", "deliver", "retry")
JOBS = {role: f"synctec-{role}" for role in ROLES}
# Long enough for rate() over the dashboard's 1m windows to have a few points; set
# longer to draw a fuller picture for docs/dashboard.png.
TRAFFIC_SECONDS = float(os.environ.get("SYNCTEC_OBSERVABILITY_TRAFFIC_SECONDS", "20"))
RENDER_TO = os.environ.get("SYNCTEC_DASHBOARD_PNG")  # also write the picture here


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def flaky(i: int) -> Reply:
    """Every third request fails once: retries that end in a delivery."""
    return Reply(503) if i % 3 == 1 else Reply(200)


@dataclass
class Scenario:
    pipeline: Pipeline
    receiver: Receiver
    prometheus: PrometheusServer
    ops: dict[str, str]
    hooks: dict[str, Subscription]
    workdir: Path
    started: float = 0.0
    ended: float = 0.0
    emitted: Counter[str] = field(default_factory=Counter)
    poison: int = 0

    def exposition(self, role: str) -> dict[str, list[Any]]:
        """Sample name -> samples, from the role's /metrics as served now."""
        status, body = get(f"{self.ops[role]}/metrics")
        assert status == 200
        samples: dict[str, list[Any]] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)
        return samples

    def total(self, role: str, name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in self.exposition(role).get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())
        )

    def values(self) -> dict[str, str]:
        """The dashboard's variables as Grafana fills them in: every job, every type."""
        return {"job": "|".join(JOBS.values()), "event_type": ".+"}


@pytest.fixture(scope="module")
def scenario(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("observability")
    receiver = Receiver().start()
    receiver.script("/down", always(500))
    receiver.script("/flaky", flaky)
    pipeline = Pipeline(
        kafka_bootstrap,
        f"t{uuid.uuid4().hex[:8]}",
        workdir,
        SYNCTEC_LOG_FORMAT="json",
        SYNCTEC_STATS_INTERVAL_MS="1000",
        SYNCTEC_METRICS_PORT="0",
        SYNCTEC_METRICS_PER_WEBHOOK="*",
        SYNCTEC_METRICS_PER_WEBHOOK_CAP="2",
    )
    prometheus: PrometheusServer | None = None
    try:
        hooks = {
            "/ok": pipeline.add_webhook(
                receiver.url("/ok"), "product.synced,inventory.updated,collection.synced"
            ),
            "/flaky": pipeline.add_webhook(receiver.url("/flaky"), "inventory.updated"),
            "/down": pipeline.add_webhook(receiver.url("/down"), "sync.failed"),
        }
        pipeline.start(ROLES)
        ops = {role: pipeline.ops_url(role) for role in ROLES}
        for role, url in ops.items():
            wait_until(
                lambda url=url: get(f"{url}/readyz")[0] == 200,
                60,
                lambda url=url, role=role: f"{role} not ready: {get(f'{url}/readyz')[1]!r}",
            )
        targets = {JOBS[role]: [url.removeprefix("http://")] for role, url in ops.items()}
        prometheus = PrometheusServer(scrape_config(targets), workdir).start()
        s = Scenario(pipeline, receiver, prometheus, ops, hooks, workdir)
        _traffic(s)
        yield s
    finally:
        if prometheus is not None:
            prometheus.stop()
        pipeline.stop()
        receiver.stop()


def _traffic(s: Scenario) -> None:
    s.started = time.time()
    while time.time() - s.started < TRAFFIC_SECONDS:
        stamp = {"timestamp": now_rfc3339()}
        batch = [
            product_synced("p1") | stamp,
            product_synced("p2") | stamp,
            inventory_updated("p3") | stamp,
            sync_failed("p4") | stamp,
            collection_synced("c5") | stamp,
        ]
        s.pipeline.emit(*batch)
        s.emitted.update(e["event"] for e in batch)
        if s.poison == 0:
            s.pipeline.producer.raw_produce(b"not an event", key="p1")
            s.poison += 1
        time.sleep(0.5)
    ok = s.emitted["product.synced"] + s.emitted["inventory.updated"]
    ok += s.emitted["collection.synced"]
    s.receiver.wait_for(ok, "/ok", timeout=60)
    # Every sync.failed event: four attempts (1 + 3 retries), then a dead letter.
    s.receiver.wait_for(4 * s.emitted["sync.failed"], "/down", timeout=60)
    wait_until(lambda: _dead_lettered(s) >= s.emitted["sync.failed"], 60, lambda: "dead letters")
    time.sleep(3)  # a few more scrapes and rule evaluations of the final state
    s.ended = time.time()


def _dead_lettered(s: Scenario) -> float:
    return s.total("retry", "synctec_dead_letters_total", reason="retries_exhausted")


def _has_finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


# --- the services' own endpoints ------------------------------------------------------


def test_every_worker_serves_health_readiness_and_metrics(scenario: Scenario) -> None:
    for role, url in scenario.ops.items():
        status, body = get(f"{url}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok", (role, body)
        status, body = get(f"{url}/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["ready"], (role, ready)
        assert ready["checks"][role]["ok"], ready
    # The fan-out is ready only once caught up with the subscriptions.
    fanout = json.loads(get(f"{scenario.ops['fanout']}/readyz")[1])
    assert "3 webhooks" in fanout["checks"]["subscriptions"]["detail"], fanout


def test_metrics_count_exactly_what_happened(scenario: Scenario) -> None:
    s = scenario
    # Events by type, as the fan-out read them (the poison record under "unknown").
    for event_type, count in s.emitted.items():
        consumed = s.total("fanout", "synctec_events_consumed_total", event_type=event_type)
        assert consumed == count, event_type
    assert s.total("fanout", "synctec_events_consumed_total", event_type="unknown") == s.poison
    assert s.total("fanout", "synctec_dead_letters_total", reason="undecodable") == s.poison
    matches = s.emitted["inventory.updated"] * 2 + s.emitted["product.synced"]
    matches += s.emitted["sync.failed"] + s.emitted["collection.synced"]
    assert s.total("fanout", "synctec_fanout_matches_total") == matches

    # Every POST the receiver answered is one attempt in the workers' counters.
    def by_outcome(outcome: str) -> float:
        return sum(
            s.total(role, "synctec_deliveries_total", outcome=outcome)
            for role in ("deliver", "retry")
        )

    wait_until(
        lambda: by_outcome("2xx") + by_outcome("5xx") == len(s.receiver.received()),
        30,
        lambda: f"{by_outcome('2xx')} + {by_outcome('5xx')} != {len(s.receiver.received())}",
    )
    answers = _answers(s)
    assert by_outcome("2xx") == sum(1 for _, status in answers if status == 200)
    assert by_outcome("5xx") == sum(1 for _, status in answers if status >= 500)
    # Each failed attempt either went to a retry tier or, the fourth time, was given up.
    failures: Counter[str] = Counter(d for d, status in answers if status >= 500)
    given_up = sum(1 for count in failures.values() if count == 4)
    assert _dead_lettered(s) == given_up >= s.emitted["sync.failed"]
    retries = sum(s.total(role, "synctec_retries_scheduled_total") for role in ("deliver", "retry"))
    assert retries == failures.total() - given_up
    # Latency histograms saw every attempt; end-to-end only the 2xx ones.
    requests = sum(
        s.total(role, "synctec_delivery_request_seconds_count") for role in ("deliver", "retry")
    )
    e2e = sum(s.total(role, "synctec_delivery_e2e_seconds_count") for role in ("deliver", "retry"))
    assert requests == len(answers)
    assert e2e == by_outcome("2xx")
    assert s.total("deliver", "synctec_delivery_in_flight") == 0


def _answers(s: Scenario) -> list[tuple[str, int]]:
    """(delivery id, status the receiver answered) for every POST, from its scripts."""
    scripts = {"/ok": lambda _i: Reply(200), "/flaky": flaky, "/down": always(500)}
    out = []
    for path, script in scripts.items():
        for i, r in enumerate(s.receiver.received(path), start=1):
            out.append((r.header("X-StoreLink-Delivery-Id"), script(i).status))
    return out


def test_labels_stay_bounded(scenario: Scenario) -> None:
    s = scenario
    deliver = s.exposition("deliver")
    urls = [sub.url for sub in s.hooks.values()]
    for samples in deliver.values():
        for sample in samples:
            assert not any(u in v for u in urls for v in sample.labels.values()), sample
    # Per-webhook series were opted in for every webhook, capped at 2: the third one,
    # whichever came last, is counted as "_other".
    per_webhook = {x.labels["webhook_id"] for x in deliver["synctec_webhook_deliveries_total"]}
    own = per_webhook - {"_other"}
    assert len(own) == 2 and own <= {sub.id for sub in s.hooks.values()}, per_webhook
    assert "_other" in per_webhook
    # Lag per group and partition; delivery topics (one per webhook) share one label.
    lag = deliver["synctec_consumer_lag_records"]
    assert {x.labels["topic"] for x in lag} == {f"{s.pipeline.settings.topic_prefix}.deliveries.*"}
    assert {x.labels["group"] for x in lag} == {f"{s.pipeline.settings.topic_prefix}.deliver"}


def test_consumer_lag_is_measured_and_drains_to_zero(scenario: Scenario) -> None:
    """Everything emitted has been processed and committed, so every group's lag,
    summed over its partitions, comes down to 0 (the fan-out commits in transactions,
    the others by auto-commit)."""
    prefix = scenario.pipeline.settings.topic_prefix
    expected = {
        "fanout": {(f"{prefix}.events", str(p)) for p in range(6)},
        "deliver": {(f"{prefix}.deliveries.*", str(p)) for p in range(3)},
        "retry": {(f"{prefix}.retry.{t}", str(p)) for t in (1, 2, 3) for p in range(3)},
    }

    def lags(role: str) -> dict[tuple[str, str], float]:
        samples = scenario.exposition(role)["synctec_consumer_lag_records"]
        assert {x.labels["group"] for x in samples} == {f"{prefix}.{role}"}
        return {(x.labels["topic"], x.labels["partition"]): x.value for x in samples}

    for role, partitions in expected.items():
        assert set(lags(role)) == partitions, role
        wait_until(lambda r=role: sum(lags(r).values()) == 0, 30, lambda r=role: f"{r}: {lags(r)}")


# --- Prometheus, the dashboard and the rules ------------------------------------------


def test_prometheus_scrapes_every_worker(scenario: Scenario) -> None:
    targets = scenario.prometheus.api.get("/api/v1/targets")["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == set(JOBS.values())
    assert all(t["health"] == "up" for t in targets), targets


def test_dashboard_variables_list_the_jobs_and_event_types(scenario: Scenario) -> None:
    api = scenario.prometheus.api
    variables = dash.variables(dash.load_dashboard())
    label, match = dash.variable_query(variables["job"])
    assert set(api.label_values(label, match)) == set(JOBS.values())
    label, match = dash.variable_query(variables["event_type"])
    found = api.label_values(label, dash.substitute(match, scenario.values()))
    assert set(scenario.emitted) <= set(found)


def test_every_dashboard_query_returns_data(scenario: Scenario) -> None:
    api = scenario.prometheus.api
    queries = dash.dashboard_queries(dash.load_dashboard(), scenario.values())
    assert len(queries) >= 20
    empty = [q for q in queries if not _has_finite(api.query(q.expr))]
    assert not empty, "\n".join(f"{q.source}: {q.expr}" for q in empty)
    # One event type picked, as a user would in the variable's drop-down.
    one = {**scenario.values(), "event_type": "inventory.updated"}
    queries = dash.dashboard_queries(dash.load_dashboard(), one)
    typed = [q for q in queries if "event_type" in q.expr]
    empty = [q for q in typed if not _has_finite(api.query(q.expr))]
    assert not empty, "\n".join(f"{q.source}: {q.expr}" for q in empty)


def test_every_rule_query_returns_data_and_evaluates_cleanly(scenario: Scenario) -> None:
    api = scenario.prometheus.api
    queries = dash.rule_queries(dash.load_rules())
    empty = [q for q in queries if not _has_finite(api.query(q.expr))]
    assert not empty, "\n".join(f"{q.source}: {q.expr}" for q in empty)
    groups = api.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in dash.load_rules()["groups"])
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, broken


def test_every_metric_used_is_exposed(scenario: Scenario) -> None:
    exposed = {name for role in ROLES for name in scenario.exposition(role)} | {"up"}
    board = dash.dashboard_queries(dash.load_dashboard(), scenario.values())
    rules = dash.rule_queries(dash.load_rules())
    used = {name for q in [*board, *rules] for name in dash.metric_names(q.expr)}
    assert used - exposed == set()
    rule_list = [r for g in dash.load_rules()["groups"] for r in g["rules"]]
    recorded = {r["record"] for r in rule_list if "record" in r}
    assert {n for q in [*board, *rules] for n in dash.recorded_names(q.expr)} <= recorded
    # And nothing documented is missing from docs/metrics.md.
    doc = (dash.ROOT / "docs" / "metrics.md").read_text()
    families = {n.removesuffix("_bucket").removesuffix("_total") for n in used if n != "up"}
    assert [f for f in sorted(families) if f not in doc] == []


def test_alerts_fire_on_dead_letters_and_a_low_success_ratio(scenario: Scenario) -> None:
    api = scenario.prometheus.api

    def states() -> dict[str, str]:
        alerts = api.get("/api/v1/alerts")["alerts"]
        return {a["labels"]["alertname"]: a["state"] for a in alerts}

    # `for:` keeps them pending in a one-minute test; pending means the expression held.
    wanted = {"SynctecDeadLettersGrowing", "SynctecDeliverySuccessRatioLow"}
    wait_until(lambda: wanted <= set(states()), 30, lambda: f"alerts: {states()}")
    assert "SynctecWorkerDown" not in states()


def test_logs_are_json_lines_without_secrets(scenario: Scenario) -> None:
    secrets = [sub.secret for sub in scenario.hooks.values()]
    for log in sorted(scenario.workdir.glob("*.log")):
        if log.name == "prometheus.log":
            continue
        lines = log.read_text().splitlines()
        assert lines, log
        for line in lines:
            entry = json.loads(line)  # every line is one JSON object
            assert {"ts", "level", "logger", "msg"} <= set(entry), line
            assert not any(secret in line for secret in secrets), line


def test_dashboard_panels_are_drawn_from_real_data(scenario: Scenario) -> None:
    out = scenario.workdir / "dashboard.png"
    s = scenario
    command = [
        sys.executable,
        str(dash.ROOT / "tools" / "render_dashboard.py"),
        f"--prometheus={s.prometheus.url}",
        f"--start={s.started - 5}",
        f"--end={s.ended}",
        f"--var=job={s.values()['job']}",
        f"--out={out}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    panels = len(list(dash.panels(dash.load_dashboard())))
    assert f"{panels} of {panels} panels with data" in result.stdout, result.stdout
    assert out.stat().st_size > 50_000
    if RENDER_TO:
        Path(RENDER_TO).write_bytes(out.read_bytes())


def test_worker_down_alert_when_a_worker_stops(scenario: Scenario) -> None:
    """Last: it stops the retry worker."""
    api = scenario.prometheus.api
    assert scenario.pipeline.terminate("retry") == 0
    wait_until(
        lambda: any(float(r["value"][1]) == 0 for r in api.query(f'up{{job="{JOBS["retry"]}"}}')),
        30,
    )

    def down() -> bool:
        alerts = api.get("/api/v1/alerts")["alerts"]
        return any(
            a["labels"]["alertname"] == "SynctecWorkerDown" and a["labels"]["job"] == JOBS["retry"]
            for a in alerts
        )

    wait_until(down, 30, lambda: "SynctecWorkerDown did not fire for the retry worker")
