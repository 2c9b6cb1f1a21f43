"""Validate the JSON events sync services emit, and render the webhook body. Pure.

Validation follows the Avro schema of the event type: the schema says which fields
exist, in which order and of which type, so adding a field is a schema change only. The
rules a schema cannot say (the event type, RFC 3339 timestamps, the status of a failure,
the length of an id, the size of the body) are checked here.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastavro.schema import expand_schema

from synctec_webhooks.accounts import DEFAULT_ACCOUNT, account_id_problem
from synctec_webhooks.errors import InvalidEvent
from synctec_webhooks.schemas import EVENT_SCHEMA, EVENT_TYPES, load

__all__ = [
    "ACCOUNT_FIELD",
    "MAX_BODY_BYTES",
    "MAX_ID_LENGTH",
    "InvalidEvent",
    "body_too_large",
    "default_event_id",
    "parse_events_json",
    "partition_key",
    "render_body",
    "validate_event",
]

MAX_ID_LENGTH = 200
# The largest webhook body, in bytes of the rendered JSON: what a receiver gets, after
# escaping (a control character is 6 bytes there, 1 in Avro). Of the order of Svix's and
# Stripe's payload limits, and it keeps a delivery record, retry history included, well
# under the broker's 1 MB; the fan-out dead-letters (too_large) events that bypassed it.
MAX_BODY_BYTES = 256 * 1024
# The field named when the event as a whole is wrong (not an object).
_ROOT = "body"
# The account the event belongs to: a field of the record (the fan-out matches on it),
# not of the webhook body, which stays as documented (README: the account header).
ACCOUNT_FIELD = "account_id"
# The entity whose id keys the record (after the account), so one product's events stay
# in order.
_KEY_ENTITY = {
    "product.synced": "product",
    "sync.failed": "product",
    "inventory.updated": "product",
    "collection.synced": "collection",
}
_REQUIRED_STATUS = {"sync.failed": "failed"}
_INT_BITS = {"int": 32, "long": 64}
# RFC 3339 section 5.6; [0-9] rather than \d, which also matches non-ASCII digits.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}

_Check = Callable[[str, Any], str | None]


def default_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def validate_event(
    obj: object, new_id: Callable[[], str] = default_event_id, *, account: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Check a parsed JSON event; return (event type, record for its Avro schema).

    The record's keys are in schema order. An "id" given is kept, else `new_id()` makes
    one. The account is required: the event's "account_id", or `account` (both given
    must agree). The first problem found is raised as InvalidEvent, naming its field
    ("body" when the webhook body would be over MAX_BODY_BYTES).
    """
    if not isinstance(obj, dict):
        raise InvalidEvent(_ROOT, f"expected a JSON object, got {_json_type(obj)}")
    event_type = _event_type(obj)
    obj = _with_account(obj, account)
    if "id" not in obj:
        obj = {**obj, "id": new_id()}
    check = functools.partial(_rule, event_type)
    record = _record(_schema(event_type), obj, "", check)
    size = len(render_body(record))
    if size > MAX_BODY_BYTES:
        raise InvalidEvent(_ROOT, body_too_large(size))
    return event_type, record


def _with_account(obj: dict[str, Any], account: str | None) -> dict[str, Any]:
    given = obj.get(ACCOUNT_FIELD)
    if account is not None:
        problem = account_id_problem(account)
        if problem is not None:
            raise InvalidEvent(ACCOUNT_FIELD, problem)
        if given is not None and given != account:
            raise InvalidEvent(
                ACCOUNT_FIELD,
                f"the event says {_short(given)} but it was emitted for account {account!r}; "
                "give the account once, or the same in both places",
            )
        return {**obj, ACCOUNT_FIELD: account}
    if ACCOUNT_FIELD not in obj:
        raise InvalidEvent(
            ACCOUNT_FIELD,
            "missing: every event belongs to one StoreLink account; pass it "
            "(EventProducer.emit(event, account=...), `emit --account ID`) or add "
            '"account_id" to the event',
        )
    return obj


def body_too_large(size: int) -> str:
    """The problem with a body of `size` bytes, over MAX_BODY_BYTES."""
    return (
        f"the webhook body is {size:,} bytes, over the limit of {MAX_BODY_BYTES:,} bytes"
        " (counted as JSON, after escaping)"
    )


def partition_key(event_type: str, record: dict[str, Any]) -> str:
    """The Kafka key: the account, then the id of the product or collection the event
    is about ("acct_1/prod_9"), so one account's events for one product stay in order
    and two merchants' products with the same id do not share an order."""
    try:
        entity = _KEY_ENTITY[event_type]
    except KeyError:
        raise InvalidEvent("event", _unknown_type(event_type)) from None
    return f"{record.get(ACCOUNT_FIELD) or DEFAULT_ACCOUNT}/{record[entity]['id']}"


def render_body(record: dict[str, Any]) -> bytes:
    """The JSON body POSTed to webhooks: schema order ("id" first), compact, UTF-8.

    Null optional fields are left out: a field added to a schema as optional shows up in
    bodies only once producers fill it in. The account is not in the body.
    """
    event_type = record.get("event")
    if not isinstance(event_type, str) or event_type not in EVENT_SCHEMA:
        raise InvalidEvent("event", _unknown_type(event_type))
    ordered = _in_schema_order(_schema(event_type), record)
    ordered.pop(ACCOUNT_FIELD, None)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def parse_events_json(text: str) -> list[object]:
    """Parse one JSON value (possibly pretty-printed) or newline-delimited JSON values."""
    text = text.removeprefix("\ufeff")
    # split("\n"), not splitlines(): JSON strings may hold raw U+2028 and friends.
    lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not lines:
        return []
    try:
        return [json.loads(text)]
    except json.JSONDecodeError as exc:
        whole_error = exc
    # One line, or a first line that is no JSON value: a single malformed document.
    if len(lines) == 1 or not _is_json(lines[0][1]):
        raise _bad_json(whole_error.lineno, whole_error) from whole_error
    return [_parse_line(n, line) for n, line in lines]


