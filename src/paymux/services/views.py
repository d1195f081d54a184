"""API representations of stored objects (Stripe's shapes). Events snapshot these."""

from __future__ import annotations

from typing import Any

from paymux.domain.clock import seconds
from paymux.storage.models import Customer, Dispute, Event, PaymentIntent, PaymentMethod, Refund

__all__ = [
    "address_view",
    "billing_details_view",
    "charge_id",
    "customer_view",
    "dispute_view",
    "event_view",
    "has_charge",
    "payment_intent_view",
    "payment_method_view",
    "refund_view",
    "shipping_view",
]

_ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")


def address_view(address: dict[str, Any] | None) -> dict[str, Any]:
    """Stripe's address: every field present, null when not given."""
    given = address or {}
    return {name: given.get(name) for name in _ADDRESS_FIELDS}


def shipping_view(shipping: dict[str, Any] | None, *, carrier: bool) -> dict[str, Any] | None:
    """Stripe's shipping (a PaymentIntent's has ``carrier`` and ``tracking_number`` too), or
    None when there is none."""
    if not shipping:
        return None
    view: dict[str, Any] = {
        "address": address_view(shipping.get("address")),
        "name": shipping.get("name"),
        "phone": shipping.get("phone"),
    }
    if carrier:
        view["carrier"] = shipping.get("carrier")
        view["tracking_number"] = shipping.get("tracking_number")
    return view


def billing_details_view(details: dict[str, Any] | None) -> dict[str, Any]:
    """Stripe's ``billing_details``: always there, its fields null when not given."""
    given = details or {}
    return {
        "address": address_view(given.get("address")),
        "email": given.get("email"),
        "name": given.get("name"),
        "phone": given.get("phone"),
    }


def charge_id(pi_id: str) -> str:
    """The id of an intent's charge (services/charges.py): ``pi_ab12`` has ``ch_ab12``."""
    return "ch_" + pi_id.removeprefix("pi_")


def has_charge(pi: PaymentIntent) -> bool:
    """Whether the intent was confirmed and is not waiting for the payer (3-D Secure): then
    its gateway was tried, with money held or received, a decline, or an outcome pending."""
    return pi.confirm_count > 0 and pi.status != "requires_action"


def payment_intent_view(pi: PaymentIntent, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": pi.id,
        "object": "payment_intent",
        "amount": pi.amount,
        "currency": pi.currency.lower(),
        "status": pi.status,
        "amount_capturable": pi.amount_capturable,
        "amount_received": pi.amount_received,
        "amount_refunded": pi.amount_refunded,
        "capture_method": pi.capture_method,
        "customer": pi.customer_id,
        "payment_method": pi.payment_method_id,
        "setup_future_usage": pi.setup_future_usage,
        "latest_charge": charge_id(pi.id) if has_charge(pi) else None,
        "payment_method_types": list(pi.payment_method_types or ["card"]),
        "automatic_payment_methods": (
            None
            if pi.automatic_payment_methods is None
            else {"enabled": pi.automatic_payment_methods}
        ),
        "receipt_email": pi.receipt_email,
        "statement_descriptor_suffix": pi.statement_descriptor_suffix,
        "invoice": pi.invoice_id,
        "shipping": shipping_view(pi.shipping, carrier=True),
        "gateway": pi.gateway,
        "connection": pi.connection_id,
        "gateway_reference": pi.gateway_reference,
        "last_payment_error": pi.last_payment_error,
        "next_action": pi.next_action,
        # Stripe's: {"card": {"request_three_d_secure": ...}} as given (3-D Secure).
        "payment_method_options": pi.payment_method_options or {},
        "cancellation_reason": pi.cancellation_reason,
        "canceled_at": seconds(pi.canceled_us),
        "description": pi.description,
        "statement_descriptor": pi.statement_descriptor,
        "metadata": pi.metadata_ or {},
        "risk_level": pi.risk_level,
        # The gateway's numeric risk score for the payment (Stripe's outcome.risk_score).
        "gateway_risk_score": pi.gateway_risk_score,
        "return_url": pi.return_url,
        "client_secret": pi.client_secret,
        "created": seconds(pi.created_us),
        "updated": seconds(pi.updated_us),
        "livemode": bool(pi.livemode),
    }
    if extra:
        view.update(extra)
    return view


