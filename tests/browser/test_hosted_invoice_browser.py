"""The hosted invoice page taking the card through the routed gateway's own component, in a
real browser (Playwright, Debian's chromium; one browser and one server for the module).

The page mounts the component as the checkout page does (one code path: web/checkout.py's
``payment_component``, templates/card_entry.html, static/card-entry.js): here an invoice in
EUR routed to Stripe (PAYMUX_ROUTES), whose Stripe.js is localstripe's fake (behind
support/localstripe_proxy.py, which takes off the invoice payment's ``description``: real
Stripe takes it, localstripe refuses it), and one in USD
routed to Square, whose Web Payments SDK is the loopback fake (provider_js_fakes.py) in
front of the fake Square API, and one in GBP routed to PayPal, whose buttons (the loopback
fake JS SDK) ask the page for the order it opens for what is due, in front of the fake
PayPal API. Each is paid exactly once: a double click, the same pay
request sent again after it paid, and a reload all leave one payment; the page's scripts and
headers are the inventory's (docs/pci/script-inventory.md), its CSP strict (nonce, the
provider's origin only); no request paymux received holds the card number."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, expect
from provider_js_fakes import ProviderScripts
from test_checkout_browser import inventory_tables, nonce_free

from conftest import Api, make_settings, migrated_database_url
from support.billing import price
from support.browser import CapturingServer, account_api, launched_chromium, shop_tab
from support.fake_square import FakeSquare
from support.invoices import open_invoice
from support.localstripe_proxy import LocalStripeProxy
from support.paypal_fake import FakePayPal
from support.processes import free_port
from support.sandboxes import LocalStripe

pytestmark = pytest.mark.browser

SHOP = "https://shop.example"
STRIPE_PAGE = "/invoices/{token} (hosted invoice, routed to Stripe)"
SQUARE_PAGE = "/invoices/{token} (hosted invoice, routed to Square)"
PAYPAL_PAGE = "/invoices/{token} (hosted invoice, routed to PayPal)"
PAYPAL_CLIENT = "AYinvoiceclient"
PAYPAL_SECRET = "EPinvoice-secret-0000"
SQUARE_TOKEN = "EAAAl9fK2xQ7" + "iNv0iCe5" * 6
SQUARE_KEY = "sq-webhook-key-" + "aW52b2ljZQ" * 3


@dataclass
class Env:
    server: CapturingServer
    square: FakeSquare
    scripts: ProviderScripts
    stripe: LocalStripeProxy
    paypal: FakePayPal


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("hosted-invoice-browser")
    url = migrated_database_url("sqlite", tmp, None, "hosted_invoice_browser")
    port = free_port()
    paypal = FakePayPal(PAYPAL_CLIENT, PAYPAL_SECRET, "WHinvoice").start()
    square_hook = f"http://127.0.0.1:{port}/webhooks/square"
    square = FakeSquare(
        access_token=SQUARE_TOKEN, signature_key=SQUARE_KEY, webhook_url=square_hook
    ).start()
    scripts = ProviderScripts(paypal).start()
    stripe = LocalStripeProxy(localstripe.url).start()
    settings = make_settings(
        url,
        tmp,
        port,
        routes="EUR=stripe,USD=square,GBP=paypal",
        stripe_secret_key="sk_test_paymux",
        stripe_api_base=stripe.url,
        stripe_publishable_key="pk_test_invoice",
        square_access_token=SQUARE_TOKEN,
        square_location_id=square.location_id,
        square_webhook_signature_key=SQUARE_KEY,
        square_webhook_url=square_hook,
        square_api_base=square.url,
        square_application_id="sandbox-sq0idb-invoicePage",
        square_js_url=f"{scripts.url}/v1/square.js",
        paypal_client_id=PAYPAL_CLIENT,
        paypal_client_secret=PAYPAL_SECRET,
        paypal_webhook_id="WHinvoice",
        paypal_api_base=paypal.url,
        paypal_js_url=f"{scripts.url}/sdk/js",
    )
    server = CapturingServer(settings).start()
    try:
        yield Env(server, square, scripts, stripe, paypal)
    finally:
        server.stop()
        stripe.stop()
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


def check_against_inventory(
    tab: Page, response: Any, page_name: str, sdk: str, provider: str
) -> None:
    """The page's scripts (the provider's SDK, no SRI; card-entry.js, with it) and headers
    are the inventory's rows for ``page_name``; ``{provider}`` is the configured origin."""
    scripts, headers = inventory_tables()
    loaded = tab.evaluate("[...document.scripts].map(s => [s.src, s.integrity])")
    listed = [r["script"] for r in scripts if r["page"] == page_name]
    assert len(listed) == 2 == len(loaded), (listed, loaded)
    assert loaded[0] == [sdk, ""], loaded
    assert listed[1] == "/_invoice/card-entry.js"
    assert loaded[1][0].endswith("/_invoice/card-entry.js")
    assert loaded[1][1].startswith("sha384-")
    got = {k.lower(): v for k, v in response.all_headers().items()}
    rows = [r for r in headers if r["page"] == page_name]
    assert {r["header"] for r in rows} == {"content-security-policy", "x-frame-options"}
    for row in rows:
        value = got.get(row["header"], "")
        if row["header"] == "content-security-policy":
            value = nonce_free(value).replace(provider, "{provider}")
        assert value == row["value"], (page_name, row["header"], value)


