"""Webhook signing secrets, sealed at rest on the subscriptions topic.

Anyone who can read `<prefix>.subscriptions` (every worker, every operator with a
console consumer) would otherwise read every merchant's signing secret. So a record's
`secret` field stays empty and `sealed_secrets` holds a Fernet token (AES-128-CBC +
HMAC-SHA256, from `cryptography`) of the signing secrets: the current one first, then
any rotated-out ones with the time they stop signing. The webhook id is sealed in with
them and checked on opening, so a token copied onto another webhook's record is refused.

Keys: `SYNCTEC_SECRET_KEY`, one or more comma-separated Fernet keys (the first seals,
all open, so keys can be rotated; `SecretBox.resealed` moves a token under the first key,
for `webhooks reseal`). When it is unset, `$SYNCTEC_STATE_DIR/secret.key` is used if
present. Only `run` makes that file (`ensure_key_file`), in its own state folder, so
local use needs no setup; anything else that seals (`webhooks add`, the admin service)
refuses without a key (`sealing_box`) rather than make one the workers do not have.
Workers only open (`SecretOpener`): a webhook whose secrets they cannot open raises
`SecretKeyError` for its records alone, which the dispatcher dead-letters, logged once
per webhook; the other webhooks are not held up.

Exceptions::

    ConfigError
    └── SecretKeyError      no key, or a key that cannot open what was sealed
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from synctec_webhooks.config import Settings
from synctec_webhooks.errors import SecretKeyError
from synctec_webhooks.matching import Subscription

logger = logging.getLogger(__name__)

ENV_VAR = "SYNCTEC_SECRET_KEY"
KEY_FILE = "secret.key"


_OPENED_CACHE = 100_000  # webhooks whose opened secrets a process keeps


@dataclass(frozen=True)
class SigningSecret:
    secret: str
    expires_at: int | None = None  # epoch ms after which it no longer signs; None: current

    def live(self, now_ms: int) -> bool:
        return self.expires_at is None or self.expires_at > now_ms


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError(f"{ENV_VAR}: no key given")
        try:
            fernets = [Fernet(k.encode("ascii")) for k in keys]
        except (ValueError, UnicodeError):
            raise SecretKeyError(
                f"{ENV_VAR}: not a Fernet key (32 url-safe base64 bytes); make one with "
                '`python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"`'
            ) from None
        self._first = fernets[0]
        self._fernet = MultiFernet(fernets)
        # Opened tokens by (webhook id, token): a delivery worker signs every POST, and
        # a Fernet decryption per POST was 7% of its CPU (docs/benchmarks.md). A token
        # is immutable, so an entry never goes stale; a new secret is a new token.
        self._opened: dict[tuple[str, str], tuple[SigningSecret, ...]] = {}

    def seal(self, webhook_id: str, secrets: Sequence[SigningSecret]) -> str:
        payload = {
            "webhook_id": webhook_id,
            "secrets": [{"secret": s.secret, "expires_at": s.expires_at} for s in secrets],
        }
        return self._fernet.encrypt(json.dumps(payload).encode()).decode("ascii")

    def open(self, webhook_id: str, token: str) -> list[SigningSecret]:
        cached = self._opened.get((webhook_id, token))
        if cached is not None:
            return list(cached)
        opened = self._open(webhook_id, token)
        if len(self._opened) >= _OPENED_CACHE:
            self._opened.clear()  # rotations and removals leave dead entries behind
        self._opened[(webhook_id, token)] = tuple(opened)
        return opened

    def sealed_with_first(self, token: str) -> bool:
        """Whether the first (sealing) key opens `token` by itself."""
        try:
            self._first.decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError, UnicodeError):
            return False
        return True

    def resealed(self, webhook_id: str, token: str) -> str | None:
        """`token`'s secrets sealed again under the first key; None when they already
        are. SecretKeyError when no listed key opens it (or it is another webhook's)."""
        opened = self.open(webhook_id, token)
        if self.sealed_with_first(token):
            return None
        return self.seal(webhook_id, opened)

    def _open(self, webhook_id: str, token: str) -> list[SigningSecret]:
        try:
            payload = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeError):
            raise SecretKeyError(
                f"cannot open the secret of webhook {webhook_id}: {ENV_VAR} is not the key "
                "that sealed it (no key listed there opens it); list that key after the "
                f"current one ({ENV_VAR}=current,that), or run `synctec-webhooks webhooks "
                "reseal` with that list"
            ) from None
        if payload.get("webhook_id") != webhook_id:
            raise SecretKeyError(
                f"the sealed secret on webhook {webhook_id} belongs to another webhook (copied "
                "onto its record): remove this webhook and add it again"
            )
        return [SigningSecret(s["secret"], s["expires_at"]) for s in payload["secrets"]]


