"""The dashboard in a real browser (Playwright driving Debian's chromium, one browser for the
module) against a paymux server (SQLite) with test data made through the API.

Acceptance (issue 15): log in with TOTP; find a failed payment and read its decline reason;
refund a payment, a double click refunding once; a support user cannot see the keys page; a
POST without the CSRF token is refused; axe-core finds no serious or critical violation on any
page; no page, nor its source, holds a card number (a Luhn-valid digit run), a secret key, a
webhook secret, a client secret, a password or a TOTP secret; the screenshots of every page
at desktop and mobile width (docs/img/dashboard-*.png, rewritten only when
PAYMUX_DOCS_SCREENSHOTS=1 asks; otherwise taken into a temporary directory and checked)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, BrowserContext, Page, expect

from conftest import Api, RunningServer
from support.browser import axe_source, card_runs, launched_chromium
from support.dashboard import DashboardUser, dashboard_server, make_user

pytestmark = pytest.mark.browser

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 390, "height": 844}
_USERS = iter(range(1000))


@dataclass
class Seed:
    api: Api
    paid: dict[str, Any]
    failed: dict[str, Any]
    held: dict[str, Any]
    customer: dict[str, Any]
    webhook_secret: str
    endpoint_id: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("dashboard-browser")
    yield from dashboard_server("sqlite", tmp, None, "dashboard_browser")


@pytest.fixture(scope="module")
def seed(server: RunningServer) -> Iterator[Seed]:
    api = Api(server)
    customer = api.ok("POST", "/v1/customers", {"email": "ada@example.com", "name": "Ada L."})
    api.ok("POST", "/v1/payment_methods/pm_card_visa/attach", {"customer": customer["id"]})
    paid = api.ok("POST", "/v1/payment_intents", {
        "amount": 4430, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
        "customer": customer["id"], "description": "Linen shirt x2",
        "metadata": {"order_id": "1042"}})
    failed = api.ok("POST", "/v1/payment_intents", {"amount": 1200, "currency": "usd",
                                                    "description": "Gift card"})
    declined = api.post(f"/v1/payment_intents/{failed['id']}/confirm",
                        {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert declined.status_code == 402
    held = api.ok("POST", "/v1/payment_intents", {
        "amount": 2500, "currency": "eur", "payment_method": "pm_card_mastercard",
        "confirm": True, "capture_method": "manual"})
    endpoint = api.ok("POST", "/v1/webhook_endpoints", {
        "url": "https://shop.example/hooks", "enabled_events": ["*"]})
    try:
        yield Seed(api, paid, failed, held, customer, str(endpoint["secret"]), endpoint["id"])
    finally:
        api.close()


@pytest.fixture(scope="module")
def browser(server: RunningServer) -> Iterator[Browser]:
    yield from launched_chromium()


def new_user(server: RunningServer, seed: Seed, role: str) -> DashboardUser:
    return make_user(server, seed.api.account_id, role, f"{role}-{next(_USERS)}@example.com")


def log_in(page: Page, server: RunningServer, who: DashboardUser, start: str) -> None:
    page.goto(f"{server.url}{start}")
    expect(page.locator("h1")).to_have_text("Sign in to paymux")
    page.fill("#email", who.email)
    page.fill("#password", who.password)
    page.fill("#code", who.code())
    page.click("#sign-in")


@pytest.fixture(scope="module")
def admin_state(server: RunningServer, seed: Seed, browser: Browser) -> dict[str, Any]:
    """A signed-in admin's cookies (signed in once, through the form), for the other tests."""
    context = timed(browser.new_context(viewport=DESKTOP))
    try:
        page = context.new_page()
        log_in(page, server, new_user(server, seed, "admin"), "/dashboard/payments")
        page.wait_for_url(f"{server.url}/dashboard/payments")
        state: dict[str, Any] = context.storage_state()
        return state
    finally:
        context.close()


@pytest.fixture
def admin(browser: Browser, admin_state: dict[str, Any]) -> Iterator[Page]:
    context = timed(browser.new_context(viewport=DESKTOP, storage_state=admin_state))
    try:
        yield context.new_page()
    finally:
        context.close()


def test_log_in_with_totp(browser: Browser, server: RunningServer, seed: Seed) -> None:
    someone = new_user(server, seed, "view_only")
    context = timed(browser.new_context(viewport=DESKTOP))
    try:
        page = context.new_page()
        log_in(page, server, someone, "/dashboard/payments")
        page.wait_for_url(f"{server.url}/dashboard/payments")
        expect(page.locator(".who")).to_have_text(f"{someone.email} (view-only)")
        expect(page.locator(f'tr[data-id="{seed.paid["id"]}"]')).to_be_visible()
        # Signed out, the pages are closed again.
        page.click("text=Sign out")
        page.wait_for_url(re.compile(r".*/dashboard/login$"))
        page.goto(f"{server.url}/dashboard/payments")
        expect(page.locator("h1")).to_have_text("Sign in to paymux")
    finally:
        context.close()


