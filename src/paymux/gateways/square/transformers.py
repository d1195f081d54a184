"""Pure mapping between Square's JSON and the Gateway Protocol's types. No I/O.

Everything here takes or returns Square's wire JSON (the shapes in Square's ``api.json``, which
the SDK's models dump to with ``by_alias=True``, and which webhooks carry), so the same
functions parse an API answer, an error body and a webhook event.

- Amounts: Square counts in the currency's smallest denomination, which for every currency
  Square processes is ISO 4217's minor unit (JPY is zero-decimal at both).
- Statuses: every Payment, PaymentRefund and Dispute status Square documents is mapped
  explicitly; an unknown one raises (KeyError / ValueError) rather than guessing.
- Idempotency keys: Square takes at most 45 characters (``square_idempotency_key``).
- Errors: ``classify_error`` sorts an error answer into decline / rate limit / unavailable /
  invalid request, and ``decline_from_errors`` picks the Decline out of a declined answer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from enum import StrEnum
from typing import Any, assert_never

from paymux.domain.errors import ERRORS, ErrorType
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
    ThreeDSecure,
    card_bin,
)
from paymux.gateways.square.errors import ROWS
from paymux.money import Money, get_currency

__all__ = [
    "DECLINE_CODES",
    "SQUARE_CURRENCIES",
    "VERIFICATION_REQUIRED",
    "ErrorKind",
    "amount_problem",
    "capture_plan",
    "card_details",
    "card_params",
    "classify_error",
    "create_payment_params",
    "customer_params",
    "decline_from_errors",
    "declined_result",
    "dispute_update",
    "error_summary",
    "from_square",
    "interpret_event",
    "payment_result",
    "pick_lookup",
    "pick_refund",
    "refund_error_result",
    "refund_params",
    "refund_result",
    "refused_capture_result",
    "restore_amount_params",
    "square_idempotency_key",
    "to_square",
    "update_amount_params",
    "verification_missing",
    "with_buyer_verification",
]

GATEWAY = "square"

# Square processes payments only in the currency of the seller's country: US, CA, GB, AU, JP
# and the euro countries it serves (IE, FR, ES). Its smallest denomination per currency, which
# equals the ISO 4217 exponent for all six (checked by a unit test); none is three-decimal.
SQUARE_CURRENCIES: dict[str, int] = {
    "USD": 2,
    "CAD": 2,
    "GBP": 2,
    "AUD": 2,
    "EUR": 2,
    "JPY": 0,
}

MAX_IDEMPOTENCY_KEY = 45  # CreatePayment, UpdatePayment (api.json maxLength)
_KEY_PREFIX = 28  # 28 readable characters + "~" + 16 hex digits of SHA-256 = 45

# Square error codes that are a payer's problem, not ours: every row of the square code table
# whose code is a card error, except TEMPORARY_ERROR (an outage, retried with the same key).
DECLINE_CODES: frozenset[str] = frozenset(
    gateway_code
    for gateway_code, code, _ in ROWS
    if ERRORS[code].type is ErrorType.CARD_ERROR and gateway_code != "TEMPORARY_ERROR"
)
_RETRYABLE_CODES = frozenset(
    {
        "TEMPORARY_ERROR",
        "INTERNAL_SERVER_ERROR",
        "SERVICE_UNAVAILABLE",
        "GATEWAY_TIMEOUT",
        "BAD_GATEWAY",
        "REQUEST_TIMEOUT",
        "CONFLICT",
        "VERSION_MISMATCH",  # UpdatePayment/CompletePayment raced a change: read it again
    }
)


# -- idempotency ----------------------------------------------------------------------------
def square_idempotency_key(key: str, step: str | None = None) -> str:
    """The key Square gets for paymux's ``key`` (and an optional sub-step of one call).

    Square limits idempotency keys to 45 characters. paymux's keys are
    ``<our object id>:<step>[:...]`` and mostly fit (``pi_...:authorize:1`` is 39); those are
    sent as they are, readable in Square's logs. A longer key (or one that is not plain
    ASCII, or contains ``~``) becomes its first 28 characters, ``~`` and the first 16 hex
    digits of its SHA-256: deterministic (a retry sends the same key), still distinct per
    object and step, and never equal to a key sent as is (those have no ``~``).
    """
    full = key if step is None else f"{key}:{step}"
    if full.isascii() and "~" not in full and 0 < len(full) <= MAX_IDEMPOTENCY_KEY:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    prefix = "".join(c for c in full if c.isascii() and c.isprintable() and c != "~")
    return f"{prefix[:_KEY_PREFIX]}~{digest}"


# -- amounts ----------------------------------------------------------------------------------
def amount_problem(money: Money) -> str | None:
    """Why Square can't take this amount exactly, or None."""
    exponent = SQUARE_CURRENCIES.get(money.currency)
    if exponent is None:
        return (
            f"Square processes only {', '.join(sorted(SQUARE_CURRENCIES))} "
            f"(the seller's own currency), not {money.currency}."
        )
    if exponent != get_currency(money.currency).exponent:  # pragma: no cover - table guard
        return f"Square counts {money.currency} differently from ISO 4217."
    return None


