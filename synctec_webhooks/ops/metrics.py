"""Every Prometheus metric of the services, in one bundle built against a registry.

`Metrics.create(registry, prefix)` (as faust's sensor does) gives each process, and
each test, its own `CollectorRegistry`. Names, labels and units are documented in
docs/metrics.md; the Grafana dashboard and the alert rules use nothing else.

Label values are bounded: event types and dead-letter reasons come from fixed lists
(anything else is counted as "other"), outcomes are classes of result, never URLs, and
per-webhook series exist only for webhooks an operator opted in, up to a cap. Accounts
likewise: the three `account_*` families give an account a label value of its own only
when an operator opted it in (up to a cap); every other account is counted under one
value, "_other", so that they still add up to the platform's totals.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from synctec_webhooks import deadletters, schemas

DEFAULT_PREFIX = "synctec"

EVENT_TYPES = tuple(sorted(schemas.EVENT_SCHEMA))
UNKNOWN = "unknown"  # a record whose type could not be read
OTHER = "other"  # a value outside the fixed list: kept out of the label space

# Delivery outcomes, one label value each. `ssrf_refused`: deliveries the SSRF guard
# refused before any connection was made.
OUTCOMES = (
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "connection_error",
    "invalid_url",
    "ssrf_refused",
    OTHER,
)
_KIND_OUTCOMES = {
    "timeout": "timeout",
    "connection_error": "connection_error",
    "invalid_url": "invalid_url",
    "ssrf_refused": "ssrf_refused",
    "refused": "ssrf_refused",  # OutcomeKind.REFUSED: the guard refused every address
}
DEAD_LETTER_REASONS = (
    deadletters.RETRIES_EXHAUSTED,
    deadletters.INVALID_URL,
    deadletters.WEBHOOK_NOT_FOUND,
    deadletters.UNDECODABLE,
    deadletters.INVALID_EVENT,
    deadletters.INVALID_SUBSCRIPTION,
    deadletters.REFUSED,
    deadletters.WEBHOOK_DISABLED,
    deadletters.SECRET_UNAVAILABLE,
    deadletters.TOO_LARGE,
)
# Codes worth a series from the start, so "no errors" reads as 0 rather than no data.
COMMON_KAFKA_ERRORS = ("_TRANSPORT", "_ALL_BROKERS_DOWN")

# Seconds. A POST is cut off at SYNCTEC_HTTP_TIMEOUT (10 s by default).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds from the event's timestamp to its 2xx: retries take minutes by default
# (5 + 25 + 125 s), a replay from the dead-letter topic hours.
E2E_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    21600.0,
)  # fmt: skip


class AttemptOutcome(Protocol):
    """What the metrics need of a delivery attempt's `Outcome`."""

    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def latency_ms(self) -> float: ...


def outcome_label(kind: str, status: int | None) -> str:
    """The `outcome` label of an attempt: a status class, or what went wrong."""
    if status is not None and 200 <= status < 600:
        return f"{status // 100}xx"
    return _KIND_OUTCOMES.get(str(kind), OTHER)


def bounded(value: str | None, allowed: Iterable[str]) -> str:
    if value is None:
        return UNKNOWN
    return value if value in allowed else OTHER


def event_age(event_timestamp: str, created_at_ms: int, now: float) -> float:
    """Seconds from the event's own timestamp (RFC 3339) to `now`, never negative.

    The fan-out's `created_at` stands in when the timestamp cannot be read.
    """
    try:
        stamp = dt.datetime.fromisoformat(event_timestamp)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        began = stamp.timestamp()
    except ValueError:
        began = created_at_ms / 1000.0
    return max(0.0, now - began)


class WebhookLabels:
    """Which webhooks get series of their own: opted in by id (or "*"), at most `cap`.

    Past the cap every further webhook is counted under "_other", so a misconfigured
    "*" on a platform with a million webhooks costs `cap + 1` series, not a million.
    """

    # Neither a webhook id nor an account id can start with "_".
    OVERFLOW = "_other"

    def __init__(self, opted_in: Iterable[str], cap: int) -> None:
        ids = {i for i in opted_in if i}
        self._all = "*" in ids
        self._ids = ids - {"*"}
        self._cap = cap
        self._admitted: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self._all or bool(self._ids)

    def label(self, webhook_id: str) -> str | None:
        """The label value for this webhook, or None when it has no series."""
        if not (self._all or webhook_id in self._ids):
            return None
        if webhook_id in self._admitted:
            return webhook_id
        if len(self._admitted) < self._cap:
            self._admitted.add(webhook_id)
            return webhook_id
        return self.OVERFLOW