def pay_posts(env: Env, invoice: dict[str, Any]) -> list[Any]:
    path = httpx.URL(invoice["hosted_invoice_url"]).path + "/pay"
    return [r for r in env.server.capture.requests if r.method == "POST" and r.path == path]


def send_again(env: Env, invoice: dict[str, Any], request: Any) -> httpx.Response:
    """The page's pay request, byte for byte its JSON, sent once more (a resent form)."""
    return httpx.post(
        invoice["hosted_invoice_url"] + "/pay",
        content=request.body,
        timeout=30,
        headers={"content-type": "application/json", "origin": env.server.url},
    )


def test_a_stripe_invoice_needing_3ds_is_paid_once_through_stripe_js(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    invoice = open_invoice(api, "eur", 4200)
    response = tab.goto(invoice["hosted_invoice_url"])
    assert response is not None
    check_against_inventory(
        tab, response, STRIPE_PAGE, f"{env.stripe.url}/js.stripe.com/v3/", env.stripe.url
    )
    assert "<iframe" not in tab.content()  # Stripe's Element, not the sandbox's form
    card = tab.locator("#stripe-card")
    card.locator("input[placeholder=number]").fill("4000000000003220")
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("739")
    card.locator("input[placeholder=postal_code]").fill("10001")
    tab.dblclick("#stripe-pay")  # a double submit
    tab.get_by_text("Complete authentication").click()  # Stripe.js's challenge
    expect(tab.locator("#status")).to_have_text("Paid")  # back on the page, paid
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 4200, 0)
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["amount_received"]) == ("stripe", "succeeded", 4200)
    at_stripe = httpx.get(
        f"{env.stripe.url}/v1/payment_intents/{pi['gateway_reference']}",
        headers={"authorization": "Bearer sk_test_paymux"},
        timeout=10,
    )
    assert (at_stripe.json()["status"], at_stripe.json()["amount"]) == ("succeeded", 4200)
    [asked] = [c for c in env.stripe.created if c.get("amount") == "4200"]
    assert asked["description"] == f"Invoice {invoice['number']}"  # what real Stripe gets
    # The double click sent one pay request; sent again once paid, it is refused.
    [sent] = pay_posts(env, invoice)
    assert json.loads(sent.body)["payment_method"].startswith("card_")
    again = send_again(env, invoice, sent)
    assert (again.status_code, again.json()["code"]) == (400, "invoice_unexpected_state")
    tab.reload()
    expect(tab.locator("#status")).to_have_text("Paid")
    assert tab.locator("#pay").count() == 0
    intents = api.ok("GET", "/v1/payment_intents", params={"limit": 100})["data"]
    assert [p["id"] for p in intents if p.get("invoice") == invoice["id"]] == [pi["id"]]
    for request in env.server.capture.requests:
        assert b"4000000000003220" not in request.raw(), request.path
    assert csp == []


