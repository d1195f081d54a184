"""/js/paymux.js on a merchant's own page, routed to PayPal and to Square, in a real browser
(Playwright, Debian's chromium; one browser for the module).

The merchant's page (a loopback origin of its own) loads paymux.js with the SRI hash
docs/checkout.md gives and mounts it with a publishable key and the intent's client secret.
paymux.js loads the provider's SDK from the URL the intent's client view names
(PAYMUX_PAYPAL_JS_URL / PAYMUX_SQUARE_JS_URL: small fakes of PayPal's JS SDK and Square's Web
Payments SDK on a loopback origin, provider_js_fakes.py), and confirms through paymux's API
cross-origin. The server side of each payment goes to the stateful fakes of PayPal's and
Square's APIs at the HTTP seam. The script code is the real one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, expect
from provider_js_fakes import ProviderScripts, hold_square_attach
from test_checkout_embed_browser import ADMIN, MerchantSite, publishable_key

from conftest import Api, make_settings, migrated_database_url
from support.browser import CapturingServer, account_api, launched_chromium
from support.fake_square import FakeSquare
from support.paypal_fake import FakePayPal
from support.processes import free_port

pytestmark = pytest.mark.browser

PAYPAL_CLIENT_ID = "AYfakeclientidEmbed"
PAYPAL_SECRET = "EPfake-embed-secret-do-not-log-51ab"
PAYPAL_WEBHOOK_ID = "5KH86294D6297924H"
SQUARE_TOKEN = "EAAAl9fK2xQ8" + "vR3pT8mW1nZ6" * 5
SQUARE_KEY = "sq-webhook-key-" + "YmFyYmF6" * 3
SQUARE_APP = "sandbox-sq0idb-paymuxEmbed"
DECLINE = "Your card was declined. Please try again or use another payment method."
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
CVV = "7391"


@dataclass
class Env:
    server: CapturingServer
    paypal: FakePayPal
    square: FakeSquare
    scripts: ProviderScripts
    shop: MerchantSite


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("checkout-embed-providers-browser")
    url = migrated_database_url("sqlite", tmp, None, "checkout_embed_providers_browser")
    port = free_port()
    paypal = FakePayPal(PAYPAL_CLIENT_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK_ID).start()
    paypal.webhook_url = f"http://127.0.0.1:{port}/webhooks/paypal"
    square_hook = f"http://127.0.0.1:{port}/webhooks/square"
    square = FakeSquare(access_token=SQUARE_TOKEN, signature_key=SQUARE_KEY,
                        webhook_url=square_hook).start()
    scripts = ProviderScripts(paypal).start()
    settings = make_settings(
        url, tmp, port, admin_key=ADMIN,
        paypal_client_id=PAYPAL_CLIENT_ID, paypal_client_secret=PAYPAL_SECRET,
        paypal_webhook_id=PAYPAL_WEBHOOK_ID, paypal_api_base=paypal.url,
        square_access_token=SQUARE_TOKEN, square_location_id=square.location_id,
        square_webhook_signature_key=SQUARE_KEY, square_webhook_url=square_hook,
        square_api_base=square.url, square_application_id=SQUARE_APP,
        paypal_js_url=f"{scripts.url}/sdk/js", square_js_url=f"{scripts.url}/v1/square.js",
    )
    server = CapturingServer(settings).start()
    shop = MerchantSite(server.url)
    try:
        yield Env(server, paypal, square, scripts, shop)
    finally:
        shop.stop()
        server.stop()
        scripts.stop()
        square.stop()
        paypal.stop()


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Browser]:
    yield from launched_chromium()


@pytest.fixture
def api(env: Env) -> Iterator[Api]:
    yield from account_api(env.server)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    context = timed(browser.new_context())
    try:
        yield context.new_page()
    finally:
        context.close()


def open_shop(tab: Page, api: Api, env: Env, gateway: str) -> dict[str, Any]:
    pi = api.ok("POST", "/v1/payment_intents",
                {"amount": 2500, "currency": "usd", "gateway": gateway})
    tab.goto(f"{env.shop.url}/?pk={publishable_key(api)}&secret={pi['client_secret']}")
    return pi


def no_card_reached_paymux(env: Env, *secrets: str) -> None:
    assert env.server.capture.requests
    for request in env.server.capture.requests:
        if request.provider_side:
            continue
        for secret in secrets:
            assert secret.encode() not in request.raw(), request.path


# -- PayPal ---------------------------------------------------------------------------------
def test_paypal_buttons_on_the_merchant_page_pay_the_intent(
    tab: Page, api: Api, env: Env
) -> None:
    pi = open_shop(tab, api, env, "paypal")
    tab.click("#paypal-button")
    window = tab.locator("#paypal-window")
    expect(window).to_be_visible()
    # The SDK came from the configured URL, for the order's client id, currency and intent.
    src = tab.evaluate("[...document.scripts].map(s => s.src).find(s => s.includes('/sdk/js'))")
    assert src.startswith(f"{env.scripts.url}/sdk/js?")
    assert f"client-id={PAYPAL_CLIENT_ID}" in src and "currency=USD" in src
    assert "intent=capture" in src
    order_id = window.get_attribute("data-order-id")
    assert order_id == api.ok("GET", f"/v1/payment_intents/{pi['id']}")["gateway_reference"]
    window.get_by_text("Pay with PayPal").click()
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (done["gateway"], done["status"], done["amount_received"]) == (
        "paypal", "succeeded", 2500)
    assert env.paypal.orders[str(order_id)]["status"] == "COMPLETED"
    # The confirm came from the merchant's origin with the publishable key.
    confirms = [r for r in env.server.capture.requests
                if r.method == "POST" and r.path == f"/v1/payment_intents/{pi['id']}/confirm"]
    assert len(confirms) == 1
    sent = dict(confirms[0].headers)
    assert sent[b"origin"].decode() == env.shop.url
    assert sent[b"authorization"].startswith(b"Bearer pk_test_")


def test_a_paypal_refusal_shows_the_message_and_the_payer_approves_again(
    tab: Page, api: Api, env: Env
) -> None:
    pi = open_shop(tab, api, env, "paypal")
    tab.click("#paypal-button")
    tab.locator("#paypal-window").get_by_text("Pay with a refused card").click()
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == \
        "requires_payment_method"
    tab.click("#paypal-button")
    tab.locator("#paypal-window").get_by_text("Pay with PayPal").click()
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["amount_received"] == 2500


# -- Square ---------------------------------------------------------------------------------
def fill_square_card(tab: Page, number: str) -> None:
    card = tab.locator("#card .paymux-square-card")
    card.locator("input[name=number]").fill(number)
    card.locator("input[name=expiry]").fill("12/34")
    card.locator("input[name=cvv]").fill(CVV)
    card.locator("input[name=postal]").fill("10001")


def enter_square_card(tab: Page, number: str) -> None:
    fill_square_card(tab, number)
    tab.click("#card .paymux-pay")


def test_square_card_form_and_verify_buyer_on_the_merchant_page_pay_the_intent(
    tab: Page, api: Api, env: Env
) -> None:
    pi = open_shop(tab, api, env, "square")
    enter_square_card(tab, GOOD_CARD)
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (done["gateway"], done["status"], done["amount_received"]) == (
        "square", "succeeded", 2500)
    # verifyBuyer was asked with the payment's amount, and its token reached Square's
    # CreatePayment with the card's nonce.
    sent = [c.body for c in env.square.calls_to("POST", "/v2/payments")
            if c.body.get("verification_token") in env.scripts.verifications]
    mine = [body for body in sent if body["amount_money"] == {"amount": 2500, "currency": "USD"}
            and body["source_id"].startswith("cnon:")]
    assert mine, sent
    details = env.scripts.verifications[mine[-1]["verification_token"]]
    assert (details["amount"], details["currencyCode"], details["intent"]) == (
        "25.00", "USD", "CHARGE")
    # The card went to "Square" (the fake SDK's tokenize), never to paymux.
    assert any(GOOD_CARD.encode() in body for _, body in env.scripts.received)
    no_card_reached_paymux(env, GOOD_CARD, CVV)


def test_the_square_pay_button_is_disabled_until_the_card_form_is_attached(
    tab: Page, api: Api, env: Env
) -> None:
    """paymux.js's Pay button for Square is disabled until its handler is in place, which
    comes after the card form's attach (a click before did nothing)."""
    hold_square_attach(tab, env.scripts.url)
    pi = open_shop(tab, api, env, "square")
    tab.wait_for_function("typeof window.releaseAttach === 'function'")
    fill_square_card(tab, GOOD_CARD)
    expect(tab.locator("#card .paymux-pay")).to_be_disabled()
    tab.evaluate("window.releaseAttach()")
    expect(tab.locator("#card .paymux-pay")).to_be_enabled()
    tab.click("#card .paymux-pay")
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "succeeded"


