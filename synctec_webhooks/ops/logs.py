"""Log output: one line per event of note, as text or JSON, with secrets masked.

`SYNCTEC_LOG_FORMAT=json` writes one JSON object per line (`ts`, `level`, `logger`,
`msg`, any `extra=` fields, `exc` for a traceback), which log shippers parse without
multi-line rules. Both formats pass the finished line through `redact`, a last line of
defence: code already keeps secrets out of messages (`Subscription.secret` has
`repr=False`), but a URL with credentials or a secret inside an exception text would
otherwise reach the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any

FORMATS = ("text", "json")
MASK = "***"

_PATTERNS = (
    # Webhook signing secrets: "whsec_" + base64.
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_" + MASK),
    # Credentials in a URL: scheme://user:password@host -> scheme://***@host.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1" + MASK + "@"),
    # Bearer tokens in echoed headers.
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK),
    # Standard Webhooks / StoreLink signatures: not secrets, but never useful in a log.
    (re.compile(r"\bv1,[A-Za-z0-9+/=]{20,}"), "v1," + MASK),
    # Kafka client secrets echoed as properties (sasl.password=..., a JAAS password="...").
    (
        re.compile(r"(?i)\b((?:sasl|ssl)\.[a-z.]*(?:password|secret|passphrase)\s*[=:]\s*)\S+"),
        r"\1" + MASK,
    ),
    (re.compile(r'(?i)\b(password\s*=\s*)"(?:[^"\\]|\\.)*"'), r'\1"' + MASK + '"'),
)

# Secret values known to this process (the Kafka clients' passwords, see mask_value):
# masked wherever they appear, whatever the text around them. Longest first (one may
# hold another); a tuple replaced whole, as clients are built on several threads.
_values: tuple[str, ...] = ()
_MIN_MASKED = 4  # shorter "secrets" would mask ordinary words


def mask_value(value: str) -> None:
    """Mask `value` in every log line from now on (kafka/config.py registers each secret
    it hands to librdkafka, whose own log lines and errors cannot be trusted with them)."""
    global _values
    if len(value) < _MIN_MASKED:
        return
    # As the JSON format escapes it, too (a quote or a backslash in a password).
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1]}
    _values = tuple(sorted(set(_values) | forms, key=len, reverse=True))


# LogRecord attributes that are not `extra=` fields.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def redact(text: str) -> str:
    for value in _values:
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        # default=str: an odd `extra` value is logged as text rather than lost.
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send every logger to stderr in the chosen format (replacing earlier handlers)."""
    fmt = fmt.strip().lower() or "text"
    if fmt not in FORMATS:
        raise ValueError(f"SYNCTEC_LOG_FORMAT={fmt!r}: choose text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
