"""Settings, read once from `SYNCTEC_*` environment variables.

Every worker builds one frozen `Settings` at start-up; nothing else reads the
environment, so a test can run several pipelines side by side with different settings.
The full table of variables is in the README ("Settings").
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from synctec_webhooks.errors import ConfigError
from synctec_webhooks.kafka_properties import KafkaProperties
from synctec_webhooks.retry_policy import DEFAULT_DELAYS, RetryPolicy, parse_delays

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,80}$")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name}={raw!r}: must be a finite number greater than 0")
    return value


def _optional_int(
    env: Mapping[str, str], name: str, minimum: int = 1, maximum: int | None = None
) -> int | None:
    raw = env.get(name, "").strip()
    if raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r}: must be at most {maximum}")
    return value


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    value = _optional_int(env, name, minimum, maximum)
    return default if value is None else value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default, minimum=0)  # 0: any free port
    if value > 65535:
        raise ConfigError(f"{name}={value}: a port is at most 65535")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _networks(env: Mapping[str, str]) -> tuple[str, ...]:
    name = "SYNCTEC_ALLOW_PRIVATE_NETWORKS"
    networks = _list(env, name)
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(
                f"{name}: {cidr!r} is not a CIDR; use e.g. 127.0.0.0/8,::1/128"
            ) from None
    return networks


def _instance_id(env: Mapping[str, str]) -> str:
    raw = env.get("SYNCTEC_INSTANCE_ID") or socket.gethostname() or "0"
    if not _PREFIX_RE.fullmatch(raw):
        # Host names may hold dots; the id goes into a transactional id, keep it plain.
        raw = re.sub(r"[^A-Za-z0-9_-]", "-", raw)[:80].strip("-") or "0"
    return raw


# HS256 wants a key at least as long as its hash: 32 bytes.
MIN_PORTAL_KEY_LENGTH = 32


def _portal_signing_key(env: Mapping[str, str]) -> str | None:
    key = env.get("SYNCTEC_PORTAL_SIGNING_KEY") or None
    if key is not None and len(key) < MIN_PORTAL_KEY_LENGTH:
        raise ConfigError(
            f"SYNCTEC_PORTAL_SIGNING_KEY: use at least {MIN_PORTAL_KEY_LENGTH} characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` (or unset it: a "
            "key derived from SYNCTEC_ADMIN_TOKEN is used)"
        )
    return key


# One port per role, so the roles can run side by side on one host with no settings.
DEFAULT_PORTS = {"run": 9400, "fanout": 9401, "deliver": 9402, "retry": 9403, "admin": 9404}


@dataclass(frozen=True)
class OpsSettings:
    """The operations endpoint (/metrics, /healthz, /readyz) and the metrics' options.

    SYNCTEC_METRICS_HOST              address to listen on (127.0.0.1)
    SYNCTEC_METRICS_PORT              port; 0 picks a free one; unset: the role's default
    SYNCTEC_STATS_INTERVAL_MS         librdkafka statistics interval (lag, readiness)
    SYNCTEC_METRICS_PER_WEBHOOK       webhook ids with series of their own, or "*"
    SYNCTEC_METRICS_PER_WEBHOOK_CAP   at most this many such webhooks per process
    SYNCTEC_METRICS_PER_ACCOUNT       account ids with series of their own, or "*"
    SYNCTEC_METRICS_PER_ACCOUNT_CAP   at most this many such accounts per process
    """

    host: str = "127.0.0.1"
    port: int | None = None
    stats_interval_ms: int = 5000
    per_webhook: tuple[str, ...] = ()
    per_webhook_cap: int = 50
    per_account: tuple[str, ...] = ()
    per_account_cap: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpsSettings:
        ids = tuple(i.strip() for i in env.get("SYNCTEC_METRICS_PER_WEBHOOK", "").split(","))
        accounts = tuple(i.strip() for i in env.get("SYNCTEC_METRICS_PER_ACCOUNT", "").split(","))
        return cls(
            host=env.get("SYNCTEC_METRICS_HOST", "").strip() or cls.host,
            port=_optional_int(env, "SYNCTEC_METRICS_PORT", 0, 65535),
            stats_interval_ms=_int(
                env, "SYNCTEC_STATS_INTERVAL_MS", cls.stats_interval_ms, 100, 600_000
            ),
            per_webhook=tuple(i for i in ids if i),
            per_webhook_cap=_int(
                env, "SYNCTEC_METRICS_PER_WEBHOOK_CAP", cls.per_webhook_cap, 1, 10_000
            ),
            per_account=tuple(i for i in accounts if i),
            per_account_cap=_int(
                env, "SYNCTEC_METRICS_PER_ACCOUNT_CAP", cls.per_account_cap, 1, 10_000
            ),
        )

    def port_for(self, roles: Iterable[str]) -> int:
        """The configured port, else the default of the one role (or of `run`)."""
        if self.port is not None:
            return self.port
        names = list(roles)
        if len(names) == 1:
            return DEFAULT_PORTS.get(names[0], DEFAULT_PORTS["run"])
        return DEFAULT_PORTS["run"]


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "127.0.0.1:9092"
    # Every topic and consumer group name starts with this, so one broker can host
    # several independent pipelines (each integration test uses its own prefix).
    topic_prefix: str = "synctec"
    schema_registry_url: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    http_timeout: float = 10.0
    max_in_flight: int = 1000
    max_in_flight_per_endpoint: int = 20
    # Started-but-not-committed records per partition before it is paused: bounds what a
    # crash redoes (one slow record holds the committed offset back for all after it).
    max_uncommitted: int = 250
    # Requests/s to one webhook per worker process; None = no limit. A webhook's own
    # `rate_limit` (subscription field) wins over this default.
    rate_limit_per_endpoint: float | None = None
    # Records a delivery worker holds for one webhook before it pauses the webhook's
    # partitions (at least 8x its max in flight); it resumes at a quarter.
    lane_cap: int = 400
    response_body_limit: int = 64 * 1024
    events_partitions: int = 6
    delivery_partitions: int = 3
    # How often a pattern subscription looks for new per-endpoint delivery topics.
    metadata_refresh_ms: int = 2000
    state_dir: str = ".state"
    # Fernet keys (SYNCTEC_SECRET_KEY, comma-separated: the first encrypts, all decrypt)
    # sealing webhook secrets on the subscriptions topic; see secrets_crypto.
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    # CIDRs the SSRF guard lets through (SYNCTEC_ALLOW_PRIVATE_NETWORKS); see ssrf.
    allow_private_networks: tuple[str, ...] = ()
    admin_host: str = "127.0.0.1"
    admin_port: int = 8080
    admin_token: str | None = field(default=None, repr=False)
    # Signs portal links (SYNCTEC_PORTAL_SIGNING_KEY); unset: derived from admin_token.
    portal_signing_key: str | None = field(default=None, repr=False)
    # How long a portal link opens the page unless the request asks for less, and the
    # most a request may ask for (seconds).
    portal_link_ttl: int = 3600
    portal_link_max_ttl: int = 3600
    # Where portal links point: the settings page as merchants reach it.
    portal_base_url: str | None = None
    # Webhooks one account may have, unless its record says otherwise.
    max_webhooks_per_account: int = 100
    # Audit entries the admin service keeps in memory per account, and in all.
    audit_per_account: int = 200
    audit_kept: int = 200_000
    audit_retention_days: int = 365
    # How long a rotated-out secret still signs, so receivers can switch without a gap.
    rotation_grace: float = 24 * 3600.0
    # Consecutive events dead-lettered before a webhook is disabled (0: never).
    disable_after_failures: int = 20
    # Recent attempts kept in memory per webhook by the admin service.
    attempts_per_webhook: int = 100
    # Recent attempts kept in memory in all, the newest of every webhook's (about 260
    # bytes each): bounds the admin's memory however many webhooks the topic holds.
    attempts_kept: int = 200_000
    # Names this process among replicas of a role (the fan-out's transactional id);
    # keep it stable across restarts of one replica, distinct between replicas.
    instance_id: str = "0"
    fanout_batch_max: int = 500
    fanout_batch_ms: int = 50
    # Delivery records per fan-out transaction (a batch is split into several).
    fanout_max_records: int = 50_000
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 10_000
    kafka_debug: str = ""
    # TLS, SASL and network properties for every Kafka client (SYNCTEC_KAFKA_*,
    # SYNCTEC_KAFKA_CONFIG_FILE); secret values print as ***. See kafka_properties.
    kafka: KafkaProperties = field(default_factory=KafkaProperties)
    # /metrics, /healthz, /readyz and the metrics' own options.
    ops: OpsSettings = field(default_factory=OpsSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        prefix = env.get("SYNCTEC_TOPIC_PREFIX", "synctec")
        if not _PREFIX_RE.fullmatch(prefix):
            raise ConfigError(
                f"SYNCTEC_TOPIC_PREFIX={prefix!r}: use letters, digits, '_' and '-' only"
            )
        delays_raw = env.get("SYNCTEC_RETRY_DELAYS")
        try:
            delays = parse_delays(delays_raw) if delays_raw else DEFAULT_DELAYS
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            bootstrap_servers=(
                env.get("KAFKA_BOOTSTRAP_SERVERS")
                or env.get("SYNCTEC_BOOTSTRAP_SERVERS")
                or cls.bootstrap_servers
            ),
            topic_prefix=prefix,
            schema_registry_url=env.get("SYNCTEC_SCHEMA_REGISTRY_URL") or None,
            retry=RetryPolicy(
                delays=delays,
                retry_after_max=_float(env, "SYNCTEC_RETRY_AFTER_MAX", 3600.0),
            ),
            http_timeout=_float(env, "SYNCTEC_HTTP_TIMEOUT", cls.http_timeout),
            max_in_flight=_int(env, "SYNCTEC_MAX_IN_FLIGHT", cls.max_in_flight),
            max_in_flight_per_endpoint=_int(
                env, "SYNCTEC_MAX_IN_FLIGHT_PER_ENDPOINT", cls.max_in_flight_per_endpoint
            ),
            max_uncommitted=_int(env, "SYNCTEC_MAX_UNCOMMITTED", cls.max_uncommitted),
            rate_limit_per_endpoint=(_float(env, "SYNCTEC_RATE_LIMIT_PER_ENDPOINT", 0.0) or None),
            lane_cap=_int(env, "SYNCTEC_LANE_CAP", cls.lane_cap),
            response_body_limit=_int(env, "SYNCTEC_RESPONSE_BODY_LIMIT", cls.response_body_limit),
            events_partitions=_int(env, "SYNCTEC_EVENTS_PARTITIONS", cls.events_partitions),
            delivery_partitions=_int(env, "SYNCTEC_DELIVERY_PARTITIONS", cls.delivery_partitions),
            metadata_refresh_ms=_int(env, "SYNCTEC_METADATA_REFRESH_MS", cls.metadata_refresh_ms),
            state_dir=env.get("SYNCTEC_STATE_DIR", cls.state_dir),
            secret_keys=_list(env, "SYNCTEC_SECRET_KEY"),
            allow_private_networks=_networks(env),
            admin_host=env.get("SYNCTEC_ADMIN_HOST") or cls.admin_host,
            admin_port=_port(env, "SYNCTEC_ADMIN_PORT", cls.admin_port),
            admin_token=env.get("SYNCTEC_ADMIN_TOKEN") or None,
            portal_signing_key=_portal_signing_key(env),
            portal_link_ttl=_int(env, "SYNCTEC_PORTAL_LINK_TTL", cls.portal_link_ttl, 60, 86_400),
            portal_link_max_ttl=_int(
                env, "SYNCTEC_PORTAL_LINK_MAX_TTL", cls.portal_link_max_ttl, 60, 86_400
            ),
            portal_base_url=env.get("SYNCTEC_PORTAL_BASE_URL") or None,
            max_webhooks_per_account=_int(
                env, "SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT", cls.max_webhooks_per_account, 1
            ),
            audit_per_account=_int(env, "SYNCTEC_AUDIT_PER_ACCOUNT", cls.audit_per_account),
            audit_kept=_int(env, "SYNCTEC_AUDIT_KEPT", cls.audit_kept),
            audit_retention_days=_int(
                env, "SYNCTEC_AUDIT_RETENTION_DAYS", cls.audit_retention_days, 1
            ),
            rotation_grace=_float(env, "SYNCTEC_ROTATION_GRACE", cls.rotation_grace),
            disable_after_failures=_int(
                env, "SYNCTEC_DISABLE_AFTER_FAILURES", cls.disable_after_failures, minimum=0
            ),
            attempts_per_webhook=_int(
                env, "SYNCTEC_ATTEMPTS_PER_WEBHOOK", cls.attempts_per_webhook
            ),
            attempts_kept=_int(env, "SYNCTEC_ATTEMPTS_KEPT", cls.attempts_kept),
            instance_id=_instance_id(env),
            fanout_batch_max=_int(env, "SYNCTEC_FANOUT_BATCH_MAX", cls.fanout_batch_max),
            fanout_batch_ms=_int(env, "SYNCTEC_FANOUT_BATCH_MS", cls.fanout_batch_ms),
            fanout_max_records=_int(env, "SYNCTEC_FANOUT_MAX_RECORDS", cls.fanout_max_records),
            kafka_debug=env.get("SYNCTEC_KAFKA_DEBUG", ""),
            kafka=KafkaProperties.from_env(env),
            session_timeout_ms=_int(env, "SYNCTEC_SESSION_TIMEOUT_MS", cls.session_timeout_ms),
            transaction_timeout_ms=_int(
                env, "SYNCTEC_TRANSACTION_TIMEOUT_MS", cls.transaction_timeout_ms
            ),
            ops=OpsSettings.from_env(env),
        )

    @property
    def max_held(self) -> int:
        """Records a worker holds at most (in flight, or queued for their endpoint)."""
        return max(10_000, 2 * self.max_in_flight)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
