"""An extra SASL_SSL listener for a local node: TLS with a keystore the caller made, SCRAM
users created when the node's data dir is formatted, and, if asked, ACLs enforced.

The node keeps its PLAINTEXT listener for its own traffic (controller, inter-broker) and
for the readiness probe (kafka/probe.py); clients that should prove who they are are
given the SASL_SSL one (`LocalBroker.sasl_ssl_bootstrap_servers`). With the authorizer
on, the PLAINTEXT principal (User:ANONYMOUS) is a super user, as the node's own traffic
needs: it listens on loopback only, which makes it the local equivalent of an operator's
access, and it is the way to create ACLs for the SCRAM users.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from synctec_webhooks.localkafka.files import SASL_SSL_TEMPLATE

MECHANISM = "SCRAM-SHA-512"
# StorageTool's --add-scram syntax ("[name=...,password=...]") and the properties file
# have no quoting we rely on: names and passwords keep to these characters.
_PLAIN = re.compile(r"[A-Za-z0-9_.~+/=@-]{1,256}")
_AUTHORIZER = """\
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
"""


def _check_plain(what: str, value: str) -> None:
    if not _PLAIN.fullmatch(value):
        raise ValueError(f"{what}: use 1-256 of A-Z a-z 0-9 _ . ~ + / = @ - (no quoting here)")


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 user the node is formatted with."""

    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        _check_plain("a SCRAM user name", self.name)
        _check_plain(f"the password of SCRAM user {self.name}", self.password)


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL listener on 127.0.0.1: SCRAM-SHA-512 over TLS.

    `keystore` is a PKCS#12 file with the node's key and certificate (whose subject
    alternative names cover 127.0.0.1, which clients check). `users` exist from the
    first start of a new data dir: a kept data dir keeps the users it was formatted with.
    With `authorizer`, Kafka's StandardAuthorizer refuses every SCRAM user whatever no
    ACL allows (create them over the PLAINTEXT listener).
    """

    keystore: Path
    keystore_password: str = field(repr=False)
    users: tuple[ScramUser, ...]
    port: int | None = None
    authorizer: bool = False

    def __post_init__(self) -> None:
        _check_plain("the keystore password", self.keystore_password)
        if not self.users:
            raise ValueError("a SASL_SSL listener needs at least one SCRAM user")

    def properties(self) -> str:
        """The server.properties lines that configure the listener (not its address)."""
        template = Template(SASL_SSL_TEMPLATE.read_text())
        return template.substitute(
            mechanism=MECHANISM,
            jaas_mechanism=MECHANISM.lower(),
            keystore=self.keystore.resolve(),
            keystore_password=self.keystore_password,
            authorizer=_AUTHORIZER if self.authorizer else "",
        )

    def format_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that create the users."""
        args = []
        for user in self.users:
            args += ["--add-scram", f"{MECHANISM}=[name={user.name},password={user.password}]"]
        return args

    def mask(self, text: str) -> str:
        """`text` (a tool's output) with the passwords masked."""
        for secret in (self.keystore_password, *(u.password for u in self.users)):
            text = text.replace(secret, "***")
        return text
