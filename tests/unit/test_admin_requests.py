"""Admin API request bodies: every refusal names its field."""

from __future__ import annotations

from typing import Any

import pytest

from synctec_webhooks.admin.errors import ApiError
from synctec_webhooks.admin.requests import (
    parse_account_create,
    parse_account_patch,
    parse_create,
    parse_link,
    parse_patch,
    parse_replay,
    parse_test,
    query_limit,
)


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"events": ["*"]}, "url", "required"),
        ({"url": "https://e.com"}, "events", "required"),
        ({"url": None, "events": ["*"]}, "url", "expected a string, got null"),
        ({"url": "https://e.com", "events": "*"}, "events", "expected an array"),
        ({"url": "https://e.com", "events": []}, "events", "at least one"),
        ({"url": "https://e.com", "events": [1]}, "events", "expected strings"),
        ({"url": "https://e.com", "events": ["*"], "description": 3}, "description", "string"),
        ({"url": "https://e.com", "events": ["*"], "enabled": True}, "enabled", "unknown field"),
    ],
)
def test_create_refusals(body: dict[str, Any], field: str, needle: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_create(body)
    assert (info.value.status, info.value.field) == (422, field)
    assert needle in info.value.message


def test_create_accepts_the_minimum() -> None:
    assert parse_create({"url": "https://e.com", "events": ["*"]}) == (
        "https://e.com",
        ["*"],
        None,
        None,
    )
    assert parse_create({"url": "https://e.com", "events": ["*"], "account_id": "a1"})[3] == "a1"
    with pytest.raises(ApiError) as info:
        parse_create({"url": "https://e.com", "events": ["*"], "account_id": "../x"})
    assert info.value.field == "account_id"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 200, None, None),
        ({"scope": "read"}, 200, None, None),
        ({"scope": "admin"}, 422, "invalid_field", "scope"),
        ({"scope": ""}, 422, "invalid_field", "scope"),
        ({"ttl_seconds": 0}, 400, "invalid", "ttl_seconds"),
        ({"ttl_seconds": 3601}, 400, "invalid", "ttl_seconds"),
        ({"ttl_seconds": "60"}, 400, "invalid", "ttl_seconds"),
        ({"ttl_seconds": True}, 400, "invalid", "ttl_seconds"),
        ({"expires": 5}, 422, "invalid_field", "expires"),
    ],
)
def test_portal_link_requests(
    body: dict[str, Any], status: int, code: str | None, field: str | None
) -> None:
    if status == 200:
        scope, ttl = parse_link(body, 600, 3600)
        assert (scope, ttl) == (body.get("scope", "manage"), 600)
        return
    with pytest.raises(ApiError) as info:
        parse_link(body, 600, 3600)
    assert (info.value.status, info.value.code, info.value.field) == (status, code, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "id"),
        ({"id": "has space"}, "id"),
        ({"id": "a", "max_webhooks": -1}, "max_webhooks"),
        ({"id": "a", "max_webhooks": "5"}, "max_webhooks"),
        ({"id": "a", "name": "x" * 201}, "name"),
        ({"id": "a", "links_not_before": 1}, "links_not_before"),
    ],
)
def test_account_refusals(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_account_create(body)
    assert info.value.field == field
    assert parse_account_create({"id": "acct_1"}) == ("acct_1", None, None)
    assert parse_account_patch({"max_webhooks": None}) == {"max_webhooks": None}
    with pytest.raises(ApiError):
        parse_account_patch({})


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body"), ({"enabled": 1}, "enabled"), ({"secret": "x"}, "secret"), ({"url": 1}, "url")],
)
def test_patch_refusals(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_patch(body)
    assert info.value.field == field


def test_patch_keeps_an_explicit_null_description() -> None:
    assert parse_patch({"description": None, "enabled": False}) == {
        "description": None,
        "enabled": False,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"all": False}, "all"),
        ({"dead_letter_ids": "dl_1"}, "dead_letter_ids"),
        ({"dead_letter_ids": ["x"] * 1001}, "dead_letter_ids"),
        ({"webhook": "wh_1"}, "webhook"),
        # An empty filter matches everything: it must not stand in for "all".
        ({"event_type": ""}, "event_type"),
        ({"webhook_id": "", "event_id": "evt_1"}, "webhook_id"),
    ],
)
def test_replay_needs_a_filter_or_all(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_replay(body)
    assert info.value.field == field
    assert parse_replay({"all": True}) == {}
    assert parse_replay({"webhook_id": "wh_1"}) == {"webhook_id": "wh_1"}
    assert parse_replay({"account_id": "a1"}) == {"account_id": "a1"}


def test_test_event_type() -> None:
    assert parse_test({}) is None
    assert parse_test({"event_type": "sync.failed"}) == "sync.failed"
    with pytest.raises(ApiError, match="unknown event type"):
        parse_test({"event_type": "order.created"})


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "1001", "9" * 5000, "١٢"])
def test_limit_refusals(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        query_limit({"limit": raw}, 50, 1000)
    assert info.value.status == 400
    assert query_limit({}, 50, 1000) == 50 and query_limit({"limit": "7"}, 50, 1000) == 7