def test_a_square_decline_shows_the_taxonomys_message_and_an_empty_form(
    tab: Page, api: Api, env: Env
) -> None:
    pi = open_shop(tab, api, env, "square")
    enter_square_card(tab, DECLINED_CARD)
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == \
        "requires_payment_method"
    expect(tab.locator("#card .paymux-square-card input[name=number]")).to_have_value("")
    enter_square_card(tab, GOOD_CARD)
    expect(tab.locator("#result")).to_have_text("succeeded")
    no_card_reached_paymux(env, DECLINED_CARD, GOOD_CARD, CVV)


# -- saving a payment method (SetupIntents) -------------------------------------------------
def open_shop_for_setup(tab: Page, api: Api, env: Env, gateway: str,
                        **extra: Any) -> dict[str, Any]:
    customer = api.ok("POST", "/v1/customers", {"email": "saver@example.com"})
    seti = api.ok("POST", "/v1/setup_intents",
                  {"customer": customer["id"], "gateway": gateway, **extra})
    tab.goto(f"{env.shop.url}/?pk={publishable_key(api)}&secret={seti['client_secret']}")
    return seti


def square_customer(env: Env, customer_id: str) -> str:
    """The Square customer paymux made for ``customer_id`` (its reference_id)."""
    [found] = [sid for sid, c in env.square.state.customers.items()
               if c.get("reference_id") == customer_id]
    return found


