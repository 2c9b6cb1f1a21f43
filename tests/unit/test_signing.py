"""Signing: known answers computed here with hmac directly, and the reference
`standardwebhooks` library as an independent verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from synctec_webhooks.signing import (
    SECRET_PREFIX,
    generate_secret,
    secret_key_bytes,
    signature_headers,
    standard_signature,
    storelink_signature,
    verify_standard,
    verify_storelink,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"\xff" * 32).decode()
BODY = b'{"type":"product.updated","data":{"id":"p_1","title":"Caf\xc3\xa9"}}'
NOW = 1_700_000_000


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def _headers(secrets: list[str], *, timestamp: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return signature_headers(
        secrets=secrets,
        event_type="product.updated",
        event_id="evt_1",
        delivery_id="dlv_1",
        attempt=2,
        timestamp=timestamp,
        body=body,
    )


# --- secrets -------------------------------------------------------------------------


def test_generate_secret_is_32_random_bytes_in_base64() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith(SECRET_PREFIX)
    assert len(secret_key_bytes(first)) == 32
    assert first != second


def test_secret_key_bytes_decodes_after_prefix() -> None:
    assert secret_key_bytes(SECRET) == KEY


def test_secret_key_bytes_tolerates_missing_padding() -> None:
    assert secret_key_bytes("whsec_" + base64.b64encode(b"abcd").decode().rstrip("=")) == b"abcd"
    assert secret_key_bytes("whsec_YWJj") == b"abc"
    assert secret_key_bytes("whsec_YWI") == b"ab"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("c2VjcmV0", "must start with 'whsec_'"),
        ("WHSEC_c2VjcmV0", "must start with 'whsec_'"),
        ("whsec_", "is empty"),
        ("whsec_not base64!", "must be standard base64"),
        ("whsec_a-b_", "must be standard base64"),
    ],
)
def test_secret_key_bytes_refuses_malformed(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secret_key_bytes(secret)


def test_secret_errors_never_repeat_the_secret() -> None:
    for secret in ["hunter2-hunter2", "whsec_hunter2-hunter2"]:
        with pytest.raises(ValueError, match="secret") as info:
            secret_key_bytes(secret)
        assert "hunter2" not in str(info.value)


# --- known answers -------------------------------------------------------------------


def test_storelink_signature_known_answer() -> None:
    # The key is the whole secret string, prefix included, as UTF-8 text.
    expected = _b64_hmac(SECRET.encode("utf-8"), BODY)
    assert storelink_signature(SECRET, BODY) == expected


def test_storelink_signature_fixed_vector() -> None:
    # RFC 4231 test case 2, so the construction is checked against a published value.
    digest = bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert storelink_signature("Jefe", b"what do ya want for nothing?") == (
        base64.b64encode(digest).decode()
    )


def test_standard_signature_known_answer() -> None:
    expected = "v1," + _b64_hmac(KEY, b"dlv_1.1700000000." + BODY)
    assert standard_signature(SECRET, "dlv_1", NOW, BODY) == expected


# --- headers -------------------------------------------------------------------------


def test_signature_headers_carry_every_field() -> None:
    headers = _headers([SECRET])
    assert headers == {
        "Content-Type": "application/json",
        "X-StoreLink-Signature": _b64_hmac(SECRET.encode(), BODY),
        "X-StoreLink-Event": "product.updated",
        "X-StoreLink-Event-Id": "evt_1",
        "X-StoreLink-Delivery-Id": "dlv_1",
        "X-StoreLink-Attempt": "2",
        "X-StoreLink-Timestamp": str(NOW),
        "webhook-id": "dlv_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1," + _b64_hmac(KEY, b"dlv_1.1700000000." + BODY),
    }


def test_webhook_id_is_stable_across_attempts() -> None:
    first = signature_headers(
        secrets=[SECRET],
        event_type="t",
        event_id="e",
        delivery_id="d",
        attempt=1,
        timestamp=NOW,
        body=BODY,
    )
    second = signature_headers(
        secrets=[SECRET],
        event_type="t",
        event_id="e",
        delivery_id="d",
        attempt=2,
        timestamp=NOW + 5,
        body=BODY,
    )
    assert first["webhook-id"] == second["webhook-id"] == "d"
    assert first["X-StoreLink-Attempt"] == "1"
    assert second["X-StoreLink-Attempt"] == "2"


def test_rotation_signs_standard_with_every_secret_storelink_with_the_first() -> None:
    headers = _headers([SECRET, OTHER_SECRET])
    entries = headers["webhook-signature"].split(" ")
    assert entries == [
        standard_signature(SECRET, "dlv_1", NOW, BODY),
        standard_signature(OTHER_SECRET, "dlv_1", NOW, BODY),
    ]
    assert headers["X-StoreLink-Signature"] == storelink_signature(SECRET, BODY)


def test_signature_headers_need_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        _headers([])


# --- the reference library accepts what we send ---------------------------------------


def test_reference_library_verifies_our_headers() -> None:
    headers = _headers([SECRET], timestamp=int(time.time()))
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "product.updated",
        "data": {"id": "p_1", "title": "Café"},
    }


@pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET])
def test_reference_library_verifies_with_either_rotated_secret(secret: str) -> None:
    headers = _headers([SECRET, OTHER_SECRET], timestamp=int(time.time()))
    Webhook(secret).verify(BODY, headers)


def test_reference_library_refuses_tampered_body() -> None:
    headers = _headers([SECRET], timestamp=int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY + b" ", headers)


def test_reference_library_refuses_wrong_secret() -> None:
    headers = _headers([SECRET], timestamp=int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(BODY, headers)


def test_reference_library_refuses_stale_timestamp() -> None:
    headers = _headers([SECRET], timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


# --- our verifiers -------------------------------------------------------------------


def test_verify_storelink_accepts_and_refuses() -> None:
    header = storelink_signature(SECRET, BODY)
    assert verify_storelink(SECRET, BODY, header)
    assert verify_storelink(SECRET, BODY, f" {header} ")
    assert not verify_storelink(SECRET, BODY + b"x", header)
    assert not verify_storelink(OTHER_SECRET, BODY, header)
    assert not verify_storelink(SECRET, BODY, "")
    assert not verify_storelink(SECRET, BODY, "sha256=é")


def test_verify_standard_accepts_our_headers_case_insensitively() -> None:
    headers = _headers([SECRET])
    assert verify_standard(SECRET, headers, BODY, now=NOW)
    upper = {name.upper(): value for name, value in headers.items()}
    assert verify_standard(SECRET, upper, BODY, now=NOW)


@pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET])
def test_verify_standard_accepts_any_listed_signature(secret: str) -> None:
    assert verify_standard(secret, _headers([SECRET, OTHER_SECRET]), BODY, now=NOW)


@pytest.mark.parametrize(
    ("now", "ok"),
    [(NOW, True), (NOW + 300, True), (NOW - 300, True), (NOW + 301, False), (NOW - 301, False)],
)
def test_verify_standard_timestamp_tolerance(now: int, ok: bool) -> None:
    assert verify_standard(SECRET, _headers([SECRET]), BODY, now=now) is ok


def test_verify_standard_custom_tolerance() -> None:
    assert not verify_standard(SECRET, _headers([SECRET]), BODY, now=NOW + 11, tolerance=10)


def _tampered(name: str, value: str | None) -> dict[str, str]:
    headers = _headers([SECRET])
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    return headers


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(_tampered("webhook-id", "dlv_2"), id="other-id"),
        pytest.param(_tampered("webhook-id", None), id="no-id"),
        pytest.param(_tampered("webhook-timestamp", str(NOW + 1)), id="other-timestamp"),
        pytest.param(_tampered("webhook-timestamp", "soon"), id="bad-timestamp"),
        pytest.param(_tampered("webhook-timestamp", "²"), id="unicode-digit-timestamp"),
        pytest.param(_tampered("webhook-signature", None), id="no-signature"),
        pytest.param(_tampered("webhook-signature", ""), id="empty-signature"),
        pytest.param(_tampered("webhook-signature", "v1,???"), id="bad-base64"),
        pytest.param(_tampered("webhook-signature", "garbage v2,abc v1"), id="junk-entries"),
    ],
)
def test_verify_standard_refuses_bad_headers(headers: dict[str, str]) -> None:
    assert not verify_standard(SECRET, headers, BODY, now=NOW)


def test_verify_standard_refuses_tampered_body_and_wrong_secret() -> None:
    headers = _headers([SECRET])
    assert not verify_standard(SECRET, headers, BODY + b" ", now=NOW)
    assert not verify_standard(OTHER_SECRET, headers, BODY, now=NOW)


def test_verify_standard_skips_unknown_versions() -> None:
    headers = _headers([SECRET])
    headers["webhook-signature"] = "v2,abcd " + headers["webhook-signature"]
    assert verify_standard(SECRET, headers, BODY, now=NOW)


def test_verify_standard_accepts_reference_library_signatures() -> None:
    signature = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert verify_standard(SECRET, headers, BODY, now=NOW)


def test_verify_standard_malformed_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="must start with"):
        verify_standard("plain-secret", _headers([SECRET]), BODY, now=NOW)
