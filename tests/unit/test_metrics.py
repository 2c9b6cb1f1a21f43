"""The metrics bundle: label mapping, bounded labels, what one attempt records."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from synctec_webhooks.consumers.delivery.outcome import (
    Outcome,
    OutcomeKind,
    from_exception,
    from_response,
)
from synctec_webhooks.ops.metrics import (
    DEAD_LETTER_REASONS,
    EVENT_TYPES,
    OUTCOMES,
    AccountLabels,
    Metrics,
    WebhookLabels,
    event_age,
    outcome_label,
)


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("outcome", "label"),
    [
        (from_response(200, {}, 5.0, 0.0), "2xx"),
        (from_response(204, {}, 5.0, 0.0), "2xx"),
        (from_response(301, {"Location": "https://x"}, 5.0, 0.0), "3xx"),
        (from_response(404, {}, 5.0, 0.0), "4xx"),
        (from_response(429, {"Retry-After": "5"}, 5.0, 0.0), "4xx"),
        (from_response(503, {}, 5.0, 0.0), "5xx"),
        (from_response(101, {}, 5.0, 0.0), "other"),
        (from_exception(TimeoutError(), 10_000.0, 10.0), "timeout"),
        (from_exception(aiohttp.ServerDisconnectedError(), 3.0, 10.0), "connection_error"),
        (from_exception(ConnectionResetError(), 3.0, 10.0), "connection_error"),
        (from_exception(aiohttp.InvalidURL("x"), 0.0, 10.0), "invalid_url"),
    ],
)
def test_outcome_label_of_real_outcomes(outcome: Outcome, label: str) -> None:
    assert outcome_label(outcome.kind, outcome.status) == label


def test_the_ssrf_label_is_reserved_and_unknown_kinds_are_other() -> None:
    assert outcome_label("ssrf_refused", None) == "ssrf_refused"
    assert "ssrf_refused" in OUTCOMES
    assert outcome_label("something_new", None) == "other"
    # Every kind the delivery code can produce maps to a known label.
    for kind in OutcomeKind:
        assert outcome_label(kind, None) in OUTCOMES


@pytest.mark.parametrize(
    ("timestamp", "created_at_ms", "now", "age"),
    [
        ("2025-01-29T14:30:00Z", 0, 1738161000.0 + 2.5, 2.5),
        ("2025-01-29T15:30:00+01:00", 0, 1738161000.0 + 7.0, 7.0),
        ("2025-01-29T14:30:00.250Z", 0, 1738161000.0 + 1.0, 0.75),
        ("2025-01-29T14:30:00", 0, 1738161000.0 + 1.0, 1.0),  # no zone: UTC
        ("2025-01-29T14:30:60Z", 1738161000_000, 1738161003.0, 3.0),  # leap second
        ("not a time", 1738161000_000, 1738161004.0, 4.0),  # the fan-out's created_at
        ("2025-01-29T14:30:00Z", 0, 1738161000.0 - 30.0, 0.0),  # clock skew: never < 0
    ],
)
def test_event_age(timestamp: str, created_at_ms: int, now: float, age: float) -> None:
    assert event_age(timestamp, created_at_ms, now) == pytest.approx(age)


def test_zero_series_exist_before_anything_happens() -> None:
    m = Metrics.create(CollectorRegistry(), retry_tiers=2)
    for event_type in EVENT_TYPES:
        for outcome in OUTCOMES:
            assert (
                sample(m, "synctec_deliveries_total", event_type=event_type, outcome=outcome) == 0
            )
        assert sample(m, "synctec_events_consumed_total", event_type=event_type) == 0
        for tier in ("1", "2"):
            labels = {"tier": tier, "event_type": event_type}
            assert sample(m, "synctec_retries_scheduled_total", **labels) == 0
    assert sample(m, "synctec_retries_scheduled_total", tier="3", event_type="sync.failed") is None
    assert sample(m, "synctec_dead_letters_total", reason="undecodable", event_type="unknown") == 0
    assert sample(m, "synctec_kafka_errors_total", code="_TRANSPORT") == 0
    assert sample(m, "synctec_subscriptions", state="enabled") == 0
    # The accounts nobody opted in, at 0, and nothing per account until one is seen.
    assert sample(m, "synctec_account_events_total", account="_other") == 0
    for outcome in OUTCOMES:
        assert sample(m, "synctec_account_deliveries_total", account="_other", outcome=outcome) == 0
    for reason in DEAD_LETTER_REASONS:
        assert sample(m, "synctec_account_dead_letters_total", account="_other", reason=reason) == 0
    accounts = {
        s.labels["account"]
        for metric in m.registry.collect()
        if metric.name.startswith("synctec_account_")
        for s in metric.samples
    }
    assert accounts == {"_other"}


def test_one_successful_attempt() -> None:
    m = Metrics.create(CollectorRegistry())
    m.attempt(
        webhook_id="wh_1",
        account_id="acct_1",
        event_type="product.synced",
        outcome=from_response(200, {}, 40.0, 0.0),
        event_timestamp="2025-01-29T14:30:00Z",
        created_at_ms=0,
        now=1738161000.0 + 3.0,
    )
    ok = {"event_type": "product.synced"}
    assert sample(m, "synctec_deliveries_total", outcome="2xx", **ok) == 1
    assert sample(m, "synctec_delivery_request_seconds_sum", **ok) == pytest.approx(0.04)
    assert sample(m, "synctec_delivery_request_seconds_bucket", le="0.05", **ok) == 1
    assert sample(m, "synctec_delivery_request_seconds_bucket", le="0.025", **ok) == 0
    assert sample(m, "synctec_delivery_e2e_seconds_sum", **ok) == pytest.approx(3.0)
    assert sample(m, "synctec_delivery_e2e_seconds_count", **ok) == 1
    # Not opted in: no per-webhook series.
    assert sample(m, "synctec_webhook_deliveries_total", webhook_id="wh_1", outcome="2xx") is None


def test_a_failed_attempt_has_no_end_to_end_latency() -> None:
    m = Metrics.create(CollectorRegistry())
    m.attempt(
        webhook_id="wh_1",
        account_id="acct_1",
        event_type="sync.failed",
        outcome=from_exception(TimeoutError(), 10_000.0, 10.0),
        event_timestamp="2025-01-29T14:30:00Z",
        created_at_ms=0,
        now=1738161000.0,
    )
    failed = {"event_type": "sync.failed"}
    assert sample(m, "synctec_deliveries_total", outcome="timeout", **failed) == 1
    assert sample(m, "synctec_delivery_request_seconds_bucket", le="10.0", **failed) == 1
    assert sample(m, "synctec_delivery_e2e_seconds_count", **failed) == 0


def test_labels_from_records_are_bounded() -> None:
    m = Metrics.create(CollectorRegistry())
    m.event_consumed("../../etc/passwd", 3, "acct_1")
    m.event_consumed(None, 0, None)
    m.dead_lettered("a reason nobody defined", "product.synced", "acct_1")
    m.retry_scheduled(1, "https://evil.example/?x=1")
    assert sample(m, "synctec_events_consumed_total", event_type="other") == 1
    assert sample(m, "synctec_fanout_matches_total", event_type="other") == 3
    assert sample(m, "synctec_events_consumed_total", event_type="unknown") == 1
    assert sample(m, "synctec_dead_letters_total", reason="other", event_type="product.synced") == 1
    assert sample(m, "synctec_retries_scheduled_total", tier="1", event_type="other") == 1
    # Accounts nobody opted in: one label value for them all.
    assert sample(m, "synctec_account_events_total", account="_other") == 1
    assert sample(m, "synctec_account_events_total", account="_unknown") == 1
    assert sample(m, "synctec_account_dead_letters_total", account="_other", reason="other") == 1


def test_bundles_in_separate_registries_do_not_clash() -> None:
    a, b = Metrics.create(CollectorRegistry()), Metrics.create(CollectorRegistry())
    a.kafka_error("_TRANSPORT")
    assert sample(a, "synctec_kafka_errors_total", code="_TRANSPORT") == 1
    assert sample(b, "synctec_kafka_errors_total", code="_TRANSPORT") == 0
    c = Metrics.create(CollectorRegistry(), prefix="other")
    assert sample(c, "other_kafka_errors_total", code="_TRANSPORT") == 0


def test_per_webhook_series_are_opt_in_and_capped() -> None:
    labels = WebhookLabels(["*"], cap=2)
    assert [labels.label(w) for w in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        "_other",
        "a",
        "_other",
        "b",
    ]
    chosen = WebhookLabels(["wh_1", "", "wh_2"], cap=1)
    assert chosen.enabled
    assert [chosen.label(w) for w in ("wh_9", "wh_2", "wh_1")] == [None, "wh_2", "_other"]
    assert not WebhookLabels([], cap=5).enabled


def test_opted_in_webhook_gets_its_own_series() -> None:
    m = Metrics.create(CollectorRegistry(), per_webhook=["wh_1"], per_webhook_cap=5)
    for webhook_id in ("wh_1", "wh_2"):
        m.attempt(
            webhook_id=webhook_id,
            account_id="acct_1",
            event_type="product.synced",
            outcome=from_response(500, {}, 1.0, 0.0),
            event_timestamp="2025-01-29T14:30:00Z",
            created_at_ms=0,
            now=1738161000.0,
        )
    assert sample(m, "synctec_webhook_deliveries_total", webhook_id="wh_1", outcome="5xx") == 1
    assert sample(m, "synctec_webhook_deliveries_total", webhook_id="wh_2", outcome="5xx") is None


def test_subscription_states() -> None:
    m = Metrics.create(CollectorRegistry())
    m.subscription_states(enabled=7, disabled=2)
    assert sample(m, "synctec_subscriptions", state="enabled") == 7
    assert sample(m, "synctec_subscriptions", state="disabled") == 2


# --- per account ---------------------------------------------------------------------


def test_account_labels_are_opt_in_capped_and_never_absent() -> None:
    labels = AccountLabels(["*"], cap=2)
    assert [labels.label(a) for a in ("a", "b", "c", "a", "d", "b", None)] == [
        "a", "b", "_other", "a", "_other", "b", "_unknown",
    ]  # fmt: skip
    chosen = AccountLabels(["acct_1", "", "acct_2"], cap=1)
    assert [chosen.label(a) for a in ("acct_9", "acct_2", "acct_1")] == [
        "_other", "acct_2", "_other",
    ]  # fmt: skip
    nobody = AccountLabels([], cap=5)
    assert [nobody.label(a) for a in ("acct_1", "default", None)] == [
        "_other", "_other", "_unknown",
    ]  # fmt: skip


def test_the_overflow_values_can_never_be_an_account() -> None:
    from synctec_webhooks.accounts import account_id_problem

    assert account_id_problem(AccountLabels.OVERFLOW) is not None
    assert account_id_problem(AccountLabels.UNKNOWN) is not None


def _attempt(m: Metrics, account: str, status: int) -> None:
    m.attempt(
        webhook_id="wh_1",
        account_id=account,
        event_type="product.synced",
        outcome=from_response(status, {}, 1.0, 0.0),
        event_timestamp="2025-01-29T14:30:00Z",
        created_at_ms=0,
        now=1738161000.0,
    )


def test_opted_in_accounts_get_their_own_series_and_the_rest_add_up_under_other() -> None:
    m = Metrics.create(CollectorRegistry(), per_account=["acct_1", "acct_2"], per_account_cap=5)
    for account, status in [("acct_1", 200), ("acct_1", 503), ("acct_2", 200), ("acct_3", 200),
                            ("acct_4", 200), ("default", 404)]:  # fmt: skip
        _attempt(m, account, status)
    m.dead_lettered("retries_exhausted", "product.synced", "acct_1")
    m.dead_lettered("retries_exhausted", "product.synced", "acct_3")
    m.dead_lettered("undecodable", None, None)
    m.event_consumed("product.synced", 2, "acct_2")
    m.event_consumed("product.synced", 0, "acct_9")

    def deliveries(account: str, outcome: str) -> float | None:
        return sample(m, "synctec_account_deliveries_total", account=account, outcome=outcome)

    assert deliveries("acct_1", "2xx") == deliveries("acct_1", "5xx") == 1
    assert deliveries("acct_2", "2xx") == 1
    assert deliveries("_other", "2xx") == 2 and deliveries("_other", "4xx") == 1
    assert deliveries("acct_3", "2xx") is None and deliveries("default", "4xx") is None
    # Across accounts they add up to the platform's totals.
    total = sample(m, "synctec_deliveries_total", event_type="product.synced", outcome="2xx")
    assert total == sum(deliveries(a, "2xx") or 0 for a in ("acct_1", "acct_2", "_other"))

    def letters(account: str, reason: str) -> float | None:
        return sample(m, "synctec_account_dead_letters_total", account=account, reason=reason)

    assert letters("acct_1", "retries_exhausted") == letters("_other", "retries_exhausted") == 1
    assert letters("_unknown", "undecodable") == 1
    assert sample(m, "synctec_account_events_total", account="acct_2") == 1
    assert sample(m, "synctec_account_events_total", account="_other") == 1


def test_a_wildcard_on_many_accounts_costs_cap_plus_two_values() -> None:
    m = Metrics.create(CollectorRegistry(), per_account=["*"], per_account_cap=3)
    for n in range(500):
        _attempt(m, f"acct_{n}", 200)
        m.dead_lettered("retries_exhausted", "sync.failed", f"acct_{n}")
    m.dead_lettered("undecodable", None, None)
    values = {
        s.labels["account"]
        for metric in m.registry.collect()
        if metric.name.startswith("synctec_account_")
        for s in metric.samples
    }
    assert values == {"acct_0", "acct_1", "acct_2", "_other", "_unknown"}
    assert sample(m, "synctec_account_deliveries_total", account="_other", outcome="2xx") == 497


def test_per_account_series_leave_the_existing_families_alone() -> None:
    plain = Metrics.create(CollectorRegistry())
    opted = Metrics.create(CollectorRegistry(), per_account=["*"], per_account_cap=50)
    for m in (plain, opted):
        for n in range(20):
            _attempt(m, f"acct_{n}", 200)
            m.dead_lettered("retries_exhausted", "sync.failed", f"acct_{n}")

    def series(m: Metrics) -> dict[str, int]:
        counts: dict[str, int] = {}
        for metric in m.registry.collect():
            counts[metric.name] = len(metric.samples)
        return counts

    a, b = series(plain), series(opted)
    for name in a:
        if not name.startswith("synctec_account_"):
            assert a[name] == b[name], name  # no account label anywhere else
