"""The operations endpoint in-process (no broker): /metrics, /healthz, /readyz, the
librdkafka error listener, and the settings that configure it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from confluent_kafka import KafkaError
from prometheus_client import CollectorRegistry

from synctec_webhooks.config import DEFAULT_PORTS, ConfigError, OpsSettings, Settings
from synctec_webhooks.kafka import config as kafka
from synctec_webhooks.ops import server as ops
from synctec_webhooks.ops.metrics import Metrics
from synctec_webhooks.ops.server import OpsServer


def settings(port: int = 0, host: str = "127.0.0.1") -> Settings:
    return Settings(ops=OpsSettings(host=host, port=port))


async def fetch(server: OpsServer, path: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}{path}") as resp,
    ):
        return resp.status, resp.headers["Content-Type"], await resp.text()


def serve(test: Callable[[OpsServer], Awaitable[None]], server: OpsServer | None = None) -> None:
    async def main() -> None:
        async with server or OpsServer(settings(), ["deliver"]) as started:
            assert started.port > 0
            await test(started)

    asyncio.run(main())


def test_metrics_are_served_in_the_prometheus_format_after_refreshing() -> None:
    metrics = Metrics.create(CollectorRegistry())
    server = OpsServer(settings(), ["fanout"], metrics)
    calls: list[int] = []
    server.on_scrape(lambda: calls.append(1) or metrics.subscription_states(3, 1))

    def broken() -> None:
        raise RuntimeError("refresher bug")

    server.on_scrape(broken)

    async def test(s: OpsServer) -> None:
        status, content_type, body = await fetch(s, "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert 'synctec_subscriptions{state="enabled"} 3.0' in body
        assert 'synctec_deliveries_total{event_type="sync.failed",outcome="5xx"} 0.0' in body
        assert "_created" not in body
        assert calls == [1]

    serve(test, server)


def test_healthz_answers_while_the_loop_runs() -> None:
    async def test(s: OpsServer) -> None:
        status, _, body = await fetch(s, "/healthz")
        assert status == 200
        assert json.loads(body)["status"] == "ok" and json.loads(body)["roles"] == ["deliver"]

    serve(test)


async def ready(s: OpsServer) -> tuple[int, dict[str, Any]]:
    status, _, body = await fetch(s, "/readyz")
    return status, json.loads(body)


def test_readyz_needs_every_check_to_pass() -> None:
    async def test(s: OpsServer) -> None:
        status, body = await ready(s)
        assert status == 503 and "no worker has registered" in json.dumps(body)
        s.add_check("deliver", lambda: (True, "joined"))

        async def caught_up() -> tuple[bool, str]:
            return True, "caught up"

        s.add_check("subscriptions", caught_up)
        status, body = await ready(s)
        assert status == 200 and body["ready"]
        assert body["checks"]["subscriptions"] == {"ok": True, "detail": "caught up"}
        s.add_check("retry", lambda: (False, "group rebalancing"))
        status, body = await ready(s)
        assert status == 503 and not body["ready"]
        assert body["checks"]["retry"] == {"ok": False, "detail": "group rebalancing"}
        assert body["checks"]["deliver"]["ok"]

    serve(test)


def test_a_check_that_raises_or_hangs_means_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "CHECK_TIMEOUT", 0.2)

    def boom() -> tuple[bool, str]:
        raise TimeoutError("subscriptions did not catch up")

    async def hangs() -> tuple[bool, str]:
        await asyncio.sleep(10)
        return True, ""

    async def test(s: OpsServer) -> None:
        s.add_check("fanout", boom)
        s.add_check("slow", hangs)
        status, body = await ready(s)
        assert status == 503
        assert "subscriptions did not catch up" in body["checks"]["fanout"]["detail"]
        assert "TimeoutError" in body["checks"]["slow"]["detail"]

    serve(test)


def test_not_ready_once_stopping() -> None:
    async def test(s: OpsServer) -> None:
        stop = asyncio.Event()
        s.add_check("deliver", lambda: (True, "joined"))
        s.follow(stop)
        assert (await ready(s))[0] == 200
        stop.set()
        status, body = await ready(s)
        assert status == 503 and "shutting down" in body["checks"]["stopping"]["detail"]

    serve(test)


def test_librdkafka_errors_are_counted_while_the_server_runs() -> None:
    metrics = Metrics.create(CollectorRegistry())

    def count(code: str) -> float | None:
        return metrics.registry.get_sample_value("synctec_kafka_errors_total", {"code": code})

    async def test(_s: OpsServer) -> None:
        kafka._error_cb(KafkaError(KafkaError._TRANSPORT))
        kafka._error_cb(KafkaError(KafkaError._TRANSPORT))
        kafka._error_cb(KafkaError(KafkaError._DESTROY))  # a client closing: not an error
        kafka._error_cb(KafkaError(KafkaError._AUTHENTICATION))

    serve(test, OpsServer(settings(), ["fanout"], metrics))
    assert count("_TRANSPORT") == 2
    assert count("_AUTHENTICATION") == 1
    assert count("_DESTROY") is None
    kafka._error_cb(KafkaError(KafkaError._TRANSPORT))  # after stop: no longer listening
    assert count("_TRANSPORT") == 2


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            with pytest.raises(OSError, match="SYNCTEC_METRICS_PORT"):
                await OpsServer(settings(port=port), ["retry"]).start()

        asyncio.run(main())


def test_url_of_a_wildcard_address_is_loopback() -> None:
    async def test(s: OpsServer) -> None:
        assert s.url == f"http://127.0.0.1:{s.port}"
        assert (await fetch(s, "/healthz"))[0] == 200

    serve(test, OpsServer(settings(host="0.0.0.0"), ["run"]))


# --- settings -------------------------------------------------------------------------


def test_ops_settings_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "SYNCTEC_METRICS_HOST": "0.0.0.0",
            "SYNCTEC_METRICS_PORT": "0",
            "SYNCTEC_STATS_INTERVAL_MS": "1000",
            "SYNCTEC_METRICS_PER_WEBHOOK": " wh_1, ,wh_2 ",
            "SYNCTEC_METRICS_PER_WEBHOOK_CAP": "7",
            "SYNCTEC_METRICS_PER_ACCOUNT": "acct_1 ,, *",
            "SYNCTEC_METRICS_PER_ACCOUNT_CAP": "3",
        }
    ).ops
    assert s == OpsSettings("0.0.0.0", 0, 1000, ("wh_1", "wh_2"), 7, ("acct_1", "*"), 3)
    assert s.port_for(["deliver"]) == 0
    defaults = Settings.from_env({}).ops
    assert defaults == OpsSettings()
    assert [defaults.port_for([r]) for r in ("fanout", "deliver", "retry")] == [9401, 9402, 9403]
    assert defaults.port_for(["fanout", "deliver", "retry"]) == DEFAULT_PORTS["run"]
    assert defaults.port_for(["admin"]) == 9404


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SYNCTEC_METRICS_PORT", "-1"),
        ("SYNCTEC_METRICS_PORT", "65536"),
        ("SYNCTEC_METRICS_PORT", "http"),
        ("SYNCTEC_STATS_INTERVAL_MS", "0"),
        ("SYNCTEC_METRICS_PER_WEBHOOK_CAP", "0"),
        ("SYNCTEC_METRICS_PER_ACCOUNT_CAP", "0"),
        ("SYNCTEC_METRICS_PER_ACCOUNT_CAP", "10001"),
    ],
)
def test_bad_ops_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_the_servers_metrics_follow_the_per_account_settings() -> None:
    env = {"SYNCTEC_METRICS_PER_ACCOUNT": "*", "SYNCTEC_METRICS_PER_ACCOUNT_CAP": "2"}
    metrics = OpsServer(Settings.from_env(env), ["deliver"]).metrics
    assert [metrics.accounts.label(a) for a in ("a", "b", "c", "a")] == ["a", "b", "_other", "a"]
    chosen = OpsServer(Settings.from_env({"SYNCTEC_METRICS_PER_ACCOUNT": "b"}), ["fanout"])
    assert [chosen.metrics.accounts.label(a) for a in ("a", "b")] == ["_other", "b"]
    nobody = OpsServer(Settings.from_env({}), ["retry"]).metrics
    assert not nobody.accounts.enabled and nobody.accounts.label("a") == "_other"
