"""librdkafka properties every client gets, for TLS, SASL and the network: read from the
environment and an optional Java-style `.properties` file, secrets kept out of sight.

    SYNCTEC_KAFKA_<NAME>=value        one property; NAME is the key upper-cased, "." -> "_"
                                      and a literal "_" doubled ("__"), so
                                      SYNCTEC_KAFKA_SSL_CA_LOCATION   -> ssl.ca.location
                                      SYNCTEC_KAFKA_SASL_MECHANISM    -> sasl.mechanism
    SYNCTEC_KAFKA_<NAME>_FILE=path    a secret property's value, read from a file (one
                                      trailing newline dropped), e.g. a mounted Secret
    SYNCTEC_KAFKA_CONFIG_FILE=path    a client.properties as Kafka's Java tools take it;
                                      the variables above win over it

Only the keys in `ACCEPTED` pass: connection security and a few network knobs. What the
code relies on (idempotence, transactions, groups, offsets) is in `FORBIDDEN` with the
reason, so a pass-through can never quietly weaken exactly-once or at-least-once. Secret
values live in `Secret`, which prints as `***`: in reprs, logs and error messages alike.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from synctec_webhooks.errors import ConfigError

ENV_PREFIX = "SYNCTEC_KAFKA_"
CONFIG_FILE_VAR = "SYNCTEC_KAFKA_CONFIG_FILE"
# Settings of their own under the same prefix, never read as pass-through properties.
OWN_VARS = frozenset({CONFIG_FILE_VAR, "SYNCTEC_KAFKA_DEBUG"})
MASK = "***"

# Values that are secrets: masked everywhere, and the only ones with a `_FILE` variable
# (other keys that name a file, ssl.ca.location say, already take a path).
SECRET_KEYS = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.assertion.private.key.pem",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
    }
)

# librdkafka's names (2.x, CONFIGURATION.md), for the brokers' connections only.
ACCEPTED = SECRET_KEYS | frozenset(
    {
        "security.protocol",
        # TLS
        "ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores", "ssl.crl.location",
        "ssl.certificate.location", "ssl.certificate.pem", "ssl.key.location",
        "ssl.keystore.location", "ssl.cipher.suites", "ssl.curves.list", "ssl.sigalgs.list",
        "ssl.providers", "ssl.engine.id", "ssl.endpoint.identification.algorithm",
        "enable.ssl.certificate.verification",
        # SASL
        "sasl.mechanism", "sasl.mechanisms", "sasl.username",
        "sasl.kerberos.service.name", "sasl.kerberos.principal", "sasl.kerberos.kinit.cmd",
        "sasl.kerberos.keytab", "sasl.kerberos.min.time.before.relogin",
        "sasl.oauthbearer.method", "sasl.oauthbearer.client.id", "sasl.oauthbearer.scope",
        "sasl.oauthbearer.extensions", "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.grant.type", "sasl.oauthbearer.metadata.authentication.type",
        "sasl.oauthbearer.sub.claim.name", "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.assertion.algorithm", "sasl.oauthbearer.assertion.file",
        "sasl.oauthbearer.assertion.jwt.template.file",
        "sasl.oauthbearer.assertion.private.key.file", "sasl.oauthbearer.assertion.claim.aud",
        "sasl.oauthbearer.assertion.claim.exp.seconds", "sasl.oauthbearer.assertion.claim.iss",
        "sasl.oauthbearer.assertion.claim.jti.include",
        "sasl.oauthbearer.assertion.claim.nbf.seconds", "sasl.oauthbearer.assertion.claim.sub",
        "enable.sasl.oauthbearer.unsecure.jwt", "https.ca.location", "https.ca.pem",
        # network
        "client.rack", "client.dns.lookup", "broker.address.family", "broker.address.ttl",
        "socket.keepalive.enable", "socket.timeout.ms", "socket.connection.setup.timeout.ms",
        "socket.nagle.disable", "socket.send.buffer.bytes", "socket.receive.buffer.bytes",
        "connections.max.idle.ms", "reconnect.backoff.ms", "reconnect.backoff.max.ms",
    }
)  # fmt: skip

_EXACTLY_ONCE = "the fan-out's exactly-once and the workers' at-least-once rely on it"
FORBIDDEN: Mapping[str, str] = {
    "bootstrap.servers": "set KAFKA_BOOTSTRAP_SERVERS instead",
    "client.id": "the platform names each client after its topic prefix and role",
    "debug": "set SYNCTEC_KAFKA_DEBUG instead",
    "group.id": "the platform names each group after its topic prefix and role",
    "transactional.id": "the fan-out's transactional id comes from SYNCTEC_INSTANCE_ID",
    "session.timeout.ms": "set SYNCTEC_SESSION_TIMEOUT_MS instead",
    "transaction.timeout.ms": "set SYNCTEC_TRANSACTION_TIMEOUT_MS instead",
    "statistics.interval.ms": "set SYNCTEC_STATS_INTERVAL_MS instead",
    "topic.metadata.refresh.interval.ms": "set SYNCTEC_METADATA_REFRESH_MS instead",
    **dict.fromkeys(
        (
            "enable.idempotence", "acks", "request.required.acks", "isolation.level",
            "enable.auto.offset.store", "enable.auto.commit", "auto.commit.interval.ms",
            "auto.offset.reset", "enable.partition.eof", "partition.assignment.strategy",
            "partitioner", "heartbeat.interval.ms", "max.in.flight.requests.per.connection",
            "max.in.flight", "enable.gapless.guarantee",
        ),
        _EXACTLY_ONCE,
    ),
}  # fmt: skip

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")


class Secret:
    """A secret value that prints as `***`; `reveal()` is the one way to the text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


