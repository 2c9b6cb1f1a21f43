"""Webhook signatures: the StoreLink header and Standard Webhooks, sent side by side.

X-StoreLink-Signature
    base64(HMAC-SHA256(key = the secret string as UTF-8, message = the body)). This is
    what a receiver does when its docs say "compute the HMAC of the payload using your
    webhook secret", so it must stay exactly that.

webhook-signature (https://www.standardwebhooks.com/)
    "v1," + base64(HMAC-SHA256(key = base64-decoded part after "whsec_",
    message = "{webhook-id}.{webhook-timestamp}.{body}")). Binding the id and timestamp
    lets receivers refuse replays; listing one signature per active secret lets
    merchants rotate secrets without a window of failed verifications.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import secrets as _random
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32


def generate_secret() -> str:
    """A fresh secret: "whsec_" + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(_SECRET_BYTES)).decode("ascii")


@functools.lru_cache(maxsize=4096)
def secret_key_bytes(secret: str) -> bytes:
    """The Standard Webhooks HMAC key: the base64-decoded part after "whsec_".

    Cached: every POST signs with it, and a worker signs for few distinct secrets.

    Missing "=" padding is tolerated (the reference library does the same). The error
    messages never repeat the secret, so they are safe to log.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret: must start with {SECRET_PREFIX!r}")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"secret: the part after {SECRET_PREFIX!r} must be standard base64"
        ) from None
    if not key:
        raise ValueError(f"secret: the part after {SECRET_PREFIX!r} is empty")
    return key


def _hmac_b64(key: bytes, message: bytes) -> str:
    # hmac.digest is OpenSSL's one-shot HMAC: a third of the cost of hmac.new().digest().
    return base64.b64encode(hmac.digest(key, message, "sha256")).decode("ascii")


def storelink_signature(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(key=secret.encode("utf-8"), body)), no version prefix."""
    return _hmac_b64(secret.encode("utf-8"), body)


def _standard_message(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature entry: "v1,<base64>"."""
    return "v1," + _hmac_b64(secret_key_bytes(secret), _standard_message(msg_id, timestamp, body))


def signature_headers(
    *,
    secrets: Sequence[str],
    event_type: str,
    event_id: str,
    delivery_id: str,
    attempt: int,
    timestamp: int,
    body: bytes,
) -> dict[str, str]:
    """Every header of one POST. `secrets[0]` is the current secret, the rest are the
    older ones still accepted during a rotation.

    X-StoreLink-Signature carries the signature of `secrets[0]` only: receivers of that
    scheme compare the header verbatim with the HMAC they compute, so a comma-joined list
    would fail for every one of them. Rotation is served by webhook-signature, whose
    format is defined as a space-separated list.
    """
    if not secrets:
        raise ValueError("secrets: at least one secret is required")
    return {
        "Content-Type": "application/json",
        "X-StoreLink-Signature": storelink_signature(secrets[0], body),
        "X-StoreLink-Event": event_type,
        "X-StoreLink-Event-Id": event_id,
        "X-StoreLink-Delivery-Id": delivery_id,
        "X-StoreLink-Attempt": str(attempt),
        "X-StoreLink-Timestamp": str(timestamp),
        # The delivery id, not the attempt, so receivers can de-duplicate retries.
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(s, delivery_id, timestamp, body) for s in secrets
        ),
    }


def verify_storelink(secret: str, body: bytes, header: str) -> bool:
    """True if `header` is the X-StoreLink-Signature of `body` under `secret`."""
    expected = storelink_signature(secret, body).encode("ascii")
    # Bytes, because compare_digest refuses non-ASCII str and a header may hold anything.
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


def verify_standard(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """True if any "v1," entry of webhook-signature matches and webhook-timestamp is
    within `tolerance` seconds of `now`. Header names are matched case-insensitively.

    Raises ValueError only for a malformed `secret` (a configuration error, not a bad
    request); everything wrong with the request itself gives False.
    """
    key = secret_key_bytes(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    signature = lowered.get("webhook-signature")
    timestamp = _parse_timestamp(lowered.get("webhook-timestamp"))
    if not msg_id or not signature or timestamp is None:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(key, _standard_message(msg_id, timestamp, body), hashlib.sha256).digest()
    return any(hmac.compare_digest(expected, sig) for sig in _v1_signatures(signature))


def _parse_timestamp(value: str | None) -> int | None:
    text = (value or "").strip()
    # isascii too: str.isdigit() accepts digits like "²" that int() refuses.
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded "v1," entries; other versions and malformed entries are skipped."""
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
