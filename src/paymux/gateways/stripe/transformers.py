"""Pure mapping between Stripe's JSON and the Gateway Protocol's types. No I/O; tested with
Stripe's own JSON shapes (including what localstripe can't produce)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, assert_never

from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    DisputeUpdate,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    SetupRequest,
    SetupResult,
    ThreeDSecure,
)
from paymux.money import Money

__all__ = [
    "ATTEMPT_KEY",
    "CANCELED_SETUP",
    "METADATA_KEY",
    "amount_problem",
    "browser_setup_result",
    "canceled_setup_result",
    "card_details",
    "confirm_params",
    "create_params",
    "decline_from_error",
    "from_stripe",
    "interpret_event",
    "open_params",
    "payment_result",
    "pick_lookup",
    "pick_refund",
    "refund_result",
    "search_query",
    "setup_confirm_params",
    "setup_create_params",
    "setup_result",
    "three_d_secure",
    "to_stripe",
    "update_params",
    "update_then_confirm_params",
]

METADATA_KEY = "paymux_id"
# The idempotency key of the call that made (or last confirmed) a PaymentIntent: ``lookup``
# tells this attempt's PaymentIntent from an earlier attempt's for the same intent of ours.
ATTEMPT_KEY = "paymux_key"

# Every PaymentIntent status Stripe documents, mapped explicitly (no catch-all).
_STATUS = {
    "requires_payment_method": GatewayStatus.FAILED,
    # Opened, or given a method, but never confirmed: nothing was tried on it yet.
    "requires_confirmation": GatewayStatus.OPEN,
    "requires_action": GatewayStatus.REQUIRES_ACTION,
    "processing": GatewayStatus.PROCESSING,
    "requires_capture": GatewayStatus.REQUIRES_CAPTURE,
    "succeeded": GatewayStatus.SUCCEEDED,
    "canceled": GatewayStatus.CANCELED,
}


# Where Stripe's unit differs from ISO 4217's minor unit (docs.stripe.com/currencies):
# ISK is zero-decimal in ISO but Stripe counts it in hundredths; MGA has two ISO decimals
# but is zero-decimal at Stripe. Three-decimal currencies must end in 0 at Stripe.
_STRIPE_SCALE = {"ISK": (100, 1), "MGA": (1, 100)}
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _scale(currency: str | None) -> tuple[int, int]:
    """(up, down): Stripe's amount is ours * up // down, ours is Stripe's * down // up."""
    return _STRIPE_SCALE.get(str(currency).upper(), (1, 1))


def amount_problem(money: Money) -> str | None:
    """Why Stripe can't take this amount exactly, or None."""
    _, down = _scale(money.currency)
    if money.amount % down:
        return f"Stripe takes {money.currency} in whole units; {money.amount} minor units isn't."
    if money.currency in _THREE_DECIMAL and money.amount % 10:
        return f"Stripe needs {money.currency} amounts that end in 0 (got {money.amount})."
    return None


def to_stripe(money: Money) -> int:
    up, down = _scale(money.currency)
    return money.amount * up // down


def from_stripe(value: Any, currency: str | None) -> int:
    up, down = _scale(currency)
    return int(value or 0) * down // up


def _metadata(reference: str, idempotency_key: str | None) -> dict[str, str]:
    metadata = {METADATA_KEY: reference}
    if idempotency_key:
        metadata[ATTEMPT_KEY] = idempotency_key
    return metadata


def open_params(
    amount: Money, reference: str, capture: bool, idempotency_key: str | None = None
) -> dict[str, Any]:
    """A PaymentIntent opened at our create, for Stripe.js to confirm in the browser."""
    return {
        "amount": to_stripe(amount),
        "currency": amount.currency.lower(),
        "capture_method": "automatic" if capture else "manual",
        "payment_method_types": ["card"],
        "metadata": _metadata(reference, idempotency_key),
    }


