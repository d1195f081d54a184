"""The dashboard's fraud, webhooks and keys pages in a real browser (Playwright driving
Debian's chromium, one browser for the module) against a paymux server on SQLite with the
sandbox gateway and its worker; each test has an account of its own, its data made through
the API, and signs in through the login form with TOTP.

Acceptance (issue 15): approve a review; resend a webhook; roll a key; a support user cannot
see keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, expect

from conftest import Api, RunningServer, make_settings, migrated_database_url
from support.browser import launched_chromium
from support.dashboard import DashboardUser, encryption_keys, make_user
from support.processes import free_port
from support.webhook_receiver import Receiver

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
_USERS = iter(range(1000))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("dashboard-pages-browser")
    url = migrated_database_url("sqlite", tmp, None, "dashboard_pages_browser")
    settings = make_settings(url, tmp, free_port(), encryption_keys=encryption_keys())
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(server: RunningServer) -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def api(server: RunningServer) -> Iterator[Api]:
    made = Api(server)
    try:
        yield made
    finally:
        made.close()


def signed_in(browser: Browser, server: RunningServer, api: Api, role: str) -> Page:
    who: DashboardUser = make_user(
        server, api.account_id, role, f"{role}-{next(_USERS)}@example.com"
    )
    page = timed(browser.new_context(viewport=DESKTOP)).new_page()
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("h1")).to_have_text("Sign in to paymux")
    page.fill("#email", who.email)
    page.fill("#password", who.password)
    page.fill("#code", who.code())
    page.click("#sign-in")
    page.wait_for_url(f"{server.url}/dashboard")
    return page


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for work the server's worker does in the background (not a speed claim)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true: {what}")
        time.sleep(0.05)


def test_approve_a_review(browser: Browser, server: RunningServer, api: Api) -> None:
    api.ok("POST", "/v1/fraud/rules", {"rule": "review if :amount: > 5000"})
    pi = api.ok(
        "POST",
        "/v1/payment_intents",
        {
            "amount": 7000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        },
    )
    assert pi["status"] == "requires_capture"
    reviews = api.ok("GET", "/v1/reviews?open=true")["data"]
    assert [r["payment_intent"] for r in reviews] == [pi["id"]]
    review_id = reviews[0]["id"]
    page = signed_in(browser, server, api, "support")
    try:
        page.goto(f"{server.url}/dashboard/fraud")
        row = page.locator(f"#review-{review_id}")
        expect(row).to_contain_text(pi["id"])
        page.get_by_role("button", name=f"Approve review {review_id}").click()
        page.wait_for_url(f"{server.url}/dashboard/fraud")
        expect(page.locator(f"#review-{review_id}")).to_have_count(0)
        review = api.ok("GET", f"/v1/reviews/{review_id}")
        assert (review["open"], review["closed_reason"]) == (False, "approved")
        after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
        assert (after["status"], after["amount_received"]) == ("succeeded", 7000)
    finally:
        page.context.close()


def test_resend_a_webhook(browser: Browser, server: RunningServer, api: Api) -> None:
    with Receiver(lambda n: (200, "ok")) as rx:
        endpoint = api.ok(
            "POST",
            "/v1/webhook_endpoints",
            {
                "url": rx.url,
                "enabled_events": ["customer.created"],
            },
        )
        api.ok("POST", "/v1/customers", {"email": "resend@example.com"})
        eventually(lambda: len(rx.requests()) == 1, "the first delivery")
        event_id: str = rx.requests()[0].event["id"]
        page = signed_in(browser, server, api, "developer")
        try:
            page.goto(f"{server.url}/dashboard/webhooks")
            page.get_by_role("link", name=endpoint["id"]).click()
            expect(page.locator("h1")).to_have_text(f"Endpoint {endpoint['id']}")
            expect(page.locator("tbody")).to_contain_text("HTTP 200")
            page.get_by_role("button", name=f"Resend {event_id}").first.click()
            expect(page.locator("#resent")).to_contain_text(event_id)
            eventually(lambda: len(rx.requests()) == 2, "the resent delivery")
            assert [r.event["id"] for r in rx.requests()] == [event_id, event_id]
        finally:
            page.context.close()


def test_roll_a_key(browser: Browser, server: RunningServer, api: Api) -> None:
    old = api.key
    page = signed_in(browser, server, api, "admin")
    try:
        page.goto(f"{server.url}/dashboard/keys")
        row = page.locator("tbody tr").filter(has_text=f"...{old[-4:]}")
        row.get_by_label("Old key works for").select_option(label="Stop it now")
        row.get_by_role("button", name="Roll").click()
        expect(page.locator("h1")).to_have_text("Key rolled")
        new_key = page.locator("#new-key").input_value()
        assert new_key.startswith("sk_test_") and new_key != old
        refused = httpx.get(
            f"{server.url}/v1/customers", headers={"authorization": f"Bearer {old}"}
        )
        assert refused.status_code == 401
        works = httpx.get(
            f"{server.url}/v1/customers", headers={"authorization": f"Bearer {new_key}"}
        )
        assert works.status_code == 200
        page.goto(f"{server.url}/dashboard/keys")
        expect(page.locator("main")).to_contain_text(f"...{new_key[-4:]}")
        assert new_key not in page.content()  # shown once, on the roll's own answer
    finally:
        page.context.close()


def test_a_support_user_cannot_see_keys(browser: Browser, server: RunningServer, api: Api) -> None:
    page = signed_in(browser, server, api, "support")
    try:
        expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Developers")
        answer: Any = page.goto(f"{server.url}/dashboard/keys")
        assert answer.status == 403
        expect(page.locator("h1")).to_have_text("Not allowed")
        assert api.key[-4:] not in page.content()
    finally:
        page.context.close()