def to_square(money: Money) -> dict[str, Any]:
    """A Square Money object (``amount`` in the smallest denomination, ``currency``)."""
    problem = amount_problem(money)
    if problem:
        raise ValueError(problem)
    return {"amount": money.amount, "currency": money.currency}


def from_square(money: Any) -> int:
    """Minor units from a Square Money object (absent: 0)."""
    if not isinstance(money, dict):
        return 0
    return int(money.get("amount") or 0)


# -- requests ---------------------------------------------------------------------------------
def create_payment_params(
    request: AuthorizeRequest, *, location_id: str | None, idempotency_key: str
) -> dict[str, Any]:
    """Keyword arguments for ``payments.create`` (CreatePayment)."""
    params: dict[str, Any] = {
        "source_id": request.payment_method_token,
        "idempotency_key": square_idempotency_key(idempotency_key),
        "amount_money": to_square(request.amount),
        "autocomplete": request.capture,
        "reference_id": request.reference[:40],
    }
    if location_id:
        params["location_id"] = location_id
    if request.customer_token:
        params["customer_id"] = request.customer_token
    if request.description:
        params["note"] = request.description[:500]
    if request.statement_descriptor:
        params["statement_description_identifier"] = request.statement_descriptor[:20]
    if request.verification_token:
        # The Web Payments SDK's verifyBuyer() token (SCA / 3-D Secure for the buyer).
        params["verification_token"] = request.verification_token
    if request.off_session:
        # A merchant-initiated charge of a card on file (CreatePayment's customer_details;
        # Square takes no network transaction reference: it keeps the card's own).
        params["customer_details"] = {"customer_initiated": False}
    return params


# Square's code for a payment its issuer would refuse without buyer verification (errors.py
# maps it to authentication_required).
VERIFICATION_REQUIRED = "CARD_DECLINED_VERIFICATION_REQUIRED"
_ASKS_VERIFICATION = frozenset({"any", "challenge"})


def verification_missing(request: AuthorizeRequest) -> GatewayResult | None:
    """3-D Secure was asked for (``any`` or ``challenge``) but the confirmation carries no
    verifyBuyer token: Square can only authenticate the buyer in the browser (its Web Payments
    SDK), so the payment is refused before any call, as authentication_required (the payer
    confirms again after verifyBuyer). None: go ahead."""
    if (
        request.off_session  # merchant-initiated: no buyer there to verify, none asked
        or request.request_three_d_secure not in _ASKS_VERIFICATION
        or request.verification_token
    ):
        return None
    return GatewayResult(
        status=GatewayStatus.FAILED,
        reference=None,
        decline=Decline(
            gateway_code=VERIFICATION_REQUIRED,
            message="3-D Secure was requested: confirm with a verifyBuyer verification_token.",
        ),
        raw={"id": None, "status": "FAILED"},
    )