def update_params(amount: Money, capture: bool) -> dict[str, Any]:
    """A change of an opened, unconfirmed PaymentIntent: amount, currency, capture method."""
    return {
        "amount": to_stripe(amount),
        "currency": amount.currency.lower(),
        "capture_method": "automatic" if capture else "manual",
    }


def create_params(
    request: AuthorizeRequest, *, confirm: bool, idempotency_key: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": to_stripe(request.amount),
        "currency": request.amount.currency.lower(),
        "capture_method": "automatic" if request.capture else "manual",
        "payment_method_types": ["card"],
        "metadata": _metadata(request.reference, idempotency_key),
    }
    if request.description:
        params["description"] = request.description
    if request.statement_descriptor:
        params["statement_descriptor_suffix"] = request.statement_descriptor
    if request.customer_token:
        params["customer"] = request.customer_token
    if confirm:
        params.update(confirm_params(request))
        params["confirm"] = True
    return params


def confirm_params(request: AuthorizeRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"payment_method": request.payment_method_token}
    if request.off_session:
        params["off_session"] = True
    elif request.setup_future_usage:
        params["setup_future_usage"] = request.setup_future_usage
    if request.return_url:
        params["return_url"] = request.return_url
    if request.request_three_d_secure:
        params["payment_method_options"] = _three_d_secure_options(request)
    return params


def _three_d_secure_options(request: AuthorizeRequest) -> dict[str, Any]:
    """Stripe takes automatic | any | challenge as they are."""
    return {"card": {"request_three_d_secure": request.request_three_d_secure}}


