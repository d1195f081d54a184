"""What each kind of API key may call.

- A secret key: everything of its account.
- A publishable key (for a checkout page): ``GET /v1/payment_intents/{id}`` and
  ``POST /v1/payment_intents/{id}/confirm`` (and the same two of a SetupIntent), each with
  the intent's ``client_secret`` (the query for the GET, the body for the confirm, checked by
  the router), and nothing else.
  Card details never reach /v1: the browser tokenizes with the gateway's own form.
- A restricted key: per resource, ``read`` (GET) or ``write`` (anything else; implies read).
  The resource of a route is the last segment of its path that names one
  (``/v1/payment_methods/{id}/attach`` is ``payment_methods``); a route with none is refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from paymux.domain.errors import PaymuxError
from paymux.services.keys import RESOURCES, Level, Principal, permits

__all__ = [
    "PUBLISHABLE_CONFIRM_FIELDS",
    "PUBLISHABLE_ROUTES",
    "enforce",
    "publishable_setup_view",
    "publishable_view",
    "redacted_key",
    "required_permission",
    "route_of",
]

# (method, route template) a publishable key may call, always with the client secret.
PUBLISHABLE_ROUTES = frozenset(
    {
        ("GET", "/v1/payment_intents/{pi_id}"),
        ("POST", "/v1/payment_intents/{pi_id}/confirm"),
        # paymux.js saving a card (a SetupIntent), as Stripe.js's confirmCardSetup does.
        ("GET", "/v1/setup_intents/{seti_id}"),
        ("POST", "/v1/setup_intents/{seti_id}/confirm"),
    }
)
# payment_method_data: a token the browser made (Stripe.js's confirmCardPayment sends it);
# verification_token: Square's verifyBuyer token, made in the browser with the card's.
PUBLISHABLE_CONFIRM_FIELDS = frozenset(
    {"payment_method", "payment_method_data", "return_url", "client_secret", "verification_token"}
)
# What a publishable key sees of a PaymentIntent (Stripe answers a publishable key with a
# subset too): what a checkout page needs, not the customer, metadata or references.
_PUBLISHABLE_INTENT_FIELDS = (
    "id",
    "object",
    "amount",
    "currency",
    "status",
    "capture_method",
    "client_secret",
    "payment_method",
    "next_action",
    "last_payment_error",
    "cancellation_reason",
    "canceled_at",
    "description",
    "return_url",
    "setup_future_usage",
    "payment_method_types",
    "automatic_payment_methods",
    "receipt_email",
    "shipping",  # Stripe shows a publishable key the shipping (a checkout page shows it)
    "gateway",
    "client",
    "created",
    "livemode",
)


# What a publishable key sees of a SetupIntent: not the customer, metadata or references.
_PUBLISHABLE_SETUP_FIELDS = (
    "id",
    "object",
    "status",
    "client_secret",
    "payment_method",
    "next_action",
    "last_setup_error",
    "cancellation_reason",
    "canceled_at",
    "return_url",
    "usage",
    "payment_method_types",
    "gateway",
    "client",
    "created",
    "livemode",
)


def route_of(request: Request) -> str:
    """The route template the request matched (``/v1/payment_intents/{pi_id}``)."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path


def required_permission(method: str, route: str) -> tuple[str, Level]:
    """(resource, read | write) a restricted key needs for this route."""
    segments = [p for p in route.split("/")[2:] if p and not p.startswith("{")]
    named = [s for s in segments if s in RESOURCES]
    resource = named[-1] if named else (segments[0] if segments else "")
    return resource, "read" if method in ("GET", "HEAD") else "write"


def redacted_key(principal: Principal) -> str:
    """``sk_test_***``: the kind and mode of a key, never any of it."""
    prefix = {"secret": "sk", "publishable": "pk", "restricted": "rk"}[principal.kind]
    return f"{prefix}_{'live' if principal.livemode else 'test'}_***"


def enforce(principal: Principal, request: Request) -> None:
    """Refuse the request if the key's kind does not allow this route. (A publishable
    confirm's client secret is in the body: its router checks it.)"""
    if principal.kind == "secret":
        return
    method, route = request.method.upper(), route_of(request)
    if principal.kind == "publishable":
        if (method, route) not in PUBLISHABLE_ROUTES:
            raise PaymuxError.of("publishable_key_not_allowed")
        return
    resource, level = required_permission(method, route)
    if resource not in RESOURCES or not permits(principal.permissions, resource, level):
        hint = (
            f"Having the '{resource}: {level}' permission would allow this request to continue."
            if resource in RESOURCES
            else "This endpoint is not available to restricted keys; use a secret key."
        )
        raise PaymuxError.of(
            "api_key_permission_denied",
            f"The provided key '{redacted_key(principal)}' does not have the required "
            f"permissions for this endpoint on account '{principal.account_id}'. {hint}",
        )


def publishable_view(view: dict[str, Any]) -> dict[str, Any]:
    """A PaymentIntent as a publishable key sees it."""
    return {k: view[k] for k in _PUBLISHABLE_INTENT_FIELDS if k in view}


def publishable_setup_view(view: dict[str, Any]) -> dict[str, Any]:
    """A SetupIntent as a publishable key sees it."""
    return {k: view[k] for k in _PUBLISHABLE_SETUP_FIELDS if k in view}
