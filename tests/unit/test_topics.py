"""Topic and group names derived from the prefix, and the ways back from a name."""

from __future__ import annotations

import re

import pytest

from synctec_webhooks.topics import Topics

WEBHOOK = "wh_0123456789abcdef01234567"
# Prefixes SYNCTEC_TOPIC_PREFIX accepts, with the characters a regex could trip on.
PREFIXES = ["synctec", "a", "t1a2b3c4", "shop-eu_2", "A-B"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (Topics("synctec").events, "synctec.events"),
        (Topics("synctec").subscriptions, "synctec.subscriptions"),
        (Topics("synctec").deadletters, "synctec.deadletters"),
        (Topics("synctec").delivery(WEBHOOK), f"synctec.deliveries.{WEBHOOK}"),
        (Topics("synctec").retry(1), "synctec.retry.1"),
        (Topics("synctec").retry(12), "synctec.retry.12"),
        (Topics("synctec").group("fanout"), "synctec.fanout"),
        (Topics("t1a2b3c4").events, "t1a2b3c4.events"),
        (Topics("t1a2b3c4").retry(3), "t1a2b3c4.retry.3"),
        (Topics("t1a2b3c4").group("delivery"), "t1a2b3c4.delivery"),
    ],
)
def test_names(name: str, expected: str) -> None:
    assert name == expected


# --- delivery_pattern ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_delivery_pattern_is_a_regex(prefix: str) -> None:
    pattern = Topics(prefix).delivery_pattern
    # librdkafka takes a subscription as a regex only when it starts with "^".
    assert pattern.startswith("^")
    re.compile(pattern)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("webhook", [WEBHOOK, "x", "wh-with.dots_and-dashes"])
def test_delivery_pattern_matches_its_delivery_topics(prefix: str, webhook: str) -> None:
    topics = Topics(prefix)
    assert re.match(topics.delivery_pattern, topics.delivery(webhook))


@pytest.mark.parametrize(
    ("prefix", "topic"),
    [
        pytest.param("a", "ab.deliveries.x", id="longer-prefix"),
        pytest.param("a", "ba.deliveries.x", id="prefix-later-in-name"),
        pytest.param("synctec", "synctec2.deliveries.x", id="digit-appended"),
        pytest.param("synctec", "synctec-eu.deliveries.x", id="dash-appended"),
        pytest.param("synctec", "other.deliveries.x", id="other-prefix"),
        pytest.param("synctec", "synctec.deliveries.", id="no-webhook"),
        pytest.param("synctec", "synctec.deliveriesXx", id="dot-is-literal"),
        pytest.param("synctec", "synctecXdeliveries.x", id="first-dot-is-literal"),
        pytest.param("synctec", "synctec.retry.1", id="retry"),
        pytest.param("synctec", "synctec.events", id="events"),
        pytest.param("synctec", "synctec.subscriptions", id="subscriptions"),
        pytest.param("synctec", "synctec.deadletters", id="deadletters"),
        pytest.param("A-B", "AxB.deliveries.x", id="dash-is-literal"),
    ],
)
def test_delivery_pattern_matches_nothing_else(prefix: str, topic: str) -> None:
    assert re.match(Topics(prefix).delivery_pattern, topic) is None


# --- the ways back -------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("webhook", [WEBHOOK, "x", "deliveries", "wh.with.dots"])
def test_webhook_of_inverts_delivery(prefix: str, webhook: str) -> None:
    topics = Topics(prefix)
    assert topics.webhook_of(topics.delivery(webhook)) == webhook


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("tier", [1, 2, 3, 10, 123])
def test_retry_tier_of_inverts_retry(prefix: str, tier: int) -> None:
    topics = Topics(prefix)
    assert topics.retry_tier_of(topics.retry(tier)) == tier
