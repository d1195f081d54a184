"""Pure mapping between the sandbox processor's JSON and the Gateway Protocol's types."""

from __future__ import annotations

from typing import Any, assert_never

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    SetupResult,
    ThreeDSecure,
    card_bin,
)

__all__ = [
    "authorize_body",
    "card_details",
    "charge_result",
    "refund_result",
    "setup_result",
    "three_d_secure",
]

_STATUSES = {
    "requires_action": GatewayStatus.REQUIRES_ACTION,
    "requires_capture": GatewayStatus.REQUIRES_CAPTURE,
    "succeeded": GatewayStatus.SUCCEEDED,
    "processing": GatewayStatus.PROCESSING,
    "failed": GatewayStatus.FAILED,
    "canceled": GatewayStatus.CANCELED,
}


def authorize_body(request: AuthorizeRequest) -> dict[str, Any]:
    return {
        "amount": request.amount.amount,
        "currency": request.amount.currency.lower(),
        "token": request.payment_method_token,
        "capture": request.capture,
        "reference": request.reference,
        "customer": request.customer_token,
        "off_session": request.off_session,
        "setup_future_usage": request.setup_future_usage,
        "return_url": request.return_url,
        "request_three_d_secure": request.request_three_d_secure,
        "network_transaction_id": request.network_transaction_id,
    }


def charge_result(data: dict[str, Any]) -> GatewayResult:
    status = _STATUSES[str(data["status"])]
    decline = None
    if status is GatewayStatus.FAILED:
        decline = Decline(
            gateway_code=str(data.get("decline_code") or "generic_decline"),
            message=str(data.get("message") or "Your card was declined."),
        )
    match status:
        case (
            GatewayStatus.REQUIRES_ACTION
            | GatewayStatus.FAILED
            | GatewayStatus.CANCELED
            | GatewayStatus.OPEN
        ):
            authorized = 0
        case GatewayStatus.REQUIRES_CAPTURE | GatewayStatus.SUCCEEDED | GatewayStatus.PROCESSING:
            authorized = int(data.get("amount_authorized") or 0)
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate
    return GatewayResult(
        status=status,
        reference=data.get("id"),
        amount_authorized=authorized,
        amount_captured=int(data.get("amount_captured") or 0),
        decline=decline,
        next_action=data.get("next_action"),
        risk_level=data.get("risk_level"),
        raw=data,
        three_d_secure=three_d_secure(data.get("three_d_secure")),
        network_transaction_id=data.get("network_transaction_id"),
    )


def three_d_secure(found: Any) -> ThreeDSecure | None:
    """The sandbox's challenge outcome, in Stripe's shape (its charge's ``three_d_secure``):
    read as Stripe's is (an authenticated challenge shifts liability to the issuer, a failed
    one doesn't); None when no challenge ran."""
    return ThreeDSecure.from_stripe_shape(found)


def refund_result(data: dict[str, Any]) -> GatewayRefund:
    return GatewayRefund(
        status=str(data["status"]),
        reference=data.get("id"),
        amount=int(data["amount"]),
        failure_reason=data.get("failure_reason"),
        payment_reference=data.get("charge"),
        our_id=data.get("our_id"),
        reason=data.get("reason"),
    )


def card_details(data: dict[str, Any]) -> CardDetails:
    card = data.get("card") or {}
    checks = card.get("checks") or {}
    return CardDetails(
        token=str(data["id"]),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        fingerprint=card.get("fingerprint"),
        country=card.get("country"),
        funding=card.get("funding"),
        bin=card_bin(card.get("bin")),
        cvc_check=checks.get("cvc_check"),
        address_line1_check=checks.get("address_line1_check"),
        address_zip_check=checks.get("address_postal_code_check"),
    )


_SETUP_STATUSES = {
    "requires_action": GatewayStatus.REQUIRES_ACTION,
    "succeeded": GatewayStatus.SUCCEEDED,
    "failed": GatewayStatus.FAILED,
    "canceled": GatewayStatus.CANCELED,
}


def setup_result(data: dict[str, Any]) -> SetupResult:
    """A ``setup_attempt`` as the Gateway Protocol's SetupResult: the saved card is the token
    that was set up (the sandbox keeps one token per card)."""
    status = _SETUP_STATUSES[str(data["status"])]
    decline = None
    if status is GatewayStatus.FAILED:
        decline = Decline(
            gateway_code=str(data.get("decline_code") or "generic_decline"),
            message=str(data.get("message") or "Your card was declined."),
        )
    card = None
    if status is GatewayStatus.SUCCEEDED and data.get("token"):
        card = card_details({"id": data["token"], "card": data.get("card") or {}})
    return SetupResult(
        status=status,
        reference=data.get("id"),
        card=card,
        decline=decline,
        next_action=data.get("next_action") if status is GatewayStatus.REQUIRES_ACTION else None,
        raw=data,
    )