def payment_method_view(pm: PaymentMethod) -> dict[str, Any]:
    return {
        "id": pm.id,
        "object": "payment_method",
        "type": pm.type,
        "gateway": pm.gateway,
        "connection": pm.connection_id,
        "gateway_token": pm.token,
        "customer": pm.customer_id,
        "card": {
            "brand": pm.card_brand,
            "last4": pm.card_last4,
            "exp_month": pm.card_exp_month,
            "exp_year": pm.card_exp_year,
            "fingerprint": pm.card_fingerprint,
            "country": pm.card_country,
            "funding": pm.card_funding,
            # Stripe's: the checks the gateway made when the card was tokenized or saved.
            "checks": {
                "cvc_check": pm.card_cvc_check,
                "address_line1_check": pm.card_address_line1_check,
                "address_postal_code_check": pm.card_address_zip_check,
            },
        },
        "billing_details": billing_details_view(pm.billing_details),
        "metadata": pm.metadata_ or {},
        "created": seconds(pm.created_us),
        "livemode": bool(pm.livemode),
    }


def customer_view(c: Customer) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": c.id,
        "object": "customer",
        "email": c.email,
        "name": c.name,
        "description": c.description,
        "phone": c.phone,
        "address": address_view(c.address) if c.address else None,
        "shipping": shipping_view(c.shipping, carrier=False),
        "default_payment_method": c.default_payment_method,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": c.default_payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "metadata": c.metadata_ or {},
        "created": seconds(c.created_us),
        "livemode": bool(c.livemode),
        "test_clock": c.test_clock_id,
        # Billing's credit balance (negative: credit the customer has) and its currency.
        "balance": c.balance,
        "currency": c.currency.lower() if c.currency else None,
    }
    if c.deleted:
        view["deleted"] = True
    return view


def refund_view(r: Refund) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "refund",
        "amount": r.amount,
        "currency": r.currency.lower(),
        "payment_intent": r.payment_intent_id,
        "charge": charge_id(r.payment_intent_id),
        "reason": r.reason,
        "status": r.status,
        "failure_reason": r.failure_reason,
        "gateway_reference": r.gateway_reference,
        "metadata": r.metadata_ or {},
        "created": seconds(r.created_us),
        "livemode": bool(r.livemode),
    }


def event_view(e: Event) -> dict[str, Any]:
    """Stripe's event object, as ``/v1/events`` lists it and deliveries carry it
    (``outbound.views.event_payload``): ``request`` names the API request that caused it
    (nulls for a worker's change), ``data.previous_attributes`` an update's old values."""
    data: dict[str, Any] = {"object": e.data}
    if e.previous_attributes is not None:
        data["previous_attributes"] = e.previous_attributes
    return {
        "id": e.id,
        "object": "event",
        "type": e.type,
        "data": data,
        "created": seconds(e.created_us),
        "livemode": bool(e.livemode),
        "request": {"id": e.request_id, "idempotency_key": e.idempotency_key},
    }


def dispute_view(d: Dispute) -> dict[str, Any]:
    return {
        "id": d.id,
        "object": "dispute",
        "payment_intent": d.payment_intent_id,
        "charge": charge_id(d.payment_intent_id),
        "gateway": d.gateway,
        "gateway_reference": d.gateway_reference,
        "amount": d.amount,
        "currency": d.currency.lower(),
        "reason": d.reason,
        "status": d.status,
        "metadata": dict(d.metadata_ or {}),
        "created": seconds(d.created_us),
        "livemode": bool(d.livemode),
    }
