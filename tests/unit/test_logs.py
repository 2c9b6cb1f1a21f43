"""Log lines: JSON when asked, one line each, secrets masked in either format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from synctec_webhooks.ops import logs
from synctec_webhooks.signing import generate_secret, standard_signature


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw= rotated", "secret whsec_*** rotated"),
        (
            "POST https://user:p%40ss@hooks.example.com/x failed",
            "POST https://***@hooks.example.com/x failed",
        ),
        (
            "redirect to http://admin@10.0.0.1/ not followed",
            "redirect to http://***@10.0.0.1/ not followed",
        ),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        (
            "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            "webhook-signature: v1,***",
        ),
        ("https://hooks.example.com/x?a=b@c", "https://hooks.example.com/x?a=b@c"),  # no userinfo
        (
            "delivery msg_284c642d attempt 2 failed (HTTP 500)",
            "delivery msg_284c642d attempt 2 failed (HTTP 500)",
        ),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert logs.redact(text) == shown


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    yield out
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def configure(fmt: str, out: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", out)
    logs.configure("DEBUG", fmt)


def test_json_lines(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    configure("json", stream, monkeypatch)
    secret = generate_secret()
    log = logging.getLogger("synctec_webhooks.consumers.delivery.dispatcher")
    log.warning("dead-lettered %s (%s)", "msg_1", "retries_exhausted", extra={"webhook_id": "wh_1"})
    try:
        raise ValueError(f"bad secret {secret}\nsecond line")
    except ValueError:
        log.exception("dispatch failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the traceback stays inside its line
    first, second = (json.loads(line) for line in lines)
    assert (
        first["level"] == "WARNING"
        and first["logger"] == "synctec_webhooks.consumers.delivery.dispatcher"
    )
    assert first["msg"] == "dead-lettered msg_1 (retries_exhausted)"
    assert first["webhook_id"] == "wh_1"
    assert first["ts"].endswith("+00:00")
    assert "Traceback" in second["exc"] and "second line" in second["exc"]
    assert secret not in stream.getvalue() and "whsec_***" in second["exc"]


def test_text_lines_are_masked_too(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    configure("text", stream, monkeypatch)
    secret = generate_secret()
    signature = standard_signature(secret, "msg_1", 1700000000, b"{}")
    logging.getLogger("x").info("sent with %s to https://u:p@h/ (%s)", signature, secret)
    line = stream.getvalue()
    assert " INFO x: sent with v1,*** to https://***@h/ (whsec_***)" in line
    assert secret not in line and signature not in line


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="SYNCTEC_LOG_FORMAT='xml'"):
        logs.configure("INFO", "xml")
