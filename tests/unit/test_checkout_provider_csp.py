"""The hosted page's provider SDKs and CSP origins (web/checkout.py), pure: the providers'
own URLs and origins when nothing is configured (PayPal's and Square's CSP guides), and the
configured URL's origin alone when PAYMUX_PAYPAL_JS_URL / PAYMUX_SQUARE_JS_URL are set."""

from __future__ import annotations

from paymux.config import Settings
from paymux.web.checkout import _paypal_js, _square_js, checkout_csp
from paymux.web.embed import cors_route

CLIENT = {"client_id": "AYclient", "currency": "eur", "intent": "authorize", "order_id": "5O1"}


def test_paypal_defaults_to_paypals_sdk_and_origins() -> None:
    script, origins = _paypal_js(Settings(paypal_js_url=None), CLIENT)
    assert script == ("https://www.paypal.com/sdk/js?client-id=AYclient&currency=EUR"
                      "&intent=authorize&components=buttons")
    assert origins == "https://www.paypal.com https://*.paypal.com https://*.paypalobjects.com"
    policy = checkout_csp("n0nce", origins, styled=True)
    assert f"script-src 'nonce-n0nce' {origins};" in policy
    assert "style-src 'self' 'nonce-n0nce';" in policy
    assert f"img-src 'self' {origins};" in policy
    assert f"connect-src 'self' {origins};" in policy
    assert f"frame-src 'self' {origins};" in policy
    assert "unsafe-inline" not in policy


def test_a_configured_paypal_sdk_url_names_its_origin_alone() -> None:
    script, origins = _paypal_js(Settings(paypal_js_url="http://127.0.0.1:5555/sdk/js"), CLIENT)
    assert script.startswith("http://127.0.0.1:5555/sdk/js?client-id=AYclient&")
    assert origins == "http://127.0.0.1:5555"


def test_square_defaults_per_environment() -> None:
    settings = Settings(square_js_url=None)
    assert _square_js(settings, "sandbox") == (
        "https://sandbox.web.squarecdn.com/v1/square.js",
        "https://sandbox.web.squarecdn.com https://pci-connect.squareupsandbox.com")
    assert _square_js(settings, "production") == (
        "https://web.squarecdn.com/v1/square.js",
        "https://web.squarecdn.com https://pci-connect.squareup.com")
    origins = _square_js(settings, "production")[1]
    policy = checkout_csp("n0nce", origins)
    assert "style-src 'self';" in policy and "img-src 'self';" in policy  # not styled
    assert f"frame-src 'self' {origins};" in policy


def test_a_configured_square_sdk_url_names_its_origin_alone() -> None:
    url = "http://127.0.0.1:6666/v1/square.js"
    assert _square_js(Settings(square_js_url=url), "production") == (url, "http://127.0.0.1:6666")


def test_cors_routes_are_the_publishable_keys_two() -> None:
    assert cors_route("GET", "/v1/payment_intents/pi_123")
    assert cors_route("POST", "/v1/payment_intents/pi_123/confirm")
    for method, path in (("POST", "/v1/payment_intents/pi_123"),
                         ("GET", "/v1/payment_intents/pi_123/confirm"),
                         ("POST", "/v1/payment_intents/pi_123/capture"),
                         ("GET", "/v1/payment_intents"), ("GET", "/v1/customers/cus_1"),
                         ("GET", "/v1/payment_intents/pi_1/../../customers"),
                         ("POST", "/v1/setup_intents/seti_1/confirm")):
        assert not cors_route(method, path), (method, path)
