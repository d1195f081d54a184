"""The hosted checkout page in a real browser: Playwright for Python driving Debian's
chromium (support/browser.py; nothing downloaded), one browser for the module, against a
paymux server (SQLite) that keeps a capture of every request it received.

The card goes into the sandbox's own card form, framed by the page (the sandbox stands in
for a provider, at its own path /sandbox). Flows: pay with 4242; a decline with the
taxonomy's message, then a retry; 3-D Secure passed and failed on the sandbox's challenge
page; a card saved in setup mode; an expired session. Then: no request paymux received
holds the card number or the CVC (while the sandbox's own requests did: the capture works);
axe-core finds no serious or critical violation; chromium reports no CSP violation; and the
screenshots in docs/img/ (desktop and mobile width, success and decline) are taken anew."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, expect

from conftest import Api
from support.browser import (
    CapturingServer,
    account_api,
    axe_source,
    capturing_server,
    card_runs,
    launched_chromium,
)

pytestmark = pytest.mark.browser

SHOP = "https://shop.example"  # answered by the browser itself (page.route): no network
CVC = "7391"  # four digits the sandbox accepts, unlikely in any id
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
ADMIN = "admin-key-for-checkout-browser-tests"
INVENTORY = Path(__file__).resolve().parents[2] / "docs" / "pci" / "script-inventory.md"
GENERIC_DECLINE = "Your card was declined. Please try again or use another payment method."


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CapturingServer]:
    yield from capturing_server(tmp_path_factory, "checkout-browser", admin_key=ADMIN)


@pytest.fixture(scope="module")
def browser(server: CapturingServer) -> Iterator[Browser]:
    # After the server: Playwright's sync API keeps an event loop running in this thread,
    # and the server's set-up (migrations) runs its own.
    yield from launched_chromium()


@pytest.fixture
def api(server: CapturingServer) -> Iterator[Api]:
    yield from account_api(server)


class Tab:
    """A page with the console's CSP reports collected and the shop's URLs answered."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.csp: list[str] = []
        page.on("console", self._console)
        page.route(f"{SHOP}/**", lambda route: route.fulfill(
            status=200, content_type="text/html",
            body="<!doctype html><html lang='en'><title>Shop</title><h1>Thanks</h1></html>"))

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.csp.append(message.text)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = timed(browser.new_context(viewport={"width": 1280, "height": 900}))
    try:
        yield Tab(context.new_page())
    finally:
        context.close()


def new_session(api: Api, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mode": "payment",
        "success_url": f"{SHOP}/thanks?session={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{SHOP}/cart",
        "line_items": [
            {"price_data": {"currency": "eur", "unit_amount": 1990,
                            "product_data": {"name": "Linen shirt"}}, "quantity": 2},
            {"price_data": {"currency": "eur", "unit_amount": 450,
                            "product_data": {"name": "Gift wrap"}}, "quantity": 1},
        ],
    }
    body.update(extra)
    return api.ok("POST", "/v1/checkout/sessions", body)


def open_invoice(api: Api) -> dict[str, Any]:
    """An open invoice (billing), whose hosted page takes a card."""
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": "eur"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus["id"], "invoice": invoice["id"],
                                         "amount": 1500, "currency": "eur",
                                         "description": "Workshop seat"})
    return api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")


def enter_card(page: Page, number: str) -> None:
    form = page.frame_locator("#card-frame")
    form.locator("#number").fill(number)
    form.locator("#cvc").fill(CVC)
    form.locator("#postal_code").fill("75001")
    form.locator("#submit").click()


def success_url(cs: dict[str, Any]) -> str:
    return f"{SHOP}/thanks?session={cs['id']}"


