"""Dead letters: what failed for good, why, and where it came from.

`records` (re-exported here) builds the records, pure; `writer` hands them to
`<prefix>.deadletters`; `replay` lists them and sends them round again.
"""

from synctec_webhooks.deadletters.records import (
    INVALID_EVENT,
    INVALID_SUBSCRIPTION,
    INVALID_URL,
    REFUSED,
    RETRIES_EXHAUSTED,
    UNDECODABLE,
    WEBHOOK_DISABLED,
    WEBHOOK_NOT_FOUND,
    Source,
    build,
    dead_letter_id,
    key_of,
)

__all__ = [
    "INVALID_EVENT",
    "INVALID_SUBSCRIPTION",
    "INVALID_URL",
    "REFUSED",
    "RETRIES_EXHAUSTED",
    "UNDECODABLE",
    "WEBHOOK_DISABLED",
    "WEBHOOK_NOT_FOUND",
    "Source",
    "build",
    "dead_letter_id",
    "key_of",
]
