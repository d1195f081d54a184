"""The hosted checkout page routed to Stripe, in a real browser: the page loads Stripe.js,
here localstripe's fake Stripe.js (the CSP names its origin, from PAYMUX_STRIPE_API_BASE,
instead of js.stripe.com: the page code is the real one), mounts its card Element, and
pays with the token Stripe.js makes; paymux confirms through its Stripe connector against
localstripe. Playwright with Debian's chromium (support/browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
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

# Object ids (paymux's and Stripe's: a prefix, then random base62).
_IDS = re.compile(rb"\b[a-z]+_(?:test_|live_)?[0-9A-Za-z]{14,}")

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
        # (Object ids are random base62: one may hold "cvc" in any case; they are left out.)
        assert b"cvc" not in _IDS.sub(b"", raw).lower(), request.path
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


# -- setup mode: Stripe.js confirms Stripe's SetupIntent itself (confirmCardSetup) ----------
AUTH_FAILED = "The card's authentication failed. Try again or use another card."
DECLINED = "Your card was declined. Please try again or use another payment method."


def new_setup_session(api: Api) -> dict[str, Any]:
    return api.ok("POST", "/v1/checkout/sessions", {
        "mode": "setup", "gateway": "stripe", "customer_email": "stripe-saver@example.com",
        "success_url": f"{SHOP}/saved?session={{CHECKOUT_SESSION_ID}}"})


def at_stripe(localstripe: LocalStripe, path: str) -> dict[str, Any]:
    r = httpx.get(f"{localstripe.url}{path}",
                  headers={"authorization": "Bearer sk_test_paymux"}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def stripe_customer(localstripe: LocalStripe, si: dict[str, Any]) -> str:
    """The Stripe customer our SetupIntent's Stripe SetupIntent saves the card for."""
    seti = at_stripe(localstripe, f"/v1/setup_intents/{si['gateway_reference']}")
    return str(seti["customer"])


def cards_at_stripe(localstripe: LocalStripe, customer: str) -> list[str]:
    listed = at_stripe(localstripe, f"/v1/payment_methods?customer={customer}&type=card")
    return [str(pm["id"]) for pm in listed["data"]]


def assert_saved_once(
    api: Api, localstripe: LocalStripe, server: CapturingServer, cs: dict[str, Any],
    last4: str,
) -> None:
    """The session is complete, the customer's one saved card is the one PaymentMethod at
    Stripe for the setup (Stripe.js made it; paymux recorded it, never a second), and the
    page never posted a card, a token or a confirm to paymux."""
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "no_payment_required")
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert (si["gateway"], si["status"]) == ("stripe", "succeeded")
    saved = api.ok("GET", f"/v1/customers/{si['customer']}/payment_methods")["data"]
    assert [(pm["id"], pm["card"]["last4"]) for pm in saved] == [(si["payment_method"], last4)]
    at_stripe_now = cards_at_stripe(localstripe, stripe_customer(localstripe, si))
    assert len(at_stripe_now) == 1 and at_stripe_now[0].startswith("pm_")
    assert saved[0]["gateway_token"] == at_stripe_now[0]
    paths = [r.path for r in server.capture.requests if r.method == "POST"]
    assert f"/c/pay/{cs['id']}/confirm" not in paths
    assert f"/c/pay/{cs['id']}/stripe-setup/outcome" in paths


def test_stripe_setup_mode_saves_a_card_without_a_challenge(
    page: tuple[Page, list[str]], api: Api, server: CapturingServer, localstripe: LocalStripe
) -> None:
    """Stripe.js's confirmCardSetup with the secret of the SetupIntent paymux made at
    Stripe: the card saved with no challenge, the session complete."""
    tab, csp = page
    cs = new_setup_session(api)
    assert cs["setup_intent"] and cs["payment_intent"] is None
    tab.goto(cs["url"])
    expect(tab.locator("#stripe-pay")).to_have_text("Save your card")
    assert "<iframe" not in tab.content()
    enter_card(tab, "4242424242424242", cvc="739")
    tab.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    assert_saved_once(api, localstripe, server, cs, "4242")
    for request in server.capture.requests:
        raw = request.raw()
        assert b"4242424242424242" not in raw, request.path
        assert re.search(rb"(?<![0-9A-Za-z])739(?![0-9A-Za-z])", raw) is None, request.path
    assert csp == []


def test_stripe_setup_mode_saves_the_card_after_stripe_js_3ds(
    page: tuple[Page, list[str]], api: Api, server: CapturingServer, localstripe: LocalStripe
) -> None:
    """A card that asks for 3-D Secure: Stripe.js shows the challenge, the payer passes it,
    paymux reads the SetupIntent from Stripe and records the one PaymentMethod."""
    tab, csp = page
    cs = new_setup_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000002760003184")  # localstripe: requires_action, use_stripe_sdk
    tab.get_by_text("Complete authentication").click()  # Stripe.js's challenge
    tab.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    assert_saved_once(api, localstripe, server, cs, "3184")
    assert csp == []


def test_stripe_setup_mode_failed_3ds_saves_nothing_and_stays_open(
    page: tuple[Page, list[str]], api: Api, localstripe: LocalStripe
) -> None:
    tab, _ = page
    cs = new_setup_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000002760003184")
    tab.get_by_text("Fail authentication").click()
    expect(tab.locator("#pay-status[data-state=failed]")).to_have_text(AUTH_FAILED)
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    # Read from Stripe: the attempt failed, the intent waits for another card.
    assert (si["status"], si["payment_method"]) == ("requires_payment_method", None)
    assert api.ok("GET", f"/v1/customers/{si['customer']}/payment_methods")["data"] == []
    assert cards_at_stripe(localstripe, stripe_customer(localstripe, si)) == []


