"""/js/paymux.js on a merchant's own page, in a real browser (Playwright, Debian's chromium;
one browser for the module): the page is served from a second loopback origin (the
merchant's), loads the script from paymux with the SRI hash docs/checkout.md gives, and
pays a PaymentIntent with a publishable key and the intent's client secret. The card goes
into the sandbox's hosted form (the provider's stand-in), framed by the merchant's page;
paymux.js confirms cross-origin, which the CORS of the publishable key's routes allows.
And CORS is on those routes only, never with credentials."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from browser_timeouts import timed
from playwright.sync_api import Browser, Page, Route, expect

from conftest import Api
from support.browser import CapturingServer, account_api, capturing_server, launched_chromium

pytestmark = pytest.mark.browser

ADMIN = "admin-key-for-embed-browser-tests"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "checkout.md"
DECLINE = "Your card was declined. Please try again or use another payment method."
CVC = "7391"


def documented_integrity() -> str:
    """The SRI hash docs/checkout.md tells merchants to put on the script tag."""
    found = re.findall(r'paymux\.js" integrity="(sha384-[A-Za-z0-9+/=]+)"',
                       DOCS.read_text(encoding="utf-8"))
    assert len(set(found)) == 1, found
    return found[0]


class MerchantSite:
    """The merchant's page, on its own loopback origin: paymux.js with the documented SRI
    hash, mounted for the client secret in the query, with the publishable key."""

    def __init__(self, paymux_url: str) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                if "pk" not in query or "secret" not in query:  # the favicon
                    self.send_error(404)
                    return
                body = site.page(query["pk"][0], query["secret"][0]).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.paymux_url = paymux_url
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, pk: str, secret: str) -> str:
        return f"""<!doctype html><html lang="en"><title>Shop</title>
<script src="{self.paymux_url}/js/paymux.js" integrity="{documented_integrity()}"
 crossorigin="anonymous"></script>
