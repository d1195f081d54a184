"""The hosted checkout page routed to PayPal and to Square, in a real browser (Playwright,
Debian's chromium; one browser for the module).

The page loads the provider's browser SDK from the URL PAYMUX_PAYPAL_JS_URL /
PAYMUX_SQUARE_JS_URL names: here small fakes of PayPal's JS SDK and Square's Web Payments
SDK with the API surface the page uses, served from a loopback origin of their own
(provider_js_fakes.py); the CSP names that origin instead of the providers'. The page code
is the real one. The server side of each payment goes to the provider at the HTTP seam: the
stateful fakes of PayPal's and Square's APIs (tests/support/paypal_fake.py, fake_square.py).

PayPal: the buttons' createOrder gets the session's order from paymux, the payer approves it
in "PayPal's window", onApprove confirms with the order id. Beside them PayPal's card fields
(frames of the provider's origin): their createOrder gets a card order of paymux's, submit()
sends the card to "PayPal", which runs 3-D Secure (support/paypal_card_fields.py), and
onApprove confirms with the order id; paymux reads the authentication result before it
captures. Square: the card form tokenizes at
"Square", verifyBuyer gives the verification token, both go to paymux's confirm, and on to
Square's CreatePayment. Success and decline (the taxonomy's user_message) for each; the
page's scripts and headers against docs/pci/script-inventory.md; no card number in any
request paymux received."""

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
from playwright.sync_api import Browser, Page, expect
from provider_js_fakes import ProviderScripts, hold_square_attach
from test_checkout_browser import inventory_tables, nonce_free

from conftest import Api, make_settings, migrated_database_url
from support.browser import CapturingServer, account_api, card_runs, launched_chromium, shop_tab
from support.fake_square import FakeSquare
from support.paypal_card_fields import CHALLENGE_CARD as PAYPAL_CHALLENGE_CARD
from support.paypal_card_fields import DECLINED_CARD as PAYPAL_DECLINED_CARD
from support.paypal_card_fields import submit_card
from support.paypal_fake import FakePayPal
from support.processes import free_port

pytestmark = pytest.mark.browser

SHOP = "https://shop.example"
PAYPAL_CLIENT_ID = "AYfakeclientid"
PAYPAL_SECRET = "EPfake-client-secret-do-not-log-7c1d"
PAYPAL_WEBHOOK_ID = "4JH86294D6297924G"
SQUARE_TOKEN = "EAAAl9fK2xQ7" + "vR3pT8mW1nZ5" * 5
SQUARE_KEY = "sq-webhook-key-" + "Zm9vYmFy" * 3
SQUARE_APP = "sandbox-sq0idb-paymuxBrowser"
DECLINE = "Your card was declined. Please try again or use another payment method."
NOT_VERIFIED = "We could not verify your card. Please try again or use another payment method."
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
CHALLENGE_CARD = "4000002760003184"  # the fake SDK's verifyBuyer challenges it
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PAYPAL_PAGE = "/c/pay/{session} (checkout, routed to PayPal)"
SQUARE_PAGE = "/c/pay/{session} (checkout, routed to Square)"


@dataclass
class Env:
    server: CapturingServer
    paypal: FakePayPal
    square: FakeSquare
    scripts: ProviderScripts


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("checkout-providers-browser")
    url = migrated_database_url("sqlite", tmp, None, "checkout_providers_browser")
    port = free_port()
    paypal = FakePayPal(PAYPAL_CLIENT_ID, PAYPAL_SECRET, PAYPAL_WEBHOOK_ID).start()
    paypal.webhook_url = f"http://127.0.0.1:{port}/webhooks/paypal"
    square_hook = f"http://127.0.0.1:{port}/webhooks/square"
    square = FakeSquare(access_token=SQUARE_TOKEN, signature_key=SQUARE_KEY,
                        webhook_url=square_hook).start()
    scripts = ProviderScripts(paypal).start()
    settings = make_settings(
        url, tmp, port,
        paypal_client_id=PAYPAL_CLIENT_ID, paypal_client_secret=PAYPAL_SECRET,
        paypal_webhook_id=PAYPAL_WEBHOOK_ID, paypal_api_base=paypal.url,
        square_access_token=SQUARE_TOKEN, square_location_id=square.location_id,
        square_webhook_signature_key=SQUARE_KEY, square_webhook_url=square_hook,
        square_api_base=square.url, square_application_id=SQUARE_APP,
        paypal_js_url=f"{scripts.url}/sdk/js", square_js_url=f"{scripts.url}/v1/square.js",
    )
    server = CapturingServer(settings).start()
    try:
        yield Env(server, paypal, square, scripts)
    finally:
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
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    yield from shop_tab(timed(browser.new_context()), SHOP)


