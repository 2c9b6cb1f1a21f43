"""Webhook secrets sealed at rest: what is on the topic, who can open it, rotation."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from synctec_webhooks import schemas
from synctec_webhooks.config import Settings
from synctec_webhooks.matching import Subscription
from synctec_webhooks.secrets_crypto import (
    SecretBox,
    SecretKeyError,
    SigningSecret,
    ensure_key_file,
    load_box,
    sealing_box,
    signing_secrets,
)
from synctec_webhooks.serialization import SingleObjectCodec
from synctec_webhooks.ssrf import Guard
from synctec_webhooks.subscriptions import from_record, to_record
from synctec_webhooks.webhooks import create, rotated

KEY = Fernet.generate_key().decode()
NOW = 1_738_161_000_000


def _box(*keys: str) -> SecretBox:
    return SecretBox(list(keys) or [KEY])


def test_seal_and_open_round_trip() -> None:
    box = _box()
    token = box.seal("wh_1", [SigningSecret("whsec_a"), SigningSecret("whsec_b", NOW)])
    assert "whsec_" not in token
    assert box.open("wh_1", token) == [SigningSecret("whsec_a"), SigningSecret("whsec_b", NOW)]


def test_a_wrong_key_or_another_webhook_is_refused_without_leaking() -> None:
    token = _box().seal("wh_1", [SigningSecret("whsec_a")])
    with pytest.raises(SecretKeyError, match="SYNCTEC_SECRET_KEY is not the key") as info:
        _box(Fernet.generate_key().decode()).open("wh_1", token)
    assert "whsec_a" not in str(info.value)
    with pytest.raises(SecretKeyError, match="belongs to another webhook"):
        _box().open("wh_2", token)


def test_old_keys_still_open_after_a_key_rotation() -> None:
    token = _box().seal("wh_1", [SigningSecret("whsec_a")])
    assert _box(Fernet.generate_key().decode(), KEY).open("wh_1", token)[0].secret == "whsec_a"


def test_a_malformed_key_names_the_variable() -> None:
    with pytest.raises(SecretKeyError, match="SYNCTEC_SECRET_KEY: not a Fernet key"):
        SecretBox(["short"])


def test_the_topic_record_has_no_clear_secret_and_reads_back() -> None:
    sub = create("https://example.com/h", ["*"], None, guard=Guard(), box=_box(), now_ms=NOW)
    record = to_record(sub)
    assert record["secret"] == "" and record["sealed_secrets"]
    codec = SingleObjectCodec()
    data = codec.encode("t.subscriptions", schemas.SUBSCRIPTION, record)
    assert sub.secret.encode() not in data
    assert sub.secret.removeprefix("whsec_").encode() not in data
    back = from_record(codec.decode("t.subscriptions", data)[1])
    assert back.secret == "" and signing_secrets(back, _box(), NOW) == [sub.secret]


def test_a_record_written_before_sealing_still_reads_and_signs() -> None:
    # The v1 schema, as records written by the trunk release are on the topic.
    v1 = json.loads((schemas.SCHEMA_DIR / "history" / "subscription.v1.avsc").read_text())
    codec = SingleObjectCodec(schemas.SchemaStore())
    old = {
        "id": "wh_old", "url": "https://example.com/h", "events": ["*"],
        "secret": "whsec_c2VjcmV0", "description": None, "enabled": True,
        "created_at": NOW, "updated_at": 0,
    }  # fmt: skip
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(v1, named_schemas={}), old)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(v1), "CRC-64-AVRO"))
    data = b"\xc3\x01" + fp + body.getvalue()
    sub = from_record(codec.decode("t.subscriptions", data)[1])
    assert (sub.sealed_secrets, sub.enabled_at, sub.disabled_reason) == (None, 0, None)
    assert signing_secrets(sub, None, NOW) == ["whsec_c2VjcmV0"]


def test_rotation_keeps_the_old_secret_signing_for_the_grace_period() -> None:
    box = _box()
    sub = create("https://example.com/h", ["*"], None, guard=Guard(), box=box, now_ms=NOW)
    new = rotated(sub, box=box, now_ms=NOW, grace_ms=1000)
    assert new.secret != sub.secret and new.rotation_ends_at == NOW + 1000
    assert signing_secrets(new, box, NOW + 999) == [new.secret, sub.secret]
    assert signing_secrets(new, box, NOW + 1000) == [new.secret]
    again = rotated(new, box=box, now_ms=NOW + 10, grace_ms=1000)
    # Only the newest old secret is kept: two rotations in a row retire the first.
    assert signing_secrets(again, box, NOW + 20) == [again.secret, new.secret]


def test_a_sealed_secret_without_a_key_stops_with_a_clear_error() -> None:
    sub = create("https://example.com/h", ["*"], None, guard=Guard(), box=_box(), now_ms=NOW)
    sealed = Subscription(
        id=sub.id, url=sub.url, events=sub.events, secret="", sealed_secrets=sub.sealed_secrets
    )
    with pytest.raises(SecretKeyError, match="SYNCTEC_SECRET_KEY is not set"):
        signing_secrets(sealed, None, NOW)


def test_local_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path / "state"))
    assert load_box(settings) is None
    box = ensure_key_file(settings)
    path = tmp_path / "state" / "secret.key"
    assert box is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    token = box.seal("wh_1", [SigningSecret("whsec_a")])
    again = load_box(settings)
    assert again is not None and again.open("wh_1", token)[0].secret == "whsec_a"
    assert ensure_key_file(settings).open("wh_1", token)[0].secret == "whsec_a"  # not remade
    # An explicit key wins over the file.
    assert load_box(Settings(state_dir=str(tmp_path / "state"), secret_keys=(KEY,))) is not None


def test_settings_repr_hides_keys_and_token() -> None:
    settings = Settings(secret_keys=(KEY,), admin_token="t" * 20)
    assert KEY not in repr(settings) and "t" * 20 not in repr(settings)


def test_only_run_makes_a_key_file_the_others_refuse_naming_what_to_set(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path / "state"))
    with pytest.raises(SecretKeyError, match="SYNCTEC_SECRET_KEY is not set") as info:
        sealing_box(settings)
    assert "SYNCTEC_STATE_DIR" in str(info.value) and str(tmp_path / "state") in str(info.value)
    assert list(tmp_path.iterdir()) == []
    made = ensure_key_file(settings)  # what `run` does, in its state folder
    token = made.seal("wh_1", [SigningSecret("whsec_a")])
    assert sealing_box(settings).open("wh_1", token)[0].secret == "whsec_a"
    assert sealing_box(Settings(state_dir=str(tmp_path / "elsewhere"), secret_keys=(KEY,)))


def test_resealing_moves_a_token_under_the_first_key_once() -> None:
    old, new = KEY, Fernet.generate_key().decode()
    secrets = [SigningSecret("whsec_a"), SigningSecret("whsec_b", NOW)]
    token = _box(old).seal("wh_1", secrets)
    both = _box(new, old)
    assert not both.sealed_with_first(token)
    resealed = both.resealed("wh_1", token)
    assert resealed is not None and both.sealed_with_first(resealed)
    assert _box(new).open("wh_1", resealed) == secrets  # the old key is no longer needed
    assert both.resealed("wh_1", resealed) is None  # idempotent: nothing to do
    with pytest.raises(SecretKeyError, match="not the key"):
        _box(new).resealed("wh_1", token)  # a key that is not listed cannot be resealed
    with pytest.raises(SecretKeyError, match="belongs to another webhook"):
        both.resealed("wh_2", token)
