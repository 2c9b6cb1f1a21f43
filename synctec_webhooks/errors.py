"""Every exception the package raises on purpose, under one root.

    SyncTecError                     catch this to catch any of ours
    ├── ConfigError (ValueError)     a setting we cannot use; names the variable
    │   └── SecretKeyError           no usable key to seal or open webhook secrets
    ├── InvalidEvent (ValueError)    an event the platform refuses; `field` says which
    ├── InvalidSubscription (ValueError)
    │                                a webhook we refuse to store; `field` says which
    ├── InvalidAccount (ValueError)  an account, API key or link request we refuse
    ├── CredentialRefused            an API key or portal link that is unknown, revoked,
    │                                expired or forged; `reason` says which
    ├── SerializationError           bytes that are not a record we can read or write;
    │                                `retriable` when the schema registry was the cause
    ├── DeliveryFailed               the broker did not acknowledge a record; the caller
    │                                still owns the work; `retriable` says if worth retrying,
    │                                `too_large` if the record is over a size limit
    ├── EmitError (RuntimeError)     an event was not acknowledged (after librdkafka's retries)
    ├── WorkerCrashed (RuntimeError) a dispatch failed in a way that must not be skipped
    ├── AddressRefused (OSError)     the SSRF guard refused every address of a host
    ├── BrokerError (RuntimeError)   the local broker (a developer tool) failed to start
    └── ApiError                     an admin API refusal: HTTP status + JSON error body
                                     (defined in admin/errors.py, which renders it)

Some also derive from a builtin, as shown, so that code catching `ValueError` (argument
checks) or `OSError` (aiohttp's resolver) keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AddressRefused",
    "BrokerError",
    "ConfigError",
    "CredentialRefused",
    "DeliveryFailed",
    "EmitError",
    "InvalidAccount",
    "InvalidEvent",
    "InvalidSubscription",
    "SecretKeyError",
    "SerializationError",
    "SyncTecError",
    "WorkerCrashed",
]


class SyncTecError(Exception):
    """The root of every exception raised on purpose by synctec_webhooks."""


class ConfigError(SyncTecError, ValueError):
    """A setting has a value we cannot use; the message names the variable."""


class SecretKeyError(ConfigError):
    """No usable key for webhook secrets; the message says which setting to fix."""


class InvalidEvent(SyncTecError, ValueError):
    """An event the platform refuses; `field` is a dotted path such as "product.sku"."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid event: {field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidSubscription(SyncTecError, ValueError):
    """A webhook we refuse to store; `field` names what to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class InvalidAccount(SyncTecError, ValueError):
    """An account, API key or portal-link request we refuse; `field` names what to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class CredentialRefused(SyncTecError):
    """A credential that does not open the API: `reason` is expired, revoked or invalid.

    The message is safe to show to the caller: it never echoes the credential."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SerializationError(SyncTecError):
    """A record could not be encoded or decoded; the message says what to do.

    `retriable` is True only when the schema registry was unreachable or failing: the
    same bytes may decode later, so the caller should retry rather than dead-letter.
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class DeliveryFailed(SyncTecError):
    """The broker did not acknowledge a record; the caller still owns the work.

    `error` is librdkafka's `KafkaError`; `retriable` says whether producing the record
    again may succeed, `too_large` whether it was refused for its size, by librdkafka or
    the broker (both set by the Kafka layer, which knows the error codes).
    """

    def __init__(self, error: Any, *, retriable: bool, too_large: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.retriable = retriable
        self.too_large = too_large


class EmitError(SyncTecError, RuntimeError):
    """The broker did not acknowledge an event (after librdkafka's own retries)."""


class WorkerCrashed(SyncTecError, RuntimeError):
    """A dispatch failed in a way that must not be skipped; restart re-delivers it."""


class AddressRefused(SyncTecError, OSError):
    """The guard refused every address of a host. An OSError so that aiohttp wraps it in
    ClientConnectorDNSError like any other resolution failure; `outcome` unwraps it."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"refused by the SSRF guard: {reason}")
        self.host = host
        self.reason = reason


class BrokerError(SyncTecError, RuntimeError):
    """The local broker could not be fetched, formatted, started or kept running."""