def test_a_square_invoice_is_paid_once_with_verify_buyer(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    invoice = open_invoice(api, "usd", 1999)
    response = tab.goto(invoice["hosted_invoice_url"])
    assert response is not None
    check_against_inventory(
        tab, response, SQUARE_PAGE, f"{env.scripts.url}/v1/square.js", env.scripts.url
    )
    card = tab.locator("#square-card")
    card.locator("input[name=number]").fill("4111111111111111")
    card.locator("input[name=expiry]").fill("12/34")
    card.locator("input[name=cvv]").fill("7391")
    card.locator("input[name=postal]").fill("10001")
    tab.dblclick("#square-pay")  # a double submit
    expect(tab.locator("#status")).to_have_text("Paid")
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"]) == ("paid", 1999)
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["amount_received"]) == ("square", "succeeded", 1999)
    # verifyBuyer was asked to CHARGE the invoice's amount; its token reached Square's
    # CreatePayment with the card's nonce, once.
    [sent] = pay_posts(env, invoice)
    body = json.loads(sent.body)
    created = [
        c.body
        for c in env.square.calls_to("POST", "/v2/payments")
        if c.body.get("verification_token") == body["verification_token"]
    ]
    assert len(created) == 1, created
    assert created[0]["amount_money"] == {"amount": 1999, "currency": "USD"}
    assert created[0]["source_id"] == body["payment_method"]
    details = env.scripts.verifications[body["verification_token"]]
    assert (details["amount"], details["currencyCode"], details["intent"]) == (
        "19.99",
        "USD",
        "CHARGE",
    )
    # Sent again once paid: refused, and Square is not asked again.
    square_calls = len(env.square.calls)
    again = send_again(env, invoice, sent)
    assert (again.status_code, again.json()["code"]) == (400, "invoice_unexpected_state")
    assert len(env.square.calls) == square_calls
    tab.reload()
    expect(tab.locator("#status")).to_have_text("Paid")
    assert tab.locator("#pay").count() == 0
    assert any(b"4111111111111111" in raw for _, raw in env.scripts.received)
    for request in env.server.capture.requests:
        assert b"4111111111111111" not in request.raw(), request.path
        assert re.search(rb"(?<![0-9A-Za-z])7391(?![0-9A-Za-z])", request.raw()) is None
    assert csp == []


def test_a_square_decline_on_the_invoice_page_leaves_it_open(
    page: tuple[Page, list[str]], api: Api
) -> None:
    tab, _ = page
    invoice = open_invoice(api, "usd", 1500)
    tab.goto(invoice["hosted_invoice_url"])
    card = tab.locator("#square-card")
    card.locator("input[name=number]").fill("4000000000000002")  # Square's decline nonce
    card.locator("input[name=expiry]").fill("12/34")
    card.locator("input[name=cvv]").fill("123")
    card.locator("input[name=postal]").fill("10001")
    tab.click("#square-pay")
    expect(tab.locator("#pay-status[data-state=failed]")).to_have_text(
        "Your card was declined. Please try again or use another payment method."
    )
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"
    expect(tab.locator("#square-card input[name=number]")).to_have_value("")


# -- PayPal ---------------------------------------------------------------------------------
def order_url(invoice: dict[str, Any]) -> str:
    return invoice["hosted_invoice_url"] + "/paypal-order"


def paypal_posts(env: Env, path: str) -> list[dict[str, str]]:
    """The headers of each POST paymux sent the fake PayPal API at ``path``."""
    return [h for m, p, h in env.paypal.requests if m == "POST" and p == path]