Value = str | Secret


@dataclass(frozen=True)
class KafkaProperties:
    """The accepted properties, sorted by key; secret values as `Secret`."""

    items: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaProperties:
        found: dict[str, Value] = {}
        path = env.get(CONFIG_FILE_VAR, "").strip()
        if path:
            found.update(read_properties_file(Path(path), CONFIG_FILE_VAR))
        found.update(_from_variables(env))
        _check_consistent(found)
        return cls(tuple(sorted(found.items())))

    def librdkafka(self) -> dict[str, str]:
        """The properties as librdkafka takes them, secrets revealed: for client configs
        only, never for printing."""
        return {k: v.reveal() if isinstance(v, Secret) else v for k, v in self.items}

    def secrets(self) -> tuple[str, ...]:
        """The secret values, revealed (for the log redactor to mask)."""
        return tuple(v.reveal() for _, v in self.items if isinstance(v, Secret))

    def get(self, key: str) -> Value | None:
        return dict(self.items).get(key)


# --- names ------------------------------------------------------------------------------


def key_of(variable: str) -> str:
    """The property a SYNCTEC_KAFKA_* variable sets: "__" is "_", "_" is "."."""
    name = variable.removeprefix(ENV_PREFIX).lower()
    return "_".join(part.replace("_", ".") for part in name.split("__"))


def variable_of(key: str) -> str:
    """The SYNCTEC_KAFKA_* variable that sets `key` (the inverse of key_of)."""
    return ENV_PREFIX + key.replace("_", "__").replace(".", "_").upper()


def _from_variables(env: Mapping[str, str]) -> dict[str, Value]:
    found: dict[str, Value] = {}
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable in OWN_VARS:
            continue
        raw = env[variable]
        if raw == "":  # compose's ${VAR:-} and empty ConfigMap keys mean "not set"
            continue
        if variable.endswith("_FILE") and key_of(variable[: -len("_FILE")]) in SECRET_KEYS:
            key = key_of(variable[: -len("_FILE")])
            if env.get(variable_of(key)):
                raise ConfigError(
                    f"{variable} and {variable_of(key)} both set {key}: keep one of them"
                )
            found[key] = Secret(_read_secret_file(Path(raw.strip()), variable))
            continue
        key = key_of(variable)
        found[key] = _accept(key, raw, variable)
    return found


def _accept(key: str, value: str, where: str) -> Value:
    """`value` for `key`, or a ConfigError saying why the key cannot be set. `where` names
    the variable or file:line; the message never holds a secret value."""
    if key in FORBIDDEN:
        raise ConfigError(f"{where}: {key} cannot be set here: {FORBIDDEN[key]}")
    if key not in ACCEPTED:
        close = difflib.get_close_matches(key, sorted(ACCEPTED), n=1, cutoff=0.8)
        hint = f"did you mean {close[0]} ({variable_of(close[0])})? " if close else ""
        raise ConfigError(
            f"{where}: {key} is not a property the platform passes to librdkafka; {hint}"
            "accepted: security.protocol, ssl.*, sasl.* and a few socket/network keys"
            " (README, Settings)"
        )
    if key == "security.protocol" and value.upper() not in PROTOCOLS:
        raise ConfigError(f"{where}: security.protocol={value!r}: use one of {PROTOCOLS}")
    if key in ("sasl.mechanism", "sasl.mechanisms") and value.upper() not in MECHANISMS:
        raise ConfigError(f"{where}: {key}={value!r}: use one of {MECHANISMS}")
    return Secret(value) if key in SECRET_KEYS else value