def new_session(api: Api, gateway: str) -> dict[str, Any]:
    return api.ok("POST", "/v1/checkout/sessions", {
        "mode": "payment", "gateway": gateway,
        "success_url": f"{SHOP}/thanks?session={{CHECKOUT_SESSION_ID}}",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 2500,
                                       "product_data": {"name": "Desk lamp"}}}]})


def thanks(cs: dict[str, Any]) -> str:
    return f"{SHOP}/thanks?session={cs['id']}"


def check_against_inventory(tab: Page, response: Any, page_name: str, env: Env,
                            provider_script: str) -> None:
    """The page's scripts and headers are the inventory's rows for ``page_name``, with the
    provider's origin (here the fakes') for ``{provider}``."""
    scripts, headers = inventory_tables()
    loaded = tab.evaluate("[...document.scripts].map(s => [s.src, s.integrity])")
    listed = [r["script"] for r in scripts if r["page"] == page_name]
    assert len(listed) == 2 == len(loaded), (listed, loaded)
    # The provider's SDK first, from the configured URL (the inventory names it so), no SRI.
    assert loaded[0][0].split("?")[0] == f"{env.scripts.url}{provider_script}", loaded
    assert "PAYMUX_" in listed[0] and loaded[0][1] == ""
    # Then paymux's card-entry.js, with SRI.
    assert listed[1] == "/_checkout/card-entry.js"
    assert loaded[1][0] == f"{env.server.url}/_checkout/card-entry.js"
    assert loaded[1][1].startswith("sha384-")
    got = {k.lower(): v for k, v in response.all_headers().items()}
    rows = [r for r in headers if r["page"] == page_name]
    assert {r["header"] for r in rows} == {"content-security-policy", "x-frame-options"}
    for row in rows:
        value = got.get(row["header"], "")
        if row["header"] == "content-security-policy":
            value = nonce_free(value).replace(env.scripts.url, "{provider}")
        assert value == row["value"], (page_name, row["header"], value)


# -- PayPal ---------------------------------------------------------------------------------
def test_paypal_buttons_approve_the_order_and_the_session_completes(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    cs = new_session(api, "paypal")
    response = tab.goto(cs["url"])
    assert response is not None
    policy = response.all_headers()["content-security-policy"]
    origin = env.scripts.url
    assert re.search(rf"script-src 'nonce-[^']+' {re.escape(origin)};", policy), policy
    assert "paypal.com" not in policy  # the configured origin replaces PayPal's
    check_against_inventory(tab, response, PAYPAL_PAGE, env, "/sdk/js")
    # The SDK's URL says the order's client id, currency and intent, as PayPal requires.
    src = tab.evaluate("document.scripts[0].src")
    assert f"client-id={PAYPAL_CLIENT_ID}" in src and "currency=USD" in src
    assert "intent=capture" in src and "components=buttons%2Ccard-fields" in src
    # The only frames: PayPal's card fields, from the provider's origin (no card field of
    # paymux's own).
    frames = tab.evaluate("[...document.querySelectorAll('iframe')].map(f => f.src)")
    assert len(frames) == 4 and all(f.startswith(f"{origin}/paypal/card-field?") for f in frames)
    tab.click("#paypal-button")
    window = tab.locator("#paypal-window")
    expect(window).to_be_visible()
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    order_id = window.get_attribute("data-order-id")
    assert order_id == pi["gateway_reference"] == pi["client"]["order_id"]  # paymux's order
    window.get_by_text("Pay with PayPal").click()
    tab.wait_for_url(thanks(cs))
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["amount_received"]) == ("paypal", "succeeded", 2500)
    assert env.paypal.orders[str(order_id)]["status"] == "COMPLETED"  # captured at PayPal
    assert csp == []  # the SDK's style element carried the nonce (data-csp-nonce)