def test_stripe_setup_mode_declined_card_then_another_card_is_saved(
    page: tuple[Page, list[str]], api: Api, server: CapturingServer, localstripe: LocalStripe
) -> None:
    """A declined card: the taxonomy's message, nothing saved at Stripe or here; the card
    Element is mounted anew and another card is saved in the same page (a new SetupIntent
    at Stripe, under the next attempt's key)."""
    tab, _ = page
    cs = new_setup_session(api)
    tab.goto(cs["url"])
    enter_card(tab, "4000000000000002")  # localstripe: declined when Stripe.js confirms
    expect(tab.locator("#pay-status[data-state=failed]")).to_have_text(DECLINED)
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert si["status"] == "requires_payment_method"
    assert si["last_setup_error"]["code"] == "card_declined"
    first = si["gateway_reference"]
    assert cards_at_stripe(localstripe, stripe_customer(localstripe, si)) == []
    expect(tab.locator("#stripe-card input[placeholder=number]")).to_have_value("")
    enter_card(tab, "4242424242424242")
    tab.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    assert_saved_once(api, localstripe, server, cs, "4242")
    again = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert again["gateway_reference"] != first


def page_post(server: CapturingServer, path: str, origin: str | None = None) -> httpx.Response:
    """A post as the page's card-entry.js sends it (JSON), without a browser."""
    headers = {"content-type": "application/json"}
    if origin is not None:
        headers["origin"] = origin
    return httpx.post(f"{server.url}{path}", content=b"{}", headers=headers, timeout=10)


def test_the_stripe_setup_secret_is_the_sessions_own_and_asked_again_the_same(
    api: Api, server: CapturingServer
) -> None:
    """No browser: the page's stripe-setup URL answers the secret of the one Stripe
    SetupIntent made for this session's attempt, the same again when asked again (a lost
    answer, a second click), another session's for another session; Stripe still waiting
    for the card, the outcome says so and nothing is saved."""
    cs = new_setup_session(api)
    first = page_post(server, f"/c/pay/{cs['id']}/stripe-setup")
    assert first.status_code == 200, first.text
    answer = first.json()
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert (answer["status"], si["status"]) == ("requires_action", "requires_action")
    assert si["gateway_reference"].startswith("seti_")
    assert answer["client_secret"].startswith(f"{si['gateway_reference']}_secret_")
    assert answer["return_url"].endswith(f"/c/pay/{cs['id']}?setup_intent={cs['setup_intent']}")
    again = page_post(server, f"/c/pay/{cs['id']}/stripe-setup").json()
    assert again["client_secret"] == answer["client_secret"]
    assert api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")["gateway_reference"] == \
        si["gateway_reference"]
    waiting = page_post(server, f"/c/pay/{cs['id']}/stripe-setup/outcome")
    assert (waiting.status_code, waiting.json()) == (200, {"status": "requires_action"})
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    other = new_setup_session(api)
    theirs = page_post(server, f"/c/pay/{other['id']}/stripe-setup").json()
    assert theirs["client_secret"] != answer["client_secret"]


def test_the_stripe_setup_urls_refuse_another_origin_and_a_payment(
    api: Api, server: CapturingServer
) -> None:
    cs = new_setup_session(api)
    foreign = page_post(server, f"/c/pay/{cs['id']}/stripe-setup", origin="https://evil.example")
    assert foreign.status_code == 403
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert (si["status"], si["gateway_reference"]) == ("requires_payment_method", None)
    paying = new_session(api)
    for path in ("stripe-setup", "stripe-setup/outcome"):
        refused = page_post(server, f"/c/pay/{paying['id']}/{path}")
        assert refused.status_code == 400
        assert refused.json()["code"] == "checkout_session_unexpected_state"
    missing = page_post(server, "/c/pay/cs_test_nosuchsession/stripe-setup")
    assert missing.status_code == 404


def test_save_clicked_again_after_the_outcomes_answer_was_lost_says_complete(
    api: Api, server: CapturingServer, localstripe: LocalStripe
) -> None:
    """No browser: Stripe.js saved the card (its confirm, as localstripe's Stripe.js posts
    it), the page's outcome post never arrived (tab closed, network), and the payer clicks
    Save again: the stripe-setup URL asks Stripe, records the card once and answers
    complete with where to go, not a refusal of a session it has just completed."""
    cs = new_setup_session(api)
    secret = page_post(server, f"/c/pay/{cs['id']}/stripe-setup").json()["client_secret"]
    seti = secret.split("_secret_")[0]
    confirmed = httpx.post(
        f"{localstripe.url}/v1/setup_intents/{seti}/confirm",
        json={
            "key": "pk_test_paymux", "use_stripe_sdk": True, "client_secret": secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": "12", "exp_year": "34",
                         "cvc": "123"},
                "billing_details": {"address": {"postal_code": "10001"}},
            },
        },
        timeout=10,
    )
    assert confirmed.status_code == 200, confirmed.text
    again = page_post(server, f"/c/pay/{cs['id']}/stripe-setup")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "complete"
    assert again.json()["redirect_url"].startswith(f"{SHOP}/saved?session={cs['id']}")
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert done["status"] == "complete"
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    saved = api.ok("GET", f"/v1/customers/{si['customer']}/payment_methods")["data"]
    assert [pm["card"]["last4"] for pm in saved] == ["4242"]
