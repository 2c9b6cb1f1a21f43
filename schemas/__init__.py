"""The Avro contracts, and the one loader that parses them.

Each `*.avsc` here is a self-contained schema (named types are defined inline, not
referenced across files), so any file can be registered on its own with a Confluent
Schema Registry. `history/*.avsc` holds earlier versions whose fingerprints must still
resolve: records written with them stay on the topics until retention removes them.

Every schema is parsed once, when this package is imported, so a broken file stops a
worker at start-up rather than at its first message.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = [
    "ACCOUNT",
    "API_KEY",
    "AUDIT_ENTRY",
    "DEAD_LETTER",
    "DELIVERY",
    "DELIVERY_ATTEMPT",
    "EVENT_SCHEMA",
    "EVENT_TYPES",
    "SCHEMA_DIR",
    "SUBSCRIPTION",
    "SchemaStore",
    "load",
]

SCHEMA_DIR: Path = Path(__file__).resolve().parent

EVENT_TYPES: tuple[str, ...] = (
    "product.synced",
    "sync.failed",
    "inventory.updated",
    "collection.synced",
)
EVENT_SCHEMA: dict[str, str] = {
    "product.synced": "com.synctec.events.ProductSynced",
    "sync.failed": "com.synctec.events.SyncFailed",
    "inventory.updated": "com.synctec.events.InventoryUpdated",
    "collection.synced": "com.synctec.events.CollectionSynced",
}
SUBSCRIPTION = "com.synctec.webhooks.Subscription"
DELIVERY = "com.synctec.webhooks.Delivery"
DEAD_LETTER = "com.synctec.webhooks.DeadLetter"
DELIVERY_ATTEMPT = "com.synctec.webhooks.DeliveryAttempt"
ACCOUNT = "com.synctec.webhooks.Account"
API_KEY = "com.synctec.webhooks.ApiKey"
AUDIT_ENTRY = "com.synctec.webhooks.AuditEntry"
_REQUIRED = (
    *EVENT_SCHEMA.values(),
    SUBSCRIPTION,
    DELIVERY,
    DEAD_LETTER,
    DELIVERY_ATTEMPT,
    ACCOUNT,
    API_KEY,
    AUDIT_ENTRY,
)


@dataclass(frozen=True)
class _Schema:
    fullname: str
    raw: str
    parsed: dict[str, Any]
    fingerprint: bytes


def _compile(schema_json: dict[str, Any] | str) -> _Schema:
    obj = json.loads(schema_json) if isinstance(schema_json, str) else schema_json
    # A fresh named-types table per schema: each file defines its own Product, Attempt...
    # and sharing one table would make fastavro reject the second definition.
    parsed = parse_schema(obj, named_schemas={})
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise ValueError("a top-level schema must be an Avro record")
    canonical = to_parsing_canonical_form(obj)
    # fastavro returns CRC-64-AVRO as the hex of the little-endian bytes, which is
    # the byte order the single-object encoding puts on the wire.
    fp = bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _Schema(fullname=parsed["name"], raw=raw, parsed=parsed, fingerprint=fp)


class SchemaStore:
    """The current schemas by full name, plus every known writer schema by fingerprint."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._current: dict[str, _Schema] = {}
        self._by_fingerprint: dict[bytes, _Schema] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            schema = _load_file(path)
            if schema.fullname in self._current:
                raise ValueError(f"{path}: {schema.fullname} is already defined by another file")
            self._current[schema.fullname] = schema
            self._by_fingerprint[schema.fingerprint] = schema
        for path in sorted(schema_dir.glob("history/*.avsc")):
            old = _load_file(path)
            self._by_fingerprint.setdefault(old.fingerprint, old)

    def names(self) -> tuple[str, ...]:
        """Full names of the current schemas."""
        return tuple(self._current)

    def parsed(self, fullname: str) -> dict[str, Any]:
        return self._get(fullname).parsed

    def raw(self, fullname: str) -> str:
        return self._get(fullname).raw

    def fingerprint(self, fullname: str) -> bytes:
        return self._get(fullname).fingerprint

    def by_fingerprint(self, fp: bytes) -> tuple[str, dict[str, Any]]:
        """The writer schema with this fingerprint; KeyError if it was never loaded."""
        schema = self._by_fingerprint[bytes(fp)]
        return schema.fullname, schema.parsed

    def add(self, schema_json: dict[str, Any] | str) -> str:
        """Make one more writer schema resolvable by fingerprint; return its full name.

        The current schema of that name stays the reader schema: adding a newer
        version lets this process read what newer writers produce, nothing more.
        """
        schema = _compile(schema_json)
        self._by_fingerprint.setdefault(schema.fingerprint, schema)
        return schema.fullname

    def _get(self, fullname: str) -> _Schema:
        try:
            return self._current[fullname]
        except KeyError:
            known = ", ".join(sorted(self._current))
            raise KeyError(f"no schema named {fullname!r} in schemas/ (known: {known})") from None


def _load_file(path: Path) -> _Schema:
    try:
        return _compile(path.read_text(encoding="utf-8"))
    except Exception as exc:
        # Re-raise with the file name: fastavro's messages do not say which file.
        raise ValueError(f"{path}: not a valid Avro record schema: {exc}") from exc


@functools.cache
def load() -> SchemaStore:
    """The store of the schemas shipped in this package, parsed once per process."""
    store = SchemaStore()
    missing = [name for name in _REQUIRED if name not in store.names()]
    if missing:
        raise ValueError(f"schemas/ lacks {', '.join(missing)}")
    return store


load()
