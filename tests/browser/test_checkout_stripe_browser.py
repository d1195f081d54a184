"""The hosted checkout page routed to Stripe, in a real browser: the page loads Stripe.js,
here localstripe's fake Stripe.js (the CSP names its origin, from PAYMUX_STRIPE_API_BASE,
instead of js.stripe.com: the page code is the real one), mounts its card Element, and
pays with the token Stripe.js makes; paymux confirms through its Stripe connector against
localstripe. Playwright with Debian's chromium (support/browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, expect
from test_checkout_browser import inventory_tables

from conftest import Api
from support.browser import (
    CapturingServer,
    account_api,
    capturing_server,
    launched_chromium,
    shop_tab,
)
from support.sandboxes import LocalStripe

pytestmark = pytest.mark.browser

SHOP = "https://shop.example"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe
) -> Iterator[CapturingServer]:
    yield from capturing_server(
        tmp_path_factory, "checkout-stripe-browser", stripe_secret_key="sk_test_paymux",
        stripe_api_base=localstripe.url, stripe_publishable_key="pk_test_paymux",
        default_gateway="stripe",
    )


@pytest.fixture(scope="module")
def browser(server: CapturingServer) -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def api(server: CapturingServer) -> Iterator[Api]:
    yield from account_api(server)


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    yield from shop_tab(timed(browser.new_context()), SHOP)


def new_session(api: Api) -> dict[str, Any]:
    return api.ok("POST", "/v1/checkout/sessions", {
        "mode": "payment", "gateway": "stripe",
        "success_url": f"{SHOP}/thanks?session={{CHECKOUT_SESSION_ID}}",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 2500,
                                       "product_data": {"name": "Desk lamp"}}}]})


def enter_card(tab: Page, number: str, cvc: str = "123") -> None:
    card = tab.locator("#stripe-card")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill(cvc)
    card.locator("input[placeholder=postal_code]").fill("10001")
    tab.click("#stripe-pay")


def test_stripe_js_tokenizes_and_the_session_completes(
    page: tuple[Page, list[str]], api: Api, localstripe: LocalStripe
) -> None:
    tab, csp = page
    cs = new_session(api)
    response = tab.goto(cs["url"])
    assert response is not None
    policy = response.all_headers()["content-security-policy"]
    assert re.search(rf"script-src 'nonce-[^']+' {re.escape(localstripe.url)};", policy), policy
    assert f"connect-src 'self' {localstripe.url};" in policy
    assert "<iframe" not in tab.content()  # Stripe's Element, not the sandbox's form
    # The inventory's two scripts (docs/pci/script-inventory.md): Stripe.js, from Stripe's
    # origin (here localstripe's, as PAYMUX_STRIPE_API_BASE says), and card-entry.js, with SRI.
    scripts = tab.evaluate("[...document.scripts].map(s => [s.src, s.integrity])")
    assert [src for src, _ in scripts] == [
        f"{localstripe.url}/js.stripe.com/v3/", f"{api.server.url}/_checkout/card-entry.js"]
    # ... and the inventory lists exactly those two for this page (no more, no fewer).
    listed = [r["script"] for r in inventory_tables()[0]
              if r["page"] == "/c/pay/{session} (checkout, routed to Stripe)"]
    assert len(listed) == 2, listed
    assert listed[0].startswith("https://js.stripe.com/v3/ ")
    assert "<base>/js.stripe.com/v3/" in listed[0]
    assert listed[1] == "/_checkout/card-entry.js"
    assert scripts[0][1] == "" and scripts[1][1].startswith("sha384-")
    enter_card(tab, "4242424242424242")
    tab.wait_for_url(f"{SHOP}/thanks?session={cs['id']}")
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["amount_received"]) == ("stripe", "succeeded", 2500)
    assert csp == []


def test_a_stripe_decline_shows_the_taxonomys_message(
    page: tuple[Page, list[str]], api: Api
) -> None:
    tab, _ = page
    cs = new_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000000000000341")  # attaches, then the charge is declined
    status = tab.locator("#pay-status[data-state=failed]")
    expect(status).to_have_text(
        "Your card was declined. Please try again or use another payment method.")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    # The card Element is mounted anew, empty, for another card. (Paying again on the same
    # payment is not shown here: localstripe answers a second confirm of a payment whose
    # charge failed with "Bad request", which Stripe does not.)
    expect(tab.locator("#stripe-card input[placeholder=number]")).to_have_value("")


def test_no_request_paymux_received_holds_the_card_number(
    page: tuple[Page, list[str]], api: Api, server: CapturingServer
) -> None:
    tab, _ = page
    cs = new_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4242424242424242", cvc="739")
    tab.wait_for_url(f"{SHOP}/thanks?session={cs['id']}")
    assert server.capture.requests  # the page's own requests were captured
    for request in server.capture.requests:
        raw = request.raw()
        assert b"4242424242424242" not in raw, request.path
        # Nor the CVC: no field named so, and no 739 standing alone (in ids it may occur).
        assert b"cvc" not in raw.lower(), request.path
        assert re.search(rb"(?<![0-9A-Za-z])739(?![0-9A-Za-z])", raw) is None, request.path


def test_stripe_3ds_is_shown_by_stripe_js_and_the_session_completes(
    page: tuple[Page, list[str]], api: Api
) -> None:
    """Review r6, M4: Stripe's 3-D Secure (next_action use_stripe_sdk) is no dead end: the
    page hands Stripe.js the intent's secret, the payer authenticates in its modal, and the
    page returns to itself, asks Stripe, and moves on to success_url."""
    tab, _ = page
    cs = new_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000000000003220")
    tab.get_by_text("Complete authentication").click()
    tab.wait_for_url(f"{SHOP}/thanks?session={cs['id']}")
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 2500)


def test_stripe_3ds_failed_leaves_the_session_open_with_a_message(
    page: tuple[Page, list[str]], api: Api
) -> None:
    tab, _ = page
    cs = new_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000000000003220")
    tab.get_by_text("Fail authentication").click()
    expect(tab.locator("#notice")).to_have_text(
        "The card's authentication failed. Try again or use another card.")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"


# -- setup mode: the card saved through Stripe.js, with its 3-D Secure ----------------------
def new_setup_session(api: Api) -> dict[str, Any]:
    return api.ok("POST", "/v1/checkout/sessions", {
        "mode": "setup", "gateway": "stripe", "customer_email": "stripe-saver@example.com",
        "success_url": f"{SHOP}/saved?session={{CHECKOUT_SESSION_ID}}"})


def test_stripe_setup_mode_saves_the_card_after_stripe_js_3ds(
    page: tuple[Page, list[str]], api: Api, server: CapturingServer
) -> None:
    """Setup mode routed to Stripe: Stripe.js's card Element tokenizes, paymux confirms the
    SetupIntent at Stripe, Stripe asks for 3-D Secure (use_stripe_sdk) and the page hands
    Stripe.js's confirmCardSetup the SetupIntent's secret; back on the page, paymux asks
    Stripe, the card is the customer's and the session completes. (A card saved without a
    challenge is not shown: localstripe refuses to attach a token's card to a customer,
    which Stripe does; docs/checkout.md.)"""
    tab, csp = page
    cs = new_setup_session(api)
    assert cs["setup_intent"] and cs["payment_intent"] is None
    tab.goto(cs["url"])
    expect(tab.locator("#stripe-pay")).to_have_text("Save your card")
    assert "<iframe" not in tab.content()
    enter_card(tab, "4000000000003220")  # localstripe: requires_action, use_stripe_sdk
    tab.get_by_text("Complete authentication").click()  # Stripe.js's confirmCardSetup
    tab.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "no_payment_required")
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert (si["gateway"], si["status"]) == ("stripe", "succeeded")
    saved = api.ok("GET", f"/v1/customers/{si['customer']}/payment_methods")["data"]
    assert [(pm["id"], pm["card"]["last4"]) for pm in saved] == [(si["payment_method"], "3220")]
    # One confirm, with Stripe's token (its card id), never the card number.
    confirms = [r for r in server.capture.requests
                if r.method == "POST" and r.path == f"/c/pay/{cs['id']}/confirm"]
    assert len(confirms) == 1 and b'"payment_method": "card_' in confirms[0].raw().replace(
        b'":"', b'": "')
    for request in server.capture.requests:
        assert b"4000000000003220" not in request.raw(), request.path
    assert csp == []


def test_stripe_setup_mode_failed_3ds_saves_nothing_and_stays_open(
    page: tuple[Page, list[str]], api: Api
) -> None:
    tab, _ = page
    cs = new_setup_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000000000003220")
    tab.get_by_text("Fail authentication").click()
    expect(tab.locator("#notice")).to_have_text(
        "The card's authentication failed. Try again or use another card.")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    # Stripe answers requires_payment_method; localstripe cancels its SetupIntent instead.
    assert si["status"] in ("requires_payment_method", "canceled"), si["status"]
    assert api.ok("GET", f"/v1/customers/{si['customer']}/payment_methods")["data"] == []