def test_a_paypal_refusal_shows_the_taxonomys_message_and_the_payer_approves_again(
    page: tuple[Page, list[str]], api: Api
) -> None:
    tab, _ = page
    cs = new_session(api, "paypal")
    tab.goto(cs["url"])
    tab.click("#paypal-button")
    tab.locator("#paypal-window").get_by_text("Pay with a refused card").click()
    status = tab.locator("#pay-status[data-state=failed]")
    expect(status).to_have_text(DECLINE)
    expect(status).to_have_attribute("data-action", "retry")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    # Another funding source in PayPal's window: the same order, approved again, pays.
    tab.click("#paypal-button")
    tab.locator("#paypal-window").get_by_text("Pay with PayPal").click()
    tab.wait_for_url(thanks(cs))
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "complete"


# -- PayPal's card fields, 3-D Secure ----------------------------------------------------------
def enter_paypal_card(tab: Page, number: str, cvv: str = "739") -> None:
    """The card, typed into PayPal's card fields (frames of the provider's origin)."""
    for name, value in (("name", "Ada Payer"), ("number", number), ("expiry", "12/34"),
                        ("cvv", cvv)):
        tab.frame_locator(f"#paypal-card-{name} iframe").locator("input").fill(value)
    tab.click("#paypal-card-pay")


def card_orders(env: Env, pi_id: str) -> list[dict[str, Any]]:
    """The card fields' orders at the fake PayPal opened for ``pi_id``, oldest first."""
    with env.paypal.lock:
        return [dict(o) for o in env.paypal.orders.values()
                if o["purchase_units"][0]["custom_id"] == pi_id
                and "card" in (o.get("payment_source") or {})]


