"""The settings page in a real browser (Debian's headless Chromium, driven by Playwright),
against the live admin service, workers and broker: add a webhook with the form, keep
the secret it shows once, send a test, watch it arrive and show up in the attempts;
replay a dead letter from the page. With accounts (issue 12): a merchant's portal link
shows that account's webhooks, dead letters and activity and nothing of another
account's; a read-only link offers no change; an expired or revoked link says so and
where to get a new one; the operator picks the account.

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

from synctec_webhooks import portal_links
from synctec_webhooks.signing import verify_standard, verify_storelink
from tests.integration.admin_client import AdminClient
from tests.integration.harness import ADMIN, ROLES, Pipeline, Receiver, always, wait_until

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


def dead_row(page: Page, dead_letter_id: str) -> Locator:
    return page.locator(f"#dead-letters tbody tr[data-id='{dead_letter_id}']")


def watched(page: Page) -> list[str]:
    """Script errors and CSP violations on `page`, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return errors


def test_add_a_webhook_send_a_test_and_replay_a_dead_letter_in_the_browser(
    pipeline: Pipeline, receiver: Receiver, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = watched(page)
    page.goto(f"{pipeline.admin_url()}/#token={pipeline.admin_token}")
    expect(page.locator("#app")).to_be_visible()
    assert "#token" not in page.url  # taken out of the address bar
    # The operator token: an account picker, on the default account.
    expect(page.locator("#account-picker")).to_be_visible()
    expect(page.locator("#account-picker")).to_have_value("default")

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


# --- accounts (issue 12) -------------------------------------------------------------

CHANGES = ("Send test", "Rotate secret", "Disable", "Enable", "Delete", "Replay", "Save")


def dead_letter_of(api: AdminClient, account: str, webhook_id: str) -> dict:
    """The dead letter of `webhook_id`'s test event, once the retries are through."""

    def found() -> list[dict]:
        answer = api.get(f"/dead-letters?account_id={account}&webhook_id={webhook_id}")
        assert answer.status == 200, answer.body
        return answer.body["dead_letters"]

    wait_until(lambda: len(found()) == 1, 30, lambda: str(found()))
    return found()[0]


def test_a_portal_link_shows_its_account_only_read_only_links_change_nothing_and_old_links_say_so(
    pipeline: Pipeline, receiver: Receiver, browser: Browser, tmp_path: Path
) -> None:
    base = pipeline.admin_url()
    op = AdminClient(base, pipeline.admin_token)
    for account in ("acct_a", "acct_b"):
        answer = op.post("/accounts", {"id": account, "name": f"Merchant {account[-1].upper()}"})
        assert answer.status == 201, answer.body
    # Each account: one webhook whose endpoint fails, so its test ends as a dead letter.
    hooks = {}
    for account in ("acct_a", "acct_b"):
        path = f"/{account}-endpoint"
        receiver.script(path, always(503))
        created = op.post(
            "/webhooks", {"url": receiver.url(path), "events": ["*"], "account_id": account}
        )
        assert created.status == 201, created.body
        assert created.body["account_id"] == account
        assert op.post(f"/webhooks/{created.body['id']}/test", {}).status == 202
        hooks[account] = created.body
    dead = {account: dead_letter_of(op, account, hooks[account]["id"]) for account in hooks}
    b_texts = [
        hooks["acct_b"]["id"],
        hooks["acct_b"]["url"],
        dead["acct_b"]["dead_letter_id"],
        dead["acct_b"]["event_id"],
    ]

    # A portal link for A that may change things, opened as the merchant opens it.
    link = op.post("/accounts/acct_a/portal-links", {"scope": "manage"})
    assert link.status == 201, link.body
    assert link.body["url"].startswith(base) and "#token=" in link.body["url"]
    page = browser.new_context().new_page()
    errors = watched(page)
    page.goto(link.body["url"])
    expect(page.locator("#app")).to_be_visible()
    assert "#token" not in page.url
    expect(page.locator("#account-id")).to_have_text("acct_a")  # in the header
    expect(page.locator("#account-picker")).to_be_hidden()
    expect(row(page, hooks["acct_a"]["url"])).to_be_visible()
    a_dead = dead_row(page, dead["acct_a"]["dead_letter_id"])
    expect(a_dead.get_by_role("button", name="Replay")).to_be_visible()
    expect(page.locator("#activity tbody tr", has_text="Test event sent")).to_be_visible()
    # The merchant adds a webhook: it is A's, and the activity says who did it.
    new_url = receiver.url("/added-with-the-link")
    page.fill("#add-url", new_url)
    page.check("#add-events input[value='sync.failed']")
    page.click("#add-save")
    expect(page.locator("#secret")).to_have_text(re.compile(r"^whsec_"))
    expect(row(page, new_url)).to_be_visible()
    [added] = [w for w in op.get("/webhooks?account_id=acct_a").body["webhooks"]
               if w["url"] == new_url]  # fmt: skip
    assert added["account_id"] == "acct_a"
    activity = page.locator("#activity tbody tr", has_text="Webhook added").filter(
        has_text="Settings page"
    )
    expect(activity.first).to_be_visible()
    page.wait_for_timeout(2500)  # a refresh or more: B's data must not come in later
    html = page.content()
    assert [text for text in b_texts if text in html] == []

    # A read-only link: the same account's data, and nothing to change it with.
    read = op.post("/accounts/acct_a/portal-links", {"scope": "read"})
    assert read.status == 201, read.body
    ro = browser.new_context().new_page()
    ro_errors = watched(ro)
    ro.goto(read.body["url"])
    expect(row(ro, hooks["acct_a"]["url"])).to_be_visible()
    expect(dead_row(ro, dead["acct_a"]["dead_letter_id"])).to_be_visible()
    expect(ro.locator("#scope")).to_have_text("read only")
    expect(ro.locator("#add-section")).to_be_hidden()
    for name in CHANGES:
        expect(ro.get_by_role("button", name=name, exact=True)).to_have_count(0)
    assert ro.locator("button:visible").all_inner_texts() == ["Attempts"] * 2
    assert [text for text in b_texts if text in ro.content()] == []
    ro.screenshot(path=str(tmp_path / "read-only-link.png"), full_page=True)

    # A link that expired: a clear message, not the token prompt.
    key = portal_links.signing_key(pipeline.settings.portal_signing_key, pipeline.admin_token)
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    expired, _ = portal_links.issue("acct_a", "manage", 600, key, now_ms=two_hours_ago)
    old = browser.new_context().new_page()
    old_errors = watched(old)
    old.goto(f"{base}/#token={expired}")
    expect(old.locator("#link-problem")).to_contain_text(
        "This link has expired. Open Settings → Webhooks again from your StoreLink dashboard"
    )
    expect(old.locator("#login")).to_be_hidden()
    expect(old.locator("#app")).to_be_hidden()
    old.screenshot(path=str(tmp_path / "expired-link.png"), full_page=True)

    # "Expire all links" of A: the open page says so on its next refresh.
    assert op.post("/accounts/acct_a/portal-links/revoke").status == 204
    expect(page.locator("#link-problem")).to_contain_text("revoked", timeout=20_000)
    expect(page.locator("#link-problem")).to_contain_text("from your StoreLink dashboard")
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#login")).to_be_hidden()

    # The operator picks the account: B's webhook under B, not A's.
    admin = browser.new_context().new_page()
    admin_errors = watched(admin)
    admin.goto(f"{base}/#token={pipeline.admin_token}")
    expect(admin.locator("#account-picker option")).to_have_count(3)  # default, A, B
    admin.select_option("#account-picker", "acct_b")
    expect(row(admin, hooks["acct_b"]["url"])).to_be_visible()
    expect(row(admin, hooks["acct_a"]["url"])).to_have_count(0)
    expect(dead_row(admin, dead["acct_b"]["dead_letter_id"])).to_be_visible()
    assert errors + ro_errors + old_errors + admin_errors == []