def update_then_confirm_params(
    request: AuthorizeRequest, idempotency_key: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """For an opened PaymentIntent: what to set first, and what only confirm takes. The
    update records the confirming attempt's key in the metadata (see ``pick_lookup``)."""
    update: dict[str, Any] = {"payment_method": request.payment_method_token}
    if idempotency_key:
        update["metadata"] = {ATTEMPT_KEY: idempotency_key}
    if request.customer_token:
        update["customer"] = request.customer_token
    if not request.capture:
        # Authorize only: the merchant's manual capture, or a fraud review holding the money
        # of a PaymentIntent opened for automatic capture (Stripe would capture otherwise).
        update["capture_method"] = "manual"
    confirm: dict[str, Any] = {}
    if request.off_session:
        confirm["off_session"] = True
    elif request.setup_future_usage:
        update["setup_future_usage"] = request.setup_future_usage
    if request.return_url:
        confirm["return_url"] = request.return_url
    if request.request_three_d_secure:
        confirm["payment_method_options"] = _three_d_secure_options(request)
    return update, confirm


def _decline(error: dict[str, Any] | None) -> Decline:
    error = error or {}
    code = error.get("decline_code") or error.get("code") or "card_declined"
    if code == "card_declined":
        code = "generic_decline"
    return Decline(gateway_code=str(code), message=str(error.get("message") or "Declined."))


def decline_from_error(error: dict[str, Any]) -> Decline:
    """The Decline inside a Stripe card error body (``error`` object)."""
    return _decline(error)


def _card_of_charge(pi: dict[str, Any]) -> dict[str, Any]:
    """``latest_charge.payment_method_details.card`` when the charge was expanded."""
    charge = pi.get("latest_charge")
    if not isinstance(charge, dict):
        return {}
    details = charge.get("payment_method_details") or {}
    return details.get("card") or {}


# Stripe's charge ``outcome.risk_level`` values that paymux records (fraud/velocity.py's
# levels); ``not_assessed`` and ``unknown`` say nothing.
_RISK_LEVELS: Final = frozenset({"normal", "elevated", "highest"})


def risk_of_charge(pi: dict[str, Any]) -> tuple[str | None, int | None]:
    """The expanded ``latest_charge.outcome``'s risk level and numeric score (0-100, Radar's
    ``risk_score``); None for what is absent, another level, or a score that is not a whole
    number from 0 to 100."""
    charge = pi.get("latest_charge")
    outcome = charge.get("outcome") if isinstance(charge, dict) else None
    if not isinstance(outcome, dict):
        return None, None
    level = outcome.get("risk_level")
    score = outcome.get("risk_score")
    return (
        level if level in _RISK_LEVELS else None,
        score if type(score) is int and 0 <= score <= 100 else None,
    )


def three_d_secure(card: dict[str, Any]) -> ThreeDSecure | None:
    """A charge's ``payment_method_details.card.three_d_secure``; None when none ran."""
    return ThreeDSecure.from_stripe_shape(card.get("three_d_secure"))


# Stripe's code for a payment whose 3-D Secure authentication failed (the challenge refused,
# abandoned or timed out): the PaymentIntent goes back to requires_payment_method, no charge.
AUTHENTICATION_FAILURE = "payment_intent_authentication_failure"


def _failed_authentication(pi: dict[str, Any]) -> ThreeDSecure | None:
    """``result`` failed for a PaymentIntent whose last error is Stripe's authentication
    failure (no charge carries a 3-D Secure object then); None otherwise."""
    error = pi.get("last_payment_error")
    if isinstance(error, dict) and error.get("code") == AUTHENTICATION_FAILURE:
        return ThreeDSecure(result="failed", liability_shift=False)
    return None


def charge_is_expanded(pi: dict[str, Any]) -> bool:
    """Whether ``latest_charge`` is there as an object (or absent): an id alone (Search,
    List and webhook payloads) carries no 3-D Secure result."""
    return not isinstance(pi.get("latest_charge"), str)


def payment_result(pi: dict[str, Any]) -> GatewayResult:
    status = _STATUS[str(pi["status"])]
    if status is GatewayStatus.FAILED and not pi.get("last_payment_error"):
        status = GatewayStatus.OPEN  # requires_payment_method with no failure: never tried
    currency = pi.get("currency")
    decline = None
    match status:
        case GatewayStatus.FAILED:
            decline = _decline(pi.get("last_payment_error"))
            authorized = 0
        case GatewayStatus.REQUIRES_CAPTURE:
            authorized = from_stripe(pi.get("amount_capturable") or pi.get("amount"), currency)
        case GatewayStatus.SUCCEEDED:
            authorized = from_stripe(pi.get("amount_received") or pi.get("amount"), currency)
        case (
            GatewayStatus.REQUIRES_ACTION
            | GatewayStatus.PROCESSING
            | GatewayStatus.CANCELED
            | GatewayStatus.OPEN
        ):
            authorized = 0
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate
    captured = from_stripe(pi.get("amount_received"), currency)
    if status is GatewayStatus.SUCCEEDED and not captured:
        captured = from_stripe(pi.get("amount"), currency)
    next_action = pi.get("next_action")
    if next_action is not None:
        next_action = dict(next_action)
        next_action.setdefault("client_secret", pi.get("client_secret"))
    card = _card_of_charge(pi)
    risk_level, risk_score = risk_of_charge(pi)
    return GatewayResult(
        status=status,
        reference=pi.get("id"),
        amount_authorized=authorized,
        amount_captured=captured,
        decline=decline,
        next_action=next_action if status is GatewayStatus.REQUIRES_ACTION else None,
        raw={"id": pi.get("id"), "status": pi.get("status")},
        three_d_secure=three_d_secure(card)
        or (_failed_authentication(pi) if status is GatewayStatus.FAILED else None),
        network_transaction_id=card.get("network_transaction_id"),
        risk_level=risk_level,
        risk_score=risk_score,
    )


def refund_result(refund: dict[str, Any]) -> GatewayRefund:
    payment = refund.get("payment_intent")
    if isinstance(payment, dict):
        payment = payment.get("id")
    metadata = refund.get("metadata") or {}
    return GatewayRefund(
        status=str(refund.get("status") or "pending").replace("requires_action", "pending"),
        reference=refund.get("id"),
        amount=from_stripe(refund.get("amount"), refund.get("currency")),
        failure_reason=refund.get("failure_reason"),
        payment_reference=payment,
        our_id=metadata.get(METADATA_KEY),
        reason=refund.get("reason"),
    )


def search_query(our_reference: str) -> str:
    """The Search API query for the PaymentIntents carrying our intent id in their metadata
    (docs.stripe.com/search: a string value in single quotes, ``\\`` escaping a quote)."""
    value = our_reference.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{METADATA_KEY}']:'{value}'"


def pick_lookup(
    candidates: Iterable[dict[str, Any]], our_reference: str, idempotency_key: str
) -> dict[str, Any] | None:
    """The PaymentIntent a lost call with ``idempotency_key`` made for our intent, among
    ``candidates`` (search or list results, duplicates allowed).

    One that recorded this very key wins. One that recorded another key belongs to another
    attempt (or another step) and is never taken. A PaymentIntent made before paymux recorded
    keys has none: the newest of those is taken (the caller drops one an earlier attempt of
    its own already holds)."""
    ours = [
        pi
        for pi in candidates
        if (pi.get("metadata") or {}).get(METADATA_KEY) == our_reference and pi.get("id")
    ]
    exact = [pi for pi in ours if (pi.get("metadata") or {}).get(ATTEMPT_KEY) == idempotency_key]
    keyless = [pi for pi in ours if not (pi.get("metadata") or {}).get(ATTEMPT_KEY)]
    for group in (exact, keyless):
        if group:
            return max(group, key=lambda pi: (int(pi.get("created") or 0), str(pi["id"])))
    return None


def pick_refund(refunds: Iterable[dict[str, Any]], our_id: str) -> dict[str, Any] | None:
    """Our refund (its metadata names ``our_id``) among a payment's refunds; the newest if a
    mistake made several."""
    mine = [r for r in refunds if (r.get("metadata") or {}).get(METADATA_KEY) == our_id]
    if not mine:
        return None
    return max(mine, key=lambda r: (int(r.get("created") or 0), str(r.get("id"))))


def card_details(pm: dict[str, Any]) -> CardDetails:
    """A Stripe PaymentMethod; its ``card.checks`` are the CVC and address checks made when
    the card was tokenized. Stripe never gives the BIN."""
    card = pm.get("card") or {}
    checks = card.get("checks") or {}
    return CardDetails(
        token=str(pm["id"]),
        type=str(pm.get("type") or "card"),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        fingerprint=card.get("fingerprint"),
        country=card.get("country"),
        funding=card.get("funding"),
        cvc_check=checks.get("cvc_check"),
        address_line1_check=checks.get("address_line1_check"),
        address_zip_check=checks.get("address_postal_code_check"),
    )


_PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "payment_intent.amount_capturable_updated",
        "payment_intent.processing",
        "payment_intent.partially_funded",
    }
)
_REFUND_EVENTS = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)


