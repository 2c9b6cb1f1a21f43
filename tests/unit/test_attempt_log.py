"""The admin's attempt log without a broker: what it keeps is bounded per webhook and in
total, whatever the attempts topic holds (issue 11: 10,000 webhooks x 100 attempts once
held about a gigabyte)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from synctec_webhooks import attempts, schemas
from synctec_webhooks.attempts.log import AttemptLog
from synctec_webhooks.config import Settings
from synctec_webhooks.errors import ConfigError
from synctec_webhooks.serialization import SingleObjectCodec

TOPIC = "t.attempts"
CODEC = SingleObjectCodec()


class Msg:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value


def _attempt(webhook: int, n: int) -> dict[str, Any]:
    delivery = {
        "webhook_id": f"wh_{webhook:024x}",
        "account_id": f"acct_{webhook % 4}",
        "delivery_id": f"msg_{webhook:08x}{n:024x}",
        "event_id": f"evt_{n}",
        "event_type": "product.synced",
        "attempt": 1,
    }
    return attempts.attempt_record(
        delivery, status=500, error=None, latency_ms=1.5, outcome="http_error",
        result=attempts.RETRY, at_ms=1_000_000 + n,
    )  # fmt: skip


def _log(per_webhook: int, kept: int) -> tuple[AttemptLog, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def on_attempt(record: dict[str, Any]) -> None:
        seen.append(record)

    settings = Settings(topic_prefix="t", attempts_per_webhook=per_webhook, attempts_kept=kept)
    return AttemptLog(settings, CODEC, on_attempt), seen


def _feed(log: AttemptLog, records: list[dict[str, Any]]) -> None:
    msgs = [Msg(CODEC.encode(TOPIC, schemas.DELIVERY_ATTEMPT, r)) for r in records]
    asyncio.run(log._on_batch(msgs))  # type: ignore[arg-type]


def test_attempts_kept_are_bounded_per_webhook_and_in_total() -> None:
    log, seen = _log(per_webhook=3, kept=10)
    records = [_attempt(w, n) for n in range(5) for w in range(20)]  # 100, interleaved
    _feed(log, records)

    assert len(seen) == 100  # every attempt still reaches endpoint health
    webhooks = [f"wh_{w:024x}" for w in range(20)]
    held = {w: log.recent(w) for w in webhooks}
    assert sum(map(len, held.values())) <= 10
    assert all(len(h) <= 3 for h in held.values())
    # The ones kept are the newest overall, newest first per webhook.
    newest = {(r["webhook_id"], r["delivery_id"]) for r in records[-10:]}
    assert {(w, a["delivery_id"]) for w, h in held.items() for a in h} == newest
    assert log.kept <= 10


def test_every_webhook_keeps_its_last_attempt_whatever_the_total() -> None:
    log, _ = _log(per_webhook=2, kept=5)
    _feed(log, [_attempt(w, n) for w in range(50) for n in range(4)])
    for w in range(50):
        last = log.last(f"wh_{w:024x}")
        assert last is not None and last["delivery_id"] == _attempt(w, 3)["delivery_id"]
    assert log.recent(f"wh_{49:024x}", 1)[0] == _attempt(49, 3)


def test_per_webhook_ring_newest_first_and_forget() -> None:
    log, _ = _log(per_webhook=3, kept=1000)
    _feed(log, [_attempt(1, n) for n in range(10)])
    wid = f"wh_{1:024x}"
    assert [a["event_id"] for a in log.recent(wid)] == ["evt_9", "evt_8", "evt_7"]
    assert [a["event_id"] for a in log.recent(wid, 2)] == ["evt_9", "evt_8"]
    log.forget(wid)
    assert log.recent(wid) == [] and log.last(wid) is None
    _feed(log, [_attempt(1, 11)])  # a webhook forgotten, then seen again, starts afresh
    assert [a["event_id"] for a in log.recent(wid)] == ["evt_11"]


@pytest.mark.parametrize("raw", ["0", "-5", "many"])
def test_attempts_kept_setting_is_checked(raw: str) -> None:
    with pytest.raises(ConfigError, match="SYNCTEC_ATTEMPTS_KEPT"):
        Settings.from_env({"SYNCTEC_ATTEMPTS_KEPT": raw})
    assert Settings.from_env({"SYNCTEC_ATTEMPTS_KEPT": "5000"}).attempts_kept == 5000


def test_an_attempt_record_is_its_deliverys_accounts() -> None:
    record = _attempt(5, 1)
    assert record["account_id"] == "acct_1"
    assert list(record) == [
        f["name"] for f in schemas.load().parsed(schemas.DELIVERY_ATTEMPT)["fields"]
    ]
    log, seen = _log(per_webhook=3, kept=10)
    _feed(log, [record])
    assert seen[0]["account_id"] == "acct_1"
    assert log.recent(f"wh_{5:024x}")[0]["account_id"] == "acct_1"


def test_an_attempt_logged_before_accounts_is_the_default_accounts(tmp_path: Path) -> None:
    (tmp_path / "delivery_attempt.avsc").write_text(
        (schemas.SCHEMA_DIR / "history" / "delivery_attempt.v1.avsc").read_text()
    )
    old = {k: v for k, v in _attempt(2, 7).items() if k != "account_id"}
    value = SingleObjectCodec(schemas.SchemaStore(tmp_path)).encode(
        TOPIC, schemas.DELIVERY_ATTEMPT, old
    )
    log, seen = _log(per_webhook=3, kept=10)
    asyncio.run(log._on_batch([Msg(value)]))  # type: ignore[arg-type]
    assert seen == [{**old, "account_id": "default"}]
