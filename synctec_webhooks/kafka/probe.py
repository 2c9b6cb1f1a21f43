"""Clients for the local broker's readiness probe (`synctec_webhooks.localkafka`).

They take a bootstrap string only: the probe runs before any `Settings` exist, and asks
a broker that is still starting, so its refusals are expected and not logged, and
reconnects are retried quickly. They never get the platform's `SYNCTEC_KAFKA_*` security
settings: a local node is asked on its internal PLAINTEXT listener, which stays open
(for the node itself and this probe) beside a SASL_SSL listener when one is configured.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

_PROBE_OPTIONS: dict[str, Any] = {
    "log_level": 0,  # refusals while the JVMs boot are expected, not news
    "reconnect.backoff.max.ms": 200,
}


def probe_admin_config(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **_PROBE_OPTIONS}


def probe_consumer_config(bootstrap: str, group: str) -> dict[str, Any]:
    return {
        **probe_admin_config(bootstrap),
        "group.id": group,
        "enable.auto.commit": False,
    }


def probe_admin(bootstrap: str) -> AdminClient:
    """An admin client to ask a starting broker for its metadata."""
    return AdminClient(probe_admin_config(bootstrap))


def probe_consumer(bootstrap: str, group: str) -> Consumer:
    """A consumer of `group` that commits nothing, to ask for the group's coordinator."""
    return Consumer(probe_consumer_config(bootstrap, group))
