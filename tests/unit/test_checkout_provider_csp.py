"""The hosted page's provider SDKs and CSP origins (web/checkout.py), pure: the providers'
own URLs and origins when nothing is configured (Stripe's, PayPal's and Square's CSP guides),
each origin only in the directives its guide names it in, and the configured URL's origin
alone (in the same directives) when PAYMUX_STRIPE_API_BASE / PAYMUX_PAYPAL_JS_URL /
PAYMUX_SQUARE_JS_URL are set. Expected policies written out."""

from __future__ import annotations

from paymux.config import Settings
from paymux.web.checkout import _paypal_js, _square_js, _stripe_js, checkout_csp
from paymux.web.embed import cors_route

CLIENT = {"client_id": "AYclient", "currency": "eur", "intent": "authorize", "order_id": "5O1"}


def directives(policy: str) -> dict[str, str]:
    """The policy as {directive: its sources}, each directive once."""
    found: dict[str, str] = {}
    for part in policy.split(";"):
        name, _, sources = part.strip().partition(" ")
        assert name not in found, name
        found[name] = sources
    return found


def test_paypal_defaults_to_paypals_sdk_and_origins() -> None:
    """PayPal's CSP guide (the nonce variant): *.paypal.com and *.paypalobjects.com for the
    SDK, its frames, its calls and its images; its style elements carry the nonce."""
    script, sources = _paypal_js(Settings(paypal_js_url=None), CLIENT)
    assert script == ("https://www.paypal.com/sdk/js?client-id=AYclient&currency=EUR"
                      "&intent=authorize&components=buttons")
    paypal = "https://*.paypal.com https://*.paypalobjects.com"
    assert directives(checkout_csp("n0nce", sources)) == {
        "default-src": "'none'",
        "script-src": f"'nonce-n0nce' {paypal}",
        "style-src": "'self' 'nonce-n0nce'",
        "img-src": f"'self' {paypal}",
        "connect-src": f"'self' {paypal}",
        "frame-src": f"'self' {paypal}",
        "form-action": "'self'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
        "report-uri": "/c/csp-reports",
    }


def test_a_configured_paypal_sdk_url_names_its_origin_alone() -> None:
    script, sources = _paypal_js(Settings(paypal_js_url="http://127.0.0.1:5555/sdk/js"), CLIENT)
    assert script.startswith("http://127.0.0.1:5555/sdk/js?client-id=AYclient&")
    policy = directives(checkout_csp("n0nce", sources))
    for name in ("img-src", "connect-src", "frame-src"):
        assert policy[name] == "'self' http://127.0.0.1:5555", name
    assert policy["script-src"] == "'nonce-n0nce' http://127.0.0.1:5555"
    assert policy["style-src"] == "'self' 'nonce-n0nce'"


def test_squares_page_names_each_origin_where_squares_guide_needs_it() -> None:
    """Square's CSP guide: the SDK from web.squarecdn.com (script-src), its calls to it and
    to pci-connect / connect (connect-src); no image or style of Square's on the page. Its
    3-D Secure (verifyBuyer) frames Cardinal's device-data page and then the ISSUER's
    challenge page, at origins no list can name: frame-src allows https frames."""
    settings = Settings(square_js_url=None)
    expected = {
        "production": ("https://web.squarecdn.com", "https://pci-connect.squareup.com",
                       "https://connect.squareup.com"),
        "sandbox": ("https://sandbox.web.squarecdn.com",
                    "https://pci-connect.squareupsandbox.com",
                    "https://connect.squareupsandbox.com"),
    }
    for env, (cdn, pci, connect) in expected.items():
        script, sources = _square_js(settings, env)
        assert script == f"{cdn}/v1/square.js"
        policy = directives(checkout_csp("n0nce", sources))
        assert policy["script-src"] == f"'nonce-n0nce' {cdn}"
        assert policy["connect-src"] == f"'self' {cdn} {pci} {connect}"
        # The issuer's challenge (e.g. an ACS at https://acs.issuer.example) and Cardinal's
        # frame (https://geoissuer.cardinalcommerce.com) are https frames: allowed.
        assert policy["frame-src"] == "'self' https:"
        assert policy["img-src"] == "'self'" and policy["style-src"] == "'self'"
        assert "unsafe-inline" not in str(policy) and "*" not in policy["script-src"]


def test_a_configured_square_sdk_url_names_its_origin_alone() -> None:
    url = "http://127.0.0.1:6666/v1/square.js"
    script, sources = _square_js(Settings(square_js_url=url), "production")
    assert script == url
    policy = directives(checkout_csp("n0nce", sources))
    assert policy["script-src"] == "'nonce-n0nce' http://127.0.0.1:6666"
    assert policy["connect-src"] == "'self' http://127.0.0.1:6666"
    assert policy["frame-src"] == "'self' http://127.0.0.1:6666"
    assert policy["img-src"] == "'self'"


def test_stripes_page_names_each_origin_where_stripes_guide_needs_it() -> None:
    """Stripe's CSP guide: Stripe.js from js.stripe.com and *.js.stripe.com; its frames from
    those and hooks.stripe.com (3-D Secure); its calls to api.stripe.com only."""
    script, sources = _stripe_js(Settings(stripe_api_base=None))
    assert script == "https://js.stripe.com/v3/"
    policy = directives(checkout_csp("abc", sources))
    assert policy["script-src"] == "'nonce-abc' https://js.stripe.com https://*.js.stripe.com"
    assert policy["frame-src"] == ("'self' https://js.stripe.com https://*.js.stripe.com "
                                   "https://hooks.stripe.com")
    assert policy["connect-src"] == "'self' https://api.stripe.com"
    assert policy["img-src"] == "'self'" and policy["style-src"] == "'self'"


def test_a_stripe_stand_in_names_its_origin_alone() -> None:
    script, sources = _stripe_js(Settings(stripe_api_base="http://127.0.0.1:8420/"))
    assert script == "http://127.0.0.1:8420/js.stripe.com/v3/"
    policy = directives(checkout_csp("abc", sources))
    for name in ("connect-src", "frame-src"):
        assert policy[name] == "'self' http://127.0.0.1:8420", name
    assert policy["script-src"] == "'nonce-abc' http://127.0.0.1:8420"


def test_the_sandbox_page_names_no_other_origin() -> None:
    policy = directives(checkout_csp("abc"))
    assert policy["script-src"] == "'nonce-abc'"
    for name in ("connect-src", "frame-src", "img-src", "style-src"):
        assert policy[name] == "'self'", name


def test_cors_routes_are_the_publishable_keys_four() -> None:
    assert cors_route("GET", "/v1/payment_intents/pi_123")
    assert cors_route("POST", "/v1/payment_intents/pi_123/confirm")
    assert cors_route("GET", "/v1/setup_intents/seti_123")
    assert cors_route("POST", "/v1/setup_intents/seti_123/confirm")
    for method, path in (("POST", "/v1/payment_intents/pi_123"),
                         ("GET", "/v1/payment_intents/pi_123/confirm"),
                         ("POST", "/v1/payment_intents/pi_123/capture"),
                         ("GET", "/v1/payment_intents"), ("GET", "/v1/customers/cus_1"),
                         ("GET", "/v1/payment_intents/pi_1/../../customers"),
                         ("POST", "/v1/setup_intents/seti_1"),
                         ("POST", "/v1/setup_intents/seti_1/cancel"),
                         ("GET", "/v1/setup_intents")):
        assert not cors_route(method, path), (method, path)
