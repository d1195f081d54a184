"""Checkout's pure rules: what a session may be created with, its expiry, its totals, the
ids derived from it and how it looks on the wire (Stripe's ``checkout.session`` and line
``item``). No I/O.

States: ``open`` -> ``complete`` (its intent succeeded, or is authorized for a manual
capture, or its card was saved) | ``expired`` (at ``expires_at``, or by ``POST .../expire``).
Both ends are final.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from paymux.domain.errors import PaymuxError
from paymux.money import Money
from paymux.money.errors import MoneyError

__all__ = [
    "CHECKOUT_SESSION_ID",
    "DEFAULT_EXPIRY_SECONDS",
    "MAX_EXPIRY_SECONDS",
    "MAX_LINE_ITEMS",
    "MIN_EXPIRY_SECONDS",
    "LineTotals",
    "check_customer",
    "check_mode",
    "check_url",
    "completion_status",
    "expires_us",
    "intent_id_for",
    "line_item",
    "line_totals",
    "payment_status_after",
    "redirect_after_success",
    "session_view",
    "setup_intent_id_for",
]

# Stripe's bounds for ``expires_at``: 30 minutes to 24 hours after creation.
MIN_EXPIRY_SECONDS = 30 * 60
MAX_EXPIRY_SECONDS = 24 * 3600
DEFAULT_EXPIRY_SECONDS = MAX_EXPIRY_SECONDS
MAX_LINE_ITEMS = 100
MAX_QUANTITY = 999_999
# The template Stripe replaces in success_url with the session's id.
CHECKOUT_SESSION_ID = "{CHECKOUT_SESSION_ID}"
MODES = ("payment", "setup")
OPEN, COMPLETE, EXPIRED = "open", "complete", "expired"


def check_mode(mode: str | None) -> str:
    if mode is None:
        raise PaymuxError.of("parameter_missing", "Missing required param: mode.", param="mode")
    if mode not in MODES:
        detail = (
            " (subscription mode is not offered by paymux's checkout yet)"
            if mode == "subscription"
            else ""
        )
        raise PaymuxError.of(
            "parameter_invalid",
            f"mode must be one of payment, setup{detail}.",
            param="mode",
        )
    return mode


def check_url(value: str | None, param: str, *, required: bool) -> str | None:
    """An absolute http(s) URL (where the payer's browser is sent), or a 400 naming it."""
    if value is None or value == "":
        if required:
            raise PaymuxError.of(
                "parameter_missing", f"Missing required param: {param}.", param=param
            )
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(ch.isspace() or ord(ch) < 32 for ch in value)
    ):
        raise PaymuxError.of(
            "parameter_invalid",
            f"{param} must be an absolute http or https URL.",
            param=param,
        )
    return value


def check_customer(customer: str | None, customer_email: str | None) -> None:
    if customer and customer_email:
        raise PaymuxError.of(
            "parameter_invalid",
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
        )


def expires_us(now_us: int, expires_at: int | None) -> int:
    """When the session expires: ``expires_at`` (epoch seconds) within Stripe's bounds, 30
    minutes to 24 hours from now; 24 hours when not given."""
    now_s = now_us // 1_000_000
    if expires_at is None:
        return now_us + DEFAULT_EXPIRY_SECONDS * 1_000_000
    if not now_s + MIN_EXPIRY_SECONDS <= expires_at <= now_s + MAX_EXPIRY_SECONDS:
        raise PaymuxError.of(
            "parameter_invalid",
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
            "Checkout Session creation.",
            param="expires_at",
        )
    return expires_at * 1_000_000


def intent_id_for(session_id: str) -> str:
    """The PaymentIntent of a payment-mode session: the same for every retry of its create,
    so the payment (and its gateway calls' idempotency keys, derived from it) is made once."""
    digest = hashlib.sha256(f"{session_id}:payment_intent".encode()).hexdigest()[:24]
    return f"pi_{digest}"


def setup_intent_id_for(session_id: str) -> str:
    """The SetupIntent of a setup-mode session, likewise the same for every retry of its
    create: one SetupIntent (and one customer made for it) per session."""
    digest = hashlib.sha256(f"{session_id}:setup_intent".encode()).hexdigest()[:24]
    return f"seti_{digest}"


def line_item(
    item_id: str,
    price: dict[str, Any],
    quantity: int,
    description: str,
    param: str = "line_items",
) -> dict[str, Any]:
    """Stripe's line ``item``: ``price`` is the price object; amounts in minor units.
    ``param``: the item's own (``line_items[0]``), which its errors name."""
    if not 1 <= quantity <= MAX_QUANTITY:
        raise PaymuxError.of(
            "parameter_invalid",
            f"quantity must be between 1 and {MAX_QUANTITY}.",
            param=f"{param}[quantity]",
        )
    unit = price.get("unit_amount")
    if not isinstance(unit, int) or isinstance(unit, bool) or unit < 0:
        raise PaymuxError.of(
            "parameter_invalid",
            "The price must have a unit_amount (a tiered or metered price cannot be sold "
            "in a checkout).",
            param=f"{param}[price]",
        )
    if price.get("type") == "recurring":
        raise PaymuxError.of(
            "parameter_invalid",
            "A recurring price needs mode subscription, which paymux's checkout does not "
            "offer yet; use a one-time price.",
            param=f"{param}[price]",
        )
    amount = unit * quantity
    return {
        "id": item_id,
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": str(price["currency"]).lower(),
        "description": description,
        "price": price,
        "quantity": quantity,
    }