def interpret_event(event: InboundEvent) -> PaymentUpdate | RefundUpdate | DisputeUpdate | None:
    obj = (event.payload.get("data") or {}).get("object") or {}
    if event.type in _PAYMENT_EVENTS and obj.get("object") == "payment_intent":
        reference = (obj.get("metadata") or {}).get(METADATA_KEY)
        return PaymentUpdate(
            reference=reference,
            result=payment_result(obj),
            charge_unread=not charge_is_expanded(obj),
        )
    if event.type in _REFUND_EVENTS and obj.get("object") == "refund":
        return RefundUpdate(refund=refund_result(obj))
    if event.type == "charge.refunded" and obj.get("object") == "charge":
        refunds = (obj.get("refunds") or {}).get("data") or []
        if refunds:
            newest = max(refunds, key=lambda r: int(r.get("created") or 0))
            newest = dict(
                newest, payment_intent=newest.get("payment_intent") or obj.get("payment_intent")
            )
            return RefundUpdate(refund=refund_result(newest))
        return None
    if event.type.startswith("charge.dispute.") and obj.get("object") == "dispute":
        return DisputeUpdate(
            reference=str(obj["id"]),
            payment_reference=obj.get("payment_intent"),
            amount=from_stripe(obj.get("amount"), obj.get("currency")),
            currency=str(obj.get("currency") or ""),
            reason=obj.get("reason"),
            status=str(obj.get("status") or "needs_response"),
        )
    return None