def test_a_paypal_invoice_is_paid_once_through_the_buttons(
    page: tuple[Page, list[str]], api: Api, env: Env
) -> None:
    tab, csp = page
    invoice = open_invoice(api, "gbp", 3100)
    opened_before = len(paypal_posts(env, "/v2/checkout/orders"))
    response = tab.goto(invoice["hosted_invoice_url"])
    assert response is not None
    # The SDK's URL says the client id, and the currency and intent of the order to come.
    sdk = (
        f"{env.scripts.url}/sdk/js?client-id={PAYPAL_CLIENT}&currency=GBP&intent=capture"
        "&components=buttons"
    )
    check_against_inventory(tab, response, PAYPAL_PAGE, sdk, env.scripts.url)
    # A page view opens no order: only the payer's click does.
    assert len(paypal_posts(env, "/v2/checkout/orders")) == opened_before
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["payment_intent"] is None
    tab.click("#paypal-button")
    window = tab.locator("#paypal-window")
    expect(window).to_be_visible()
    order_id = window.get_attribute("data-order-id")
    assert order_id
    waiting = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    pi = api.ok("GET", f"/v1/payment_intents/{waiting['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["amount"], pi["currency"]) == (
        "paypal",
        "requires_payment_method",
        3100,
        "gbp",
    )
    assert pi["gateway_reference"] == order_id
    unit = env.paypal.orders[order_id]["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "GBP", "value": "31.00"}
    assert unit["custom_id"] == pi["id"]  # opened for the invoice's intent
    # createOrder asked again (another click, a second tab): the same order, none opened.
    again = httpx.post(order_url(invoice), json={}, headers={"origin": env.server.url}, timeout=30)
    assert again.json() == {"order_id": order_id}
    assert len(paypal_posts(env, "/v2/checkout/orders")) == opened_before + 1
    window.get_by_text("Pay with PayPal").click()
    expect(tab.locator("#status")).to_have_text("Paid")
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 3100, 0)
    pi = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 3100)
    assert env.paypal.orders[order_id]["status"] == "COMPLETED"  # captured at PayPal
    capture_path = f"/v2/checkout/orders/{order_id}/capture"
    assert len(paypal_posts(env, capture_path)) == 1
    # The approval sent again once paid: refused, PayPal not asked again.
    [sent] = pay_posts(env, invoice)
    assert json.loads(sent.body) == {"payment_method": order_id}
    refused = send_again(env, invoice, sent)
    assert (refused.status_code, refused.json()["code"]) == (400, "invoice_unexpected_state")
    assert len(paypal_posts(env, capture_path)) == 1
    tab.reload()
    expect(tab.locator("#status")).to_have_text("Paid")
    assert tab.locator("#pay").count() == 0
    intents = api.ok("GET", "/v1/payment_intents", params={"limit": 100})["data"]
    assert [p["id"] for p in intents if p.get("invoice") == invoice["id"]] == [pi["id"]]
    assert csp == []  # the SDK's style element carried the nonce (data-csp-nonce)


def test_the_invoice_paypal_endpoints_refuse_what_the_page_would_not_send(
    api: Api, env: Env
) -> None:
    """No browser: the page's order and pay endpoints, called as another site, for an
    invoice not paid with PayPal, with another invoice's order."""
    invoice, other = open_invoice(api, "gbp", 1200), open_invoice(api, "gbp", 900)
    foreign = httpx.post(
        order_url(invoice), json={}, headers={"origin": "https://evil.example"}, timeout=30
    )
    assert foreign.status_code == 403
    assert httpx.post(order_url(invoice), data={"x": "1"}, timeout=30).status_code == 415
    square = open_invoice(api, "usd", 700)
    not_paypal = httpx.post(order_url(square), json={}, timeout=30)
    assert (not_paypal.status_code, not_paypal.json()["code"]) == (
        400,
        "invoice_unexpected_state",
    )
    assert api.ok("GET", f"/v1/invoices/{square['id']}")["payment_intent"] is None
    mine = httpx.post(order_url(invoice), json={}, timeout=30).json()["order_id"]
    theirs = httpx.post(order_url(other), json={}, timeout=30).json()["order_id"]
    assert mine != theirs
    # The other invoice's approved order is refused here; it is not captured.
    env.paypal.approve(theirs)
    r = httpx.post(
        invoice["hosted_invoice_url"] + "/pay", json={"payment_method": theirs}, timeout=30
    )
    assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid")
    assert env.paypal.orders[theirs]["status"] == "APPROVED"
    assert paypal_posts(env, f"/v2/checkout/orders/{theirs}/capture") == []
    # An order made outside paymux for the same amount (no payment named in it, which
    # PayPal's own check lets through): not the invoice's, refused, not captured.
    env.paypal.tokens.add("A21AAoutside")
    outside = httpx.post(
        f"{env.paypal.url}/v2/checkout/orders",
        json={
            "intent": "CAPTURE",
            "purchase_units": [{"amount": {"currency_code": "GBP", "value": "12.00"}}],
        },
        headers={"authorization": "Bearer A21AAoutside"},
        timeout=30,
    ).json()["id"]
    env.paypal.approve(outside)
    r = httpx.post(
        invoice["hosted_invoice_url"] + "/pay", json={"payment_method": outside}, timeout=30
    )
    assert (r.status_code, r.json()["code"]) == (400, "parameter_invalid")
    assert env.paypal.orders[outside]["status"] == "APPROVED"
    waiting = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert waiting["status"] == "open"
    pi = api.ok("GET", f"/v1/payment_intents/{waiting['payment_intent']}")
    assert (pi["status"], pi["gateway_reference"]) == ("requires_payment_method", mine)