<h1>Checkout at the shop</h1><div id="card"></div>
<p id="result"></p><p id="error" role="alert"></p>
<script>
const paymux = Paymux({json.dumps(pk)});
paymux.mount('#card', {{
  clientSecret: {json.dumps(secret)},
  onSuccess: (intent) => {{ document.getElementById('result').textContent = intent.status; }},
  onError: (error) => {{ document.getElementById('error').textContent = error.message; }},
}});
</script></html>"""

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturingServer]:
    yield from capturing_server(tmp_path_factory, "checkout-embed-browser", admin_key=ADMIN)


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


def publishable_key(api: Api) -> str:
    r = httpx.post(f"{api.server.url}/v1/admin/keys", json={
        "type": "publishable", "account": api.account_id},
        headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert r.status_code == 200, r.text
    key = str(r.json()["secret"])
    assert key.startswith("pk_test_")
    return key


def enter_card(tab: Page, number: str) -> None:
    form = tab.frame_locator("#card iframe")
    form.locator("#number").fill(number)
    form.locator("#cvc").fill(CVC)
    form.locator("#postal_code").fill("75001")
    form.locator("#submit").click()


def open_shop(tab: Page, api: Api, shop: MerchantSite) -> dict[str, Any]:
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 1500, "currency": "eur"})
    tab.goto(f"{shop.url}/?pk={publishable_key(api)}&secret={pi['client_secret']}")
    return pi


def test_the_script_is_served_with_the_documented_sri_hash(
    server: CapturingServer,
) -> None:
    r = httpx.get(f"{server.url}/js/paymux.js", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["access-control-allow-origin"] == "*"  # crossorigin + SRI need it
    digest = base64.b64encode(hashlib.sha384(r.content).digest()).decode()
    assert documented_integrity() == f"sha384-{digest}"


def test_a_merchant_page_pays_an_intent_with_paymux_js(
    tab: Page, api: Api, shop: MerchantSite, server: CapturingServer
) -> None:
    pi = open_shop(tab, api, shop)
    assert tab.evaluate("window.location.origin") == shop.url != server.url
    enter_card(tab, "4242424242424242")
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (done["status"], done["amount_received"]) == ("succeeded", 1500)
    # The confirm came from the merchant's origin, with the publishable key; no request
    # paymux received held the card number or the CVC.
    confirms = [r for r in server.capture.requests
                if r.method == "POST" and r.path == f"/v1/payment_intents/{pi['id']}/confirm"]
    assert len(confirms) == 1
    sent = dict(confirms[0].headers)
    assert sent[b"origin"].decode() == shop.url
    assert sent[b"authorization"].startswith(b"Bearer pk_test_")
    for request in server.capture.requests:
        if request.provider_side:
            continue
        assert b"4242424242424242" not in request.raw(), request.path
        assert CVC.encode() not in request.raw(), request.path


def test_a_decline_on_the_merchant_page_shows_the_message_and_another_card_pays(
    tab: Page, api: Api, shop: MerchantSite
) -> None:
    pi = open_shop(tab, api, shop)
    enter_card(tab, "4000000000000002")
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == \
        "requires_payment_method"
    expect(tab.frame_locator("#card iframe").locator("#number")).to_have_value("")
    enter_card(tab, "4242424242424242")
    expect(tab.locator("#result")).to_have_text("succeeded")


def test_a_card_typed_before_the_form_is_ready_is_never_sent_by_the_page_itself(
    tab: Page, api: Api, shop: MerchantSite, server: CapturingServer
) -> None:
    """A slow network: the sandbox form's script is held back while the payer types. The
    button is disabled and Enter submits nothing (the browser's own submission would reload
    the form, losing the card, and send its fields in the URL); once the script runs, the
    same card pays. The card number went in one request only: the tokenization."""
    held: list[Route] = []
    tab.route("**/sandbox/static/elements.js", lambda route: held.append(route))
    before = len(server.capture.requests)
    pi = open_shop(tab, api, shop)
    form = tab.frame_locator("#card iframe")
    form.locator("#number").fill("4242424242424242")
    form.locator("#cvc").fill(CVC)
    form.locator("#postal_code").fill("75001")
    expect(form.locator("#submit")).to_be_disabled()
    form.locator("#cvc").press("Enter")
    assert len(held) == 1
    held[0].continue_()
    form.locator("#submit").click()  # waits for the script to enable it
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "succeeded"
    seen = server.capture.requests[before:]
    assert [r.method for r in seen if r.path == "/sandbox/elements"] == ["GET"]  # no reload
    assert [(r.method, r.path) for r in seen if b"4242424242424242" in r.raw()] == [
        ("POST", "/sandbox/v1/tokens")]


def test_cors_is_on_the_publishable_routes_only_and_never_with_credentials(
    api: Api, server: CapturingServer
) -> None:
    origin = "http://127.0.0.1:9"
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 1500, "currency": "eur"})
    for method, path in (("POST", f"/v1/payment_intents/{pi['id']}/confirm"),
                         ("GET", f"/v1/payment_intents/{pi['id']}")):
        r = httpx.options(f"{server.url}{path}", headers={
            "origin": origin, "access-control-request-method": method,
            "access-control-request-headers": "authorization, content-type"}, timeout=10)
        assert r.status_code == 204, (path, r.status_code)
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == method
        assert "authorization" in r.headers["access-control-allow-headers"]
        assert "access-control-allow-credentials" not in r.headers
    got = api.get(f"/v1/payment_intents/{pi['id']}", headers={"origin": origin})
    assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in got.headers
    # Other routes: no preflight answer, no CORS header on the answer.
    for method, path in (("POST", "/v1/customers"), ("GET", "/v1/payment_intents"),
                         ("POST", f"/v1/payment_intents/{pi['id']}/capture"),
                         ("DELETE", f"/v1/payment_intents/{pi['id']}")):
        r = httpx.options(f"{server.url}{path}", headers={
            "origin": origin, "access-control-request-method": method}, timeout=10)
        assert "access-control-allow-origin" not in r.headers, path
    for path in ("/v1/customers", "/v1/payment_intents", "/v1/events"):
        r = api.get(path, headers={"origin": origin})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers, path


# -- SetupIntents: save a card for a customer ------------------------------------------------
def open_shop_for_setup(tab: Page, api: Api, shop: MerchantSite) -> dict[str, Any]:
    customer = api.ok("POST", "/v1/customers", {"email": "saver@example.com"})
    seti = api.ok("POST", "/v1/setup_intents", {"customer": customer["id"]})
    assert seti["client_secret"].startswith(f"{seti['id']}_secret_")
    tab.goto(f"{shop.url}/?pk={publishable_key(api)}&secret={seti['client_secret']}")
    return seti


def test_a_merchant_page_saves_a_card_with_a_setup_intent(
    tab: Page, api: Api, shop: MerchantSite, server: CapturingServer
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4242424242424242")
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert done["status"] == "succeeded" and done["payment_method"].startswith("pm_")
    # The saved card is the customer's, listed through the API.
    listed = api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]
    assert [pm["id"] for pm in listed] == [done["payment_method"]]
    assert (listed[0]["card"]["last4"], listed[0]["customer"]) == ("4242", seti["customer"])
    confirms = [r for r in server.capture.requests
                if r.method == "POST" and r.path == f"/v1/setup_intents/{seti['id']}/confirm"]
    assert len(confirms) == 1
    sent = dict(confirms[0].headers)
    assert sent[b"origin"].decode() == shop.url
    assert sent[b"authorization"].startswith(b"Bearer pk_test_")
    for request in server.capture.requests:
        if request.provider_side:
            continue
        assert b"4242424242424242" not in request.raw(), request.path
        assert CVC.encode() not in request.raw(), request.path


def test_a_setup_intent_follows_3ds_and_comes_back_to_the_merchant_page_saved(
    tab: Page, api: Api, shop: MerchantSite
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4000000000003220")  # the sandbox's challenge card
    tab.wait_for_url(re.compile(r".*/sandbox/3ds/.*"))
    tab.click("#complete")
    # Back on the merchant's page (its return_url), paymux.js reads the SetupIntent: saved.
    tab.wait_for_url(re.compile(re.escape(shop.url) + r"/.*"))
    expect(tab.locator("#result")).to_have_text("succeeded")
    done = api.ok("GET", f"/v1/setup_intents/{seti['id']}")
    assert done["status"] == "succeeded"
    listed = api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]
    assert [(pm["id"], pm["card"]["last4"]) for pm in listed] == [
        (done["payment_method"], "3220")]


def test_a_declined_card_is_not_saved_and_another_is(
    tab: Page, api: Api, shop: MerchantSite
) -> None:
    seti = open_shop_for_setup(tab, api, shop)
    enter_card(tab, "4000000000000002")
    expect(tab.locator("#error")).to_have_text(DECLINE)
    assert api.ok("GET", f"/v1/setup_intents/{seti['id']}")["status"] == \
        "requires_payment_method"
    assert api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"] == []
    enter_card(tab, "4242424242424242")
    expect(tab.locator("#result")).to_have_text("succeeded")
    assert len(api.ok("GET", f"/v1/customers/{seti['customer']}/payment_methods")["data"]) == 1


def test_a_publishable_key_sees_a_setup_intent_only_with_its_client_secret(
    api: Api, server: CapturingServer
) -> None:
    """No browser: the publishable view hides the customer; a wrong or missing secret, or
    a field beyond what a browser sends, is refused; CORS answers the two setup routes."""
    customer = api.ok("POST", "/v1/customers", {"email": "peek@example.com"})
    seti = api.ok("POST", "/v1/setup_intents", {"customer": customer["id"],
                                                "metadata": {"order": "42"}})
    pk = publishable_key(api)
    path = f"{server.url}/v1/setup_intents/{seti['id']}"
    auth = {"authorization": f"Bearer {pk}", "origin": "http://127.0.0.1:9"}
    seen = httpx.get(path, params={"client_secret": seti["client_secret"]}, headers=auth,
                     timeout=10)
    assert seen.status_code == 200 and seen.headers["access-control-allow-origin"] == "*"
    assert seen.json()["id"] == seti["id"] and seen.json()["status"] == "requires_payment_method"
    assert "customer" not in seen.json() and "metadata" not in seen.json()
    missing = httpx.get(path, headers=auth, timeout=10)
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "client_secret")
    wrong = httpx.get(path, params={"client_secret": seti["client_secret"][:-1] + "0"
                                    if not seti["client_secret"].endswith("0")
                                    else seti["client_secret"][:-1] + "1"},
                      headers=auth, timeout=10)
    assert (wrong.status_code, wrong.json()["error"]["param"]) == (400, "client_secret")
    # A payment intent's secret does not open a setup intent.
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 1500, "currency": "eur"})
    other = httpx.get(path, params={"client_secret": pi["client_secret"]}, headers=auth,
                      timeout=10)
    assert other.status_code == 400
    r = httpx.post(f"{path}/confirm", data={"client_secret": seti["client_secret"],
                                            "payment_method_data[type]": "card",
                                            "payment_method_data[card][token]": "tok_visa",
                                            "expand[0]": "customer"}, headers=auth,
                   timeout=10)
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
        400, "parameter_not_allowed", "expand")
    r = httpx.post(f"{path}/confirm", data={"payment_method_data[type]": "card",
                                            "payment_method_data[card][token]": "tok_visa"},
                   headers=auth, timeout=10)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "client_secret")
    for method, route in (("GET", "/v1/setup_intents"), ("POST", "/v1/customers")):
        refused = httpx.request(method, f"{server.url}{route}", headers=auth, timeout=10)
        assert refused.json()["error"]["code"] == "publishable_key_not_allowed", route
    assert api.ok("GET", f"/v1/setup_intents/{seti['id']}")["status"] == \
        "requires_payment_method"
