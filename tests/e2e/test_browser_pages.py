"""The sandbox's browser pages in headless chromium: the hosted card form and the 3DS challenge.

Driven over the Chrome DevTools Protocol (support/cdp.py, standard library only). Skipped
when /usr/bin/chromium is missing, except under CI (CI=true/1), where that is a failure.
chromium resolves no host names here: only the test server on 127.0.0.1 is reachable.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import Api
from support.cdp import Browser, Page, find_chromium

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail("chromium is required under CI but /usr/bin/chromium is missing")
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    running = Browser(binary).start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab = browser.page()
    try:
        yield tab
    finally:
        tab.close()


def fill_card_form(page: Page, number: str, cvc: str = "123", postal_code: str = "10001") -> None:
    page.wait_for("document.querySelector('#submit') !== null")
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
