"""The Kafka users and ACLs of deploy/k8s/kafka-users.yaml (Strimzi `KafkaUser`s), read
as Kafka's own ACL bindings: for the security test, which enforces them on a local
broker, and the deploy test, which checks who may write what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

KAFKA_USERS = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "kafka-users.yaml"

_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.BROKER,  # confluent-kafka's name for the cluster resource
    "transactionalId": ResourceType.TRANSACTIONAL_ID,
}
_PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


def kafka_users(path: Path = KAFKA_USERS) -> dict[str, dict[str, Any]]:
    """{user name: KafkaUser manifest}."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "KafkaUser"]
    return {d["metadata"]["name"]: d for d in docs}


def acl_bindings(user: dict[str, Any]) -> list[AclBinding]:
    """The user's ACLs as the broker stores them: one binding per operation."""
    principal = f"User:{user['metadata']['name']}"
    bindings = []
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        kind = _RESOURCES[resource["type"]]
        name = "kafka-cluster" if kind == ResourceType.BROKER else resource["name"]
        pattern = _PATTERNS[resource.get("patternType", "literal")]
        permission = AclPermissionType[acl.get("type", "allow").upper()]
        for operation in acl["operations"]:
            bindings.append(
                AclBinding(
                    kind, name, pattern, principal, acl.get("host", "*"),
                    _operation(operation), permission,
                )
            )  # fmt: skip
    return bindings


def _operation(name: str) -> AclOperation:
    # Strimzi spells them in CamelCase (IdempotentWrite), the enum in upper snake case.
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return AclOperation[snake]


def may(user: dict[str, Any], operation: str, topic: str) -> bool:
    """Whether the user's ACLs allow `operation` on `topic` (allow rules only, as ours)."""
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != "topic" or operation not in acl["operations"]:
            continue
        if resource.get("patternType", "literal") == "prefix":
            if topic.startswith(resource["name"]):
                return True
        elif topic == resource["name"]:
            return True
    return False