def test_a_wrong_code_does_not_sign_in(browser: Browser, server: RunningServer, seed: Seed) -> None:
    someone = new_user(server, seed, "admin")
    context = timed(browser.new_context(viewport=DESKTOP))
    try:
        page = context.new_page()
        page.goto(f"{server.url}/dashboard/login")
        page.fill("#email", someone.email)
        page.fill("#password", someone.password)
        page.fill("#code", "000000" if someone.code() != "000000" else "111111")
        page.click("#sign-in")
        expect(page.locator("#login-error")).to_contain_text("do not match")
        assert not [c for c in context.cookies() if c["name"] == "paymux_dashboard"]
    finally:
        context.close()


def test_find_a_failed_payment_and_read_its_decline_reason(
    admin: Page, server: RunningServer, seed: Seed
) -> None:
    admin.goto(f"{server.url}/dashboard/payments")
    admin.select_option("#f-status", "failed")
    admin.click("text=Filter")
    rows = admin.locator("#payments tbody tr")
    expect(rows).to_have_count(1)
    admin.click(f"text={seed.failed['id']}")
    expect(admin.locator("#decline-reason")).to_have_text("insufficient_funds")
    expect(admin.locator("#decline-code")).to_have_text("card_declined")
    expect(admin.locator("#decline-message")).not_to_be_empty()
    expect(admin.locator("#timeline")).to_contain_text("payment_intent.payment_failed")


def test_refund_with_a_double_click_refunds_once(
    admin: Page, server: RunningServer, seed: Seed
) -> None:
    pi = seed.api.ok("POST", "/v1/payment_intents", {
        "amount": 1990, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True})
    admin.goto(f"{server.url}/dashboard/payments/{pi['id']}")
    admin.click("#action-refund")
    expect(admin.locator("h1")).to_have_text("Refund this payment?")
    expect(admin.locator("#amount")).to_have_value("19.90")
    admin.dblclick("#confirm")
    # The second click's submission may abort the first's navigation (ERR_ABORTED), which
    # ``wait_for_url`` reports as an error: the page's address is what is checked.
    expect(admin).to_have_url(re.compile(rf".*/dashboard/payments/{pi['id']}\?done=.*"))
    done = seed.api.wait_for(f"/v1/payment_intents/{pi['id']}", "amount_refunded", 1990)
    refunds = seed.api.ok("GET", f"/v1/refunds?payment_intent={pi['id']}")["data"]
    assert [(r["amount"], r["status"]) for r in refunds] == [(1990, "succeeded")]
    assert done["amount_refunded"] == 1990
    admin.goto(f"{server.url}/dashboard/payments/{pi['id']}")
    expect(admin.locator("#refunds tbody tr")).to_have_count(1)
    expect(admin.locator("#action-refund")).to_have_count(0)  # nothing left to refund


def test_a_support_user_cannot_see_keys(
    browser: Browser, server: RunningServer, seed: Seed, admin: Page
) -> None:
    keys = f"{server.url}/dashboard/keys"
    answer = admin.goto(keys)
    assert answer is not None and answer.status == 200  # an admin may: the page exists
    support = new_user(server, seed, "support")
    context = timed(browser.new_context(viewport=DESKTOP))
    try:
        page = context.new_page()
        log_in(page, server, support, "/dashboard/payments")
        page.wait_for_url(f"{server.url}/dashboard/payments")
        expect(page.locator("nav[aria-label=Main]")).not_to_contain_text("Developers")
        refused = page.goto(keys)
        assert refused is not None and refused.status == 403
        expect(page.locator("h1")).to_have_text("Not allowed")
        assert seed.api.key[-8:] not in page.content()
    finally:
        context.close()


def test_a_post_without_the_csrf_token_is_refused(
    admin: Page, server: RunningServer, seed: Seed
) -> None:
    pi = seed.api.ok("POST", "/v1/payment_intents", {
        "amount": 700, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True})
    admin.goto(f"{server.url}/dashboard/payments/{pi['id']}/refund")
    # The form, its CSRF field taken out (by the DevTools protocol: no script on the page).
    admin.evaluate("document.querySelector('#confirm-form input[name=csrf_token]').remove()")
    admin.click("#confirm")
    expect(admin.locator("h1")).to_have_text("Not allowed")
    # And straight from the browser's cookie jar, with no form at all.
    answer = admin.request.post(f"{server.url}/dashboard/payments/{pi['id']}/refund",
                                form={"idempotency_key": "dash_forged", "amount": "7.00"})
    assert answer.status == 403
    assert seed.api.ok("GET", f"/v1/refunds?payment_intent={pi['id']}")["data"] == []


