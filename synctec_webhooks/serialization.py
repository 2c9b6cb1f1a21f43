"""Avro encodings of the records on every topic.

Two wire formats; `make_codec` picks one from configuration, and every worker of a
deployment must pick the same:

* `SingleObjectCodec` (default, no registry): the Avro single-object encoding,
  ``C3 01 | CRC-64-AVRO fingerprint, 8 bytes little-endian | Avro binary``. A reader
  resolves the fingerprint against the schemas shipped in `schemas/` (and
  `schemas/history/`), so new schemas must reach readers before writers use them.
* `SchemaRegistryCodec`: the Confluent wire format,
  ``00 | schema id, 4 bytes big-endian | Avro binary``, registering writer schemas under
  ``<topic>-<record full name>`` because several record types share the events topic.

Both decode with the current local schema of the writer's name as the reader schema, so
code always sees records in the shape it was written for (Avro schema resolution fills
in defaults and drops fields it does not know).

Exceptions::

    Exception
    └── SerializationError   .retriable: True only when the schema registry failed
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, Protocol

from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    SchemaRegistryError,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from confluent_kafka.serialization import SerializationError as KafkaSerializationError
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fullname as schema_fullname
from fastavro.validation import ValidationError, validate

from synctec_webhooks.errors import SerializationError
from synctec_webhooks.schemas import SchemaStore, load

try:
    # The HTTP library confluent-kafka itself uses (httpx or httpx2): its TransportError
    # means the registry never answered, which is worth retrying.
    from confluent_kafka.schema_registry.common._httpx_compat import httpx as _httpx

    _TRANSPORT_ERRORS: tuple[type[Exception], ...] = (_httpx.TransportError,)
except ImportError:  # pragma: no cover - older confluent-kafka
    _TRANSPORT_ERRORS = ()
_REGISTRY_ERRORS: tuple[type[Exception], ...] = (SchemaRegistryError, *_TRANSPORT_ERRORS)

__all__ = [
    "SINGLE_OBJECT_MAGIC",
    "Codec",
    "SchemaRegistryCodec",
    "SerializationError",
    "SingleObjectCodec",
    "make_codec",
]

logger = logging.getLogger(__name__)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_SINGLE_OBJECT_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = 5
# fastavro signals a record that does not fit its schema with any of these.
_DATA_ERRORS = (ValueError, TypeError, AttributeError, KeyError, OverflowError)


class Codec(Protocol):
    def encode(self, topic: str, fullname: str, record: dict[str, Any]) -> bytes: ...

    def decode(self, topic: str, data: bytes) -> tuple[str, dict[str, Any]]:
        """Return (writer schema full name, record as the current local schema reads it)."""
        ...


class SingleObjectCodec:
    """Avro single-object encoding against the schemas shipped in `schemas/`."""

    def __init__(self, store: SchemaStore | None = None) -> None:
        self._store = store if store is not None else load()

    def encode(self, topic: str, fullname: str, record: dict[str, Any]) -> bytes:
        schema = _local_schema(self._store, fullname)
        return SINGLE_OBJECT_MAGIC + self._store.fingerprint(fullname) + _write(schema, record)

    def decode(self, topic: str, data: bytes) -> tuple[str, dict[str, Any]]:
        _check_single_object_header(topic, data)
        fp = bytes(data[2:_SINGLE_OBJECT_HEADER])
        try:
            name, writer = self._store.by_fingerprint(fp)
        except KeyError as exc:
            raise SerializationError(
                f"{topic}: writer schema with fingerprint {fp.hex()} is not in schemas/ or "
                "schemas/history/; deploy new schemas to readers before writers use them"
            ) from exc
        reader = _local_schema(self._store, name)
        # Skip schema resolution in the common case of writer == reader.
        same = self._store.fingerprint(name) == fp
        return name, _read(topic, data[_SINGLE_OBJECT_HEADER:], writer, None if same else reader)


class SchemaRegistryCodec:
    """Confluent wire format; writer schemas live in a Confluent Schema Registry."""

    def __init__(
        self,
        url: str,
        store: SchemaStore | None = None,
        *,
        client: SchemaRegistryClient | None = None,
    ) -> None:
        self._store = store if store is not None else load()
        # new_client, not the constructor: it returns the in-memory mock for mock:// URLs.
        self.client = (
            client if client is not None else SchemaRegistryClient.new_client({"url": url})
        )
        self._serializers: dict[str, AvroSerializer] = {}
        self._deserializers: dict[str, AvroDeserializer] = {}
        self._writer_names: dict[int, str] = {}

    def encode(self, topic: str, fullname: str, record: dict[str, Any]) -> bytes:
        schema = _local_schema(self._store, fullname)
        serializer = self._serializers.get(fullname) or self._new_serializer(fullname)
        try:
            data = serializer(record, SerializationContext(topic, MessageField.VALUE))
        except _REGISTRY_ERRORS as exc:
            raise _registry_error(f"{topic}: cannot register {fullname}", exc) from exc
        except (*_DATA_ERRORS, KafkaSerializationError) as exc:
            raise _mismatch(fullname, schema, record, exc) from exc
        if data is None:  # only for a None record, which the Protocol does not allow
            raise SerializationError(f"{topic}: cannot encode an empty {fullname} record")
        return data

    def decode(self, topic: str, data: bytes) -> tuple[str, dict[str, Any]]:
        schema_id = _confluent_schema_id(topic, data)
        name = self._writer_name(topic, schema_id)
        _local_schema(self._store, name)  # fail early if there is no reader schema
        deserializer = self._deserializers.get(name) or self._new_deserializer(name)
        try:
            record = deserializer(data, SerializationContext(topic, MessageField.VALUE))
        except _REGISTRY_ERRORS as exc:
            raise _registry_error(f"{topic}: cannot decode schema id {schema_id}", exc) from exc
        except Exception as exc:
            # Corrupt bodies make fastavro raise many exception types; all of them mean
            # this record cannot be read, and the caller must not crash on it.
            raise _undecodable(topic, exc) from exc
        if not isinstance(record, dict):
            raise SerializationError(f"{topic}: schema id {schema_id} is not an Avro record")
        return name, record

    def _new_serializer(self, fullname: str) -> AvroSerializer:
        conf = {
            "auto.register.schemas": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
            # Refuse unknown keys instead of silently dropping them, like SingleObjectCodec.
            "validate.strict.allow.default": True,
        }
        serializer: AvroSerializer = AvroSerializer(
            self.client, self._store.raw(fullname), conf=conf
        )
        self._serializers[fullname] = serializer
        return serializer

    def _new_deserializer(self, fullname: str) -> AvroDeserializer:
        conf = {"subject.name.strategy": topic_record_subject_name_strategy}
        deserializer: AvroDeserializer = AvroDeserializer(
            self.client, self._store.raw(fullname), conf=conf
        )
        self._deserializers[fullname] = deserializer
        return deserializer

    def _writer_name(self, topic: str, schema_id: int) -> str:
        if schema_id in self._writer_names:
            return self._writer_names[schema_id]
        what = f"{topic}: cannot fetch writer schema id {schema_id}"
        try:
            schema = self.client.get_schema(schema_id)
        except _REGISTRY_ERRORS as exc:
            raise _registry_error(what, exc) from exc
        if schema.schema_type not in (None, "AVRO") or schema.schema_str is None:
            raise SerializationError(f"{topic}: schema id {schema_id} is not an Avro schema")
        name = schema_fullname(json.loads(schema.schema_str))
        self._writer_names[schema_id] = name
        return name


def make_codec(schema_registry_url: str | None) -> Codec:
    """The registry codec when a URL is configured, else single-object encoding."""
    if schema_registry_url:
        return SchemaRegistryCodec(schema_registry_url)
    return SingleObjectCodec()


def _local_schema(store: SchemaStore, fullname: str) -> dict[str, Any]:
    try:
        return store.parsed(fullname)
    except KeyError as exc:
        raise SerializationError(
            f"no local schema named {fullname!r}: add it to schemas/ and deploy it to this "
            "service before anything writes it"
        ) from exc


def _write(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    try:
        # strict_allow_default: a key the schema lacks is a bug, not data to drop silently.
        schemaless_writer(buf, schema, record, strict_allow_default=True)
    except _DATA_ERRORS as exc:
        raise _mismatch(schema["name"], schema, record, exc) from exc
    return buf.getvalue()


def _read(
    topic: str, body: bytes, writer: dict[str, Any], reader: dict[str, Any] | None
) -> dict[str, Any]:
    buf = io.BytesIO(body)
    try:
        record = schemaless_reader(buf, writer, reader)
    except Exception as exc:
        # Corrupt bodies make fastavro raise many exception types (EOFError, ValueError,
        # UnicodeDecodeError, MemoryError...); all of them mean "cannot read this record".
        raise _undecodable(topic, exc) from exc
    if buf.tell() != len(body):
        raise SerializationError(
            f"{topic}: {len(body) - buf.tell()} bytes left after the record; the data is "
            "corrupt or was written with a different schema than its fingerprint says"
        )
    if not isinstance(record, dict):
        raise SerializationError(f"{topic}: writer schema is not an Avro record")
    return record


def _check_single_object_header(topic: str, data: bytes) -> None:
    if data[:1] == bytes([_CONFLUENT_MAGIC]):
        raise SerializationError(
            f"{topic}: bad magic {data[:2].hex()}: this looks like Confluent Schema Registry "
            "framing; configure the schema registry URL on readers and writers alike"
        )
    if data[:2] != SINGLE_OBJECT_MAGIC:
        raise SerializationError(
            f"{topic}: bad magic {data[:2].hex() or '(empty)'}, expected c301 (Avro "
            "single-object encoding); the record was not written by this service's codec"
        )
    if len(data) < _SINGLE_OBJECT_HEADER:
        raise SerializationError(
            f"{topic}: truncated record: {len(data)} bytes, the single-object header alone "
            f"is {_SINGLE_OBJECT_HEADER}"
        )


def _confluent_schema_id(topic: str, data: bytes) -> int:
    if data[:2] == SINGLE_OBJECT_MAGIC:
        raise SerializationError(
            f"{topic}: bad magic c301: this is Avro single-object encoding; configure the "
            "schema registry URL on readers and writers alike, or on neither"
        )
    if data[:1] != bytes([_CONFLUENT_MAGIC]):
        raise SerializationError(
            f"{topic}: bad magic {data[:1].hex() or '(empty)'}, expected 00 (Confluent "
            "Schema Registry framing); the record was not written by this service's codec"
        )
    if len(data) <= _CONFLUENT_HEADER:
        raise SerializationError(
            f"{topic}: truncated record: {len(data)} bytes, the Confluent header alone is "
            f"{_CONFLUENT_HEADER}"
        )
    return int.from_bytes(data[1:_CONFLUENT_HEADER], "big")


def _undecodable(topic: str, exc: Exception) -> SerializationError:
    return SerializationError(
        f"{topic}: cannot decode the Avro body ({type(exc).__name__}: {exc}); it is truncated "
        "or corrupt, or its writer schema differs from the one its header names"
    )


def _mismatch(
    fullname: str, schema: dict[str, Any], record: object, exc: Exception
) -> SerializationError:
    return SerializationError(
        f"record does not match schema {fullname}: {_diagnose(schema, record) or exc}; "
        "fix the producer or evolve the schema"
    )


def _diagnose(schema: dict[str, Any], record: object) -> str:
    """Name the offending fields without quoting their values, which may be secrets."""
    try:
        validate(record, schema, raise_errors=True)
    except ValidationError as err:
        return "; ".join(_describe(e.field, e.schema, e.datum) for e in err.errors)
    except Exception:
        logger.debug("fastavro could not validate the record", exc_info=True)
    return ""


def _describe(field: str, expected: object, datum: object) -> str:
    if datum is None:
        return f"{field} is missing or null, expected {expected}"
    return f"{field}: expected {expected}, got {type(datum).__name__}"


def _registry_error(what: str, exc: Exception) -> SerializationError:
    status = getattr(exc, "http_status_code", None)
    # No answer, a server error or throttling may pass; any other 4xx will not.
    retriable = status is None or status >= 500 or status in (408, 429)
    hint = "retry later" if retriable else "check the registry URL and the subject's compatibility"
    return SerializationError(f"{what}: schema registry error: {exc}; {hint}", retriable=retriable)