def test_pay_with_4242_lands_on_the_success_url(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    tab.page.goto(cs["url"])
    expect(tab.page.locator("#total")).to_have_text("€44.30")
    enter_card(tab.page, "4242424242424242")
    tab.page.wait_for_url(success_url(cs))
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")
    assert api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")["amount_received"] == 4430
    assert tab.csp == []


def test_a_decline_shows_the_message_and_another_card_pays(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    tab.page.goto(cs["url"])
    enter_card(tab.page, "4000000000000002")
    status = tab.page.locator("#pay-status[data-state=failed]")
    expect(status).to_have_text(GENERIC_DECLINE)
    expect(status).to_have_attribute("data-action", "retry")
    expect(status).to_be_focused()
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    # The card form came back empty for another card.
    expect(tab.page.frame_locator("#card-frame").locator("#number")).to_have_value("")
    enter_card(tab.page, "4242424242424242")
    tab.page.wait_for_url(success_url(cs))


def test_3ds_passed_on_the_challenge_page_completes(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    tab.page.goto(cs["url"])
    enter_card(tab.page, "4000000000003220")
    tab.page.wait_for_url(re.compile(r".*/sandbox/3ds/.*"))
    tab.page.click("#complete")
    tab.page.wait_for_url(success_url(cs))
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "complete"


def test_3ds_failed_comes_back_with_a_message_and_no_payment(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    tab.page.goto(cs["url"])
    enter_card(tab.page, "4000000000003220")
    tab.page.wait_for_url(re.compile(r".*/sandbox/3ds/.*"))
    tab.page.click("#fail")
    tab.page.wait_for_url(re.compile(re.escape(cs["url"]) + r"\?.*outcome=.*"))
    expect(tab.page.locator("#notice")).to_have_text(
        "The card's authentication failed. Try again or use another card.")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert pi["amount_received"] == 0


def test_setup_mode_saves_the_card(tab: Tab, api: Api) -> None:
    cs = api.ok("POST", "/v1/checkout/sessions", {
        "mode": "setup", "success_url": f"{SHOP}/saved?session={{CHECKOUT_SESSION_ID}}",
        "customer_email": "browser-saver@example.com", "locale": "fr"})
    tab.page.goto(cs["url"])
    expect(tab.page.locator("#pay-heading")).to_have_text("Enregistrer votre carte")
    enter_card(tab.page, "4242424242424242")
    tab.page.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    pm = api.ok("GET", f"/v1/payment_methods/{si['payment_method']}")
    assert (si["status"], pm["customer"], pm["card"]["last4"]) == (
        "succeeded", cs["customer"], "4242")


def test_an_expired_session_shows_that_and_no_card_form(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    api.ok("POST", f"/v1/checkout/sessions/{cs['id']}/expire")
    response = tab.page.goto(cs["url"])
    assert response is not None and response.status == 410
    expect(tab.page.locator("#heading")).to_have_text("This checkout has expired")
    assert tab.page.locator("iframe").count() == 0


def test_the_page_is_localized_with_babel_amounts(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    for locale, total, heading in (
        ("de", "44,30\xa0€", "44,30\xa0€ bezahlen"),
        ("fr", "44,30\xa0€", "Payer 44,30\xa0€"),
        ("es", "44,30\xa0€", "Pagar 44,30\xa0€"),
        ("en", "€44.30", "Pay €44.30"),
    ):
        tab.page.goto(f"{cs['url']}?locale={locale}")
        assert tab.page.locator("html").get_attribute("lang") == locale
        expect(tab.page.locator("#total")).to_have_text(total)
        expect(tab.page.locator("#pay-heading")).to_have_text(heading)


def test_axe_finds_no_serious_or_critical_violation(tab: Tab, api: Api) -> None:
    cs = new_session(api)
    source = axe_source()
    for url in (cs["url"], f"{api.server.url}/c/pay/cs_test_missing"):
        tab.page.goto(url)
        tab.page.evaluate(source)  # evaluated by the DevTools protocol: CSP does not apply
        result = tab.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [(v["id"], v["impact"], v["help"]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
        assert bad == [], (url, bad)
    # The decline state too (the error message and the reloaded form).
    tab.page.goto(cs["url"])
    enter_card(tab.page, "4000000000000002")
    expect(tab.page.locator("#pay-status[data-state=failed]")).to_be_visible()
    tab.page.evaluate(source)
    result = tab.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")] == []


def test_screenshots_for_the_docs(browser: Browser, api: Api, tmp_path: Path) -> None:
    """The pages at two sizes, paying after a decline. The committed images in docs/img are
    rewritten only when PAYMUX_DOCS_SCREENSHOTS=1 asks (not on every test run); otherwise
    the shots go to a temporary directory and are checked there."""
    out = DOCS_IMG if os.environ.get("PAYMUX_DOCS_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    api.server.sql("update accounts set name = 'Linen & Co.' where id = :a", a=api.account_id)
    for name, size in (("desktop", {"width": 1280, "height": 900}),
                       ("mobile", {"width": 390, "height": 844})):
        context = timed(browser.new_context(viewport=size))
        try:
            tab = Tab(context.new_page())
            cs = new_session(api)
            tab.page.goto(cs["url"])
            expect(tab.page.frame_locator("#card-frame").locator("#number")).to_be_visible()
            tab.page.screenshot(path=str(out / f"checkout-{name}.png"), full_page=True)
            enter_card(tab.page, "4000000000000002")
            expect(tab.page.locator("#pay-status[data-state=failed]")).to_be_visible()
            expect(tab.page.frame_locator("#card-frame").locator("#number")).to_be_visible()
            tab.page.screenshot(path=str(out / f"checkout-{name}-decline.png"),
                                full_page=True)
            enter_card(tab.page, "4242424242424242")
            tab.page.wait_for_url(success_url(cs))
            done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
            assert done["status"] == "complete"
        finally:
            context.close()
    for name in ("desktop", "mobile", "desktop-decline", "mobile-decline"):
        assert (out / f"checkout-{name}.png").stat().st_size > 5000


def test_no_request_paymux_received_holds_the_card_number_or_cvc(
    tab: Tab, api: Api, server: CapturingServer
) -> None:
    """Runs its own flows (any test order): a payment, a decline, a 3-D Secure card; then
    reads the capture of every request the server received. Those to the sandbox's own path
    (the provider's stand-in) carried the numbers, which shows the capture sees them; none
    to paymux did."""
    numbers = ("4242424242424242", "4000000000000002", "4000000000003220")
    for number in numbers:
        cs = new_session(api)
        tab.page.goto(cs["url"])
        enter_card(tab.page, number)
        if number == "4000000000000002":
            expect(tab.page.locator("#pay-status[data-state=failed]")).to_be_visible()
        elif number == "4000000000003220":
            tab.page.wait_for_url(re.compile(r".*/sandbox/3ds/.*"))
            tab.page.click("#complete")
            tab.page.wait_for_url(success_url(cs))
        else:
            tab.page.wait_for_url(success_url(cs))
    captured = list(server.capture.requests)
    provider = [r.raw() for r in captured if r.provider_side]
    paymux = [r for r in captured if not r.provider_side]
    for number in numbers:
        assert any(number.encode() in raw for raw in provider), number  # the capture works
    assert any(CVC.encode() in raw for raw in provider)
    paths = {r.path for r in paymux}
    assert any(p.startswith("/c/pay/") and p.endswith("/confirm") for p in paths), paths
    for request in paymux:
        raw = request.raw()
        for number in numbers:
            assert number.encode() not in raw, request.path
        assert CVC.encode() not in raw, request.path
        runs = card_runs(raw)
        assert not [r for r in runs if _luhn(re.sub(rb"\D", b"", r))], (request.path, runs)
    assert tab.csp == []
    # And paymux's own records: nothing of the card but what the token describes.
    r = httpx.get(f"{api.server.url}/v1/events", params={"limit": 100},
                  headers={"authorization": f"Bearer {api.key}"}, timeout=10)
    for number in numbers:
        assert number not in r.text


def _luhn(digits: bytes) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits.decode())):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return len(digits) >= 12 and total % 10 == 0


def inventory_tables() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The two tables of docs/pci/script-inventory.md (Scripts, Headers) as rows."""
    text = INVENTORY.read_text(encoding="utf-8")
    tables: list[list[dict[str, str]]] = []
    for block in re.split(r"\n## ", text)[1:3]:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        names = [c.strip() for c in rows[0].strip("|").split("|")]
        tables.append([
            dict(zip(names, (c.strip().replace("`", "") for c in row.strip("|").split("|")),
                     strict=True))
            for row in rows[2:]
        ])
    return tables[0], tables[1]


def nonce_free(csp: str) -> str:
    return re.sub(r"'nonce-[A-Za-z0-9_\-+/=]+'", "'nonce-{nonce}'", csp)


def test_the_pages_scripts_and_headers_match_the_inventory(tab: Tab, api: Api) -> None:
    scripts, headers = inventory_tables()
    cs = new_session(api)
    responses: dict[str, Any] = {}
    tab.page.on("response", lambda r: responses.setdefault(r.url.split("?")[0], r))
    first = tab.page.goto(cs["url"])
    assert first is not None
    frame_form = tab.page.frame_locator("#card-frame").locator("#number")
    expect(frame_form).to_be_visible()
    form_frame = next(f for f in tab.page.frames if f.url.endswith("/sandbox/elements"))
    invoice_tab = tab.page.context.new_page()
    invoice_response = invoice_tab.goto(open_invoice(api)["hosted_invoice_url"])
    assert invoice_response is not None
    pages = {
        "/invoices/{token} (hosted invoice, open, test mode)": (invoice_tab, invoice_response),
        "/c/pay/{session} (checkout, open)": (tab.page, first),
        "/sandbox/elements (sandbox card form, framed by the checkout page)": (
            form_frame, responses[f"{api.server.url}/sandbox/elements"]),
    }
    for page_name, (frame, response) in pages.items():
        loaded = frame.evaluate(
            "[...document.scripts].map(s => [new URL(s.src).pathname, s.integrity])")
        listed = [r for r in scripts if r["page"] == page_name]
        assert sorted(p for p, _ in loaded) == sorted(r["script"] for r in listed), page_name
        for path, integrity in loaded:
            [row] = [r for r in listed if r["script"] == path]
            if row["integrity"] == "sha384":
                body = httpx.get(f"{api.server.url}{path}", timeout=10).content
                digest = base64.b64encode(hashlib.sha384(body).digest()).decode()
                assert integrity == f"sha384-{digest}", path
            else:
                assert (row["integrity"], integrity) == ("none", ""), path
        got = {k.lower(): v for k, v in response.all_headers().items()}
        for row in (r for r in headers if r["page"] == page_name):
            value = got.get(row["header"], "")
            if row["header"] == "content-security-policy":
                value = nonce_free(value)
            assert value == row["value"], (page_name, row["header"], value)
    # The other direction: every page the inventory lists is checked (here, by the Stripe
    # test, or below as a page without scripts), and its headers are only listed for pages
    # checked here.
    stripe_page = "/c/pay/{session} (checkout, routed to Stripe)"  # test_checkout_stripe_browser
    providers = {  # test_checkout_providers_browser checks these two
        "/c/pay/{session} (checkout, routed to PayPal)",
        "/c/pay/{session} (checkout, routed to Square)",
    }
    invoices = {  # test_hosted_invoice_browser checks these three
        "/invoices/{token} (hosted invoice, routed to Stripe)",
        "/invoices/{token} (hosted invoice, routed to Square)",
        "/invoices/{token} (hosted invoice, routed to PayPal)",
    }
    scriptless = {r["page"] for r in scripts if r["script"] == "none"}
    assert {r["page"] for r in scripts} == (
        set(pages) | {stripe_page} | providers | invoices | scriptless)
    assert {r["page"] for r in headers} == set(pages) | providers | invoices
    # The pages the inventory lists without scripts have none.
    for row in scripts:
        if row["script"] == "none":
            assert row["page"].startswith("/c/pay/{session}"), row
    expired = new_session(api)
    api.ok("POST", f"/v1/checkout/sessions/{expired['id']}/expire")
    assert "<script" not in httpx.get(expired["url"], timeout=10).text
    # A fresh nonce on every response.
    again = httpx.get(cs["url"], timeout=10).headers["content-security-policy"]
    assert again != first.all_headers()["content-security-policy"]


def test_an_injected_inline_script_is_refused_and_reported_to_the_operator(
    tab: Tab, api: Api
) -> None:
    cs = new_session(api)
    tab.page.goto(cs["url"])
    try:
        tab.page.add_script_tag(content="window.injected = true;")
    except Exception:  # Playwright may raise on the refused script: expected
        pass
    assert tab.page.evaluate("window.injected === undefined")
    assert any("script-src" in m for m in tab.csp), tab.csp
    deadline = time.monotonic() + 10
    while True:
        listed = httpx.get(f"{api.server.url}/v1/admin/csp_reports",
                           headers={"authorization": f"Bearer {ADMIN}"}, timeout=10).json()
        mine = [r for r in listed["data"] if r["account"] == api.account_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine, listed
    assert mine[0]["page"] == "/c/pay/{session}"
    assert mine[0]["directive"].startswith("script-src")
    assert mine[0]["blocked"] == "inline"
    # The operator's list needs the admin key.
    assert httpx.get(f"{api.server.url}/v1/admin/csp_reports", timeout=10).status_code == 401