@dataclass(frozen=True)
class LineTotals:
    currency: str
    subtotal: int
    total: int


def line_totals(items: list[dict[str, Any]]) -> LineTotals:
    """The session's amounts: one currency for every line, a chargeable total."""
    if not items:
        raise PaymuxError.of(
            "parameter_missing",
            "line_items is required in payment mode.",
            param="line_items",
        )
    if len(items) > MAX_LINE_ITEMS:
        raise PaymuxError.of(
            "parameter_invalid",
            f"A checkout session takes at most {MAX_LINE_ITEMS} line items.",
            param="line_items",
        )
    currencies = {str(i["currency"]) for i in items}
    if len(currencies) > 1:
        raise PaymuxError.of(
            "currency_mismatch",
            "All line items must be in the same currency.",
            param="line_items",
        )
    currency = currencies.pop()
    total = sum(int(i["amount_total"]) for i in items)
    try:
        Money(total, currency)
    except MoneyError as exc:
        raise PaymuxError.of(exc.code, str(exc), param="line_items") from exc
    if total <= 0:
        raise PaymuxError.of(
            "amount_invalid",
            "The total of the line items must be positive.",
            param="line_items",
        )
    return LineTotals(currency, total, total)


def completion_status(intent_status: str) -> bool:
    """Whether an intent in ``intent_status`` completes its session: paid, or authorized
    for a manual capture (Stripe completes it then too), or a card saved."""
    return intent_status in ("succeeded", "requires_capture")


def payment_status_after(mode: str, intent_status: str) -> str:
    """Stripe's ``payment_status`` of a completed session: ``paid`` once the money is
    captured; ``unpaid`` for an authorization waiting to be captured; a setup pays nothing."""
    if mode == "setup":
        return "no_payment_required"
    return "paid" if intent_status == "succeeded" else "unpaid"


def redirect_after_success(success_url: str, session_id: str) -> str:
    """Where the payer goes when done: ``{CHECKOUT_SESSION_ID}`` replaced, as Stripe does."""
    return success_url.replace(CHECKOUT_SESSION_ID, session_id)


def session_view(row: Any, url: str | None) -> dict[str, Any]:
    """Stripe's ``checkout.session`` (the fields paymux keeps; the rest as Stripe sends them
    when unused). ``url`` is the hosted page while the session is open, else None."""
    return {
        "id": row.id,
        "object": "checkout.session",
        "amount_subtotal": row.amount_subtotal,
        "amount_total": row.amount_total,
        "cancel_url": row.cancel_url,
        "client_reference_id": row.client_reference_id,
        "created": row.created_us // 1_000_000,
        "currency": row.currency,
        "customer": row.customer_id,
        "customer_email": row.customer_email,
        "expires_at": row.expires_us // 1_000_000,
        "livemode": bool(row.livemode),
        "locale": row.locale,
        "metadata": dict(row.metadata_ or {}),
        "mode": row.mode,
        "payment_intent": row.payment_intent_id,
        "payment_method_types": list(row.payment_method_types or ["card"]),
        "payment_status": row.payment_status,
        "setup_intent": row.setup_intent_id,
        "status": row.status,
        "subscription": None,
        "success_url": row.success_url,
        "total_details": (
            {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
            if row.mode == "payment"
            else None
        ),
        "ui_mode": "hosted",
        "url": url if row.status == OPEN else None,
    }


# What no gateway's card form makes: ids of stored objects (a source or bank account of a
# customer, an intent, a customer). A ``pm_`` (the sandbox's form) or a ``card_`` (the card
# of a token Stripe.js just made) is what a form makes, so it passes here;
# ``payment_method_from_token`` refuses one that is already a payment method of the account.
STORED_OBJECT_PREFIXES = ("src_", "ba_", "seti_", "pi_", "cus_")


def check_page_token(card_token: str) -> None:
    """The hosted page (unauthenticated: anyone holding its URL) pays with a fresh token
    from the gateway's card form only, never by the id of a stored payment method."""
    if card_token.startswith(STORED_OBJECT_PREFIXES):
        raise PaymuxError.of(
            "parameter_invalid",
            "This page takes a new card from its card form only.",
            param="payment_method",
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_key(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def same_origin(origin: str, base_url: str) -> bool:
    """Whether a browser's ``Origin`` is paymux's own (``base_url``'s), as browsers compare
    them: scheme and host in any case, a default port written or not
    (``https://Pay.Example:443`` is ``https://pay.example``). ``null`` or junk is not."""
    mine = _origin_key(base_url)
    return mine is not None and _origin_key(origin) == mine
