"""The URL of a provider's browser SDK, as the hosted checkout page and the embeddable
paymux.js load it: PayPal's JS SDK (its query names the order's client id, currency and
intent, as PayPal requires) and Square's Web Payments SDK. ``PAYMUX_PAYPAL_JS_URL`` /
``PAYMUX_SQUARE_JS_URL`` replace the providers' (a test's fake SDK on loopback), the one
configuration seam both pages use. Stripe.js's URL is the Stripe connector's own
(``PAYMUX_STRIPE_API_BASE``). Pure: settings and the intent's client view in, a URL out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from paymux.config import Settings

__all__ = [
    "PAYPAL_JS",
    "SQUARE_JS",
    "paypal_sdk_url",
    "square_environment",
    "square_sdk_url",
    "with_sdk_url",
]

PAYPAL_JS = "https://www.paypal.com/sdk/js"
SQUARE_JS = {
    "production": "https://web.squarecdn.com/v1/square.js",
    "sandbox": "https://sandbox.web.squarecdn.com/v1/square.js",
}


def paypal_sdk_url(settings: Settings, client: dict[str, Any], *, card_fields: bool = False) -> str:
    """PayPal's JS SDK for this payment: client id, currency and intent as the order's. With
    no currency (a SetupIntent's view: saving a PayPal wallet, nothing charged, the buttons'
    ``createVaultSetupToken`` flow) the client id alone. ``card_fields``: the card fields
    component too (``paypal.CardFields``, the checkout page's card entry)."""
    query: dict[str, str] = {"client-id": str(client.get("client_id") or "")}
    if client.get("currency"):
        query["currency"] = str(client["currency"]).upper()
        query["intent"] = str(client.get("intent") or "capture")
    query["components"] = "buttons,card-fields" if card_fields else "buttons"
    return f"{settings.paypal_js_url or PAYPAL_JS}?{urlencode(query)}"


def square_environment(client: dict[str, Any]) -> str:
    return "production" if client.get("environment") == "production" else "sandbox"


def square_sdk_url(settings: Settings, environment: str) -> str:
    """Square's Web Payments SDK for ``environment`` (production, else its sandbox)."""
    env = "production" if environment == "production" else "sandbox"
    return settings.square_js_url or SQUARE_JS[env]


def with_sdk_url(settings: Settings, client: dict[str, Any]) -> dict[str, Any]:
    """The intent's client view with ``sdk_url`` set for PayPal and Square (as configured);
    any other gateway's unchanged."""
    gateway = client.get("gateway")
    if gateway == "paypal" and client.get("client_id"):
        return {**client, "sdk_url": paypal_sdk_url(settings, client)}
    if gateway == "square":
        return {**client, "sdk_url": square_sdk_url(settings, square_environment(client))}
    return client
