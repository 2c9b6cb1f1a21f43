"""The settings page in a real browser (Debian's headless Chromium, driven by Playwright),
against the live admin service, workers and broker: add a webhook with the form, keep
the secret it shows once, send a test, watch it arrive and show up in the attempts;
replay a dead letter from the page.

`make browser` installs /usr/bin/chromium. With SYNCTEC_SCREENSHOT=path the final page
is also saved there (`make screenshot` refreshes docs/settings-page.png).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from synctec_webhooks.signing import verify_standard, verify_storelink
from tests.integration.admin_client import AdminClient
from tests.integration.harness import ADMIN, ROLES, Pipeline, Receiver, always

pytestmark = pytest.mark.broker

CHROMIUM = "/usr/bin/chromium"
# Headless, and quiet: without the background-networking flags Chromium keeps trying to
# reach Google services, which this network does not allow.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def pipeline(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    try:
        yield p.start([*ROLES, ADMIN])
    finally:
        p.stop_and_check()


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `make browser`"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def row(page: Page, url: str) -> Locator:
    return page.locator("#webhooks tbody tr", has_text=url)


def test_add_a_webhook_send_a_test_and_replay_a_dead_letter_in_the_browser(
    pipeline: Pipeline, receiver: Receiver, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{pipeline.admin_url()}/#token={pipeline.admin_token}")
    expect(page.locator("#app")).to_be_visible()
    assert "#token" not in page.url  # taken out of the address bar

    # Add a webhook with the form: URL, one event box, save; the secret shows once.
    url = receiver.url("/from-the-page")
    page.fill("#add-url", url)
    page.check("#add-events input[value='product.synced']")
    page.fill("#add-description", "added in the browser")
    page.click("#add-save")
    secret = page.locator("#secret")
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    shown = secret.inner_text()
    expect(row(page, url)).to_contain_text("enabled")
    expect(row(page, url)).to_contain_text("product.synced")

    # Send a test: it goes through the pipeline to this endpoint and is signed with the
    # secret the page showed.
    row(page, url).get_by_role("button", name="Send test").click()
    [got] = receiver.wait_for(1, "/from-the-page")
    assert got.json["event"] == "product.synced" and got.json["id"].startswith("evt_test_")
    assert verify_storelink(shown, got.body, got.header("X-StoreLink-Signature"))
    assert verify_standard(shown, got.headers, got.body, now=int(time.time()))
    attempts = page.locator("#attempts tbody tr")
    expect(attempts.first).to_contain_text("HTTP 200", timeout=20_000)
    expect(attempts.first).to_contain_text("delivered")
    expect(row(page, url).locator(".last-result")).to_contain_text("HTTP 200", timeout=20_000)

    # An endpoint that fails: its test ends as a dead letter, replayed from the page once
    # the endpoint is fixed.
    receiver.script("/broken", always(503))
    broken = AdminClient(pipeline.admin_url(), pipeline.admin_token).post(
        "/webhooks", {"url": receiver.url("/broken"), "events": ["*"]}
    )
    assert broken.status == 201
    expect(row(page, receiver.url("/broken"))).to_be_visible(timeout=20_000)
    row(page, receiver.url("/broken")).get_by_role("button", name="Send test").click()
    dead = page.locator("#dead-letters tbody tr", has_text=broken.body["id"])
    expect(dead).to_contain_text("retries_exhausted", timeout=30_000)
    receiver.script("/broken", always(200))
    dead.get_by_role("button", name="Replay").click()
    receiver.wait_for(5, "/broken")  # 4 failed attempts, then the replay
    expect(dead).to_contain_text("replayed", timeout=20_000)

    row(page, url).get_by_role("button", name="Attempts").click()
    expect(page.locator("#attempts-for")).to_contain_text(url)
    page.wait_for_timeout(500)  # let the auto-refresh settle before the picture
    shot = os.environ.get("SYNCTEC_SCREENSHOT") or str(tmp_path / "settings-page.png")
    page.screenshot(path=shot, full_page=True)
    assert errors == []
