"""The SSRF guard: which addresses a webhook may reach, at add time and at delivery."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from synctec_webhooks.config import Settings
from synctec_webhooks.consumers.delivery.outcome import OutcomeKind
from synctec_webhooks.consumers.delivery.sender import Sender
from synctec_webhooks.ssrf import AddressRefused, Guard, GuardedResolver, check_host, ip_literal

CLOSED = Guard()
LOOPBACK_OPEN = Guard.from_cidrs(["127.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("fc00::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "not globally routable"),
        ("192.0.2.1", "private"),  # TEST-NET-1, documentation
        ("240.0.0.1", "address"),  # reserved; Python files it under private
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.1.1.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_refused_addresses_say_why(address: str, category: str) -> None:
    reason = CLOSED.refusal(address)
    assert reason is not None and category in reason
    assert "SYNCTEC_ALLOW_PRIVATE_NETWORKS" in reason or "embeds" in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert CLOSED.refusal(address) is None


@pytest.mark.parametrize(
    ("address", "passes"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # opened through the IPv4 it carries
        ("10.0.0.1", False),
        ("169.254.169.254", False),
    ],
)
def test_allowed_networks_open_only_what_they_name(address: str, passes: bool) -> None:
    assert (LOOPBACK_OPEN.refusal(address) is None) is passes


def test_names_that_are_internal_by_definition() -> None:
    assert CLOSED.refused_name("localhost") is not None
    assert CLOSED.refused_name("api.LOCALHOST.") is not None
    assert CLOSED.refused_name("metadata.google.internal") is not None
    assert CLOSED.refused_name("example.com") is None
    assert LOOPBACK_OPEN.refused_name("localhost") is None


@pytest.mark.parametrize(
    ("host", "literal"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("example.com", None),
        ("1.example", None),
        ("example.1a", None),
        # The IPv4 forms of inet_aton and the WHATWG URL standard: browsers, curl and
        # some HTTP clients read these as 127.0.0.1, so the guard must too.
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0X7F.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.0.258", "10.0.1.2"),
        ("0", "0.0.0.0"),
        ("4294967296", None),  # past 32 bits: not an address (aiohttp refuses the URL)
        ("256.0.0.1", None),
        ("08.0.0.1", None),  # 8 is not an octal digit
    ],
)
def test_ip_literal(host: str, literal: str | None) -> None:
    assert ip_literal(host) == literal


def test_add_time_check_resolves_names() -> None:
    # Numeric forms are read as the addresses they are, then judged.
    assert "loopback" in (check_host(CLOSED, "2130706433") or "")
    assert "loopback" in (check_host(CLOSED, "127.1") or "")
    assert "loopback" in (check_host(CLOSED, "0x7f.1") or "")
    assert "internal host name" in (check_host(CLOSED, "localhost") or "")
    assert check_host(LOOPBACK_OPEN, "localhost") is None
    # A name that does not resolve now passes; delivery checks it again.
    assert check_host(CLOSED, "no-such-host.invalid") is None


class _FakeResolver(AbstractResolver):
    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.answers
        ]

    async def close(self) -> None:
        pass


def test_guarded_resolver_hands_on_only_checked_addresses() -> None:
    mixed = GuardedResolver(CLOSED, _FakeResolver(["10.0.0.1", "93.184.216.34"]))
    assert [r["host"] for r in asyncio.run(mixed.resolve("rebind.example", 443))] == [
        "93.184.216.34"
    ]
    private = GuardedResolver(CLOSED, _FakeResolver(["10.0.0.1"]))
    with pytest.raises(AddressRefused) as refused:
        asyncio.run(private.resolve("rebind.example", 443))
    # The merchant sees that the name is refused, not what our DNS says about it.
    assert refused.value.reason == "rebind.example resolves to an address that is not allowed"
    assert "10.0.0.1" not in str(refused.value)


def test_add_time_refusal_of_a_name_does_not_say_what_it_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def internal(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(socket, "getaddrinfo", internal)
    refusal = check_host(CLOSED, "billing.internal.example")
    assert refusal == "billing.internal.example resolves to an address that is not allowed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",  # an IP literal, which aiohttp never resolves
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://localhost:9/hook",  # a name, refused by the resolver
    ],
)
def test_sender_refuses_before_connecting(url: str) -> None:
    async def post() -> OutcomeKind:
        sender = Sender(Settings())
        await sender.start()
        try:
            outcome = await sender.post(url, b"{}", {})
        finally:
            await sender.close()
        assert outcome.error is not None and "SSRF guard" in outcome.error
        assert not outcome.retryable
        return outcome.kind

    assert asyncio.run(post()) is OutcomeKind.REFUSED


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433:9/hook",
        "http://127.1:9/hook",
        "http://0177.0.0.1:9/hook",
        "http://0x7f.0.0.1:9/hook",
        "http://0x7f000001:9/hook",
    ],
)
def test_numeric_ipv4_forms_are_refused_whatever_aiohttp_makes_of_them(url: str) -> None:
    # aiohttp 3.13 connected "http://2130706433/" and "http://127.1/" to loopback; 3.14
    # happens to refuse them. The guard reads them itself, so no version matters.
    async def post() -> OutcomeKind:
        sender = Sender(Settings())
        await sender.start()
        try:
            outcome = await sender.post(url, b"{}", {})
        finally:
            await sender.close()
        assert outcome.error is not None and "loopback" in outcome.error
        return outcome.kind

    assert asyncio.run(post()) is OutcomeKind.REFUSED
