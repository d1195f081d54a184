"""The providers' SDK URLs that paymux.js and the hosted page load (gateways/browser_sdk.py):
the providers' own by default, PAYMUX_PAYPAL_JS_URL / PAYMUX_SQUARE_JS_URL instead when set,
added to an intent's client view for PayPal and Square only."""

from __future__ import annotations

from paymux.config import Settings
from paymux.gateways.browser_sdk import with_sdk_url

PAYPAL = {"gateway": "paypal", "client_id": "AYclient", "order_id": "5O190127TN364715T",
          "intent": "authorize", "currency": "eur"}
SQUARE = {"gateway": "square", "application_id": "sandbox-sq0idb-x", "location_id": "L1",
          "environment": "sandbox", "sdk_url": "https://sandbox.web.squarecdn.com/v1/square.js"}


def test_paypal_gets_paypals_sdk_for_the_orders_client_id_currency_and_intent() -> None:
    view = with_sdk_url(Settings(paypal_js_url=None), PAYPAL)
    assert view == {**PAYPAL, "sdk_url": "https://www.paypal.com/sdk/js?client-id=AYclient"
                    "&currency=EUR&intent=authorize&components=buttons"}
    configured = with_sdk_url(Settings(paypal_js_url="http://127.0.0.1:9/sdk/js"), PAYPAL)
    assert configured["sdk_url"] == ("http://127.0.0.1:9/sdk/js?client-id=AYclient"
                                     "&currency=EUR&intent=authorize&components=buttons")


def test_square_gets_its_environments_sdk_or_the_configured_one() -> None:
    assert with_sdk_url(Settings(square_js_url=None), SQUARE) == SQUARE
    live = {**SQUARE, "environment": "production"}
    assert with_sdk_url(Settings(square_js_url=None), live)["sdk_url"] == \
        "https://web.squarecdn.com/v1/square.js"
    configured = with_sdk_url(Settings(square_js_url="http://127.0.0.1:9/v1/square.js"), live)
    assert configured["sdk_url"] == "http://127.0.0.1:9/v1/square.js"


def test_other_gateways_and_a_paypal_view_without_a_client_id_are_unchanged() -> None:
    settings = Settings(paypal_js_url="http://127.0.0.1:9/sdk/js",
                        square_js_url="http://127.0.0.1:9/v1/square.js")
    stripe = {"gateway": "stripe", "publishable_key": "pk_test_x",
              "sdk_url": "https://js.stripe.com/v3/"}
    sandbox = {"gateway": "sandbox", "tokenize_url": "http://127.0.0.1:1/sandbox/v1/tokens"}
    assert with_sdk_url(settings, stripe) == stripe
    assert with_sdk_url(settings, sandbox) == sandbox
    no_client = {"gateway": "paypal"}
    assert with_sdk_url(settings, no_client) == no_client
