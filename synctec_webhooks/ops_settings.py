"""Settings of the operations endpoint (/metrics, /healthz, /readyz) and of the metrics.

Part of `Settings` (`settings.ops`), read once from the environment like the rest:

    SYNCTEC_METRICS_HOST              address to listen on (127.0.0.1)
    SYNCTEC_METRICS_PORT              port; 0 picks a free one; unset: the role's default
    SYNCTEC_STATS_INTERVAL_MS         librdkafka statistics interval (lag, readiness)
    SYNCTEC_METRICS_PER_WEBHOOK       webhook ids with series of their own, or "*"
    SYNCTEC_METRICS_PER_WEBHOOK_CAP   at most this many such webhooks per process
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# One port per role, so the roles can run side by side on one host with no settings.
DEFAULT_PORTS = {"run": 9400, "fanout": 9401, "deliver": 9402, "retry": 9403, "admin": 9404}


class OpsConfigError(ValueError):
    """Raised with the variable's name; config.ConfigError wraps it."""


def _int(env: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OpsConfigError(f"{name}={raw!r}: expected an integer") from None
    if not low <= value <= high:
        raise OpsConfigError(f"{name}={raw!r}: must be between {low} and {high}")
    return value


@dataclass(frozen=True)
class OpsSettings:
    host: str = "127.0.0.1"
    port: int | None = None
    stats_interval_ms: int = 5000
    per_webhook: tuple[str, ...] = ()
    per_webhook_cap: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpsSettings:
        ids = tuple(i.strip() for i in env.get("SYNCTEC_METRICS_PER_WEBHOOK", "").split(","))
        return cls(
            host=env.get("SYNCTEC_METRICS_HOST", "").strip() or cls.host,
            port=_int(env, "SYNCTEC_METRICS_PORT", None, 0, 65535),
            stats_interval_ms=_int(
                env, "SYNCTEC_STATS_INTERVAL_MS", cls.stats_interval_ms, 100, 600_000
            )
            or cls.stats_interval_ms,
            per_webhook=tuple(i for i in ids if i),
            per_webhook_cap=_int(
                env, "SYNCTEC_METRICS_PER_WEBHOOK_CAP", cls.per_webhook_cap, 1, 10_000
            )
            or cls.per_webhook_cap,
        )

    def port_for(self, roles: Iterable[str]) -> int:
        """The configured port, else the default of the one role (or of `run`)."""
        if self.port is not None:
            return self.port
        names = list(roles)
        if len(names) == 1:
            return DEFAULT_PORTS.get(names[0], DEFAULT_PORTS["run"])
        return DEFAULT_PORTS["run"]
