"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Kept true by tests: every route of the app is described here and nothing else
(tests/unit/test_admin_openapi.py), and schemathesis checks every response of the live
service against it (tests/integration/test_admin_schemathesis.py).
"""

from __future__ import annotations

from typing import Any

from synctec_webhooks import schemas
from synctec_webhooks.webhooks import MAX_DESCRIPTION

_MAX_URL = 2048
_ID = {"type": "string", "pattern": "^wh_[0-9a-f]{24}$", "example": "wh_0123456789abcdef01234567"}
_MS = {"type": "integer", "description": "epoch milliseconds"}
_EVENT_TYPE = {"type": "string", "enum": list(schemas.EVENT_TYPES)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _obj(required: list[str], props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props, **extra}


_COMMON = {"401": _error("missing or wrong bearer token")}
_BODY_ERRORS = {
    "400": _error("body is not a JSON object"),
    "413": _error("body larger than 1 MiB"),
    "422": _error("a field is invalid; `field` names it"),
}
_NOT_FOUND = {"404": _error("no such webhook")}
_ID_PARAM = [{"name": "id", "in": "path", "required": True, "schema": _ID}]
_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}
_CURSOR_PATTERN = r"^[0-9]{1,15}\.dl_[0-9a-f]{32}$"
_CURSOR = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "description": "the next_cursor of the page before",
    "schema": {"type": "string", "pattern": _CURSOR_PATTERN},
}
_BAD_QUERY = {"400": _error("a query parameter is invalid")}


def _components() -> dict[str, Any]:
    attempt = _obj(
        ["at", "event_id", "event_type", "delivery_id", "attempt", "status", "error",
         "latency_ms", "outcome", "result"],
        {
            "at": _MS,
            "event_id": {"type": "string"},
            "event_type": {"type": "string"},
            "delivery_id": {"type": "string"},
            "attempt": {"type": "integer"},
            "status": _nullable({"type": "integer"}),
            "error": _nullable({"type": "string"}),
            "latency_ms": {"type": "number"},
            "outcome": {"type": "string", "enum": [
                "success", "http_error", "redirect", "timeout", "connection_error",
                "invalid_url", "refused"]},
            "result": {"type": "string", "description": "delivered, retry, or why it failed"},
        },
    )  # fmt: skip
    webhook_props = {
        "id": _ID,
        "url": {"type": "string", "description": "a password in it is shown as ***"},
        "events": {"type": "array", "items": {"type": "string"}},
        "description": _nullable({"type": "string"}),
        "enabled": {"type": "boolean"},
        "state": {"type": "string", "enum": ["enabled", "disabled"]},
        "disabled_reason": _nullable({"type": "string"}),
        "disabled_at": _nullable(_MS),
        "created_at": _MS,
        "updated_at": _MS,
        "rotation_ends_at": _nullable(_MS),
        "consecutive_failures": {"type": "integer", "minimum": 0},
        "last_attempt": _nullable(_ref("Attempt")),
    }
    webhook = _obj(list(webhook_props), webhook_props)
    secret = {"type": "string", "pattern": "^whsec_", "description": "shown this once"}
    history = _obj(
        ["attempt", "at"],
        {
            "attempt": {"type": "integer"},
            "at": _MS,
            "status": _nullable({"type": "integer"}),
            "error": _nullable({"type": "string"}),
            "latency_ms": _nullable({"type": "number"}),
            "url": _nullable({"type": "string"}),
        },
    )
    dead_letter_props = {
        "dead_letter_id": {"type": "string"},
        "webhook_id": _nullable({"type": "string"}),
        "event_id": _nullable({"type": "string"}),
        "delivery_id": _nullable({"type": "string"}),
        "event_type": _nullable({"type": "string"}),
        "attempts": {"type": "integer"},
        "reason": {"type": "string"},
        "detail": {"type": "string"},
        "failed_at": _MS,
        "source": {"type": "string", "description": "topic/partition@offset"},
        "history": {"type": "array", "items": _ref("HistoryEntry")},
        "replayed_at": _nullable(_MS),
        "replayable": {"type": "boolean"},
    }
    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": _obj(
                ["error"],
                {
                    "error": _obj(
                        ["code", "message"],
                        {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                        },
                    )
                },
            ),
            "Attempt": attempt,
            "Webhook": webhook,
            "WebhookCreated": {
                "allOf": [webhook, _obj(["secret"], {"secret": secret})],
            },
            "HistoryEntry": history,
            "DeadLetter": _obj(list(dead_letter_props), dead_letter_props),
        },
    }


def _webhook_input(required: list[str]) -> dict[str, Any]:
    props = {
        "url": {
            "type": "string",
            # No "format": "uri": internationalised host names are accepted (IDNA-encoded).
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
            "maxLength": _MAX_URL,
            "description": "http(s); refused when it is or resolves to a non-public address",
            "example": "https://example.com/hooks",
        },
        "events": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": [*schemas.EVENT_TYPES, "*"]},
        },
        "description": _nullable({"type": "string", "maxLength": MAX_DESCRIPTION}),
    }
    if "url" not in required:  # PATCH
        props["enabled"] = {"type": "boolean"}
    return _obj(required, props, additionalProperties=False, minProperties=1)


def _paths() -> dict[str, Any]:
    webhook = _json(_ref("Webhook"), "the webhook")
    return {
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_COMMON},
            }
        },
        "/webhooks": {
            "get": {
                "summary": "list webhooks (never their secrets)",
                "responses": {
                    "200": _json(
                        _obj(
                            ["webhooks"], {"webhooks": {"type": "array", "items": _ref("Webhook")}}
                        ),
                        "every webhook, oldest first",
                    ),
                    **_COMMON,
                },
            },
            "post": {
                "summary": "add a webhook; the answer holds its secret, this once",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _webhook_input(["url", "events"])}},
                },
                "responses": {
                    "201": _json(_ref("WebhookCreated"), "added"),
                    **_BODY_ERRORS,
                    **_COMMON,
                },
            },
        },
        "/webhooks/{id}": {
            "parameters": _ID_PARAM,
            "get": {
                "summary": "one webhook",
                "responses": {"200": webhook, **_NOT_FOUND, **_COMMON},
            },
            "patch": {
                "summary": "change url, events, description or enabled",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _webhook_input([])}},
                },
                "responses": {"200": webhook, **_BODY_ERRORS, **_NOT_FOUND, **_COMMON},
            },
            "delete": {
                "summary": "remove a webhook",
                "responses": {"204": {"description": "removed"}, **_NOT_FOUND, **_COMMON},
            },
        },
        "/webhooks/{id}/rotate-secret": {
            "parameters": _ID_PARAM,
            "post": {
                "summary": "a new secret; the old one keeps signing for SYNCTEC_ROTATION_GRACE",
                "responses": {
                    "200": _json(
                        _obj(
                            ["id", "secret", "rotation_ends_at"],
                            {
                                "id": _ID,
                                "secret": {"type": "string"},
                                "rotation_ends_at": _nullable(_MS),
                            },
                        ),
                        "the new secret, shown this once",
                    ),
                    "409": _error("the current secret cannot be opened with this service's keys"),
                    **_BODY_ERRORS,
                    **_NOT_FOUND,
                    **_COMMON,
                },
            },
        },
        "/webhooks/{id}/test": {
            "parameters": _ID_PARAM,
            "post": {
                "summary": "send a sample event to this webhook only, through the pipeline",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                [],
                                {"event_type": _nullable(_EVENT_TYPE)},
                                additionalProperties=False,
                            )
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        _obj(
                            ["webhook_id", "event_id", "event_type", "delivery_id"],
                            {
                                "webhook_id": _ID,
                                "event_id": {"type": "string", "pattern": "^evt_test_"},
                                "event_type": _EVENT_TYPE,
                                "delivery_id": {"type": "string"},
                            },
                        ),
                        "queued on the webhook's delivery topic",
                    ),
                    "409": _error("the webhook is disabled"),
                    **_BODY_ERRORS,
                    **_NOT_FOUND,
                    **_COMMON,
                },
            },
        },
        "/webhooks/{id}/attempts": {
            "parameters": _ID_PARAM,
            "get": {
                "summary": "recent delivery attempts, newest first",
                "parameters": [_LIMIT],
                "responses": {
                    "200": _json(
                        _obj(
                            ["webhook_id", "attempts"],
                            {
                                "webhook_id": _ID,
                                "attempts": {"type": "array", "items": _ref("Attempt")},
                            },
                        ),
                        "attempts",
                    ),
                    **_BAD_QUERY,
                    **_NOT_FOUND,
                    **_COMMON,
                },
            },
        },
        "/dead-letters": {
            "get": {
                "summary": "dead letters, newest first, a page at a time",
                "description": "Newest first by when the delivery's round began (its "
                "creation or its replay; for records that were never a delivery, when they "
                "failed). Each dead letter once, however many retry chains ended in it. "
                "Pass `next_cursor` as `cursor` for the next page.",
                "parameters": [
                    {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                    for n in ("webhook_id", "event_id", "event_type")
                ]
                + [_LIMIT, _CURSOR],
                "responses": {
                    "200": _json(
                        _obj(
                            ["dead_letters", "next_cursor"],
                            {
                                "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
                                "next_cursor": _nullable(
                                    {"type": "string", "pattern": _CURSOR_PATTERN}
                                ),
                            },
                        ),
                        "a page of dead letters; next_cursor is null on the last page",
                    ),
                    **_BAD_QUERY,
                    **_COMMON,
                },
            }
        },
        "/dead-letters/replay": {
            "post": {
                "summary": "replay the dead letters matching every filter given",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                [],
                                {
                                    "webhook_id": {"type": "string", "minLength": 1},
                                    "event_id": {"type": "string", "minLength": 1},
                                    "event_type": {"type": "string", "minLength": 1},
                                    "dead_letter_ids": {
                                        "type": "array",
                                        "maxItems": 1000,
                                        "items": {"type": "string", "maxLength": 100},
                                    },
                                    "all": {"const": True},
                                },
                                additionalProperties=False,
                                minProperties=1,
                            )
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        _obj(
                            ["replayed", "not_replayable", "not_replayable_reasons"],
                            {
                                "replayed": {"type": "integer", "minimum": 0},
                                "not_replayable": {"type": "integer", "minimum": 0},
                                "not_replayable_reasons": {
                                    "type": "object",
                                    "description": "not_replayable by reason: "
                                    "webhook_not_found (the webhook was deleted: its topic "
                                    "is not recreated, the dead letter is left as it is), "
                                    "no_delivery (nothing to replay)",
                                    "additionalProperties": {"type": "integer", "minimum": 1},
                                },
                            },
                        ),
                        "how many went back to their delivery topic; dead letters replayed "
                        "before are left out, so a second replay (a double click) sends none",
                    ),
                    **_BODY_ERRORS,
                    **_COMMON,
                },
            }
        },
    }


def build_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StoreLink webhooks admin API",
            "version": "1",
            "description": "Manage webhooks, see delivery attempts, replay dead letters. "
            "Every route needs `Authorization: Bearer <SYNCTEC_ADMIN_TOKEN>`.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": _components(),
    }