def _check_consistent(found: Mapping[str, Value]) -> None:
    """librdkafka ignores SASL settings on a protocol without SASL: the credentials would
    be dropped without a word and the client would connect anonymously."""
    protocol = str(found.get("security.protocol", "PLAINTEXT")).upper()
    sasl = sorted(k for k in found if k.startswith("sasl."))
    if sasl and not protocol.startswith("SASL_"):
        raise ConfigError(
            f"{', '.join(sasl)} set but security.protocol is {protocol}: set"
            f" {variable_of('security.protocol')}=SASL_SSL (or SASL_PLAINTEXT)"
        )


def _read_secret_file(path: Path, variable: str) -> str:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot read it ({exc.strerror})") from None
    # Files made by `echo` or an editor end with one newline, which is not the secret.
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"{variable}={path}: the file is empty")
    return value


# --- a Java client.properties -----------------------------------------------------------

_JAAS_MODULES = ("ScramLoginModule", "PlainLoginModule")
_JAAS_OPTION = re.compile(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"')
_PEM_HINT = (
    "librdkafka reads CA certificates as PEM: export the CA with `keytool -exportcert -rfc"
    " -keystore <truststore> -alias <ca>` (or Strimzi's ca.crt) and set ssl.ca.location"
)


def read_properties_file(path: Path, variable: str) -> dict[str, Value]:
    """The accepted properties in a Java `.properties` file (Kafka's client.properties),
    with the Java-only ones that have a librdkafka form translated (sasl.jaas.config for
    SCRAM and PLAIN)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot read it ({exc.strerror})") from None
    found: dict[str, Value] = {}
    for line_no, key, value in parse_properties(text):
        where = f"{variable}={path}, line {line_no}"
        found.update(_from_java(key, value, where))
    return found


def _from_java(key: str, value: str, where: str) -> dict[str, Value]:
    if key == "sasl.jaas.config":
        return _from_jaas(value, where)
    if key.startswith("ssl.truststore."):
        raise ConfigError(f"{where}: {key} is Java's; {_PEM_HINT}")
    if key == "ssl.keystore.type":  # librdkafka's keystore is PKCS#12, Java's default too
        if value.upper() != "PKCS12":
            raise ConfigError(f"{where}: ssl.keystore.type={value}: convert it to PKCS12")
        return {}
    if key == "ssl.endpoint.identification.algorithm" and value == "":
        value = "none"  # Java's way of turning host name checks off
    return {key: _accept(key, value, where)}


def _from_jaas(value: str, where: str) -> dict[str, Value]:
    """username/password of a ScramLoginModule or PlainLoginModule line."""
    if not any(module in value for module in _JAAS_MODULES):
        raise ConfigError(
            f"{where}: sasl.jaas.config: only ScramLoginModule and PlainLoginModule are"
            " translated; set sasl.username and sasl.password (or sasl.oauthbearer.*) instead"
        )
    options = {name: re.sub(r"\\(.)", r"\1", raw) for name, raw in _JAAS_OPTION.findall(value)}
    if "username" not in options or "password" not in options:
        raise ConfigError(f'{where}: sasl.jaas.config has no username="..." password="..."')
    return {"sasl.username": options["username"], "sasl.password": Secret(options["password"])}


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) of each entry, as java.util.Properties.load reads them:
    `#`/`!` comments, `=`, `:` or blanks between key and value, a trailing backslash
    continuing the line, and \\t \\n \\uXXXX escapes."""
    entries = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start, logical = i + 1, lines[i].lstrip()
        i += 1
        if not logical or logical[0] in "#!":
            continue
        while _continues(logical) and i < len(lines):
            logical = logical[:-1] + lines[i].lstrip()
            i += 1
        key, value = _split_entry(logical)
        entries.append((start, _unescape(key), _unescape(value)))
    return entries


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _split_entry(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return key, rest


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped.startswith("u"):
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)