def with_buyer_verification(request: AuthorizeRequest, result: GatewayResult) -> GatewayResult:
    """A payment Square approved with a verifyBuyer token: buyer verification ran, but its
    outcome stays unknown (``result`` None): a token exists whatever the issuer answered
    (authenticated, attempted, exempted, or no 3-D Secure at all), and Square's Payment
    reports neither the result, the flow nor the liability shift."""
    approved = result.status in (GatewayStatus.REQUIRES_CAPTURE, GatewayStatus.SUCCEEDED)
    if not (request.verification_token and approved):
        return result
    return replace(result, three_d_secure=ThreeDSecure(result=None))


def _amount_change(
    payment: dict[str, Any], amount: Money, idempotency_key: str, step: str
) -> dict[str, Any]:
    """UpdatePayment of an approved payment's amount, at the version read. The key names the
    step and that version: sent again in the same state it is the same request (Square
    replays it); from another state (after a restore, say) it is a new one."""
    update: dict[str, Any] = {"amount_money": to_square(amount)}
    version = payment.get("version_token")
    if version:
        update["version_token"] = version
    return {
        "payment_id": str(payment["id"]),
        "idempotency_key": square_idempotency_key(
            idempotency_key, f"{step}:{version}" if version else step
        ),
        "payment": update,
    }


def update_amount_params(
    payment: dict[str, Any], amount: Money, *, idempotency_key: str
) -> dict[str, Any]:
    """Keyword arguments for ``payments.update`` lowering an approved payment's amount."""
    return _amount_change(payment, amount, idempotency_key, "amount")


def restore_amount_params(
    lowered: dict[str, Any], original: Money, *, idempotency_key: str
) -> dict[str, Any]:
    """Keyword arguments for ``payments.update`` putting back the amount a partial capture
    lowered, when Square then refused to complete the payment."""
    return _amount_change(lowered, original, idempotency_key, "restore")


REFUND_REASON_MARK = re.compile(r"\s*\[paymux (?P<id>re_[A-Za-z0-9]+)\]\s*$")


def refund_params(
    payment_id: str,
    amount: Money,
    reason: str | None,
    *,
    idempotency_key: str,
    our_id: str | None,
) -> dict[str, Any]:
    """Keyword arguments for ``refunds.refund_payment``.

    A Square refund has no metadata, so our refund id rides in ``reason`` (shown to the seller
    in Square's dashboard) as ``"<reason> [paymux re_...]"``: a refund webhook that arrives
    before paymux has stored Square's refund id still finds our refund."""
    text = reason or "refund"
    if our_id:
        text = f"{text} [paymux {our_id}]"
    return {
        "idempotency_key": square_idempotency_key(idempotency_key),
        "amount_money": to_square(amount),
        "payment_id": payment_id,
        "reason": text[:192],
    }


def customer_params(reference: str, email: str | None, *, idempotency_key: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "idempotency_key": square_idempotency_key(idempotency_key),
        "reference_id": reference,
    }
    if email:
        params["email_address"] = email
    return params