def test_square_saves_a_card_on_file_with_verify_buyer_store_from_the_merchant_page(
    tab: Page, api: Api, env: Env
) -> None:
    seti = open_shop_for_setup(tab, api, env, "square")
    enter_square_card(tab, GOOD_CARD)
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert (done["gateway"], done["status"]) == ("square", "succeeded")
    # verifyBuyer was asked to STORE the card (no amount: nothing is charged), and its token
    # reached Square's CreateCard with the card's nonce, for this customer's Square customer.
    creates = [c.body for c in env.square.calls_to("POST", "/v2/cards")
               if c.body["card"]["customer_id"] == square_customer(env, seti["customer"])]
    assert len(creates) == 1, creates
    details = env.scripts.verifications[creates[0]["verification_token"]]
    assert details == {"intent": "STORE", "billingContact": {}}
    assert creates[0]["source_id"].startswith("cnon:")
    # The card on file Square made is the customer's saved payment method, listed by the API.
    listed = api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]
    assert [pm["id"] for pm in listed] == [done["payment_method"]]
    card_id = next(cid for cid, card in env.square.state.cards.items()
                   if card["customer_id"] == creates[0]["card"]["customer_id"])
    assert (listed[0]["customer"], listed[0]["card"]["last4"]) == (seti["customer"], "1111")
    # Charged later off session: Square's CreatePayment takes the card on file.
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1800, "currency": "usd", "gateway": "square", "customer": seti["customer"],
        "payment_method": done["payment_method"], "off_session": True, "confirm": True})
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 1800)
    charged = [c.body for c in env.square.calls_to("POST", "/v2/payments")
               if c.body.get("source_id") == card_id]
    assert len(charged) == 1 and charged[0]["amount_money"] == {"amount": 1800,
                                                                "currency": "USD"}
    no_card_reached_paymux(env, GOOD_CARD, CVV)


def test_a_square_card_declined_while_saving_is_not_saved_and_another_is(
    tab: Page, api: Api, env: Env
) -> None:
    seti = open_shop_for_setup(tab, api, env, "square")
    enter_square_card(tab, DECLINED_CARD)
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert api.ok("GET", f"/v1/setup_intents/{seti['id']}")["status"] == \
        "requires_payment_method"
    assert api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"] == []
    expect(tab.locator("#card .paymux-square-card input[name=number]")).to_have_value("")
    enter_square_card(tab, GOOD_CARD)
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert len(api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]) == 1