def dashboard_pages(server: RunningServer, seed: Seed) -> dict[str, str]:
    """Every page a test visits for axe, the scan and the screenshots: the framework's and
    the nav's (H8's pages that exist)."""
    base = f"{server.url}/dashboard"
    pages = {
        "payments": f"{base}/payments",
        "payment-failed": f"{base}/payments/{seed.failed['id']}",
        "payment": f"{base}/payments/{seed.paid['id']}",
        "refund-confirm": f"{base}/payments/{seed.paid['id']}/refund",
        "capture-confirm": f"{base}/payments/{seed.held['id']}/capture",
        "cancel-confirm": f"{base}/payments/{seed.held['id']}/cancel",
        "customers": f"{base}/customers",
        "customer": f"{base}/customers/{seed.customer['id']}",
        "webhook-endpoint": f"{base}/webhooks/endpoints/{seed.endpoint_id}",
    }
    for name, path in (("home", ""), ("billing", "/billing"), ("fraud", "/fraud"),
                       ("webhooks", "/webhooks"), ("keys", "/keys"), ("audit", "/audit"),
                       ("connections", "/connections"), ("requests", "/requests")):
        pages[name] = f"{base}{path}"
    return pages


def test_axe_finds_no_serious_or_critical_violation(
    admin: Page, server: RunningServer, seed: Seed
) -> None:
    source = axe_source()
    urls = {"login": f"{server.url}/dashboard/login", **dashboard_pages(server, seed)}
    found: dict[str, list[str]] = {}
    for name, url in urls.items():
        page = admin
        if name == "login":
            page = admin.context.browser.new_page()
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, (name, answer and answer.status)
        page.evaluate(source)  # by the DevTools protocol: the page's CSP does not apply
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']}: {v['help']}" for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
        if bad:
            found[name] = bad
        if page is not admin:
            page.close()
    assert found == {}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


SECRET_PATTERNS = (
    re.compile(r"\b[sr]k_(?:test|live)_[A-Za-z0-9]{16,}"),  # a full secret or restricted key
    re.compile(r"\bwhsec_[A-Za-z0-9]{8,}"),  # a webhook signing secret
    re.compile(r"_secret_[A-Za-z0-9]{8,}"),  # a client secret
    re.compile(r"otpauth://"),  # a TOTP provisioning URI
    re.compile(r"\bcvc\b\s*[:=]\s*\d{3,4}", re.IGNORECASE),
)


def test_no_page_holds_a_card_number_cvc_secret_or_full_key(
    admin: Page, server: RunningServer, seed: Seed
) -> None:
    """Every page (the nav's, the lists', each payment's and customer's, the confirmation
    forms), read as the browser got it (the HTML source) and as it shows it."""
    sources: dict[str, str] = {}
    for name, url in dashboard_pages(server, seed).items():
        answer = admin.goto(url)
        assert answer is not None and answer.status == 200, (name, answer and answer.status)
        sources[name] = answer.text() + "\n" + admin.inner_text("body")
    links = set()
    for name in ("payments", "customers"):
        admin.goto(dashboard_pages(server, seed)[name])
        links |= {h for h in admin.eval_on_selector_all(
            "main a[href^='/dashboard/']", "els => els.map(e => e.getAttribute('href'))")}
    for href in sorted(links):
        answer = admin.goto(f"{server.url}{href}")
        assert answer is not None and answer.status == 200, (href, answer and answer.status)
        sources[href] = answer.text() + "\n" + admin.inner_text("body")
    login = httpx.get(f"{server.url}/dashboard/login", timeout=30).text
    sources["login"] = login
    assert len(sources) >= 10
    secrets_known = [seed.api.key, seed.webhook_secret, "4242424242424242",
                     "5555555555554444", "4000000000009995"]
    for name, text in sources.items():
        for known in secrets_known:
            assert known not in text, (name, known[:7])
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), (name, pattern.pattern)
        runs = [re.sub(r"\D", "", run.decode()) for run in card_runs(text.encode())]
        assert [r for r in runs if _luhn(r)] == [], name


def screenshot_all(context: BrowserContext, server: RunningServer, seed: Seed, out: Path,
                   size: str) -> list[Path]:
    page = context.new_page()
    taken = []
    login = context.browser.new_page(viewport=DESKTOP if size == "desktop" else MOBILE)
    login.goto(f"{server.url}/dashboard/login")
    path = out / f"dashboard-login-{size}.png"
    login.screenshot(path=str(path), full_page=True)
    login.close()
    taken.append(path)
    for name, url in dashboard_pages(server, seed).items():
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, (name, answer and answer.status)
        path = out / f"dashboard-{name}-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
    return taken


def test_screenshots_for_the_docs(
    browser: Browser, admin_state: dict[str, Any], server: RunningServer, seed: Seed,
    tmp_path: Path,
) -> None:
    out = DOCS_IMG if os.environ.get("PAYMUX_DOCS_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    for size, viewport in (("desktop", DESKTOP), ("mobile", MOBILE)):
        context = timed(browser.new_context(viewport=viewport, storage_state=admin_state))
        try:
            taken = screenshot_all(context, server, seed, out, size)
        finally:
            context.close()
        assert len(taken) >= 8
        for path in taken:
            assert path.stat().st_size > 5000, path
