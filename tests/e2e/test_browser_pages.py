"""The sandbox's browser pages in headless chromium: the hosted card form and the 3DS challenge.

Driven over the Chrome DevTools Protocol (support/cdp.py, standard library only). Skipped
when /usr/bin/chromium is missing, except under CI (CI=true/1), where that is a failure.
chromium resolves no host names here: only the test server on 127.0.0.1 is reachable.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from conftest import Api
from support.cdp import Browser, Page, csp_refusals, started_browser
from support.processes import free_port

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from started_browser()




@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab = browser.page()
    tab.send("Log.enable")
    try:
        yield tab
        # Every page here works under its CSP (no inline script or style), unrefused.
        assert csp_refusals(tab) == []
    finally:
        tab.close()


def fill_card_form(page: Page, number: str, cvc: str = "123", postal_code: str = "10001") -> None:
    # The form's script enables the button once it handles the submit.
    page.wait_for("document.querySelector('#submit')?.disabled === false")
    page.type_into("#number", number)
    page.type_into("#cvc", cvc)
    page.type_into("#postal_code", postal_code)
    page.click("#submit")


def tokenize_in_browser(page: Page, api: Api, number: str) -> str:
    page.navigate(f"{api.server.url}/sandbox/elements")
    fill_card_form(page, number)
    token: str = page.wait_for("document.querySelector('#result').dataset.token")
    return token


def test_the_hosted_card_form_renders(page: Page, api: Api) -> None:
    url = f"{api.server.url}/sandbox/elements"
    page.navigate(url)
    assert page.evaluate("document.title") == "Sandbox card form"
    for field in ("number", "exp_month", "exp_year", "cvc", "postal_code"):
        assert page.evaluate(f"document.getElementById('{field}') instanceof HTMLInputElement")
    assert page.evaluate("document.getElementById('exp_month').value") == "12"
    year = int(page.evaluate("document.getElementById('exp_year').value"))
    assert year == time.gmtime().tm_year + 3
    assert page.evaluate("document.getElementById('submit').textContent") == "Tokenize"
    assert page.evaluate("document.getElementById('result').textContent") == ""
    # The form is the "provider's" page: locked down, never cached.
    headers = httpx.get(url, timeout=10).headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "connect-src 'self'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"


def test_a_card_typed_into_the_form_becomes_a_token_that_pays(page: Page, api: Api) -> None:
    token = tokenize_in_browser(page, api, "4242 4242 4242 4242")
    assert re.fullmatch(r"[a-z]+_[A-Za-z0-9_]+", token), token
    assert "4242424242424242" not in token
    assert page.evaluate("document.querySelector('#result').textContent") == f"token: {token}"
    # The form forgets the number and the CVC once it has the token.
    assert page.evaluate("document.getElementById('number').value") == ""
    assert page.evaluate("document.getElementById('cvc').value") == ""

    pi = api.ok("POST", "/v1/payment_intents", {"amount": 3100, "currency": "usd"})
    done = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": token})
    assert done["status"] == "succeeded" and done["amount_received"] == 3100
    pm = api.ok("GET", f"/v1/payment_methods/{done['payment_method']}")
    assert pm["card"]["brand"] == "visa" and pm["card"]["last4"] == "4242"
    assert pm["card"]["exp_month"] == 12


def test_a_declining_card_typed_into_the_form_is_declined_on_confirm(
    page: Page, api: Api
) -> None:
    token = tokenize_in_browser(page, api, "4000000000009995")
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"})
    r = api.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": token})
    assert r.status_code == 402
    assert r.json()["error"]["decline_code"] == "insufficient_funds"


def test_a_mistyped_number_is_refused_by_the_form_with_no_token(page: Page, api: Api) -> None:
    page.navigate(f"{api.server.url}/sandbox/elements")
    fill_card_form(page, "4242 4242 4242 4241")
    assert page.wait_for("document.querySelector('#result').dataset.error") == "incorrect_number"
    assert page.evaluate("document.querySelector('#result').dataset.token") is None


def test_completing_the_3ds_challenge_in_the_browser_makes_the_payment_succeed(
    page: Page, api: Api
) -> None:
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 4500, "currency": "eur", "confirm": True,
        "payment_method": "pm_card_threeDSecure2Required",
    })
    assert pi["status"] == "requires_action"
    url = pi["next_action"]["redirect_to_url"]["url"]
    assert url.startswith(f"{api.server.url}/sandbox/3ds/")
    page.navigate(url)
    assert "4500 EUR" in page.evaluate("document.body.textContent")
    page.click("#complete")
    outcome = page.wait_for(
        "document.getElementById('outcome') && document.getElementById('outcome').textContent"
    )
    assert outcome == "Authentication complete"
    done = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert done["amount_received"] == 4500 and done["next_action"] is None


def test_failing_the_3ds_challenge_returns_the_payer_and_asks_for_another_method(
    page: Page, api: Api
) -> None:
    return_url = f"{api.server.url}/health?order=1001"
    pi = api.ok("POST", "/v1/payment_intents", {
        "amount": 2000, "currency": "usd", "confirm": True, "return_url": return_url,
        "payment_method": "pm_card_threeDSecure2Required",
    })
    assert pi["status"] == "requires_action"
    page.navigate(pi["next_action"]["redirect_to_url"]["url"])
    page.click("#fail")
    landed = page.wait_for(
        f"location.href.startsWith({return_url!r} + '&') && location.href"
    )
    query = parse_qs(urlsplit(landed).query)
    assert query["order"] == ["1001"] and query["payment_intent"] == [pi["id"]]
    after = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "requires_payment_method")
    assert after["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    assert after["amount_received"] == 0


# -- the card form inside a merchant's page ----------------------------------------------------
class MerchantSite:
    """A merchant page on another origin (another port) that frames the hosted card form and
    records the messages it receives (``document.body.dataset.messages``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.frame_src = ""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html().encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def html(self) -> str:
        return (
            "<!doctype html><html><head><title>Shop</title></head><body data-messages='[]'>"
            f"<iframe id='card' src='{self.frame_src}' width='400' height='600'></iframe>"
            "<script>window.addEventListener('message', (e) => {"
            " const seen = JSON.parse(document.body.dataset.messages);"
            " seen.push({origin: e.origin, data: e.data});"
            " document.body.dataset.messages = JSON.stringify(seen); });</script>"
            "</body></html>"
        )

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def merchant() -> Iterator[MerchantSite]:
    site = MerchantSite()
    try:
        yield site
    finally:
        site.close()


def child_frame(page: Page) -> dict[str, Any]:
    tree = page.send("Page.getFrameTree")["frameTree"]
    children = tree.get("childFrames") or []
    assert len(children) == 1, tree
    frame: dict[str, Any] = children[0]["frame"]
    return frame


def in_frame(page: Page, frame_id: str, expression: str) -> Any:
    """Evaluate ``expression`` in the frame's DOM (an isolated world: the page's own scripts
    still handle the events it fires)."""
    context = page.send(
        "Page.createIsolatedWorld", {"frameId": frame_id, "worldName": "test"}
    )["executionContextId"]
    result = page.send("Runtime.evaluate", {
        "expression": expression, "contextId": context, "returnByValue": True,
        "awaitPromise": True,
    })
    assert "exceptionDetails" not in result, result
    return result.get("result", {}).get("value")


def frame_loaded(page: Page, frame_src: str) -> bool:
    """Whether the card form in the child frame loaded (a refusal leaves an error page)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = child_frame(page)
        if frame.get("unreachableUrl") or frame["url"].startswith("chrome-error:"):
            return False
        if frame["url"] == frame_src and in_frame(
            page, frame["id"], "document.readyState === 'complete' && "
            "document.querySelector('#submit') !== null"
        ):
            return True
        time.sleep(0.05)
    raise AssertionError(f"the frame neither loaded nor was refused: {child_frame(page)}")


def test_the_framed_card_form_posts_its_token_to_the_named_merchant_origin_only(
    page: Page, api: Api, merchant: MerchantSite
) -> None:
    merchant.frame_src = f"{api.server.url}/sandbox/elements?origin={quote(merchant.origin)}"
    page.navigate(f"{merchant.origin}/checkout")
    assert frame_loaded(page, merchant.frame_src)
    frame = child_frame(page)["id"]
    in_frame(page, frame, """(() => {
        for (const [f, v] of [['number', '4242424242424242'], ['cvc', '123']])
            document.getElementById(f).value = v;
        document.getElementById('card-form').requestSubmit(); return true; })()""")
    raw = page.wait_for(
        "document.body.dataset.messages !== '[]' && document.body.dataset.messages"
    )
    [message] = json.loads(raw)
    assert message["origin"] == api.server.url
    assert message["data"]["type"] == "paymux.sandbox.token"
    assert message["data"]["token"].startswith("pm_")
    assert message["data"]["card"]["last4"] == "4242"


@pytest.mark.parametrize("declared", ["another", "none"])
def test_a_merchant_page_it_was_not_issued_for_cannot_frame_the_card_form(
    page: Page, api: Api, merchant: MerchantSite, declared: str
) -> None:
    """With ``'*'`` any page could frame the form and read the token; now only the declared
    origin frames it, and the message goes to that origin alone."""
    other = f"http://127.0.0.1:{free_port()}"
    query = f"?origin={quote(other)}" if declared == "another" else ""
    merchant.frame_src = f"{api.server.url}/sandbox/elements{query}"
    page.navigate(f"{merchant.origin}/checkout")
    assert not frame_loaded(page, merchant.frame_src)
    assert page.evaluate("document.body.dataset.messages") == "[]"
    page.events.clear()  # the refusal to frame is itself a CSP message: expected here


@pytest.mark.parametrize(("path", "rendered"), [
    ("/docs", "document.querySelector('.swagger-ui .info .title')?.textContent"),
    ("/redoc", "document.querySelector('h1')?.textContent"),
])
def test_the_api_docs_render_offline_under_a_strict_csp(
    page: Page, api: Api, path: str, rendered: str
) -> None:
    """/docs and /redoc load only paymux's own copies of their assets (the browser here has
    no network but loopback) and render under a CSP whose scripts are paymux's own files
    (inline styles are allowed there: both libraries inject them, see api/docs.py)."""
    r = httpx.get(f"{api.server.url}{path}", timeout=10)
    csp = r.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", csp)
    assert script_src is not None and script_src.group(1) == "'self'"  # no inline script
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"https?://(?!127\.0\.0\.1)", r.text)  # no CDN
    assert "<script>" not in r.text  # scripts are files, never inline
    page.navigate(f"{api.server.url}{path}")
    title = page.wait_for(f"({rendered} || '').includes('paymux') && {rendered}", timeout=20)
    assert "paymux" in str(title)
    # The one refusal allowed: ReDoc's "powered by" badge, which it fetches from its CDN,
    # is blocked (proof that nothing else is fetched from outside); the page does not need it.
    refused = csp_refusals(page)
    assert all("https://cdn.redoc.ly/" in text and "image" in text for text in refused), refused
    if path == "/docs":
        assert refused == []
    page.events.clear()