# Every SetupIntent status Stripe documents, mapped explicitly.
_SETUP_STATUS = {
    "requires_payment_method": GatewayStatus.FAILED,  # OPEN when nothing was tried yet
    "requires_confirmation": GatewayStatus.OPEN,
    "requires_action": GatewayStatus.REQUIRES_ACTION,
    "processing": GatewayStatus.PROCESSING,
    "succeeded": GatewayStatus.SUCCEEDED,
    "canceled": GatewayStatus.CANCELED,
}


def setup_create_params(request: SetupRequest, idempotency_key: str) -> dict[str, Any]:
    """A Stripe SetupIntent for the customer (confirmed in a second, keyed step)."""
    return {
        "customer": request.customer_token,
        "usage": request.usage,
        "payment_method_types": ["card"],
        "metadata": _metadata(request.reference, idempotency_key),
    }


def setup_confirm_params(request: SetupRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"payment_method": request.payment_method_token}
    if request.return_url:
        params["return_url"] = request.return_url
    return params


def browser_setup_result(seti: dict[str, Any]) -> SetupResult:
    """A SetupIntent made without a card, for Stripe.js to confirm in the payer's browser
    (``confirmCardSetup``): waiting for the payer, with the secret Stripe.js needs."""
    return SetupResult(
        status=GatewayStatus.REQUIRES_ACTION,
        reference=seti.get("id"),
        next_action={
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "confirm_card_setup"},
            "client_secret": seti.get("client_secret"),
        },
        raw={"id": seti.get("id"), "status": seti.get("status")},
    )


# A SetupIntent canceled at Stripe: paymux never cancels one there (its own cancel is its
# record's), so it is the attempt that ended (localstripe cancels the SetupIntent of a
# declined card, or of a failed 3-D Secure, where Stripe answers requires_payment_method);
# the payer may try another card, with a new SetupIntent.
CANCELED_SETUP = Decline(
    gateway_code="generic_decline", message="The card could not be set up: Stripe canceled it."
)


def canceled_setup_result(seti: dict[str, Any]) -> SetupResult:
    error = seti.get("last_setup_error")
    return SetupResult(
        status=GatewayStatus.FAILED,
        reference=seti.get("id"),
        decline=_decline(error) if error else CANCELED_SETUP,
        raw={"id": seti.get("id"), "status": seti.get("status")},
    )


def setup_result(seti: dict[str, Any], card: CardDetails | None = None) -> SetupResult:
    """A Stripe SetupIntent as the Gateway Protocol's SetupResult; ``card``: its payment
    method, read once it succeeded (Stripe attaches it to the SetupIntent's customer)."""
    status = _SETUP_STATUS[str(seti["status"])]
    error = seti.get("last_setup_error")
    if status is GatewayStatus.FAILED and not error:
        status = GatewayStatus.OPEN
    next_action = seti.get("next_action")
    if next_action is not None:
        next_action = dict(next_action)
        next_action.setdefault("client_secret", seti.get("client_secret"))
    return SetupResult(
        status=status,
        reference=seti.get("id"),
        card=card if status is GatewayStatus.SUCCEEDED else None,
        decline=_decline(error) if status is GatewayStatus.FAILED else None,
        next_action=next_action if status is GatewayStatus.REQUIRES_ACTION else None,
        raw={"id": seti.get("id"), "status": seti.get("status")},
    )
