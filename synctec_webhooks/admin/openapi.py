"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Kept true by tests: every route of the app is described here and nothing else, and every
operation says which credential may call it (tests/unit/test_admin_app.py); schemathesis
checks every response of the live service against it, with the operator token and with
an account's API key (tests/integration/test_admin_schemathesis.py).

Credentials: three bearer schemes (`operator`, `apiKey`, `portalLink`). Each operation
lists the ones it accepts in `security` (a portal link with its scope, "read" or
"manage") and names the least it needs in `x-required-credential`:

    any        the operator token, an account's API key, or a portal link (read or manage)
    manage     the operator token, an account's API key, or a portal link that may manage
    operator   the operator token only
"""

from __future__ import annotations

from typing import Any

from synctec_webhooks import audit, schemas
from synctec_webhooks.accounts import ACCOUNT_ID, KEY_ID
from synctec_webhooks.admin.requests import MAX_NAME, MAX_WEBHOOK_LIMIT
from synctec_webhooks.webhooks import MAX_DESCRIPTION

_MAX_URL = 2048
_ACCOUNT_PATTERN = "^" + ACCOUNT_ID.pattern + "$"
_ACCOUNT = {"type": "string", "pattern": _ACCOUNT_PATTERN, "example": "acct_1"}
_KEY_ID = {"type": "string", "pattern": "^" + KEY_ID.pattern + "$"}
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


_COMMON = {
    "401": _error(
        "missing, unknown or revoked credential (code unauthorized); an expired portal "
        "link (link_expired); a portal link revoked by 'expire all links' (link_revoked)"
    )
}
_READ_ONLY = {"403": _error("a read-only portal link cannot change anything (code read_only)")}
_OPERATOR_ONLY = {
    "403": _error(
        "the operator's route: an account's API key or portal link is refused "
        "(code operator_only; a read-only link on a change: read_only)"
    )
}
_ANY = [{"operator": []}, {"apiKey": []}, {"portalLink": ["read"]}, {"portalLink": ["manage"]}]
_MANAGE = [{"operator": []}, {"apiKey": []}, {"portalLink": ["manage"]}]
_SECURITY = {"any": _ANY, "manage": _MANAGE, "operator": [{"operator": []}]}
_BODY_ERRORS = {
    "400": _error("body is not a JSON object"),
    "413": _error("body larger than 1 MiB"),
    "422": _error("a field is invalid; `field` names it"),
}
_NOT_FOUND = {"404": _error("no such webhook, or another account's (code not_found)")}
_NO_ACCOUNT = {
    "404": _error("no such account, or another account than the credential's (not_found)")
}
_ID_PARAM = [{"name": "id", "in": "path", "required": True, "schema": _ID}]
_ACCOUNT_PARAM = [{"name": "account", "in": "path", "required": True, "schema": _ACCOUNT}]
_ACCOUNT_QUERY = {
    "name": "account_id",
    "in": "query",
    "required": False,
    "description": "one account only; an account credential may give only its own",
    "schema": _ACCOUNT,
}
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
        "account_id": _ACCOUNT,
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
        "account_id": _nullable(
            {"type": "string", "description": "null: a record nobody could read"}
        ),
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
        "securitySchemes": {
            "operator": {
                "type": "http",
                "scheme": "bearer",
                "description": "SYNCTEC_ADMIN_TOKEN: every account, every route",
            },
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "slk_...",
                "description": "an account's API key (made by the operator, shown once): "
                "that account's webhooks, dead letters and audit trail, to read and change",
            },
            "portalLink": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "the token of a portal link (`#token=` of the link): one "
                "account, scope read (GET only) or manage, until it expires or the "
                "operator expires all of the account's links",
            },
        },
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
            **_account_schemas(),
        },
    }


def _account_schemas() -> dict[str, Any]:
    account = {
        "id": _ACCOUNT,
        "name": _nullable({"type": "string"}),
        "created_at": {**_MS, "description": "epoch milliseconds; 0 for the default account"},
        "max_webhooks": _nullable(
            {"type": "integer", "description": "null: SYNCTEC_MAX_WEBHOOKS_PER_ACCOUNT"}
        ),
        "webhooks": {"type": "integer", "minimum": 0, "description": "how many it has"},
    }
    key = {
        "id": _KEY_ID,
        "prefix": {"type": "string", "pattern": "^slk_"},
        "name": _nullable({"type": "string"}),
        "created_at": _MS,
        "created_by": {"type": "string"},
        "revoked_at": _nullable(_MS),
    }
    created = {
        "id": _KEY_ID,
        "prefix": {"type": "string", "pattern": "^slk_"},
        "key": {"type": "string", "pattern": "^slk_", "description": "shown this once"},
        "account_id": _ACCOUNT,
        "name": _nullable({"type": "string"}),
        "created_at": _MS,
    }
    link = {
        "url": {"type": "string", "description": "the settings page, token in the fragment"},
        "token": {"type": "string"},
        "account_id": _ACCOUNT,
        "scope": {"type": "string", "enum": ["read", "manage"]},
        "link_id": {"type": "string", "pattern": "^lnk_"},
        "expires_at": {"type": "integer", "description": "epoch seconds"},
    }
    entry = {
        "id": {"type": "string", "pattern": "^aud_"},
        "account_id": _ACCOUNT,
        "at": {"type": "string", "format": "date-time"},
        "actor": _obj(
            ["kind", "id"],
            {
                "kind": {"type": "string", "enum": list(audit.ACTOR_KINDS)},
                "id": {"type": "string", "description": "operator, a key id, portal:<link>"},
            },
        ),
        "action": {"type": "string", "enum": list(audit.ACTIONS)},
        "target_id": _nullable({"type": "string"}),
        "detail": _nullable({"type": "string"}),
        "address": _nullable({"type": "string", "description": "the client's address"}),
    }
    me = {
        "kind": {"type": "string", "enum": ["operator", "api_key", "portal"]},
        "account_id": _nullable(_ACCOUNT),
        "scope": {"type": "string", "enum": ["read", "manage"]},
        "credential_id": {"type": "string"},
        "expires_at": _nullable({"type": "integer", "description": "epoch seconds"}),
    }
    return {
        "Account": _obj(list(account), account),
        "ApiKey": _obj(list(key), key),
        "ApiKeyCreated": _obj(list(created), created),
        "PortalLink": _obj(list(link), link),
        "AuditEntry": _obj(list(entry), entry),
        "Me": _obj(list(me), me),
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
    else:
        props["account_id"] = {
            **_nullable(_ACCOUNT),
            "description": "the operator's choice (absent or null: the default account); "
            "an account credential may give only its own",
        }
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
                "summary": "list webhooks (never their secrets): of every account for the "
                "operator (or of `account_id`), else of the credential's account",
                "parameters": [_ACCOUNT_QUERY],
                "responses": {
                    "200": _json(
                        _obj(
                            ["webhooks"], {"webhooks": {"type": "array", "items": _ref("Webhook")}}
                        ),
                        "every webhook, oldest first",
                    ),
                    **_NO_ACCOUNT,
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
                    **_NO_ACCOUNT,
                    "409": _error(
                        "the account has as many webhooks as it may (code webhook_limit; "
                        "the message names the account, its limit and what to do)"
                    ),
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
                + [_ACCOUNT_QUERY, _LIMIT, _CURSOR],
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
                    **_NO_ACCOUNT,
                    **_BAD_QUERY,
                    **_COMMON,
                },
            }
        },
        "/dead-letters/replay": {
            "post": {
                "summary": "replay the dead letters matching every filter given (of the "
                "credential's account only, for an account credential)",
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
                                    "account_id": _ACCOUNT,
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
                    **_NO_ACCOUNT,
                    **_BODY_ERRORS,
                    **_COMMON,
                },
            }
        },
    }


def _account_paths() -> dict[str, Any]:
    account = _json(_ref("Account"), "the account")
    nullable_name = _nullable({"type": "string", "maxLength": MAX_NAME})
    limit = _nullable({"type": "integer", "minimum": 0, "maximum": MAX_WEBHOOK_LIMIT})
    no_key = {"404": _error("no such account, or no such key of it (not_found)")}
    return {
        "/me": {
            "get": {
                "summary": "the credential making this request",
                "responses": {"200": _json(_ref("Me"), "who is calling"), **_COMMON},
            }
        },
        "/audit": {
            "get": {
                "summary": "the audit trail, newest first: every change, who made it, "
                "when and from where (the credential's account only, for an account "
                "credential)",
                "parameters": [_ACCOUNT_QUERY, _LIMIT],
                "responses": {
                    "200": _json(
                        _obj(["entries"], {"entries": _array(_ref("AuditEntry"))}),
                        "the newest entries kept (SYNCTEC_AUDIT_PER_ACCOUNT per account)",
                    ),
                    **_NO_ACCOUNT,
                    **_BAD_QUERY,
                    **_COMMON,
                },
            }
        },
        "/accounts": {
            "get": {
                "summary": "every account, by id, a page at a time",
                "parameters": [
                    {**_LIMIT},
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "the next_after of the page before",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(
                        _obj(
                            ["accounts", "next_after"],
                            {
                                "accounts": _array(_ref("Account")),
                                "next_after": _nullable({"type": "string"}),
                            },
                        ),
                        "a page of accounts; next_after is null on the last page",
                    ),
                    **_BAD_QUERY,
                    **_COMMON,
                },
            },
            "post": {
                "summary": "add an account",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                ["id"],
                                {"id": _ACCOUNT, "name": nullable_name, "max_webhooks": limit},
                                additionalProperties=False,
                            )
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("Account"), "added"),
                    "409": _error("an account with this id exists (code already_exists)"),
                    **_BODY_ERRORS,
                    **_COMMON,
                },
            },
        },
        "/accounts/{account}": {
            "parameters": _ACCOUNT_PARAM,
            "get": {
                "summary": "one account (an account credential: its own only)",
                "responses": {"200": account, **_NO_ACCOUNT, **_COMMON},
            },
            "patch": {
                "summary": "rename an account or change its webhook limit",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                [],
                                {"name": nullable_name, "max_webhooks": limit},
                                additionalProperties=False,
                                minProperties=1,
                            )
                        }
                    },
                },
                "responses": {"200": account, **_BODY_ERRORS, **_NO_ACCOUNT, **_COMMON},
            },
        },
        "/accounts/{account}/api-keys": {
            "parameters": _ACCOUNT_PARAM,
            "get": {
                "summary": "the account's API keys (revoked ones too; never the keys)",
                "responses": {
                    "200": _json(
                        _obj(["api_keys"], {"api_keys": _array(_ref("ApiKey"))}), "its keys"
                    ),
                    **_NO_ACCOUNT,
                    **_COMMON,
                },
            },
            "post": {
                "summary": "a new API key for the account; the answer holds it, this once",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": _obj([], {"name": nullable_name}, additionalProperties=False)
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("ApiKeyCreated"), "the key, shown this once"),
                    **_BODY_ERRORS,
                    **_NO_ACCOUNT,
                    **_COMMON,
                },
            },
        },
        "/accounts/{account}/api-keys/{key_id}": {
            "parameters": [
                *_ACCOUNT_PARAM,
                {"name": "key_id", "in": "path", "required": True, "schema": _KEY_ID},
            ],
            "delete": {
                "summary": "revoke a key: refused from now on, on every replica within "
                "seconds; it stays listed with revoked_at",
                "responses": {"204": {"description": "revoked"}, **no_key, **_COMMON},
            },
        },
        "/accounts/{account}/portal-links": {
            "parameters": _ACCOUNT_PARAM,
            "post": {
                "summary": "a link that opens the settings page for this account",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                [],
                                {
                                    "scope": {
                                        **_nullable({"type": "string", "enum": ["read", "manage"]}),
                                        "description": "absent or null: manage",
                                    },
                                    "ttl_seconds": {
                                        **_nullable({"type": "integer", "minimum": 1}),
                                        "description": "absent or null: "
                                        "SYNCTEC_PORTAL_LINK_TTL; at most "
                                        "SYNCTEC_PORTAL_LINK_MAX_TTL (else a 400 invalid)",
                                    },
                                },
                                additionalProperties=False,
                            )
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("PortalLink"), "the link"),
                    **_BODY_ERRORS,
                    "400": _error(
                        "body is not a JSON object (invalid_body), or ttl_seconds is out of "
                        "range (invalid)"
                    ),
                    **_NO_ACCOUNT,
                    **_COMMON,
                },
            },
        },
        "/accounts/{account}/portal-links/revoke": {
            "parameters": _ACCOUNT_PARAM,
            "post": {
                "summary": "expire every portal link of the account issued so far",
                "responses": {"204": {"description": "revoked"}, **_NO_ACCOUNT, **_COMMON},
            },
        },
    }


# Who may call what (`x-required-credential`, see the module docstring); the rest: manage.
_ACCESS = {
    ("get", "/openapi.json"): "any",
    ("get", "/me"): "any",
    ("get", "/webhooks"): "any",
    ("get", "/webhooks/{id}"): "any",
    ("get", "/webhooks/{id}/attempts"): "any",
    ("get", "/dead-letters"): "any",
    ("get", "/audit"): "any",
    ("get", "/accounts/{account}"): "any",
    ("get", "/accounts"): "operator",
    ("post", "/accounts"): "operator",
    ("patch", "/accounts/{account}"): "operator",
    ("get", "/accounts/{account}/api-keys"): "operator",
    ("post", "/accounts/{account}/api-keys"): "operator",
    ("delete", "/accounts/{account}/api-keys/{key_id}"): "operator",
    ("post", "/accounts/{account}/portal-links"): "operator",
    ("post", "/accounts/{account}/portal-links/revoke"): "operator",
}
_METHODS = ("get", "post", "patch", "delete", "put")


def _with_access(paths: dict[str, Any]) -> dict[str, Any]:
    for path, item in paths.items():
        for method, op in item.items():
            if method not in _METHODS:
                continue
            access = _ACCESS.get((method, path), "manage")
            op["security"] = _SECURITY[access]
            op["x-required-credential"] = access
            if access == "operator":
                op["responses"].update(_OPERATOR_ONLY)
            elif access == "manage":
                op["responses"].update(_READ_ONLY)
    return paths


def build_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StoreLink webhooks admin API",
            "version": "1",
            "description": "Manage webhooks, see delivery attempts, replay dead letters, "
            "manage accounts, their API keys and portal links, read the audit trail. "
            "Every route needs `Authorization: Bearer <token>`: the operator token "
            "(SYNCTEC_ADMIN_TOKEN, every account), an account's API key (`slk_...`, that "
            "account) or a portal link's token (that account; read or manage). "
            "`x-required-credential` on each operation says which: `any`, `manage` (not a "
            "read-only link) or `operator`. Another account's webhook, dead letter, key or "
            "account is a 404 not_found, exactly as one that does not exist.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": _ANY,
        "paths": _with_access({**_paths(), **_account_paths()}),
        "components": _components(),
    }