def luhn_valid(run: bytes) -> bool:
    digits = [int(d) for d in re.sub(rb"\D", b"", run).decode()][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def captures(order: dict[str, Any]) -> list[Any]:
    return list(order["purchase_units"][0]["payments"].get("captures") or [])


def charge_card(api: Api, pi_id: str) -> dict[str, Any]:
    charges = api.ok("GET", f"/v1/charges?payment_intent={pi_id}")["data"]
    assert len(charges) == 1, charges
    card: dict[str, Any] = charges[0]["payment_method_details"]["card"]
    return card


def test_paypal_card_fields_pay_with_3d_secure_passed_and_the_card_never_reaches_paymux(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    cs = new_session(api, "paypal")
    tab.goto(cs["url"])
    enter_paypal_card(tab, PAYPAL_CHALLENGE_CARD, cvv="7391")
    challenge = tab.locator("#paypal-3ds")  # the issuer's challenge, shown by PayPal's SDK
    expect(challenge).to_be_visible()
    challenge.get_by_text("Complete authentication").click()
    tab.wait_for_url(thanks(cs))
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 2500)
    [order] = card_orders(env, pi["id"])
    # paymux's card order (3-D Secure when required: the default), captured once at PayPal;
    # the buttons' order untouched.
    assert order["_verification"] == "SCA_WHEN_REQUIRED"
    assert order["status"] == "COMPLETED" and len(captures(order)) == 1
    card = charge_card(api, pi["id"])
    assert card["last4"] == "1091"
    three_ds = card["three_d_secure"]
    assert (three_ds["result"], three_ds["liability_shift"]) == ("authenticated", True)
    # The card went to the provider's origin (its fields), never to paymux.
    assert any(PAYPAL_CHALLENGE_CARD.encode() in body for _, body in env.scripts.received)
    assert env.server.capture.requests
    for request in env.server.capture.requests:
        raw = request.raw()
        assert PAYPAL_CHALLENGE_CARD.encode() not in raw, request.path
        assert b"7391" not in raw, request.path
        assert not [r for r in card_runs(raw) if luhn_valid(r)], request.path
    assert csp == []


def test_paypal_card_fields_failed_3d_secure_captures_nothing_then_another_card_pays(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, _ = page
    cs = new_session(api, "paypal")
    tab.goto(cs["url"])
    enter_paypal_card(tab, PAYPAL_CHALLENGE_CARD)
    tab.locator("#paypal-3ds").get_by_text("Fail authentication").click()
    status = tab.locator("#pay-status[data-state=failed]")
    expect(status).to_have_text(NOT_VERIFIED)
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert pi["status"] == "requires_payment_method"
    assert pi["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    [failed] = card_orders(env, pi["id"])
    assert failed["status"] == "APPROVED" and captures(failed) == []  # nothing captured
    assert failed["payment_source"]["card"]["authentication_result"]["liability_shift"] == "NO"
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    # Another card on the same page: a new order of paymux's, which pays.
    enter_paypal_card(tab, "4111111111111111")
    tab.wait_for_url(thanks(cs))
    first, second = card_orders(env, pi["id"])
    assert first["id"] == failed["id"] and captures(first) == []
    assert second["status"] == "COMPLETED" and len(captures(second)) == 1
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 2500)


def test_a_paypal_card_fields_decline_shows_the_taxonomys_message_and_captures_nothing(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, _ = page
    cs = new_session(api, "paypal")
    tab.goto(cs["url"])
    enter_paypal_card(tab, PAYPAL_DECLINED_CARD)
    status = tab.locator("#pay-status[data-state=failed]")
    expect(status).to_have_text(DECLINE)
    expect(status).to_have_attribute("data-action", "retry")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["last_payment_error"]["code"]) == (
        "requires_payment_method", "card_declined")
    [order] = card_orders(env, pi["id"])
    assert order["status"] == "APPROVED" and captures(order) == []
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"


def test_the_card_order_endpoint_and_confirm_pay_a_card_order_once_and_only_its_own(
    api: Api, env: Env
) -> None:
    """No browser: the card fields' endpoints as the page calls them, twice, and with orders
    the page would not send."""
    cs = new_session(api, "paypal")
    card_order_url = f"{cs['url']}/paypal-card-order"
    first = httpx.post(card_order_url, json={}, timeout=10).json()["order_id"]
    assert httpx.post(card_order_url, json={}, timeout=10).json()["order_id"] == first
    assert httpx.post(card_order_url, json={}, headers={"origin": "https://evil.example"},
                      timeout=10).status_code == 403
    card = {"number": "4111111111111111", "expiry": "12/34", "cvv": "123"}
    assert submit_card(env.paypal, first, card)["liability_shift"] == "NO"  # frictionless
    # A double submit: both answers say complete; PayPal captured once.
    answers = [httpx.post(f"{cs['url']}/confirm", json={"payment_method": first}, timeout=10)
               for _ in range(2)]
    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "complete")] * 2
    [order] = card_orders(env, cs["payment_intent"])
    assert len(captures(order)) == 1
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 2500)
    # Another payment's card order, and an order made outside paymux (no custom_id, same
    # amount): refused, nothing captured.
    mine, other = new_session(api, "paypal"), new_session(api, "paypal")
    foreign = httpx.post(f"{other['url']}/paypal-card-order", json={}, timeout=10).json()[
        "order_id"]
    submit_card(env.paypal, foreign, card)
    with env.paypal.lock:
        _, outside = env.paypal._create_order({
            "intent": "CAPTURE",
            "purchase_units": [{"amount": {"currency_code": "USD", "value": "25.00"}}],
            "payment_source": {"card": {}}})
    submit_card(env.paypal, str(outside["id"]), card)
    for order_id in (foreign, str(outside["id"])):
        r = httpx.post(f"{mine['url']}/confirm", json={"payment_method": order_id}, timeout=10)
        assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid"), order_id
        assert env.paypal.orders[order_id]["status"] == "APPROVED"  # not captured
    assert api.ok("GET", f"/v1/payment_intents/{mine['payment_intent']}")["status"] == \
        "requires_payment_method"


# -- Square ---------------------------------------------------------------------------------
def fill_square_card(tab: Page, number: str, cvv: str = "739") -> None:
    card = tab.locator("#square-card")
    card.locator("input[name=number]").fill(number)
    card.locator("input[name=expiry]").fill("12/34")
    card.locator("input[name=cvv]").fill(cvv)
    card.locator("input[name=postal]").fill("10001")


def enter_square_card(tab: Page, number: str, cvv: str = "739") -> None:
    fill_square_card(tab, number, cvv)
    tab.click("#square-pay")


def test_square_card_form_and_verify_buyer_complete_the_session(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    cs = new_session(api, "square")
    response = tab.goto(cs["url"])
    assert response is not None
    policy = response.all_headers()["content-security-policy"]
    assert re.search(rf"script-src 'nonce-[^']+' {re.escape(env.scripts.url)};", policy)
    assert "squarecdn" not in policy
    check_against_inventory(tab, response, SQUARE_PAGE, env, "/v1/square.js")
    enter_square_card(tab, GOOD_CARD)
    tab.wait_for_url(thanks(cs))
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["amount_received"]) == ("square", "succeeded", 2500)
    # verifyBuyer was asked with the payment's amount, and its token reached Square's
    # CreatePayment with the card's nonce.
    sent = [c.body for c in env.square.calls_to("POST", "/v2/payments")
            if c.body.get("verification_token") in env.scripts.verifications]
    assert len(sent) == 1, sent
    details = env.scripts.verifications[sent[0]["verification_token"]]
    assert (details["amount"], details["currencyCode"], details["intent"]) == (
        "25.00", "USD", "CHARGE")
    assert sent[0]["amount_money"] == {"amount": 2500, "currency": "USD"}
    assert sent[0]["source_id"].startswith("cnon:")
    assert csp == []


