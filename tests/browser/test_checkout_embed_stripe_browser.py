"""/js/paymux.js on a merchant's own page, for a PaymentIntent routed to Stripe, in a real
browser (Playwright, Debian's chromium; one browser for the module). The merchant's page is
on a second loopback origin; paymux.js reads the intent with paymux's publishable key, loads
Stripe.js from the URL the intent's ``client.sdk_url`` gives (here localstripe's fake
Stripe.js, as PAYMUX_STRIPE_API_BASE says), mounts its card Element with the account's
Stripe publishable key, and Stripe.js tokenizes the card at Stripe (localstripe); paymux.js
confirms with the token's card only, and paymux confirms at Stripe (SAQ A: the card never
reaches paymux's script or server, nor the merchant's).

Why a token and not Stripe.js's ``confirmCardPayment(secret, {payment_method: {card}})``:
localstripe's fake Stripe.js ignores the ``payment_method`` argument (it always shows its
3-D Secure modal and posts ``/v1/payment_intents/{id}/_authenticate``), and has no Payment
Element, ``confirmPayment`` or ``createPaymentMethod`` (an empty stub); its ``createToken``
is the one call that sends the card to Stripe. The hosted page does the same."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, expect
from test_checkout_embed_browser import ADMIN, DECLINE, MerchantSite, publishable_key

from conftest import Api
from support.browser import CapturingServer, account_api, capturing_server, launched_chromium
from support.sandboxes import LocalStripe

# Object ids (paymux's and Stripe's: a prefix, then random base62).
_IDS = re.compile(rb"\b[a-z]+_(?:test_|live_)?[0-9A-Za-z]{14,}")

pytestmark = pytest.mark.browser

STRIPE_SECRET = "sk_test_paymux"
STRIPE_PK = "pk_test_embed_stripe"
CVC = "739"
WEBHOOK_SECRET = "whsec_embed_stripe_browser"
AUTH_FAILED = "The card's authentication failed. Try again or use another card."


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe
) -> Iterator[CapturingServer]:
    for running in capturing_server(
        tmp_path_factory, "checkout-embed-stripe-browser", admin_key=ADMIN,
        stripe_secret_key=STRIPE_SECRET, stripe_api_base=localstripe.url,
        stripe_publishable_key=STRIPE_PK, stripe_webhook_secrets=WEBHOOK_SECRET,
        default_gateway="stripe",
    ):
        # Stripe's webhooks (this module's localstripe): how paymux learns a 3-D Secure
        # outcome that Stripe.js got in the browser.
        localstripe.register_webhook(f"{running.url}/webhooks/stripe", WEBHOOK_SECRET)
        yield running


@pytest.fixture(scope="module")
def shop(server: CapturingServer) -> Iterator[MerchantSite]:
    site = MerchantSite(server.url)
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="module")
def browser(server: CapturingServer) -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def api(server: CapturingServer) -> Iterator[Api]:
    yield from account_api(server)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    context = timed(browser.new_context())
    try:
        yield context.new_page()
    finally:
        context.close()


def open_shop(tab: Page, api: Api, shop: MerchantSite) -> dict[str, Any]:
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 1500, "currency": "eur"})
    assert pi["gateway"] == "stripe"
    tab.goto(f"{shop.url}/?pk={publishable_key(api)}&secret={pi['client_secret']}")
    return pi


def enter_card(tab: Page, number: str) -> None:
    """Into Stripe.js's card Element (localstripe's: five plain inputs), then Pay."""
    card = tab.locator("#card .paymux-stripe-card")
    card.locator("input[placeholder=number]").fill(number)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill(CVC)
    card.locator("input[placeholder=postal_code]").fill("10001")
    tab.locator("#card button.paymux-pay").click()


def at_stripe(localstripe: LocalStripe, reference: str) -> dict[str, Any]:
    r = httpx.get(f"{localstripe.url}/v1/payment_intents/{reference}",
                  headers={"authorization": f"Bearer {STRIPE_SECRET}"}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_merchant_page_pays_a_stripe_intent_with_paymux_js(
    tab: Page, api: Api, shop: MerchantSite, server: CapturingServer, localstripe: LocalStripe
) -> None:
    pi = open_shop(tab, api, shop)
    assert tab.evaluate("window.location.origin") == shop.url != server.url
    enter_card(tab, "4242424242424242")
    expect(tab.locator("#result")).to_have_text("succeeded")
    # Stripe.js came from Stripe's origin (localstripe's here), and paymux.js from paymux.
    scripts = tab.evaluate("[...document.scripts].map(s => s.src).filter(Boolean)")
    assert scripts == [f"{server.url}/js/paymux.js", f"{localstripe.url}/js.stripe.com/v3/"]
    done = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (done["status"], done["amount_received"]) == ("succeeded", 1500)
    # Stripe has the payment: its own PaymentIntent, paid with the card Stripe.js sent it.
    stripe_pi = at_stripe(localstripe, pi["gateway_reference"])
    assert (stripe_pi["status"], stripe_pi["amount"], stripe_pi["currency"]) == (
        "succeeded", 1500, "eur")
    # The one confirm came from the merchant's origin with paymux's publishable key; no
    # request paymux received held the card number or the CVC.
    confirms = [r for r in server.capture.requests
                if r.method == "POST" and r.path == f"/v1/payment_intents/{pi['id']}/confirm"]
    assert len(confirms) == 1
    sent = dict(confirms[0].headers)
    assert sent[b"origin"].decode() == shop.url
    assert sent[b"authorization"].startswith(b"Bearer pk_test_")
    assert b"payment_method_data%5Bcard%5D%5Btoken%5D=card_" in confirms[0].raw()
    for request in server.capture.requests:
        if request.path == "/webhooks/stripe":  # Stripe's own calls, not the payer's browser
            continue
        raw = request.raw()
        assert b"4242424242424242" not in raw, request.path
        # (Object ids are random base62: one may hold "cvc" in any case; they are left out.)
        assert b"cvc" not in _IDS.sub(b"", raw).lower(), request.path
        assert re.search(rb"(?<![0-9A-Za-z])739(?![0-9A-Za-z])", raw) is None, request.path


def test_a_stripe_decline_on_the_merchant_page_shows_the_message(
    tab: Page, api: Api, shop: MerchantSite
) -> None:
    pi = open_shop(tab, api, shop)
    enter_card(tab, "4000000000000341")  # localstripe: attaches, then the charge is declined
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert tab.locator("#result").text_content() == ""
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == \
        "requires_payment_method"
    # The card Element is mounted again, empty, for another card. (Paying again on the same
    # payment is not shown: localstripe refuses a second confirm after a failed charge,
    # which Stripe does not; docs/checkout.md.)
    expect(tab.locator("#card input[placeholder=number]")).to_have_value("")
    expect(tab.locator("#card input[placeholder=number]")).to_have_count(1)


def test_stripe_3ds_through_stripe_js_then_the_intent_succeeds(
    tab: Page, api: Api, shop: MerchantSite, localstripe: LocalStripe
) -> None:
    pi = open_shop(tab, api, shop)
    enter_card(tab, "4000000000003220")  # localstripe: requires_action, use_stripe_sdk
    tab.get_by_text("Complete authentication").click()  # Stripe.js's challenge
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (done["status"], done["amount_received"]) == ("succeeded", 1500)
    assert at_stripe(localstripe, pi["gateway_reference"])["status"] == "succeeded"


def test_stripe_3ds_failed_shows_the_message_and_nothing_is_paid(
    tab: Page, api: Api, shop: MerchantSite, localstripe: LocalStripe
) -> None:
    pi = open_shop(tab, api, shop)
    enter_card(tab, "4000000000003220")
    tab.get_by_text("Fail authentication").click()
    expect(tab.locator("#error")).to_have_text(AUTH_FAILED)
    assert tab.locator("#result").text_content() == ""
    expect(tab.locator("#card input[placeholder=number]")).to_have_value("")
    assert at_stripe(localstripe, pi["gateway_reference"])["status"] == "requires_payment_method"
    # Nothing paid. (paymux's intent stays requires_action here: Stripe tells paymux of the
    # failed authentication with payment_intent.payment_failed, which localstripe never sends.)
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["status"] in ("requires_action", "requires_payment_method"), after["status"]
    assert after["amount_received"] == 0


# -- SetupIntents: save a card for a customer ------------------------------------------------
def open_shop_for_setup(tab: Page, api: Api, shop: MerchantSite) -> dict[str, Any]:
    customer = api.ok("POST", "/v1/customers", {"email": "saver@example.com"})
    seti = api.ok("POST", "/v1/setup_intents", {"customer": customer["id"]})
    assert seti["gateway"] == "stripe"
    tab.goto(f"{shop.url}/?pk={publishable_key(api)}&secret={seti['client_secret']}")
    return seti


def saved_cards(api: Api, customer: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", f"/v1/customers/{customer}/payment_methods")["data"])


def stripe_get(localstripe: LocalStripe, path: str) -> dict[str, Any]:
    r = httpx.get(f"{localstripe.url}{path}",
                  headers={"authorization": f"Bearer {STRIPE_SECRET}"}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def cards_at_stripe(localstripe: LocalStripe, seti: dict[str, Any]) -> list[str]:
    """The PaymentMethods Stripe holds for the customer of the setup's Stripe SetupIntent."""
    at = stripe_get(localstripe, f"/v1/setup_intents/{seti['gateway_reference']}")
    listed = stripe_get(localstripe, f"/v1/payment_methods?customer={at['customer']}&type=card")
    return [str(pm["id"]) for pm in listed["data"]]


