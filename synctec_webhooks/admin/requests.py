"""Request bodies: shape and types checked field by field, before anything is written.

The field-level rules (URL, event types, description length, the SSRF guard) are the
CLI's too and live in synctec_webhooks/webhooks.py; here is only what JSON adds: which
keys may appear and the type of each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from synctec_webhooks import portal_links, schemas
from synctec_webhooks.accounts import KEY_ID, account_id_problem
from synctec_webhooks.admin.errors import ApiError, invalid, not_found
from synctec_webhooks.deadletters.listing import parse_cursor
from synctec_webhooks.webhooks import PATCHABLE

WEBHOOK_ID = re.compile(r"^wh_[0-9a-f]{24}$")
DEAD_LETTER_ID = re.compile(r"^dl_[0-9a-f]{32}$")
MAX_REPLAY_IDS = 1000
MAX_ID_LENGTH = 100
MAX_NAME = 200
# Avro int; far more webhooks than any account should have.
MAX_WEBHOOK_LIMIT = 100_000


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise invalid(key, f"unknown field; expected only {', '.join(allowed)}")


def _string(body: Mapping[str, Any], key: str, *, nullable: bool = False) -> str | None:
    value = body.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise invalid(key, f"expected a string, got {_json_type(value)}")
    return value


def _events(body: Mapping[str, Any]) -> list[str]:
    value = body.get("events")
    if not isinstance(value, list):
        raise invalid("events", f"expected an array of event types, got {_json_type(value)}")
    if not value:
        raise invalid("events", 'give at least one event type, or ["*"] for all')
    for item in value:
        if not isinstance(item, str):
            raise invalid("events", f"expected strings, got {_json_type(item)}")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def parse_create(body: Mapping[str, Any]) -> tuple[str, list[str], str | None, str | None]:
    """(url, events, description, account_id or None: the caller's own account)."""
    _only(body, ("url", "events", "description", "account_id"))
    for key in ("url", "events"):
        if key not in body:
            raise invalid(key, "required")
    url = _string(body, "url")
    assert url is not None
    account_id = _account_id(body, "account_id", nullable=True)
    return url, _events(body), _string(body, "description", nullable=True), account_id


def _account_id(body: Mapping[str, Any], key: str, *, nullable: bool = False) -> str | None:
    value = _string(body, key, nullable=nullable)
    if value is None:
        return None
    problem = account_id_problem(value)
    if problem is not None:
        raise invalid(key, problem)
    return value


def parse_patch(body: Mapping[str, Any]) -> dict[str, Any]:
    _only(body, PATCHABLE)
    if not body:
        raise ApiError(
            422, "invalid_field", f"body: give at least one of {', '.join(PATCHABLE)}", "body"
        )
    changes: dict[str, Any] = {}
    if "url" in body:
        changes["url"] = _string(body, "url")
    if "events" in body:
        changes["events"] = _events(body)
    if "description" in body:
        changes["description"] = _string(body, "description", nullable=True)
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise invalid("enabled", f"expected true or false, got {_json_type(body['enabled'])}")
        changes["enabled"] = body["enabled"]
    return changes


def parse_test(body: Mapping[str, Any]) -> str | None:
    _only(body, ("event_type",))
    event_type = _string(body, "event_type", nullable=True)
    if event_type is not None and event_type not in schemas.EVENT_TYPES:
        raise invalid(
            "event_type",
            f"unknown event type {event_type!r}; choose from {', '.join(schemas.EVENT_TYPES)}",
        )
    return event_type


def parse_replay(body: Mapping[str, Any]) -> dict[str, Any]:
    """Filters of a replay; at least one, so an empty body cannot replay everything."""
    allowed = ("webhook_id", "event_id", "event_type", "dead_letter_ids", "account_id", "all")
    _only(body, allowed)
    filters: dict[str, Any] = {}
    if "account_id" in body:
        filters["account_id"] = _account_id(body, "account_id")
    for key in ("webhook_id", "event_id", "event_type"):
        if key in body:
            filters[key] = _string(body, key)
            if not filters[key]:  # "" would match everything: no filter at all
                raise invalid(key, "must not be empty")
    if "dead_letter_ids" in body:
        ids = body["dead_letter_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise invalid("dead_letter_ids", "expected an array of dead-letter ids")
        if len(ids) > MAX_REPLAY_IDS:
            raise invalid("dead_letter_ids", f"at most {MAX_REPLAY_IDS} ids at once")
        if any(len(i) > MAX_ID_LENGTH for i in ids):
            raise invalid("dead_letter_ids", f"an id is at most {MAX_ID_LENGTH} characters")
        filters["dead_letter_ids"] = ids
    if "all" in body and body["all"] is not True:
        raise invalid("all", "expected true (to replay every dead letter), or leave it out")
    if not filters and body.get("all") is not True:
        raise ApiError(
            422,
            "invalid_field",
            "body: give a filter (webhook_id, event_id, event_type, dead_letter_ids, "
            "account_id), "
            'or "all": true to replay every dead letter',
            "body",
        )
    return filters


def query_cursor(query: Mapping[str, str]) -> str | None:
    """`cursor`: the `next_cursor` of the page before, as it was given."""
    raw = query.get("cursor")
    if raw is None:
        return None
    try:
        parse_cursor(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
    return raw


def query_limit(query: Mapping[str, str], default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= maximum):
        raise ApiError(400, "invalid_query", f"limit: expected an integer from 1 to {maximum}")
    return int(raw)


def query_account(query: Mapping[str, str]) -> str | None:
    """`account_id`: one account's resources only. A malformed id names no account:
    404, like an account that does not exist."""
    raw = query.get("account_id")
    if raw is None:
        return None
    if account_id_problem(raw) is not None:
        raise not_found(f"account {raw[:70]!r}")
    return raw


def path_account(raw: str) -> str:
    if account_id_problem(raw) is not None:
        raise not_found(f"account {raw[:70]!r}")
    return raw


def path_key(raw: str) -> str:
    if not KEY_ID.fullmatch(raw):
        raise not_found(f"API key {raw[:40]!r}")
    return raw


def _name(body: Mapping[str, Any]) -> str | None:
    name = _string(body, "name", nullable=True)
    if name is not None and len(name) > MAX_NAME:
        raise invalid("name", f"at most {MAX_NAME} characters")
    return name


def _webhook_limit(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_webhooks")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid("max_webhooks", f"expected an integer or null, got {_json_type(value)}")
    if not 0 <= value <= MAX_WEBHOOK_LIMIT:
        raise invalid("max_webhooks", f"expected 0 to {MAX_WEBHOOK_LIMIT}, got {value}")
    return value


def parse_account_create(body: Mapping[str, Any]) -> tuple[str, str | None, int | None]:
    """(id, name, max_webhooks)."""
    _only(body, ("id", "name", "max_webhooks"))
    if "id" not in body:
        raise invalid("id", "required")
    account_id = _account_id(body, "id")
    assert account_id is not None
    return account_id, _name(body), _webhook_limit(body)


def parse_account_patch(body: Mapping[str, Any]) -> dict[str, Any]:
    """The changes: `name` and/or `max_webhooks` (null: back to the deployment's)."""
    _only(body, ("name", "max_webhooks"))
    if not body:
        raise ApiError(422, "invalid_field", "body: give name and/or max_webhooks", "body")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _name(body)
    if "max_webhooks" in body:
        changes["max_webhooks"] = _webhook_limit(body)
    return changes


def parse_key_create(body: Mapping[str, Any]) -> str | None:
    _only(body, ("name",))
    return _name(body)


def parse_link(body: Mapping[str, Any], default_ttl: int, max_ttl: int) -> tuple[str, int]:
    """(scope, ttl in seconds) of a portal link; a ttl out of 1..max_ttl is a 400."""
    _only(body, ("scope", "ttl_seconds"))
    scope = _string(body, "scope", nullable=True)
    scope = "manage" if scope is None else scope
    if scope not in portal_links.SCOPES:
        raise invalid("scope", f"expected one of {', '.join(portal_links.SCOPES)}, got {scope!r}")
    ttl = body.get("ttl_seconds")
    if ttl is None:
        return scope, default_ttl
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= max_ttl:
        raise ApiError(
            400,
            "invalid",
            f"ttl_seconds: expected an integer from 1 to {max_ttl} (SYNCTEC_PORTAL_LINK_MAX_TTL)",
            "ttl_seconds",
        )
    return scope, ttl