def test_the_square_pay_button_is_disabled_until_the_card_form_is_attached(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    """A click while Square's card form is still attaching did nothing (the handler came
    after the attach). The button is disabled until the handler is in place."""
    tab, _ = page
    hold_square_attach(tab, env.scripts.url)
    cs = new_session(api, "square")
    tab.goto(cs["url"])
    tab.wait_for_function("typeof window.releaseAttach === 'function'")
    fill_square_card(tab, GOOD_CARD)
    expect(tab.locator("#square-pay")).to_be_disabled()
    tab.evaluate("window.releaseAttach()")
    expect(tab.locator("#square-pay")).to_be_enabled()
    tab.click("#square-pay")
    tab.wait_for_url(thanks(cs))
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "paid")


def test_a_square_decline_shows_the_taxonomys_message_and_an_empty_form(
    page: tuple[Page, list[str]], api: Api
) -> None:
    tab, _ = page
    cs = new_session(api, "square")
    tab.goto(cs["url"])
    enter_square_card(tab, DECLINED_CARD)
    status = tab.locator("#pay-status[data-state=failed]")
    expect(status).to_have_text(DECLINE)
    expect(status).to_be_focused()
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    expect(tab.locator("#square-card input[name=number]")).to_have_value("")
    enter_square_card(tab, GOOD_CARD)
    tab.wait_for_url(thanks(cs))
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "complete"