def test_a_double_approval_of_the_invoices_order_pays_it_once(api: Api, env: Env) -> None:
    """After a refused funding source, the same order approved again and sent twice at once
    (two tabs' onApprove): one capture, the invoice paid once, whichever answer comes
    first."""
    invoice = open_invoice(api, "gbp", 2600)
    order = httpx.post(order_url(invoice), json={}, timeout=30).json()["order_id"]
    # First a funding source PayPal refuses: a decline, the invoice stays open, and the
    # buttons' createOrder gets the same order to approve again.
    env.paypal.approve(order, decline="INSTRUMENT_DECLINED")
    declined = httpx.post(
        invoice["hosted_invoice_url"] + "/pay", json={"payment_method": order}, timeout=30
    )
    assert declined.status_code == 402, declined.text
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"
    again = httpx.post(order_url(invoice), json={}, timeout=30)
    assert again.json() == {"order_id": order}
    env.paypal.approve(order)
    capture_path = f"/v2/checkout/orders/{order}/capture"
    tried = {h.get("paypal-request-id") for h in paypal_posts(env, capture_path)}
    assert len(tried) == 1  # the declined try's
    gate = threading.Barrier(2)

    def approve() -> httpx.Response:
        gate.wait(timeout=30)
        return httpx.post(
            invoice["hosted_invoice_url"] + "/pay", json={"payment_method": order}, timeout=60
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: approve(), range(2)))
    assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
    assert any(a.status_code == 200 and a.json()["status"] == "paid" for a in answers)
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 2600, 0)
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 2600)
    # PayPal was asked to capture the order under one key only (a replay is PayPal's to
    # answer alike): never a second capture request of its own.
    keys = {h.get("paypal-request-id") for h in paypal_posts(env, capture_path)} - tried
    assert len(keys) == 1, keys
    assert env.paypal.orders[order]["status"] == "COMPLETED"
    intents = api.ok("GET", "/v1/payment_intents", params={"limit": 100})["data"]
    assert [p["id"] for p in intents if p.get("invoice") == invoice["id"]] == [pi["id"]]


# -- A subscription's invoice on Square ----------------------------------------------------
def test_a_subscriptions_invoice_paid_through_square_saves_no_card(api: Api, env: Env) -> None:
    """No browser: Square saves a card only from a verifyBuyer of intent STORE; the page asks
    for CHARGE (the amount due), so paying a subscription's invoice there saves nothing and
    changes no default (tests/e2e/test_hosted_invoice_subscription_card.py: the sandbox
    saves it)."""
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})
    sub = api.ok(
        "POST",
        "/v1/subscriptions",
        {
            "customer": cus["id"],
            "items": [{"price": price(api, 2100)}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        },
    )
    invoice = api.ok("GET", f"/v1/invoices/{sub['latest_invoice']}")
    page = httpx.get(invoice["hosted_invoice_url"], timeout=30).text
    assert 'id="square-card"' in page
    assert 'data-intent="CHARGE"' in page and 'data-amount="21.00"' in page
    # What the Web Payments SDK would hand the page (its fake, called as the SDK calls it).
    nonce = env.scripts.answer("/square/tokenize", {"number": "4111111111111111"})["token"]
    details = {"intent": "CHARGE", "amount": "21.00", "currencyCode": "USD"}
    verified = env.scripts.answer("/square/verify", {"token": nonce, "details": details})
    cards_before = len(env.square.calls_to("POST", "/v2/cards"))
    r = httpx.post(
        invoice["hosted_invoice_url"] + "/pay",
        json={"payment_method": nonce, "verification_token": verified["token"]},
        headers={"origin": env.server.url},
        timeout=30,
    )
    assert (r.status_code, r.json()["status"]) == (200, "paid"), r.text
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["gateway"], pi["status"], pi["setup_future_usage"]) == ("square", "succeeded", None)
    assert api.ok("GET", f"/v1/customers/{cus['id']}/payment_methods")["data"] == []
    assert len(env.square.calls_to("POST", "/v2/cards")) == cards_before  # no card saved
    assert api.ok("GET", f"/v1/subscriptions/{sub['id']}")["default_payment_method"] is None