def _key_path(settings: Settings) -> Path:
    return Path(settings.state_dir).absolute() / KEY_FILE


def load_box(settings: Settings) -> SecretBox | None:
    """The box from SYNCTEC_SECRET_KEY, else from the key file in the state folder; None
    when there is neither. Never makes a key."""
    if settings.secret_keys:
        return SecretBox(settings.secret_keys)
    path = _key_path(settings)
    if path.exists():
        return SecretBox([path.read_text(encoding="ascii").strip()])
    return None


def sealing_box(settings: Settings) -> SecretBox:
    """The box to seal new secrets with, or SecretKeyError saying what to set: a key made
    here would seal webhooks that no worker can open."""
    box = load_box(settings)
    if box is None:
        raise SecretKeyError(
            f"{ENV_VAR} is not set and there is no {_key_path(settings)}: set {ENV_VAR} to "
            "the key the delivery workers have, or set SYNCTEC_STATE_DIR to the state folder "
            "of `synctec-webhooks run` (or run this where it runs): only `run` makes a key file"
        )
    return box


def ensure_key_file(settings: Settings) -> SecretBox:
    """`run`'s: the box `load_box` finds, else a new key written to the key file (0600) in
    run's state folder, where its workers and other commands in that folder find it."""
    box = load_box(settings)
    if box is not None:
        return box
    path = _key_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(Fernet.generate_key().decode("ascii") + "\n")
    logger.warning(
        "%s is not set: created %s to seal webhook secrets; every worker needs this key "
        "(set %s to its content when they run elsewhere)",
        ENV_VAR,
        path,
        ENV_VAR,
    )
    return SecretBox([path.read_text(encoding="ascii").strip()])


def require_box(box: SecretBox | None, webhook_id: str) -> SecretBox:
    if box is None:
        raise SecretKeyError(
            f"webhook {webhook_id} has a sealed secret but {ENV_VAR} is not set and there is "
            f"no $SYNCTEC_STATE_DIR/{KEY_FILE}: give this process the admin service's key"
        )
    return box


def signing_secrets(sub: Subscription, box: SecretBox | None, now_ms: int) -> list[str]:
    """The secrets that sign a POST to `sub` now: the current one first, then any
    rotated-out one still within its grace period."""
    if not sub.sealed_secrets:
        return [sub.secret]  # a record from before secrets were sealed
    opened = require_box(box, sub.id).open(sub.id, sub.sealed_secrets)
    return [s.secret for s in opened if s.live(now_ms)] or [opened[0].secret]


class SecretOpener:
    """The signing secrets a delivery or retry worker signs with, from the box of its
    settings (while it has none, the key file is looked for again: `run` may make it
    after this process started). `signing_secrets` raises SecretKeyError for a webhook
    whose secrets cannot be opened, logging it once per webhook and sealed token rather
    than once per record."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._box = load_box(settings)
        self._failing: dict[str, str] = {}  # webhook id -> the token that did not open
        if self._box is None:
            logger.warning(
                "%s is not set and there is no %s: deliveries to webhooks with a sealed "
                "secret are dead-lettered (secret_unavailable) until this process gets the key",
                ENV_VAR,
                _key_path(settings),
            )

    def signing_secrets(self, sub: Subscription, now_ms: int) -> list[str]:
        if self._box is None and sub.sealed_secrets:
            self._box = load_box(self._settings)
        try:
            found = signing_secrets(sub, self._box, now_ms)
        except SecretKeyError as exc:
            if self._failing.get(sub.id) != sub.sealed_secrets:
                self._failing[sub.id] = sub.sealed_secrets or ""
                logger.error(
                    "cannot sign for webhook %s, its deliveries are dead-lettered "
                    "(secret_unavailable) until fixed, then replay them: %s",
                    sub.id,
                    exc,
                )
            raise
        if self._failing and self._failing.pop(sub.id, None) is not None:
            logger.info("webhook %s: its secret opens again", sub.id)
        return found