def test_square_verify_buyer_challenge_failed_then_passed(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    """verifyBuyer with the issuer's challenge (the fake SDK shows it for its challenge
    card): nothing reaches paymux while the buyer is challenged; a failed challenge (Square's
    verifyBuyer throws) sends nothing, says so and leaves an empty form; a passed one pays
    with the verification token Square gave after it."""
    tab, csp = page
    cs = new_session(api, "square")
    tab.goto(cs["url"])
    confirm_path = f"/c/pay/{cs['id']}/confirm"
    enter_square_card(tab, CHALLENGE_CARD)
    challenge = tab.locator("#square-challenge")
    expect(challenge).to_be_visible()
    assert not [r for r in env.server.capture.requests if r.path == confirm_path]
    challenge.get_by_text("Fail verification").click()
    expect(tab.locator("#pay-status[data-state=failed]")).to_have_text(
        "The payment did not go through. Try another card.")
    expect(tab.locator("#square-card input[name=number]")).to_have_value("")
    assert not [r for r in env.server.capture.requests if r.path == confirm_path]
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "open"
    enter_square_card(tab, CHALLENGE_CARD)
    tab.locator("#square-challenge").get_by_text("Complete verification").click()
    tab.wait_for_url(thanks(cs))
    pi = api.ok("GET", f"/v1/payment_intents/{cs['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 2500)
    [sent] = [c.body for c in env.square.calls_to("POST", "/v2/payments")
              if c.body.get("verification_token") in env.scripts.challenged]
    assert sent["amount_money"] == {"amount": 2500, "currency": "USD"}
    assert len([r for r in env.server.capture.requests if r.path == confirm_path]) == 1
    assert csp == []


def test_no_request_paymux_received_holds_the_card_number(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    """The card went to the provider's origin (the fake SDK's tokenize), never to paymux."""
    tab, _ = page
    cs = new_session(api, "square")
    tab.goto(cs["url"])
    enter_square_card(tab, "4111111111111111", cvv="7391")
    tab.wait_for_url(thanks(cs))
    assert any(b"4111111111111111" in body for _, body in env.scripts.received)
    assert env.server.capture.requests
    for request in env.server.capture.requests:
        raw = request.raw()
        assert b"4111111111111111" not in raw, request.path
        assert b"7391" not in raw, request.path


def test_the_paypal_order_and_confirm_endpoints_refuse_what_the_page_would_not_send(
    api: Api, env: Env
) -> None:
    """No browser: the page's own endpoints, called as another site or with another order."""
    paypal_cs, square_cs = new_session(api, "paypal"), new_session(api, "square")
    order_url = f"{paypal_cs['url']}/paypal-order"
    foreign = httpx.post(order_url, json={}, headers={"origin": "https://evil.example"},
                         timeout=10)
    assert foreign.status_code == 403
    assert httpx.post(order_url, data={"x": "1"}, timeout=10).status_code == 415
    not_paypal = httpx.post(f"{square_cs['url']}/paypal-order", json={}, timeout=10)
    assert (not_paypal.status_code, not_paypal.json()["code"]) == (
        400, "checkout_session_unexpected_state")
    mine = httpx.post(order_url, json={}, timeout=10)
    pi = api.ok("GET", f"/v1/payment_intents/{paypal_cs['payment_intent']}")
    assert mine.json() == {"order_id": pi["gateway_reference"]}
    # Another order (one of another payment) is refused; nothing was sent to PayPal for it.
    other = new_session(api, "paypal")
    other_order = api.ok("GET", f"/v1/payment_intents/{other['payment_intent']}")[
        "gateway_reference"]
    env.paypal.approve(other_order)
    r = httpx.post(f"{paypal_cs['url']}/confirm", json={"payment_method": other_order},
                   timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid")
    assert env.paypal.orders[other_order]["status"] == "APPROVED"  # not captured
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == \
        "requires_payment_method"
    # A verification token must be a string.
    r = httpx.post(f"{square_cs['url']}/confirm",
                   json={"payment_method": "cnon:card-nonce-ok", "verification_token": 7},
                   timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid")


# -- setup mode: saving a payment method, nothing charged -----------------------------------
def new_setup_session(api: Api, gateway: str, **extra: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/checkout/sessions", {
        "mode": "setup", "gateway": gateway, "customer_email": "page-saver@example.com",
        "success_url": f"{SHOP}/saved?session={{CHECKOUT_SESSION_ID}}", **extra})


def test_square_setup_mode_saves_a_card_on_file_with_verify_buyer_store(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    cs = new_setup_session(api, "square")
    response = tab.goto(cs["url"])
    assert response is not None
    check_against_inventory(tab, response, SQUARE_PAGE, env, "/v1/square.js")
    expect(tab.locator("#square-pay")).to_have_text("Save your card")
    enter_square_card(tab, GOOD_CARD)
    tab.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    done = api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")
    assert (done["status"], done["payment_status"]) == ("complete", "no_payment_required")
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert (si["gateway"], si["status"]) == ("square", "succeeded")
    # verifyBuyer was asked to STORE the card, and its token reached Square's CreateCard.
    [square_customer] = [sid for sid, c in env.square.state.customers.items()
                         if c.get("reference_id") == cs["customer"]]
    mine = [c.body for c in env.square.calls_to("POST", "/v2/cards")
            if c.body["card"]["customer_id"] == square_customer]
    assert len(mine) == 1, mine
    details = env.scripts.verifications[mine[0]["verification_token"]]
    assert details == {"intent": "STORE", "billingContact": {}}
    listed = api.ok("GET", f"/v1/customers/{cs['customer']}/payment_methods")["data"]
    assert [(pm["id"], pm["customer"], pm["card"]["last4"]) for pm in listed] == [
        (si["payment_method"], cs["customer"], "1111")]
    charged = [c for c in env.square.calls_to("POST", "/v2/payments")
               if c.body.get("source_id") == mine[0]["source_id"]]
    assert charged == []  # nothing charged
    assert csp == []


def test_paypal_setup_mode_saves_the_payers_wallet(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    cs = new_setup_session(api, "paypal", payment_method_types=["paypal"])
    response = tab.goto(cs["url"])
    assert response is not None
    check_against_inventory(tab, response, PAYPAL_PAGE, env, "/sdk/js")
    src = tab.evaluate("document.scripts[0].src")
    assert src == f"{env.scripts.url}/sdk/js?client-id={PAYPAL_CLIENT_ID}&components=buttons"
    tab.click("#paypal-button")
    window = tab.locator("#paypal-window")
    expect(window).to_be_visible()
    token = str(window.get_attribute("data-setup-token"))
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    assert (si["status"], si["gateway_reference"]) == ("requires_action", token)
    window.get_by_text("Save PayPal").click()
    tab.wait_for_url(f"{SHOP}/saved?session={cs['id']}")
    assert api.ok("GET", f"/v1/checkout/sessions/{cs['id']}")["status"] == "complete"
    si = api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")
    pm = api.ok("GET", f"/v1/payment_methods/{si['payment_method']}")
    assert (si["status"], pm["type"], pm["customer"]) == ("succeeded", "paypal", cs["customer"])
    saved = [t for t in env.paypal.payment_tokens.values()
             if t["customer"] == env.paypal.setup_tokens[token]["customer"]]
    assert len(saved) == 1
    assert csp == []


def test_the_paypal_setup_token_endpoint_answers_one_token_and_confirm_takes_only_it(
    api: Api, env: Env
) -> None:
    """No browser: the setup-token endpoint as the page calls it (twice: the same token),
    from another site, for a Square session; the confirm with another setup token."""
    cs = new_setup_session(api, "paypal", payment_method_types=["paypal"])
    url = f"{cs['url']}/paypal-setup-token"
    foreign = httpx.post(url, json={}, headers={"origin": "https://evil.example"}, timeout=10)
    assert foreign.status_code == 403
    first = httpx.post(url, json={}, timeout=10)
    again = httpx.post(url, json={}, timeout=10)
    assert first.status_code == 200 and first.json() == again.json()
    token = first.json()["setup_token"]
    assert env.paypal.setup_tokens[token]["status"] == "PAYER_ACTION_REQUIRED"
    square_cs = new_setup_session(api, "square")
    not_paypal = httpx.post(f"{square_cs['url']}/paypal-setup-token", json={}, timeout=10)
    assert (not_paypal.status_code, not_paypal.json()["code"]) == (
        400, "checkout_session_unexpected_state")
    other_cs = new_setup_session(api, "paypal", payment_method_types=["paypal"])
    other = httpx.post(f"{other_cs['url']}/paypal-setup-token", json={},
                       timeout=10).json()["setup_token"]
    env.paypal.approve_setup_token(other)
    r = httpx.post(f"{cs['url']}/confirm", json={"payment_method": other}, timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid")
    assert env.paypal.setup_tokens[other]["status"] == "APPROVED"  # not saved for this one
    # Its own token, not yet approved by the payer: nothing saved, the page may try again.
    r = httpx.post(f"{cs['url']}/confirm", json={"payment_method": token}, timeout=10)
    assert (r.status_code, r.json()["status"]) == (200, "open")
    assert api.ok("GET", f"/v1/setup_intents/{cs['setup_intent']}")["status"] == \
        "requires_action"


def test_screenshots_for_the_docs(browser: Browser, api: Api, tmp_path: Path) -> None:
    """The PayPal and Square pages (with the fake SDKs' stand-in buttons and fields) and
    their decline, at desktop width. docs/img is rewritten only with
    PAYMUX_DOCS_SCREENSHOTS=1, as test_checkout_browser.py's shots."""
    out = DOCS_IMG if os.environ.get("PAYMUX_DOCS_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    api.server.sql("update accounts set name = 'Linen & Co.' where id = :a", a=api.account_id)
    context = timed(browser.new_context(viewport={"width": 1280, "height": 900}))
    try:
        tab = context.new_page()
        cs = new_session(api, "paypal")
        tab.goto(cs["url"])
        expect(tab.locator("#paypal-button")).to_be_visible()
        tab.screenshot(path=str(out / "checkout-paypal-desktop.png"), full_page=True)
        tab.click("#paypal-button")
        tab.locator("#paypal-window").get_by_text("Pay with a refused card").click()
        expect(tab.locator("#pay-status[data-state=failed]")).to_be_visible()
        tab.screenshot(path=str(out / "checkout-paypal-desktop-decline.png"), full_page=True)
        cs = new_session(api, "square")
        tab.goto(cs["url"])
        expect(tab.locator("#square-card input[name=number]")).to_be_visible()
        tab.screenshot(path=str(out / "checkout-square-desktop.png"), full_page=True)
        enter_square_card(tab, DECLINED_CARD)
        expect(tab.locator("#pay-status[data-state=failed]")).to_be_visible()
        tab.screenshot(path=str(out / "checkout-square-desktop-decline.png"), full_page=True)
    finally:
        context.close()
    for name in ("paypal-desktop", "paypal-desktop-decline", "square-desktop",
                 "square-desktop-decline"):
        assert (out / f"checkout-{name}.png").stat().st_size > 5000
