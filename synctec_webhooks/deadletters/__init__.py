"""Dead letters: what failed for good, why, and where it came from.

`records` (re-exported here) builds the records, pure; `writer` hands them to
`<prefix>.deadletters`; `listing` (pure) says which records are one dead letter and
pages them; `replay` lists them and sends them round again, each once.
"""

from synctec_webhooks.deadletters.records import (
    INVALID_EVENT,
    INVALID_SUBSCRIPTION,
    INVALID_URL,
    MAX_RECORD_BYTES,
    RAW_KEPT,
    REFUSED,
    RETRIES_EXHAUSTED,
    SECRET_UNAVAILABLE,
    TOO_LARGE,
    UNDECODABLE,
    WEBHOOK_DISABLED,
    WEBHOOK_NOT_FOUND,
    Source,
    build,
    cut,
    dead_letter_id,
    fit,
    key_of,
)

__all__ = [
    "INVALID_EVENT",
    "INVALID_SUBSCRIPTION",
    "INVALID_URL",
    "MAX_RECORD_BYTES",
    "RAW_KEPT",
    "REFUSED",
    "RETRIES_EXHAUSTED",
    "SECRET_UNAVAILABLE",
    "TOO_LARGE",
    "UNDECODABLE",
    "WEBHOOK_DISABLED",
    "WEBHOOK_NOT_FOUND",
    "Source",
    "build",
    "cut",
    "dead_letter_id",
    "fit",
    "key_of",
]