class AccountLabels(WebhookLabels):
    """The `account` label value: the account's id when opted in (by id, or "*") and
    within the cap (SYNCTEC_METRICS_PER_ACCOUNT[_CAP]), else "_other"; "_unknown" for a
    record whose account could not be read. At most `cap + 2` values, whatever the
    number of merchants."""

    UNKNOWN = "_unknown"

    def label(self, account_id: str | None) -> str:
        if account_id is None:
            return self.UNKNOWN
        return super().label(account_id) or self.OVERFLOW


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    prefix: str
    events_consumed: Counter
    fanout_matches: Counter
    deliveries: Counter
    request_seconds: Histogram
    e2e_seconds: Histogram
    retries_scheduled: Counter
    dead_letters: Counter
    in_flight: Gauge
    retry_waiting: Gauge
    consumer_lag: Gauge
    subscriptions: Gauge
    kafka_errors: Counter
    webhook_deliveries: Counter
    account_events: Counter
    account_deliveries: Counter
    account_dead_letters: Counter
    webhooks: WebhookLabels
    accounts: AccountLabels
    # Labelled children already made, by metric and labels: `labels()` validates and
    # locks on every call, which was 5% of a delivery worker's CPU at one call per POST.
    _children: dict[tuple[int, tuple[str, ...]], Any] = field(
        default_factory=dict, compare=False, repr=False
    )

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry | None = None,
        prefix: str = DEFAULT_PREFIX,
        *,
        retry_tiers: int = 3,
        per_webhook: Iterable[str] = (),
        per_webhook_cap: int = 50,
        per_account: Iterable[str] = (),
        per_account_cap: int = 50,
    ) -> Metrics:
        registry = CollectorRegistry() if registry is None else registry
        # A `_created` gauge beside every counter doubles the series and no query uses it.
        disable_created_metrics()

        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, labels, namespace=prefix, registry=registry)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=prefix, registry=registry)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(
                name, doc, ["event_type"], namespace=prefix, registry=registry, buckets=buckets
            )

        m = cls(
            registry=registry,
            prefix=prefix,
            events_consumed=counter(
                "events_consumed", "Sync events read by the fan-out", ["event_type"]
            ),
            fanout_matches=counter(
                "fanout_matches",
                "Delivery records the fan-out wrote: one per (event, matching webhook)",
                ["event_type"],
            ),
            deliveries=counter(
                "deliveries",
                "Delivery attempts (POSTs) by event type and outcome",
                ["event_type", "outcome"],
            ),
            request_seconds=histogram(
                "delivery_request_seconds",
                "Duration of one POST, connect to last byte read (seconds)",
                REQUEST_BUCKETS,
            ),
            e2e_seconds=histogram(
                "delivery_e2e_seconds",
                "From the event's timestamp to the 2xx that delivered it (seconds)",
                E2E_BUCKETS,
            ),
            retries_scheduled=counter(
                "retries_scheduled", "Deliveries handed to a retry tier", ["tier", "event_type"]
            ),
            dead_letters=counter(
                "dead_letters",
                "Records written to the dead-letter topic, by reason",
                ["reason", "event_type"],
            ),
            in_flight=gauge("delivery_in_flight", "POSTs in flight in this process"),
            retry_waiting=gauge(
                "retry_waiting_records",
                "Records on a retry tier's topic not yet retried and committed "
                "(partitions this process holds)",
                ["tier"],
            ),
            consumer_lag=gauge(
                "consumer_lag_records",
                "Records between the committed offset and the end of the partition",
                ["group", "topic", "partition"],
            ),
            subscriptions=gauge(
                "subscriptions", "Webhooks in this process's subscription table", ["state"]
            ),
            kafka_errors=counter(
                "kafka_errors", "Errors librdkafka reported through error_cb, by code", ["code"]
            ),
            webhook_deliveries=counter(
                "webhook_deliveries",
                "Delivery attempts per opted-in webhook (SYNCTEC_METRICS_PER_WEBHOOK)",
                ["webhook_id", "outcome"],
            ),
            account_events=counter(
                "account_events",
                "Sync events the fan-out read, per account (SYNCTEC_METRICS_PER_ACCOUNT; "
                "the others under _other)",
                ["account"],
            ),
            account_deliveries=counter(
                "account_deliveries",
                "Delivery attempts per account (SYNCTEC_METRICS_PER_ACCOUNT; the others "
                "under _other)",
                ["account", "outcome"],
            ),
            account_dead_letters=counter(
                "account_dead_letters",
                "Records written to the dead-letter topic per account "
                "(SYNCTEC_METRICS_PER_ACCOUNT; the others under _other)",
                ["account", "reason"],
            ),
            webhooks=WebhookLabels(per_webhook, per_webhook_cap),
            accounts=AccountLabels(per_account, per_account_cap),
        )
        m._initialise(retry_tiers)
        return m

    def _initialise(self, retry_tiers: int) -> None:
        # Series that exist at 0 from the start: rates and ratios have data before the
        # first failure, and an alert on "increase > 0" sees the first one.
        for event_type in EVENT_TYPES:
            self.events_consumed.labels(event_type)
            self.fanout_matches.labels(event_type)
            self.request_seconds.labels(event_type)
            self.e2e_seconds.labels(event_type)
            for outcome in OUTCOMES:
                self.deliveries.labels(event_type, outcome)
            for tier in range(1, retry_tiers + 1):
                self.retries_scheduled.labels(str(tier), event_type)
            for reason in DEAD_LETTER_REASONS:
                self.dead_letters.labels(reason, event_type)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason, UNKNOWN)
        for tier in range(1, retry_tiers + 1):
            self.retry_waiting.labels(str(tier))
        for state in ("enabled", "disabled"):
            self.subscriptions.labels(state)
        for code in COMMON_KAFKA_ERRORS:
            self.kafka_errors.labels(code)
        # The accounts nobody opted in: "how many failed" reads 0, not no data.
        other = AccountLabels.OVERFLOW
        self.account_events.labels(other)
        for outcome in OUTCOMES:
            self.account_deliveries.labels(other, outcome)
        for reason in DEAD_LETTER_REASONS:
            self.account_dead_letters.labels(other, reason)

    # --- recording, one call per event of note ------------------------------------

    def event_consumed(self, event_type: str | None, matches: int, account_id: str | None) -> None:
        """One event read by the fan-out; None for what could not be read."""
        label = bounded(event_type, EVENT_TYPES)
        self.events_consumed.labels(label).inc()
        if matches:
            self.fanout_matches.labels(label).inc(matches)
        self._child(self.account_events, self.accounts.label(account_id)).inc()

    def attempt(
        self,
        *,
        webhook_id: str,
        account_id: str,
        event_type: str,
        outcome: AttemptOutcome,
        event_timestamp: str,
        created_at_ms: int,
        now: float,
    ) -> None:
        """One POST: its outcome, its duration and, for a 2xx, the end-to-end latency."""
        label = bounded(event_type, EVENT_TYPES)
        result = outcome_label(outcome.kind, outcome.status)
        self._child(self.deliveries, label, result).inc()
        if math.isfinite(outcome.latency_ms):
            seconds = max(0.0, outcome.latency_ms / 1000.0)
            self._child(self.request_seconds, label).observe(seconds)
        if result == "2xx":
            age = event_age(event_timestamp, created_at_ms, now)
            self._child(self.e2e_seconds, label).observe(age)
        own = self.webhooks.label(webhook_id) if self.webhooks.enabled else None
        if own is not None:
            self.webhook_deliveries.labels(own, result).inc()
        self._child(self.account_deliveries, self.accounts.label(account_id), result).inc()

    def retry_scheduled(self, tier: int, event_type: str | None) -> None:
        self.retries_scheduled.labels(str(tier), bounded(event_type, EVENT_TYPES)).inc()

    def dead_lettered(self, reason: str, event_type: str | None, account_id: str | None) -> None:
        """One dead letter; `account_id` None when its record could not be read."""
        why = bounded(reason, DEAD_LETTER_REASONS)
        self.dead_letters.labels(why, bounded(event_type, EVENT_TYPES)).inc()
        self.account_dead_letters.labels(self.accounts.label(account_id), why).inc()

    def kafka_error(self, code_name: str) -> None:
        self.kafka_errors.labels(code_name).inc()

    def subscription_states(self, enabled: int, disabled: int) -> None:
        self.subscriptions.labels("enabled").set(enabled)
        self.subscriptions.labels("disabled").set(disabled)