def card_params(
    token: str,
    customer_token: str,
    *,
    idempotency_key: str,
    verification_token: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``cards.create``: a card on file from a Web Payments SDK token,
    with the buyer's verification for storing it (verifyBuyer, intent STORE) when given."""
    params: dict[str, Any] = {
        "idempotency_key": square_idempotency_key(idempotency_key),
        "source_id": token,
        "card": {"customer_id": customer_token},
    }
    if verification_token:
        params["verification_token"] = verification_token
    return params


# -- payments ---------------------------------------------------------------------------------
class PaymentStatus(StrEnum):
    APPROVED = "APPROVED"
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"


def _status(status: PaymentStatus) -> GatewayStatus:
    match status:
        case PaymentStatus.APPROVED:
            return GatewayStatus.REQUIRES_CAPTURE
        case PaymentStatus.PENDING:
            return GatewayStatus.PROCESSING
        case PaymentStatus.COMPLETED:
            return GatewayStatus.SUCCEEDED
        case PaymentStatus.CANCELED:
            return GatewayStatus.CANCELED
        case PaymentStatus.FAILED:
            return GatewayStatus.FAILED
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate


_RISK = {"PENDING": None, "NORMAL": "normal", "MODERATE": "elevated", "HIGH": "highest"}


def _errors(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def decline_from_errors(errors: list[dict[str, Any]]) -> Decline:
    """The Decline in a list of Square errors: the first payment-method error (Square lists
    INSUFFICIENT_FUNDS before GIFT_CARD_AVAILABLE_AMOUNT), else the first declining code."""
    chosen = next((e for e in errors if e.get("category") == "PAYMENT_METHOD_ERROR"), None)
    if chosen is None:
        chosen = next((e for e in errors if e.get("code") in DECLINE_CODES), None)
    if chosen is None:
        return Decline(gateway_code="GENERIC_DECLINE", message="The card was declined.")
    return Decline(
        gateway_code=str(chosen.get("code") or "GENERIC_DECLINE"),
        message=str(chosen.get("detail") or "The card was declined."),
    )


def payment_result(payment: dict[str, Any]) -> GatewayResult:
    """A Square Payment (API answer or webhook ``data.object.payment``)."""
    status = _status(PaymentStatus(str(payment["status"])))
    amount = from_square(payment.get("amount_money"))
    decline = None
    authorized = captured = 0
    match status:
        case GatewayStatus.REQUIRES_CAPTURE:
            authorized = amount or from_square(payment.get("approved_money"))
        case GatewayStatus.SUCCEEDED:
            authorized = captured = amount
        case GatewayStatus.FAILED:
            card = payment.get("card_details") or {}
            decline = decline_from_errors(_errors(card))
        case (
            GatewayStatus.PROCESSING
            | GatewayStatus.CANCELED
            | GatewayStatus.REQUIRES_ACTION
            | GatewayStatus.OPEN
        ):
            pass
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate
    risk = (payment.get("risk_evaluation") or {}).get("risk_level")
    return GatewayResult(
        status=status,
        reference=payment.get("id"),
        amount_authorized=authorized,
        amount_captured=captured,
        decline=decline,
        risk_level=_RISK.get(str(risk)),  # no risk_evaluation: "None", not in the table
        raw={"id": payment.get("id"), "status": payment.get("status")},
    )


def declined_result(body: Any) -> GatewayResult:
    """A declined CreatePayment: Square answers 4xx with ``errors`` and usually the FAILED
    ``payment`` (whose id paymux keeps as the attempt's reference)."""
    payment = body.get("payment") if isinstance(body, dict) else None
    reference = payment.get("id") if isinstance(payment, dict) else None
    return GatewayResult(
        status=GatewayStatus.FAILED,
        reference=reference,
        decline=decline_from_errors(_errors(body)),
        raw={"id": reference, "status": "FAILED"},
    )


def refused_capture_result(payment_id: str, body: Any) -> GatewayResult:
    """CompletePayment refused with a decline: the payment is still APPROVED (held), the
    capture failed."""
    return GatewayResult(
        status=GatewayStatus.FAILED,
        reference=payment_id,
        decline=decline_from_errors(_errors(body)),
        raw={"id": payment_id, "status": "APPROVED", "refused": "complete"},
    )


def pick_lookup(payments: list[dict[str, Any]], our_reference: str) -> dict[str, Any] | None:
    """The newest payment made for our intent (``reference_id``, cut to Square's 40
    characters as ``create_payment_params`` sends it)."""
    reference = our_reference[:40]
    mine = [p for p in payments if p.get("reference_id") == reference and p.get("id")]
    if not mine:
        return None
    return max(mine, key=lambda p: (str(p.get("created_at") or ""), str(p["id"])))


def pick_refund(refunds: list[dict[str, Any]], our_id: str) -> dict[str, Any] | None:
    """Our refund (its reason carries ``[paymux <our id>]``) among a payment's refunds."""

    def ours(refund: dict[str, Any]) -> bool:
        mark = REFUND_REASON_MARK.search(str(refund.get("reason")))  # None: "None", no mark
        return mark is not None and mark.group("id") == our_id

    mine = [r for r in refunds if ours(r)]
    if not mine:
        return None
    return max(mine, key=lambda r: (str(r.get("created_at") or ""), str(r.get("id"))))


def capture_plan(payment: dict[str, Any], amount: Money) -> str:
    """What capturing ``amount`` of this payment takes: ``"done"`` (nothing: it is no longer
    APPROVED, e.g. a retry after the capture happened), ``"complete"``, or
    ``"update_then_complete"`` (a partial capture: Square completes a payment only in full,
    but an APPROVED card payment with the EDIT_AMOUNT_DOWN capability can first be lowered
    with UpdatePayment). Raises ValueError with a paymux code when Square can't do it."""
    if payment.get("status") != PaymentStatus.APPROVED:
        return "done"
    authorized = from_square(payment.get("amount_money"))
    if amount.amount > authorized:
        raise ValueError("amount_to_capture_too_large")
    if amount.amount == authorized:
        return "complete"
    if "EDIT_AMOUNT_DOWN" not in (payment.get("capabilities") or []):
        raise ValueError("partial_capture_not_supported")
    return "update_then_complete"


# -- refunds ----------------------------------------------------------------------------------
class RefundStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"


def _refund_status(status: RefundStatus) -> tuple[str, str | None]:
    match status:
        case RefundStatus.PENDING:
            return "pending", None
        case RefundStatus.COMPLETED:
            return "succeeded", None
        case RefundStatus.REJECTED:
            return "failed", "declined"
        case RefundStatus.FAILED:
            return "failed", "unknown"
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate


def refund_result(refund: dict[str, Any]) -> GatewayRefund:
    """A Square PaymentRefund (API answer or webhook ``data.object.refund``)."""
    status, failure = _refund_status(RefundStatus(str(refund.get("status") or "PENDING")))
    text = str(refund.get("reason") or "")
    mark = REFUND_REASON_MARK.search(text)
    reason = text[: mark.start()] if mark else text
    return GatewayRefund(
        status=status,
        reference=refund.get("id"),
        amount=from_square(refund.get("amount_money")),
        failure_reason=failure,
        payment_reference=refund.get("payment_id"),
        our_id=mark.group("id") if mark else None,
        reason=reason or None,
    )


def refund_error_result(body: Any, amount: Money) -> GatewayRefund:
    """A refund Square refused with a REFUND_ERROR (e.g. REFUND_DECLINED): data, not a bug."""
    errors = _errors(body)
    reason = str(errors[0].get("code")).lower() if errors else "refund_error"
    return GatewayRefund(
        status="failed", reference=None, amount=amount.amount, failure_reason=reason
    )


# -- cards --------------------------------------------------------------------------------------
_BRANDS = {
    "VISA": "visa",
    "MASTERCARD": "mastercard",
    "AMERICAN_EXPRESS": "amex",
    "DISCOVER": "discover",
    "DISCOVER_DINERS": "diners",
    "JCB": "jcb",
    "CHINA_UNIONPAY": "unionpay",
    "SQUARE_GIFT_CARD": "square_gift_card",
    "SQUARE_CAPITAL_CARD": "square_capital_card",
    "INTERAC": "interac",
    "EFTPOS": "eftpos_au",
    "FELICA": "felica",
    "EBT": "ebt",
    "OTHER_BRAND": "unknown",
}
_FUNDING = {"CREDIT": "credit", "DEBIT": "debit", "UNKNOWN_CARD_TYPE": "unknown"}


def card_details(card: dict[str, Any]) -> CardDetails:
    """A Square Card (card on file, ``ccof:...``); its ``bin`` where Square gives it (the
    Payments API's card does). Square's CVV and AVS results come only with a payment, after
    paymux decides: not read here."""
    funding = _FUNDING.get(str(card.get("card_type")))
    if card.get("prepaid_type") == "PREPAID":
        funding = "prepaid"
    return CardDetails(
        token=str(card["id"]),
        brand=_BRANDS.get(str(card["card_brand"]), "unknown") if "card_brand" in card else None,
        last4=card.get("last_4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        fingerprint=card.get("fingerprint"),
        funding=funding,  # type "card" and country None: CardDetails' defaults
        bin=card_bin(card.get("bin")),
    )


# -- errors -------------------------------------------------------------------------------------
class ErrorKind(StrEnum):
    DECLINE = "decline"
    REFUND_ERROR = "refund_error"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INVALID = "invalid"


def classify_error(status: int | None, body: Any) -> ErrorKind:
    """What a Square error answer means for paymux (before any call-specific handling)."""
    errors = _errors(body)
    codes = {str(e.get("code")) for e in errors}
    categories = {str(e.get("category")) for e in errors}
    if status == 429 or "RATE_LIMITED" in codes or "RATE_LIMIT_ERROR" in categories:
        return ErrorKind.RATE_LIMITED
    if status is None or status < 400 or status >= 500 or status in (408, 409):
        return ErrorKind.UNAVAILABLE
    if codes & _RETRYABLE_CODES:
        return ErrorKind.UNAVAILABLE
    if "PAYMENT_METHOD_ERROR" in categories or codes & DECLINE_CODES:
        return ErrorKind.DECLINE
    if "REFUND_ERROR" in categories:
        return ErrorKind.REFUND_ERROR
    return ErrorKind.INVALID


def error_summary(body: Any) -> tuple[str, str]:
    """(code, message) of an error answer, for GatewayInvalidRequest."""
    errors = _errors(body)
    if not errors:
        return "api_error", "Square answered with an error and no error list."
    first = errors[0]
    code = str(first.get("code") or "api_error")
    detail = str(first.get("detail") or code)
    field = first.get("field")
    return code, f"{detail} (field: {field})" if field else detail


# -- webhooks -------------------------------------------------------------------------------------
_DISPUTE_STATES = {
    "INQUIRY_EVIDENCE_REQUIRED": "warning_needs_response",
    "INQUIRY_PROCESSING": "warning_under_review",
    "INQUIRY_CLOSED": "warning_closed",
    "EVIDENCE_REQUIRED": "needs_response",
    "PROCESSING": "under_review",
    "WON": "won",
    "LOST": "lost",
    "ACCEPTED": "lost",
}
_PAYMENT_EVENTS = frozenset({"payment.created", "payment.updated"})
_REFUND_EVENTS = frozenset({"refund.created", "refund.updated"})
_DISPUTE_EVENTS = frozenset({"dispute.created", "dispute.state.changed", "dispute.state.updated"})


def dispute_update(dispute: dict[str, Any]) -> DisputeUpdate:
    money = dispute.get("amount_money") or {}
    return DisputeUpdate(
        reference=str(dispute.get("id") or dispute.get("dispute_id")),
        payment_reference=(dispute.get("disputed_payment") or {}).get("payment_id"),
        amount=from_square(money),
        currency=str(money.get("currency") or ""),
        reason=str(dispute["reason"]).lower() if dispute.get("reason") else None,
        status=_DISPUTE_STATES[str(dispute.get("state"))],
    )


def interpret_event(event: InboundEvent) -> PaymentUpdate | RefundUpdate | DisputeUpdate | None:
    """payment.created/updated, refund.created/updated and dispute events; None for others
    (and for payment.created of a payment that was declined on creation)."""
    data = event.payload.get("data") or {}
    obj = data.get("object") or {}
    if event.type in _PAYMENT_EVENTS and isinstance(obj.get("payment"), dict):
        payment = obj["payment"]
        if event.type == "payment.created" and payment.get("status") == PaymentStatus.FAILED:
            # A decline: CreatePayment itself answered it (a lost answer is replayed by the
            # same idempotency key). Applied late, it would land on the payer's next attempt
            # on the same intent (a new Square payment with the same reference_id).
            return None
        return PaymentUpdate(reference=payment.get("reference_id"), result=payment_result(payment))
    if event.type in _REFUND_EVENTS and isinstance(obj.get("refund"), dict):
        return RefundUpdate(refund=refund_result(obj["refund"]))
    if event.type in _DISPUTE_EVENTS and isinstance(obj.get("dispute"), dict):
        return dispute_update(obj["dispute"])
    return None