def test_paypal_vault_on_the_merchant_page_saves_the_wallet_for_off_session_payments(
    tab: Page, api: Api, env: Env
) -> None:
    seti = open_shop_for_setup(tab, api, env, "paypal", payment_method_types=["paypal"])
    # The SDK for the client id alone (nothing charged: no currency, no intent).
    tab.click("#paypal-button")
    window = tab.locator("#paypal-window")
    expect(window).to_be_visible()
    src = tab.evaluate("[...document.scripts].map(s => s.src).find(s => s.includes('/sdk/js'))")
    assert src == f"{env.scripts.url}/sdk/js?client-id={PAYPAL_CLIENT_ID}&components=buttons"
    # createVaultSetupToken handed PayPal the setup token paymux made for this SetupIntent.
    token = str(window.get_attribute("data-setup-token"))
    assert api.ok("GET", f"/v1/setup_intents/{seti['id']}")["gateway_reference"] == token
    made = env.paypal.setup_tokens[token]
    assert made["payment_source"]["paypal"]["usage_type"] == "MERCHANT"
    assert made["status"] == "PAYER_ACTION_REQUIRED"
    window.get_by_text("Save PayPal").click()
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert (done["gateway"], done["status"]) == ("paypal", "succeeded")
    listed = api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]
    assert [(pm["id"], pm["type"], pm["customer"]) for pm in listed] == [
        (done["payment_method"], "paypal", seti["customer"])]
    [vault_id] = [v for v, saved in env.paypal.payment_tokens.items()
                  if saved["customer"] == made["customer"]]
    # Charged later off session: a new order paid from the vaulted wallet.
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 1500, "currency": "usd", "gateway": "paypal", "customer": seti["customer"],
        "payment_method": done["payment_method"], "off_session": True, "confirm": True})
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 1500)
    paid = [o for o in env.paypal.orders.values()
            if o["purchase_units"][0].get("custom_id") == pi["id"] and o["status"] == "COMPLETED"]
    assert [o.get("payment_source") for o in paid] == [
        env.paypal.payment_tokens[vault_id]["payment_source"]]


def test_a_paypal_vault_canceled_in_paypals_window_is_approved_on_the_next_try(
    tab: Page, api: Api, env: Env
) -> None:
    seti = open_shop_for_setup(tab, api, env, "paypal", payment_method_types=["paypal"])
    tab.click("#paypal-button")
    first = str(tab.locator("#paypal-window").get_attribute("data-setup-token"))
    tab.locator("#paypal-window").get_by_text("Cancel").click()
    expect(tab.locator("#paypal-window")).to_have_count(0)
    assert api.ok("GET", f"/v1/setup_intents/{seti['id']}")["status"] == "requires_action"
    # The same setup token again (paymux made one for this SetupIntent), now approved.
    tab.click("#paypal-button")
    assert tab.locator("#paypal-window").get_attribute("data-setup-token") == first
    tab.locator("#paypal-window").get_by_text("Save PayPal").click()
    expect(tab.locator("#result")).to_have_text("succeeded")
    setup_creates = [r for r in env.paypal.requests
                     if r[:2] == ("POST", "/v3/vault/setup-tokens")
                     and r[2].get("paypal-request-id") == f"{seti['id']}:setup:1"]
    assert len(setup_creates) == 1


def test_paypal_vault_buttons_mounted_again_after_a_reload_mid_setup(
    tab: Page, api: Api, env: Env
) -> None:
    """The merchant's page reloaded after paymux made the setup token and before the payer
    approved it: paymux.js reads the SetupIntent (requires_action), mounts the buttons
    again, and they hand PayPal the same setup token (a confirm is refused now); approved,
    the wallet is saved, with one setup token made at PayPal."""
    seti = open_shop_for_setup(tab, api, env, "paypal", payment_method_types=["paypal"])
    tab.click("#paypal-button")
    first = str(tab.locator("#paypal-window").get_attribute("data-setup-token"))
    assert api.ok("GET", f"/v1/setup_intents/{seti['id']}")["status"] == "requires_action"
    tab.reload()
    expect(tab.locator("#paypal-window")).to_have_count(0)
    tab.click("#paypal-button")  # the buttons, mounted again
    window = tab.locator("#paypal-window")
    assert window.get_attribute("data-setup-token") == first
    window.get_by_text("Save PayPal").click()
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert tab.locator("#error").text_content() == ""
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert (done["status"], done["gateway_reference"]) == ("succeeded", first)
    listed = api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]
    assert [(pm["id"], pm["type"]) for pm in listed] == [(done["payment_method"], "paypal")]
    setup_creates = [r for r in env.paypal.requests
                     if r[:2] == ("POST", "/v3/vault/setup-tokens")
                     and r[2].get("paypal-request-id") == f"{seti['id']}:setup:1"]
    assert len(setup_creates) == 1