def assert_saved_once(
    api: Api, localstripe: LocalStripe, server: CapturingServer, seti: dict[str, Any],
    number: str,
) -> None:
    """Saved: the customer's one card here is the one PaymentMethod at Stripe (Stripe.js
    made it with confirmCardSetup); paymux.js confirmed without a card (no token, no card
    number) from the merchant's origin with the publishable key."""
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert done["status"] == "succeeded"
    listed = saved_cards(api, seti["customer"])
    assert [pm["id"] for pm in listed] == [done["payment_method"]]
    assert listed[0]["card"]["last4"] == number[-4:]
    assert [listed[0]["gateway_token"]] == cards_at_stripe(localstripe, done)
    confirms = [r for r in server.capture.requests
                if r.method == "POST" and r.path == f"/v1/setup_intents/{seti['id']}/confirm"]
    assert confirms
    for confirm in confirms:
        assert dict(confirm.headers)[b"authorization"].startswith(b"Bearer pk_test_")
        assert b"payment_method" not in confirm.raw()
    for request in server.capture.requests:
        if request.path == "/webhooks/stripe":
            continue
        assert number.encode() not in request.raw(), request.path


def test_a_setup_intent_saves_a_card_without_a_challenge(
    tab: Page, api: Api, shop: MerchantSite, server: CapturingServer, localstripe: LocalStripe
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4242424242424242")  # Stripe.js's confirmCardSetup: no challenge
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert_saved_once(api, localstripe, server, seti, "4242424242424242")


def test_a_setup_intent_3ds_through_stripe_js_then_the_card_is_saved(
    tab: Page, api: Api, shop: MerchantSite, server: CapturingServer, localstripe: LocalStripe
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4000002760003184")  # localstripe: requires_action, use_stripe_sdk
    tab.get_by_text("Complete authentication").click()  # Stripe.js's challenge
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert_saved_once(api, localstripe, server, seti, "4000002760003184")


def test_a_setup_intent_failed_3ds_saves_nothing(
    tab: Page, api: Api, shop: MerchantSite, localstripe: LocalStripe
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4000002760003184")
    tab.get_by_text("Fail authentication").click()
    expect(tab.locator("#error")).to_have_text(AUTH_FAILED)
    assert tab.locator("#result").text_content() == ""
    now = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert (now["status"], now["payment_method"]) == ("requires_payment_method", None)
    assert saved_cards(api, seti["customer"]) == []
    assert cards_at_stripe(localstripe, now) == []


def test_a_declined_card_is_not_saved_at_stripe(
    tab: Page, api: Api, shop: MerchantSite, localstripe: LocalStripe
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4000000000000002")
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert tab.locator("#result").text_content() == ""
    now = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert now["status"] == "requires_payment_method"
    assert saved_cards(api, seti["customer"]) == []
    assert cards_at_stripe(localstripe, now) == []
