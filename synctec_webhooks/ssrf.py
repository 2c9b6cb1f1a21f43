"""The SSRF guard: webhook URLs may only reach the public internet.

A webhook URL is chosen by a merchant, and the platform POSTs to it from inside our
network, so an unchecked URL is a way to reach our own services (the Kafka broker, an
admin port, a cloud metadata endpoint handing out credentials). The guard refuses an
address that is loopback, private, link-local, unique-local, multicast, unspecified,
reserved or otherwise not globally routable, or a known cloud metadata address; IPv6
forms that embed an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by the
IPv4 address they carry, so ``::ffff:127.0.0.1`` is loopback.

It runs twice: when a webhook is added (the URL's host, resolved) and at every delivery
(`GuardedResolver`, so the connection goes to an address that passed, whatever the DNS
answers by then). `SYNCTEC_ALLOW_PRIVATE_NETWORKS` opens CIDRs on purpose: the tests
and `make run` open 127.0.0.0/8 and ::1.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult

from synctec_webhooks.errors import AddressRefused

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ENV_VAR = "SYNCTEC_ALLOW_PRIVATE_NETWORKS"

# Instance metadata services: most sit in link-local space (refused anyway), but Azure's
# wire server and Alibaba's are addresses a plain "is it private" test would let through.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure wire server
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
# Names that never resolve to anything a merchant owns, even on a host whose resolver
# does not know them (so the add-time check does not depend on the local /etc/hosts).
_BLOCKED_NAMES = ("localhost", "metadata.google.internal", "metadata.goog")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _category(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is."""
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("fc00::/7"):
        return "unique-local"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private:
        return "private"
    if not ip.is_global or ip.is_reserved:
        return "reserved, not globally routable"
    return None


@dataclass(frozen=True)
class Guard:
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> Guard:
        return cls(parse_networks(cidrs))

    def _opened(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed)

    def refusal(self, address: str) -> str | None:
        """Why the guard refuses `address` (an IP literal), or None if it may be reached."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if self._opened(ip):
            return None
        embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        if embedded is not None:
            if self._opened(embedded):
                return None
            inner = _category(embedded)
            if inner is not None:
                return f"{address} embeds {embedded}, a {inner} address"
        category = _category(ip)
        if category is None:
            return None
        return f"{address} is a {category} address; open it with {ENV_VAR} if you mean it"

    def refused_name(self, host: str) -> str | None:
        name = host.rstrip(".").lower()
        if any(name == b or name.endswith("." + b) for b in _BLOCKED_NAMES):
            # Unless loopback was opened on purpose (local use), "localhost" is loopback.
            if name.endswith("localhost") and self._opened(ipaddress.ip_address("127.0.0.1")):
                return None
            return f"{host} is an internal host name"
        return None

    def check_addresses(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses that pass; AddressRefused when none does."""
        passed = [a for a in addresses if self.refusal(a) is None]
        if not passed:
            reasons = [r for r in (self.refusal(a) for a in addresses) if r]
            logger.info("SSRF guard refused %s at delivery: %s", host, reasons[0])
            raise AddressRefused(host, _refused_name_message(host))
        return passed


def ip_literal(host: str) -> str | None:
    """The IP address `host` names, or None for a host name.

    IPv6 loses its brackets. IPv4 is read as inet_aton and the WHATWG URL standard read
    it (`127.1`, `2130706433`, `0177.0.0.1`, `0x7f.1`), not only as dotted quads: an
    HTTP client that reads `http://2130706433/` as 127.0.0.1 would otherwise reach
    loopback past a guard that took it for a name (aiohttp 3.13 did).
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return legacy_ipv4(bare)
    return bare


def legacy_ipv4(host: str) -> str | None:
    """`host` as a dotted quad when it is an IPv4 address in any numeric form, else None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills
    the remaining bytes, as inet_aton does. Pure: no resolver.
    """
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot, as in "127.0.0.1."
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_part(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *leading, last = values
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(values)):
        return None
    address = last
    for i, n in enumerate(leading):
        address += n << (8 * (3 - i))
    return str(ipaddress.IPv4Address(address))


def _ipv4_part(text: str) -> int | None:
    lower = text.lower()
    if lower.startswith("0x"):
        digits, base = lower[2:] or "0", 16
    elif len(text) > 1 and text.startswith("0"):
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    allowed = "0123456789abcdef"[:base]
    if not digits or any(ch not in allowed for ch in digits):
        return None
    return int(digits, base)


def check_host(guard: Guard, host: str) -> str | None:
    """Add-time check (blocking: it resolves `host`): why `host` is refused, or None.
    Every address it resolves to must pass. A name that does not resolve now passes
    (its DNS may come later); the delivery-time check still applies then."""
    literal = ip_literal(host)
    if literal is not None:
        return guard.refusal(literal)
    named = guard.refused_name(host)
    if named is not None:
        return named
    try:
        infos = socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    addresses = dict.fromkeys(str(info[4][0]) for info in infos)
    # Every address must pass: one private answer among public ones is a rebinding setup.
    refused = [r for r in (guard.refusal(a) for a in addresses) if r]
    if not refused:
        return None
    # The merchant learns that the name is refused, never what our DNS says it is (that
    # would map our internal network for anyone who can add a webhook); the log has it.
    logger.info("SSRF guard refused %s at add time: %s", host, refused[0])
    return _refused_name_message(host)


def _refused_name_message(host: str) -> str:
    return f"{host} resolves to an address that is not allowed"


class GuardedResolver(AbstractResolver):
    """Delivery-time check: resolve, then hand aiohttp only the addresses that pass, so
    the connection is made to a checked address (no second lookup to rebind)."""

    def __init__(self, guard: Guard, inner: AbstractResolver) -> None:
        self._guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        named = self._guard.refused_name(host)
        if named is not None:
            raise AddressRefused(host, named)
        results = await self._inner.resolve(host, port, family)
        passed = set(self._guard.check_addresses(host, [r["host"] for r in results]))
        return [r for r in results if r["host"] in passed]

    async def close(self) -> None:
        await self._inner.close()
