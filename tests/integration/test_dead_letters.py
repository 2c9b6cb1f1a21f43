"""Dead letters against a real broker, the delivery worker and the admin service: one
dead letter per delivery and round however many retry chains it had, each replayed once
however many replays run at once, replays of a deleted webhook refused, credentials
redacted in the CLI too, and the API's list served a page at a time (issue 11, points
6, 7, 9 and 11).

The dead letters are written here as the workers write them (`deadletters.build`, the
same codec and key), so each case is exact: two chains of one delivery are what a
delivery worker killed between its retry record's ack and its offset commit leaves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient as KafkaAdmin

from synctec_webhooks import deadletters, deliveries, schemas
from synctec_webhooks.matching import Subscription
from synctec_webhooks.serialization import make_codec
from synctec_webhooks.topics import Topics
from tests.integration.admin_client import AdminClient
from tests.integration.harness import ADMIN, Pipeline, Receiver, product_synced, wait_until

pytestmark = pytest.mark.broker

CLI = [sys.executable, "-m", "synctec_webhooks.cli"]
PASSWORD = "s3cr3t-pw"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, f"dl{os.urandom(4).hex()}", tmp_path_factory.mktemp("dl"))
    try:
        yield p.start(["deliver", ADMIN])
    finally:
        p.stop_and_check()


@pytest.fixture
def api(pipeline: Pipeline) -> AdminClient:
    return AdminClient(pipeline.admin_url(), pipeline.admin_token)


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "dead-letters", *args],
        env={**os.environ, **pipeline.env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def planned(sub: Subscription, created_at: int | None = None) -> dict[str, Any]:
    """A delivery record of a fresh event for `sub`, as the fan-out plans it."""
    event = {
        **product_synced(f"p-{uuid.uuid4().hex[:8]}"),
        "id": f"evt_{uuid.uuid4().hex}",
        "account_id": sub.account_id,
    }
    now = created_at or int(time.time() * 1000)
    [plan] = deliveries.plan("product.synced", event, [sub], now)
    return plan.record


def failed(delivery: dict[str, Any], attempts: int, url: str) -> dict[str, Any]:
    """`delivery` after `attempts` failed POSTs to `url`."""
    at = delivery["created_at"]
    history = [
        {"attempt": n, "at": at + n, "status": 500, "error": "HTTP 500", "latency_ms": 1.0,
         "url": url}
        for n in range(1, attempts + 1)
    ]  # fmt: skip
    return {**delivery, "attempt": attempts, "history": history}


def dead(delivery: dict[str, Any], offset: int, reason: str = "retries_exhausted") -> dict:
    source = deadletters.Source("retry.3", offset % 3, offset)
    now = int(time.time() * 1000)
    return deadletters.build(reason, f"{reason}: see history", source, now, delivery=delivery)


def inject(pipeline: Pipeline, records: list[dict[str, Any]]) -> None:
    """Dead letters onto the topic, as the workers write them."""
    topic = Topics(pipeline.settings.topic_prefix).deadletters
    codec = make_codec(None)
    producer = Producer({"bootstrap.servers": pipeline.settings.bootstrap_servers})
    for record in records:
        value = codec.encode(topic, schemas.DEAD_LETTER, record)
        producer.produce(topic, value=value, key=deadletters.key_of(record))
    assert producer.flush(30) == 0


def listed(api: AdminClient, query: str) -> list[dict[str, Any]]:
    answer = api.get(f"/dead-letters?{query}")
    assert answer.status == 200, answer.body
    return answer.body["dead_letters"]


def wait_listed(api: AdminClient, query: str, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(listed(api, query)) >= count, 30, lambda: str(listed(api, query)))
    return listed(api, query)


def posts_by_event(receiver: Receiver, path: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in receiver.received(path):
        counts[r.json["id"]] = counts.get(r.json["id"], 0) + 1
    return counts


# --- 6: one dead letter per delivery, replayed once --------------------------------------


def test_two_retry_chains_of_one_delivery_are_one_dead_letter_replayed_once(
    pipeline: Pipeline, api: AdminClient, receiver: Receiver
) -> None:
    sub = pipeline.add_webhook(receiver.url("/chains"))
    delivery = planned(sub)
    # Chain 1 dead-lettered after 4 attempts; chain 2 (the worker restarted before its
    # offset committed) after 4 more, from another retry record.
    inject(
        pipeline,
        [dead(failed(delivery, 4, sub.url), 11), dead(failed(delivery, 4, sub.url), 12)],
    )
    time.sleep(1)
    [one] = wait_listed(api, f"webhook_id={sub.id}", 1)
    assert one["delivery_id"] == delivery["delivery_id"] and one["replayed_at"] is None
    rows = [json.loads(line) for line in cli(pipeline, "list", "--json").stdout.splitlines()]
    assert [r["dead_letter_id"] for r in rows if r["webhook_id"] == sub.id] == [
        one["dead_letter_id"]
    ]

    answer = api.post("/dead-letters/replay", {"webhook_id": sub.id})
    assert answer.status == 200, answer.body
    assert (answer.body["replayed"], answer.body["not_replayable"]) == (1, 0)
    receiver.wait_for(1, "/chains")
    time.sleep(2)  # time enough for a second POST to show up
    assert posts_by_event(receiver, "/chains") == {delivery["event_id"]: 1}
    [again] = listed(api, f"webhook_id={sub.id}")
    assert again["replayed_at"] is not None


def test_concurrent_replays_through_the_api_and_the_cli_replay_each_dead_letter_once(
    pipeline: Pipeline, api: AdminClient, receiver: Receiver
) -> None:
    sub = pipeline.add_webhook(receiver.url("/concurrent"))
    records = [dead(failed(planned(sub), 4, sub.url), 100 + n) for n in range(30)]
    inject(pipeline, records)
    wait_listed(api, f"webhook_id={sub.id}&limit=100", 30)

    counts: list[int] = []
    errors: list[str] = []
    start = threading.Barrier(4)

    def by_api() -> None:
        start.wait()
        answer = api.post("/dead-letters/replay", {"webhook_id": sub.id})
        if answer.status != 200:
            errors.append(str(answer.body))
        else:
            counts.append(answer.body["replayed"])

    def by_cli() -> None:
        start.wait()
        res = cli(pipeline, "replay", "--webhook", sub.id)
        found = re.search(r"replayed (\d+)", res.stdout)
        if res.returncode != 0 or found is None:
            errors.append(res.stdout + res.stderr)
        else:
            counts.append(int(found.group(1)))

    threads = [threading.Thread(target=f) for f in (by_api, by_api, by_cli, by_cli)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert errors == []
    assert sum(counts) == 30, counts  # each dead letter counted by exactly one replay
    receiver.wait_for(30, "/concurrent")
    time.sleep(3)  # time enough for doubles to show up
    got = posts_by_event(receiver, "/concurrent")
    assert got == {r["event_id"]: 1 for r in records}
    assert all(d["replayed_at"] for d in listed(api, f"webhook_id={sub.id}&limit=100"))


def test_the_cli_refuses_a_replay_without_a_filter_as_the_api_does(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, receiver: Receiver
) -> None:
    # A pipeline of its own, no workers: `--all` below must only see these dead letters.
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    sub = p.add_webhook(receiver.url("/all"))
    inject(p, [dead(failed(planned(sub), 4, sub.url), 7)])

    def state() -> list[dict[str, Any]]:
        out = cli(p, "list", "--json").stdout
        return [json.loads(line) for line in out.splitlines()]

    wait_until(lambda: len(state()) == 1, 30)
    refused = cli(p, "replay")
    assert refused.returncode == 2, refused.stdout
    assert "--all" in refused.stderr and "nothing was replayed" in refused.stderr
    assert state()[0]["replayed_at"] is None

    done = cli(p, "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert "replayed 1 dead letter" in done.stdout
    assert state()[0]["replayed_at"] is not None


# --- 7: a deleted webhook's topic is not recreated -----------------------------------------


def test_replaying_for_a_deleted_webhook_neither_recreates_its_topic_nor_marks_it(
    pipeline: Pipeline, api: AdminClient, receiver: Receiver
) -> None:
    created = api.post("/webhooks", {"url": receiver.url("/deleted"), "events": ["*"]})
    assert created.status == 201, created.body
    wid = created.body["id"]
    sub = pipeline.writer.list()
    [stored] = [s for s in sub if s.id == wid]
    inject(pipeline, [dead(failed(planned(stored), 4, stored.url), 300)])
    wait_listed(api, f"webhook_id={wid}", 1)

    assert api.delete(f"/webhooks/{wid}").status == 204
    topic = Topics(pipeline.settings.topic_prefix).delivery(wid)
    kafka = KafkaAdmin({"bootstrap.servers": pipeline.settings.bootstrap_servers})
    kafka.delete_topics([topic])[topic].result(30)
    wait_until(lambda: topic not in kafka.list_topics(timeout=10).topics, 30)

    answer = api.post("/dead-letters/replay", {"webhook_id": wid})
    assert answer.status == 200, answer.body
    assert answer.body == {
        "replayed": 0,
        "not_replayable": 1,
        "not_replayable_reasons": {"webhook_not_found": 1},
    }
    res = cli(pipeline, "replay", "--webhook", wid)
    assert res.returncode == 0, res.stderr
    assert "replayed 0 dead letters" in res.stdout
    assert "1 not replayable: the webhook was deleted" in res.stdout
    time.sleep(2)  # a producer's auto-creation would have happened by now
    assert topic not in kafka.list_topics(timeout=10).topics
    [left] = listed(api, f"webhook_id={wid}")
    assert left["replayed_at"] is None  # left as it was
    assert receiver.received("/deleted") == []


# --- 9: credentials redacted in the CLI as in the API ------------------------------------


def test_dead_letter_urls_are_redacted_in_the_cli_as_in_the_api(
    pipeline: Pipeline, api: AdminClient, receiver: Receiver
) -> None:
    sub = pipeline.add_webhook(receiver.url("/redact"))
    url = f"http://merchant:{PASSWORD}@127.0.0.1:{receiver.port}/redact"
    delivery = failed(planned(sub), 1, url)
    record = dead(delivery, 400, reason="invalid_url")
    record["detail"] = f"cannot request {url}"
    record["history"][0]["error"] = f"connection refused: {url}"
    inject(pipeline, [record])
    [shown] = wait_listed(api, f"webhook_id={sub.id}", 1)
    assert PASSWORD not in json.dumps(shown)

    for args in (("list", "--json", "--webhook", sub.id), ("list", "--webhook", sub.id)):
        res = cli(pipeline, *args)
        assert res.returncode == 0, res.stderr
        assert sub.id in res.stdout and PASSWORD not in res.stdout, res.stdout
        assert "merchant:***@" in res.stdout
    [row] = [json.loads(x) for x in cli(pipeline, "list", "--json").stdout.splitlines()
             if sub.id in x]  # fmt: skip
    assert row == shown  # the CLI prints the API's view


# --- 11: the API lists a page at a time --------------------------------------------------


def test_dead_letters_are_listed_a_page_at_a_time_newest_first(
    pipeline: Pipeline, api: AdminClient, receiver: Receiver
) -> None:
    sub = pipeline.add_webhook(receiver.url("/pages"))
    base = int(time.time() * 1000) - 3_600_000
    records = [dead(failed(planned(sub, base + n * 1000), 4, sub.url), 500 + n) for n in range(25)]
    inject(pipeline, records)
    wait_listed(api, f"webhook_id={sub.id}&limit=100", 25)

    pages, cursor = [], ""
    while True:
        answer = api.get(f"/dead-letters?webhook_id={sub.id}&limit=10{cursor}")
        assert answer.status == 200, answer.body
        pages.append([d["event_id"] for d in answer.body["dead_letters"]])
        if answer.body["next_cursor"] is None:
            break
        cursor = f"&cursor={answer.body['next_cursor']}"
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [e for p in pages for e in p] == [r["event_id"] for r in reversed(records)]

    bad = api.get("/dead-letters?cursor=nonsense")
    assert bad.status == 400 and bad.body["error"]["code"] == "invalid_query"
    assert "cursor" in bad.body["error"]["message"]