@functools.cache
def _schema(event_type: str) -> dict[str, Any]:
    # Expanded, so a named type used twice is a full record at both places.
    expanded = expand_schema(load().parsed(EVENT_SCHEMA[event_type]))
    if not isinstance(expanded, dict):
        raise TypeError(f"the schema of {event_type} is not a record")
    return expanded


def _event_type(obj: dict[str, Any]) -> str:
    if "event" not in obj:
        raise InvalidEvent("event", f"missing; expected one of {', '.join(EVENT_TYPES)}")
    event_type = obj["event"]
    if not isinstance(event_type, str):
        raise InvalidEvent("event", f"expected a string, got {_json_type(event_type)}")
    if event_type not in EVENT_SCHEMA:
        raise InvalidEvent("event", _unknown_type(event_type))
    return event_type


def _unknown_type(event_type: object) -> str:
    return f"unknown event type {_short(event_type)}; expected one of {', '.join(EVENT_TYPES)}"


def _record(schema: dict[str, Any], obj: object, path: str, check: _Check) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidEvent(path or _ROOT, f"expected an object, got {_json_type(obj)}")
    fields = schema["fields"]
    names = [field["name"] for field in fields]
    # Unknown fields first: a misspelt field is also a missing one, and its name is the clue.
    for key in obj:
        if key not in names:
            problem = f"unknown field; expected only {', '.join(names)}"
            raise InvalidEvent(_join(path, _short(key, quote=False)), problem)
    record: dict[str, Any] = {}
    for field in fields:
        name, field_path = field["name"], _join(path, field["name"])
        if name in obj:
            record[name] = _value(field["type"], obj[name], field_path, check)
        elif "default" in field:
            record[name] = copy.deepcopy(field["default"])
        else:
            raise InvalidEvent(field_path, "missing")
    return record


def _value(avro_type: Any, value: object, path: str, check: _Check) -> Any:
    if isinstance(avro_type, list):
        # Events use unions only as ["null", T]: an optional field.
        if value is None and "null" in avro_type:
            return None
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise TypeError(f"event schemas may only use unions of null and one type ({path})")
        avro_type = branches[0]
    if isinstance(avro_type, dict):
        if avro_type["type"] != "record":
            raise TypeError(f"event schemas may not use Avro {avro_type['type']} ({path})")
        return _record(avro_type, value, path, check)
    problem = _primitive_problem(avro_type, value) or check(path, value)
    if problem:
        raise InvalidEvent(path, problem)
    return value


def _primitive_problem(avro_type: str, value: object) -> str | None:
    if avro_type == "string":
        if not isinstance(value, str):
            return f"expected a string, got {_json_type(value)}"
        if not value.strip():
            return "must not be empty"
        if not _is_utf8(value):
            return "contains an unpaired surrogate, which UTF-8 cannot carry"
        return None
    if avro_type in _INT_BITS:
        # bool is an int subclass in Python, but true is no stock count.
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {_json_type(value)}"
        limit = 2 ** (_INT_BITS[avro_type] - 1)
        return None if -limit <= value < limit else f"out of range for a {avro_type}"
    if avro_type == "boolean":
        return None if isinstance(value, bool) else f"expected a boolean, got {_json_type(value)}"
    raise TypeError(f"event schemas may not use Avro {avro_type}")


def _rule(event_type: str, path: str, value: Any) -> str | None:
    """What the Avro schema cannot say about one field."""
    if path == "id" and len(value) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    if path == "timestamp":
        return _timestamp_problem(value)
    if path == ACCOUNT_FIELD:
        return account_id_problem(value)
    required = _REQUIRED_STATUS.get(event_type)
    if path == "status" and required is not None and value != required:
        return f"must be {required!r} for {event_type} events, got {_short(value)}"
    return None


def _timestamp_problem(value: str) -> str | None:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return 'expected RFC 3339 with a zone (Z or an offset), e.g. "2025-01-29T14:30:00Z"'
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    try:
        # RFC 3339 allows a leap second (60); datetime does not.
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return f"{_short(value)} is not a real date and time"
    offset_hours, offset_minutes = match.group(8, 9)
    if offset_hours is not None and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        return f"{_short(value)} has an impossible UTC offset"
    return None


def _in_schema_order(avro_type: Any, value: Any) -> Any:
    if isinstance(avro_type, list):
        avro_type = next((t for t in avro_type if t != "null"), "null")
    if not (isinstance(avro_type, dict) and isinstance(value, dict)):
        return value
    types = {field["name"]: field["type"] for field in avro_type["fields"]}
    ordered = {k: _in_schema_order(types[k], value[k]) for k in types if value.get(k) is not None}
    # Keys the schema lacks cannot have come through Avro; keep them rather than lose data.
    ordered.update((k, v) for k, v in value.items() if k not in types and v is not None)
    return ordered


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _parse_line(number: int, line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad_json(number, exc) from exc


def _bad_json(line: int, exc: json.JSONDecodeError) -> InvalidEvent:
    return InvalidEvent(f"line {line}", f"not valid JSON: {exc.msg} (column {exc.colno})")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(value: object, limit: int = 60, *, quote: bool = True) -> str:
    """Quote user input in a message without letting it flood a log line."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
