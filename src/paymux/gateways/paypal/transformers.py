"""Pure mapping between PayPal's REST JSON (Orders v2, Payments v2, Vault v3, webhooks) and the
Gateway Protocol's types. No I/O: tested with PayPal's documented shapes and with the
placeholder bodies Prism builds from PayPal's OpenAPI specs.

Reference rules (what ``GatewayResult.reference`` holds, i.e. what paymux stores as the
payment's ``gateway_reference`` and hands back to capture/void/refund):

- an order opened at create, or a payment that failed before any money moved: the order id;
- an authorized payment (intent AUTHORIZE): the authorization id (capture and void use it);
- a captured payment: the capture id (refund uses it);
- a void: the authorization id.

Payment method tokens (``AuthorizeRequest.payment_method_token``):

- ``<order id>``: an order the buyer approved with the PayPal JS SDK; confirming captures or
  authorizes that order;
- ``<kind>:<vault id>`` (kind ``paypal``, ``card`` or ``venmo``): a Vault v3 payment token,
  charged with a new order whose ``payment_source.<kind>.vault_id`` is the id. PayPal ids
  never contain ``:``, so the two forms can't be confused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar, assert_never

from paymux.domain.errors import ERRORS, ErrorType
from paymux.gateways.base import (
    AuthorizeRequest,
    CardDetails,
    Decline,
    DisputeUpdate,
    GatewayRefund,
    GatewayResult,
    GatewayStatus,
    GatewayUnavailable,
    InboundEvent,
    PaymentUpdate,
    RefundUpdate,
    SetupRequest,
    SetupResult,
    ThreeDSecure,
    card_bin,
)
from paymux.gateways.paypal.errors import ROWS
from paymux.money import Money, MoneyError

__all__ = [
    "REQUEST_ID_MAX",
    "SUPPORTED_CURRENCIES",
    "THREE_DS_REFUSED",
    "VAULT_KINDS",
    "ZERO_DECIMAL",
    "ApiError",
    "AuthorizationStatus",
    "CaptureStatus",
    "DisputeOutcome",
    "DisputeStatus",
    "OrderStatus",
    "RefundStatus",
    "UnknownStatus",
    "amount_problem",
    "api_error",
    "authentication_refusal",
    "authorization_result",
    "canceled_result",
    "capture_request",
    "capture_result",
    "captured_authorization_result",
    "card_details_from_order",
    "card_details_from_vault",
    "card_order_request",
    "customer_reference",
    "decline_for",
    "dispute_update",
    "from_paypal",
    "interpret_event",
    "is_decline",
    "money",
    "open_request",
    "order_cancel_plan",
    "order_currency",
    "order_refund",
    "order_result",
    "order_status",
    "order_wants_capture",
    "payment_token_request",
    "refund_request",
    "refund_result",
    "related_order_id",
    "request_id",
    "setup_pending_result",
    "setup_token_request",
    "split_vault_token",
    "three_d_secure",
    "to_paypal",
    "update_order_patch",
    "vault_order_request",
    "vault_token",
    "verification_method",
]

GATEWAY = "paypal"

# developer.paypal.com/api/rest/reference/currency-codes/
SUPPORTED_CURRENCIES = frozenset(
    {
        "AUD", "BRL", "CAD", "CNY", "CZK", "DKK", "EUR", "HKD", "HUF", "ILS", "JPY", "MYR",
        "MXN", "TWD", "NZD", "NOK", "PHP", "PLN", "GBP", "SGD", "SEK", "CHF", "THB", "USD",
    }
)  # fmt: skip
# PayPal takes these in whole units ("1050"), whatever ISO 4217 says (HUF and TWD have 2).
ZERO_DECIMAL = frozenset({"HUF", "JPY", "TWD"})
VAULT_KINDS = frozenset({"paypal", "card", "venmo"})
REQUEST_ID_MAX = 108  # PayPal-Request-Id maxLength in the Orders spec


class UnknownStatus(GatewayUnavailable):
    """PayPal answered with a status this connector does not know: the outcome is unknown
    (so paymux keeps the attempt pending and asks again later)."""


class OrderStatus(StrEnum):
    CREATED = "CREATED"
    SAVED = "SAVED"
    APPROVED = "APPROVED"
    VOIDED = "VOIDED"
    COMPLETED = "COMPLETED"
    PAYER_ACTION_REQUIRED = "PAYER_ACTION_REQUIRED"


class CaptureStatus(StrEnum):
    COMPLETED = "COMPLETED"
    DECLINED = "DECLINED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    PENDING = "PENDING"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"


class AuthorizationStatus(StrEnum):
    CREATED = "CREATED"
    CAPTURED = "CAPTURED"
    DENIED = "DENIED"
    PARTIALLY_CAPTURED = "PARTIALLY_CAPTURED"
    VOIDED = "VOIDED"
    PENDING = "PENDING"


class RefundStatus(StrEnum):
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"


E = TypeVar("E", bound=StrEnum)


def _status(enum: type[E], value: Any) -> E:
    try:
        return enum(str(value))
    except ValueError:
        raise UnknownStatus(f"paypal: unknown {enum.__name__} {value!r}") from None


# -- amounts -------------------------------------------------------------------------------


def amount_problem(amount: Money) -> str | None:
    """Why PayPal can't take this amount exactly, or None."""
    if amount.currency not in SUPPORTED_CURRENCIES:
        return f"PayPal does not support {amount.currency}."
    exponent = amount.currency_info.exponent
    if amount.currency in ZERO_DECIMAL and exponent and amount.amount % 10**exponent:
        return (
            f"PayPal takes {amount.currency} in whole units; "
            f"{amount.to_decimal_string()} {amount.currency} isn't."
        )
    return None


def to_paypal(amount: Money) -> str:
    """PayPal's decimal string: the ISO decimals, except whole units for HUF, JPY, TWD."""
    exponent = amount.currency_info.exponent
    if amount.currency in ZERO_DECIMAL and exponent:
        return str(amount.amount // 10**exponent)
    return amount.to_decimal_string()


def money(amount: Money) -> dict[str, str]:
    return {"currency_code": amount.currency, "value": to_paypal(amount)}


def from_paypal(value: Any) -> int | None:
    """Minor units from PayPal's ``{currency_code, value}``; None when it isn't an amount
    (Prism's placeholders are ``{"currency_code": "str", "value": "string"}``)."""
    if not isinstance(value, dict):
        return None
    try:
        return Money.parse(str(value.get("value")), str(value.get("currency_code"))).amount
    except MoneyError:
        return None


# -- requests ------------------------------------------------------------------------------


def request_id(idempotency_key: str) -> str:
    """The PayPal-Request-Id for one of our keys (our object id + step): the key itself when
    it fits PayPal's 108 characters, else a digest of it (still one per key)."""
    if len(idempotency_key) <= REQUEST_ID_MAX:
        return idempotency_key
    return "pmx-" + hashlib.sha256(idempotency_key.encode()).hexdigest()


def _purchase_unit(
    amount: Money, reference: str, description: str | None, descriptor: str | None
) -> dict[str, Any]:
    unit: dict[str, Any] = {"amount": money(amount), "custom_id": reference}
    if description:
        unit["description"] = description[:127]
    if descriptor:
        unit["soft_descriptor"] = descriptor[:22]
    return unit


def open_request(amount: Money, reference: str, capture: bool) -> dict[str, Any]:
    """The order created at our create, for the buyer to approve with the PayPal JS SDK."""
    return {
        "intent": "CAPTURE" if capture else "AUTHORIZE",
        "purchase_units": [_purchase_unit(amount, reference, None, None)],
    }


def split_vault_token(token: str) -> tuple[str, str] | None:
    """``(kind, vault id)`` for a vault token, None for an order id."""
    kind, sep, vault_id = token.partition(":")
    if not sep:
        return None
    if kind not in VAULT_KINDS or not vault_id:
        raise ValueError(f"not a PayPal payment method token: {token!r}")
    return kind, vault_id


def vault_token(kind: str, vault_id: str) -> str:
    return f"{kind}:{vault_id}"


# payment_method_options[card][request_three_d_secure] in PayPal's words (Orders v2
# ``payment_source.card.attributes.verification.method``): SCA_ALWAYS asks for 3-D Secure on
# every card, SCA_WHEN_REQUIRED only where the region mandates it.
_VERIFICATION = {"any": "SCA_ALWAYS", "challenge": "SCA_ALWAYS", "automatic": "SCA_WHEN_REQUIRED"}
# PayPal's network_transaction_reference.id: 9 to 36 characters (checkout_orders_v2 spec).
_NETWORK_ID_LENGTH = range(9, 37)


def verification_method(option: str | None) -> str | None:
    """The verification method for a 3-D Secure option; None: PayPal's default."""
    return _VERIFICATION.get(option) if option else None


def card_order_request(
    amount: Money, reference: str, capture: bool, three_d_secure: str | None
) -> dict[str, Any]:
    """The order the JS SDK's card fields (``paypal.CardFields``) pay: ours (``custom_id``),
    for a card entered in PayPal's fields, with 3-D Secure asked as the payment's option says
    (SCA_WHEN_REQUIRED by default: where the region mandates it). PayPal runs the
    authentication when the page submits the fields; its ``authentication_result`` is read
    before the capture (``completion_refusal``)."""
    method = verification_method(three_d_secure) or "SCA_WHEN_REQUIRED"
    return {
        "intent": "CAPTURE" if capture else "AUTHORIZE",
        "purchase_units": [_purchase_unit(amount, reference, None, None)],
        "payment_source": {"card": {"attributes": {"verification": {"method": method}}}},
    }


def vault_order_request(request: AuthorizeRequest, kind: str, vault_id: str) -> dict[str, Any]:
    """An order charged at once with a saved (vaulted) payment method."""
    source: dict[str, Any] = {"vault_id": vault_id}
    if kind == "card":
        # A stored card used again: merchant-initiated when off-session (RECURRING for an
        # invoice's, e.g. a renewal, else UNSCHEDULED), referencing the card's first
        # customer-initiated payment when PayPal returned its network id.
        merchant = request.off_session
        stored: dict[str, Any] = {
            "payment_initiator": "MERCHANT" if merchant else "CUSTOMER",
            "payment_type": "RECURRING" if merchant and request.recurring else "UNSCHEDULED",
            "usage": "SUBSEQUENT",
        }
        previous = request.network_transaction_id
        if request.off_session and previous and len(previous) in _NETWORK_ID_LENGTH:
            stored["previous_network_transaction_reference"] = {"id": previous}
        source["stored_credential"] = stored
        method = verification_method(request.request_three_d_secure)
        if method and not request.off_session:
            source["attributes"] = {"verification": {"method": method}}
            if request.return_url:
                # Where PayPal sends the payer back after its payer-action (3-D Secure) page.
                source["experience_context"] = {
                    "return_url": request.return_url,
                    "cancel_url": request.return_url,
                }
    return {
        "intent": "CAPTURE" if request.capture else "AUTHORIZE",
        "purchase_units": [
            _purchase_unit(
                request.amount,
                request.reference,
                request.description,
                request.statement_descriptor,
            )
        ],
        "payment_source": {kind: source},
    }


def capture_request(amount: Money) -> dict[str, Any]:
    """Capture (part of) an authorization; paymux captures once, so it is the final one."""
    return {"amount": money(amount), "final_capture": True}


def refund_request(amount: Money | None, our_id: str | None) -> dict[str, Any]:
    """A refund of ``amount`` (None: what remains of the capture), tagged with our refund id."""
    body: dict[str, Any] = {}
    if amount is not None:
        body["amount"] = money(amount)
    if our_id:
        body["custom_id"] = our_id
    return body


def payment_token_request(setup_token: str) -> dict[str, Any]:
    """Exchange a setup token the buyer approved for a payment token (Vault v3).

    ``SETUP_TOKEN`` is the type PayPal's API takes today (PayPal's own server SDKs name only
    it); the 2024-02 OpenAPI snapshot under shared/specs lists only ``BILLING_AGREEMENT``.
    """
    return {"payment_source": {"token": {"id": setup_token, "type": "SETUP_TOKEN"}}}


def customer_reference(reference: str) -> str:
    """A PayPal-shaped customer id (``^[0-9a-zA-Z_-]+$``, at most 22) made from our id."""
    digest = hashlib.sha256(reference.encode()).hexdigest()
    return f"pmx_{digest[:18]}"


# -- errors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiError:
    """An error answer: HTTP status, PayPal's ``name``, the first ``details[].issue``."""

    status: int
    name: str
    issue: str
    message: str
    debug_id: str | None


def api_error(status: int, body: Any, debug_id: str | None = None) -> ApiError:
    body = body if isinstance(body, dict) else {}
    name = str(body.get("name") or body.get("error") or f"HTTP_{status}")
    details = body.get("details")
    issue = name
    message = str(body.get("message") or body.get("error_description") or name)
    if isinstance(details, list) and details and isinstance(details[0], dict):
        first = details[0]
        issue = str(first.get("issue") or name)
        message = str(first.get("description") or message)
    return ApiError(status, name, issue, message, debug_id or body.get("debug_id"))


_OUR_CODE = {issue: code for issue, code, _ in ROWS}


def is_decline(issue: str) -> bool:
    """True when PayPal's issue is a payer-side refusal (a card error in our table)."""
    code = _OUR_CODE.get(issue)
    return code is not None and ERRORS[code].type is ErrorType.CARD_ERROR


def decline_for(error: ApiError) -> Decline | None:
    if error.status != 422 or not is_decline(error.issue):
        return None
    return Decline(gateway_code=error.issue, message=error.message)


# -- results -------------------------------------------------------------------------------


def _processor_decline(payment: dict[str, Any], fallback: str) -> Decline:
    response = payment.get("processor_response")
    code = response.get("response_code") if isinstance(response, dict) else None
    details = payment.get("status_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    gateway_code = str(code) if code and code != "0000" else fallback
    message = f"PayPal: {fallback.lower()}" + (f" ({reason})" if reason else "")
    return Decline(gateway_code=gateway_code, message=message)


def capture_result(
    capture: dict[str, Any],
    *,
    requested: int | None = None,
    failed_reference: str | None = None,
) -> GatewayResult:
    """A capture (Payments v2 or inside an order): its id is what refunds need. A refused one
    keeps ``failed_reference`` (the order to approve again, or the authorization)."""
    status = _status(CaptureStatus, capture.get("status"))
    amount = from_paypal(capture.get("amount"))
    if amount is None:
        amount = requested or 0
    decline = None
    match status:
        case CaptureStatus.COMPLETED | CaptureStatus.PARTIALLY_REFUNDED | CaptureStatus.REFUNDED:
            gateway_status = GatewayStatus.SUCCEEDED
        case CaptureStatus.PENDING:
            gateway_status = GatewayStatus.PROCESSING
        case CaptureStatus.DECLINED | CaptureStatus.FAILED:
            gateway_status = GatewayStatus.FAILED
            decline = _processor_decline(capture, status.value)
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate
    failed = gateway_status is GatewayStatus.FAILED
    return GatewayResult(
        status=gateway_status,
        reference=(failed_reference or capture.get("id")) if failed else capture.get("id"),
        amount_authorized=0 if failed else amount,
        amount_captured=amount if gateway_status is GatewayStatus.SUCCEEDED else 0,
        decline=decline,
        raw={"id": capture.get("id"), "status": status.value, "object": "capture"},
    )


def authorization_result(
    authorization: dict[str, Any],
    *,
    requested: int | None = None,
    failed_reference: str | None = None,
) -> GatewayResult:
    """An authorization: its id is what capture and void need."""
    status = _status(AuthorizationStatus, authorization.get("status"))
    amount = from_paypal(authorization.get("amount")) or requested or 0
    decline = None
    match status:
        case AuthorizationStatus.CREATED:
            gateway_status = GatewayStatus.REQUIRES_CAPTURE
        case AuthorizationStatus.PENDING:
            gateway_status = GatewayStatus.PROCESSING
        case AuthorizationStatus.CAPTURED | AuthorizationStatus.PARTIALLY_CAPTURED:
            gateway_status = GatewayStatus.SUCCEEDED
        case AuthorizationStatus.DENIED:
            gateway_status = GatewayStatus.FAILED
            decline = _processor_decline(authorization, status.value)
        case AuthorizationStatus.VOIDED:
            gateway_status = GatewayStatus.CANCELED
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate
    failed = gateway_status is GatewayStatus.FAILED
    return GatewayResult(
        status=gateway_status,
        reference=(failed_reference or authorization.get("id"))
        if failed
        else authorization.get("id"),
        amount_authorized=amount if gateway_status is GatewayStatus.REQUIRES_CAPTURE else 0,
        decline=decline,  # amount_captured: 0 (the default); its capture says what moved
        raw={"id": authorization.get("id"), "status": status.value, "object": "authorization"},
    )


# -- 3-D Secure: the authentication result, read before capture ----------------------------
# PayPal's recommended action for each (enrollment_status, authentication_status,
# liability_shift) of ``payment_source.card.authentication_result``, from "3D Secure response
# parameters" (developer.paypal.com/docs/checkout/advanced/customize/3d-secure/
# response-parameters/, "Recommended action"): True = continue with authorization
# (capture or authorize the order), False = do not continue. A combination the table doesn't
# list falls back to its liability_shift column: POSSIBLE / YES continue, NO / UNKNOWN don't.
_RECOMMENDED: dict[tuple[str | None, str | None, str | None], bool] = {
    ("Y", "Y", "POSSIBLE"): True,  # successful authentication
    ("Y", "N", "NO"): False,  # failed authentication
    ("Y", "R", "NO"): False,  # rejected authentication
    ("Y", "A", "POSSIBLE"): True,  # attempted authentication
    ("Y", "U", "UNKNOWN"): False,  # unable to complete authentication
    ("Y", "U", "NO"): False,
    ("Y", "C", "UNKNOWN"): False,  # challenge required, never completed
    ("Y", None, "NO"): False,  # enrolled, authentication never ran
    ("N", None, "NO"): True,  # card not enrolled
    ("U", None, "NO"): True,  # 3-D Secure system unavailable
    ("U", None, "UNKNOWN"): False,
    ("B", None, "NO"): True,  # bypassed
}
_CONTINUES = {"POSSIBLE": True, "YES": True, "NO": False, "UNKNOWN": False}
# Stripe's result for PayPal's authentication_status (pares_status); None: not run.
_RESULT = {
    "Y": "authenticated",
    "A": "attempt_acknowledged",
    "N": "failed",
    "R": "failed",
    "U": "processing_error",
    "C": "failed",  # a challenge was required and never completed
    "D": "failed",  # decoupled authentication never confirmed
    "I": "exempted",  # informational only: the requestor's preference acknowledged
}
# Stripe's result for a card that ran no authentication, by enrollment_status.
_NOT_RUN = {"N": "not_supported", "U": "processing_error", "B": "exempted"}
# Stripe's result_reason: by authentication_status, or by enrollment_status when none ran.
_REASON = {"R": "rejected", "C": "abandoned"}
_REASON_NOT_RUN = {"B": "bypassed", "N": "card_not_enrolled"}
# Our decline for a payment PayPal's table says not to continue (errors.py maps it to
# payment_intent_authentication_failure): a paymux code, not one of PayPal's.
THREE_DS_REFUSED = "PAYMUX_3DS_NOT_AUTHENTICATED"


def _authentication(order: dict[str, Any]) -> dict[str, Any] | None:
    source = order.get("payment_source")
    card = source.get("card") if isinstance(source, dict) else None
    found = card.get("authentication_result") if isinstance(card, dict) else None
    return found if isinstance(found, dict) else None


def _statuses(found: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    three_ds = found.get("three_d_secure")
    three_ds = three_ds if isinstance(three_ds, dict) else {}
    return (
        three_ds.get("enrollment_status"),
        three_ds.get("authentication_status"),
        found.get("liability_shift"),
    )


def three_d_secure(order: dict[str, Any]) -> ThreeDSecure | None:
    """The card's ``authentication_result`` in Stripe's words; None when none is there."""
    found = _authentication(order)
    if found is None:
        return None
    enrollment, status, shift = _statuses(found)
    if status:
        result, reason = _RESULT.get(status), _REASON.get(status)
    else:
        result, reason = _NOT_RUN.get(str(enrollment)), _REASON_NOT_RUN.get(str(enrollment))
    flow = found.get("authentication_flow")
    return ThreeDSecure(
        result=result,
        authentication_flow=str(flow).lower() if flow else None,
        result_reason=reason,
        liability_shift=None if shift in (None, "UNKNOWN") else shift in ("POSSIBLE", "YES"),
    )


def authentication_refusal(order: dict[str, Any]) -> Decline | None:
    """PayPal's recommended action for the order's card authentication (``_RECOMMENDED``):
    a Decline when it says not to continue, None to go ahead (no card, or no authentication
    result: nothing was asked)."""
    found = _authentication(order)
    if found is None:
        return None
    key = _statuses(found)
    goes_on = _RECOMMENDED.get(key, _CONTINUES.get(str(key[2]), False))
    if goes_on:
        return None
    enrollment, status, shift = key
    return Decline(
        gateway_code=THREE_DS_REFUSED,
        message=(
            "PayPal: 3-D Secure did not authenticate the card "
            f"(enrollment {enrollment}, authentication {status}, liability shift {shift})."
        ),
    )


def completion_refusal(order: dict[str, Any]) -> Decline | None:
    """The refusal to capture or authorize this order (``authentication_refusal``), only
    while it is APPROVED with no payment in it: an order already COMPLETED, or holding a
    capture or an authorization (completed by an earlier try whose answer was lost, before
    this check existed, or outside paymux) moved money, and is reported as it stands."""
    if order.get("status") != OrderStatus.APPROVED:
        return None
    payments = _first_unit(order).get("payments")
    if isinstance(payments, dict) and (payments.get("captures") or payments.get("authorizations")):
        return None
    return authentication_refusal(order)


def _network_id(payment: dict[str, Any]) -> str | None:
    reference = payment.get("network_transaction_reference")
    found = reference.get("id") if isinstance(reference, dict) else None
    return str(found) if found else None


def _payer_action(order: dict[str, Any]) -> dict[str, Any] | None:
    for link in order.get("links") or []:
        if isinstance(link, dict) and link.get("rel") in ("payer-action", "approve"):
            return {"type": "redirect_to_url", "redirect_to_url": {"url": link.get("href")}}
    return None


def _first_unit(order: dict[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units")
    if isinstance(units, list) and units and isinstance(units[0], dict):
        return units[0]
    return {}


def order_result(
    order: dict[str, Any], *, capture: bool | None = None, requested: int | None = None
) -> GatewayResult:
    """An order after create (with a vault token), capture, authorize or GET.

    The payment inside decides: the newest capture for intent CAPTURE, the newest
    authorization for AUTHORIZE (``capture`` overrides the order's intent); an order with no
    payment yet is mapped by its own status.
    """
    order_id = order.get("id")
    wants_capture = capture if capture is not None else order.get("intent") != "AUTHORIZE"
    payments = _first_unit(order).get("payments") or {}
    captures = [c for c in payments.get("captures") or [] if isinstance(c, dict)]
    authorizations = [a for a in payments.get("authorizations") or [] if isinstance(a, dict)]
    authenticated = three_d_secure(order)
    if wants_capture and captures:
        return replace(
            capture_result(captures[-1], requested=requested, failed_reference=order_id),
            three_d_secure=authenticated,
            network_transaction_id=_network_id(captures[-1]),
        )
    if authorizations:
        return replace(
            authorization_result(
                authorizations[-1], requested=requested, failed_reference=order_id
            ),
            three_d_secure=authenticated,
            network_transaction_id=_network_id(authorizations[-1]),
        )
    if captures:
        return replace(
            capture_result(captures[-1], requested=requested, failed_reference=order_id),
            three_d_secure=authenticated,
            network_transaction_id=_network_id(captures[-1]),
        )
    status = _status(OrderStatus, order.get("status"))
    next_action = None
    match status:
        case OrderStatus.PAYER_ACTION_REQUIRED:
            gateway_status = GatewayStatus.REQUIRES_ACTION  # 3-D Secure, or approval again
            next_action = _payer_action(order)
        case OrderStatus.CREATED | OrderStatus.SAVED | OrderStatus.APPROVED:
            # Nothing tried on it by us yet: opened for the buyer (CREATED), or approved and
            # waiting for our capture/authorize (APPROVED), which ``authorize`` sends when
            # called again for this order.
            gateway_status = GatewayStatus.OPEN
        case OrderStatus.VOIDED:
            gateway_status = GatewayStatus.CANCELED
        case OrderStatus.COMPLETED:
            gateway_status = (
                GatewayStatus.SUCCEEDED if wants_capture else GatewayStatus.REQUIRES_CAPTURE
            )
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate
    amount = from_paypal(_first_unit(order).get("amount")) or requested or 0
    return GatewayResult(
        status=gateway_status,
        reference=order_id,
        amount_authorized=amount if gateway_status is GatewayStatus.REQUIRES_CAPTURE else 0,
        amount_captured=amount if gateway_status is GatewayStatus.SUCCEEDED else 0,
        next_action=next_action,
        raw={"id": order_id, "status": status.value, "object": "order"},
        three_d_secure=authenticated,
    )


def order_status(order: dict[str, Any]) -> OrderStatus:
    """An order's status; an unknown one raises UnknownStatus (the outcome is unknown)."""
    return _status(OrderStatus, order.get("status"))


def order_wants_capture(order: dict[str, Any]) -> bool:
    return order.get("intent") != "AUTHORIZE"


def opened_for_payment(order: dict[str, Any]) -> str | None:
    """The payment an order was opened for (its ``custom_id``), or None (made outside
    paymux, or an empty one)."""
    value = _first_unit(order).get("custom_id")
    return value if isinstance(value, str) and value else None


def foreign_order(order: dict[str, Any], reference: str, amount: Money) -> str | None:
    """Why an approved order named as a payment method can't pay our payment ``reference``
    of ``amount``, or None. An order carries the payment it was opened for in ``custom_id``
    (paymux opens its orders so: ``order_request``); another payment's order must not pay
    this one, or one buyer's approval would pay two payments (or a cheap order a dear one).
    An order made outside paymux (no ``custom_id``) must be for the same amount and
    currency. A figure PayPal doesn't give (or a placeholder) is no reason."""
    unit = _first_unit(order)
    opened_for = opened_for_payment(order)
    if opened_for is not None and opened_for != reference:
        return "This PayPal order was opened for another payment."
    paid = from_paypal(unit.get("amount"))
    currency = order_currency(order)
    if paid is not None and (paid != amount.amount or (currency or "") != amount.currency):
        return "This PayPal order is for another amount or currency than the payment."
    return None


def order_currency(order: dict[str, Any]) -> str | None:
    amount = _first_unit(order).get("amount")
    currency = amount.get("currency_code") if isinstance(amount, dict) else None
    return str(currency) if currency else None


def update_order_patch(amount: Money) -> list[dict[str, Any]]:
    """The JSON Patch that replaces an order's amount (Orders v2 PATCH; an order created
    without a ``reference_id`` has PayPal's ``default`` one)."""
    return [
        {
            "op": "replace",
            "path": "/purchase_units/@reference_id=='default'/amount",
            "value": money(amount),
        }
    ]


def related_order_id(payment: dict[str, Any]) -> str | None:
    """The order an authorization or capture belongs to (``supplementary_data``)."""
    data = payment.get("supplementary_data")
    related = data.get("related_ids") if isinstance(data, dict) else None
    order_id = related.get("order_id") if isinstance(related, dict) else None
    return str(order_id) if order_id else None


def order_refund(order: dict[str, Any], our_id: str) -> dict[str, Any] | None:
    """Our refund (``custom_id`` = our refund id) among an order's refunds; the newest if a
    mistake made several."""
    found: dict[str, Any] | None = None
    for unit in order.get("purchase_units") or []:
        payments = unit.get("payments") if isinstance(unit, dict) else None
        refunds = payments.get("refunds") if isinstance(payments, dict) else None
        for refund in refunds or []:
            if isinstance(refund, dict) and refund.get("custom_id") == our_id:
                found = refund
    return found


_HELD = frozenset({AuthorizationStatus.CREATED, AuthorizationStatus.PENDING})
_MOVED = frozenset(
    {
        CaptureStatus.COMPLETED,
        CaptureStatus.PARTIALLY_REFUNDED,
        CaptureStatus.REFUNDED,
        CaptureStatus.PENDING,
    }
)


def canceled_result(reference: str | None, payment: dict[str, Any], kind: str) -> GatewayResult:
    return GatewayResult(
        status=GatewayStatus.CANCELED,
        reference=reference,
        raw={"id": payment.get("id"), "status": payment.get("status"), "object": kind},
    )


def order_cancel_plan(order: dict[str, Any]) -> str | GatewayResult:
    """What canceling an order takes: the id of its authorization to void, or the outcome
    already (an order can't be voided; one never authorized or captured just expires).

    - a capture that moved money (or may: PENDING): that capture, SUCCEEDED or PROCESSING;
    - a held authorization (CREATED, PENDING): its id, to void;
    - a captured authorization without its capture in the order: SUCCEEDED, its amount;
    - otherwise (no payment, a voided or denied authorization, refused captures): CANCELED.
    """
    payments = _first_unit(order).get("payments") or {}
    captures = [c for c in payments.get("captures") or [] if isinstance(c, dict)]
    moved = [c for c in captures if _status(CaptureStatus, c.get("status")) in _MOVED]
    if moved:
        return capture_result(moved[-1])
    authorizations = [a for a in payments.get("authorizations") or [] if isinstance(a, dict)]
    if authorizations:
        newest = authorizations[-1]
        status = _status(AuthorizationStatus, newest.get("status"))
        if status in _HELD:
            return str(newest["id"])
        if status in (AuthorizationStatus.CAPTURED, AuthorizationStatus.PARTIALLY_CAPTURED):
            return captured_authorization_result(newest)
        return canceled_result(newest.get("id"), newest, "authorization")
    return canceled_result(order.get("id"), order, "order")


def captured_authorization_result(authorization: dict[str, Any]) -> GatewayResult:
    """An authorization captured already, when its capture itself can't be read."""
    amount = from_paypal(authorization.get("amount")) or 0
    return GatewayResult(
        status=GatewayStatus.SUCCEEDED,
        reference=authorization.get("id"),
        amount_authorized=amount,
        amount_captured=amount,
        raw={
            "id": authorization.get("id"),
            "status": authorization.get("status"),
            "object": "authorization",
        },
    )


_REFUND_STATUS = {
    RefundStatus.COMPLETED: "succeeded",
    RefundStatus.PENDING: "pending",
    RefundStatus.FAILED: "failed",
    RefundStatus.CANCELLED: "canceled",
}


def _capture_of(refund: dict[str, Any]) -> str | None:
    """The capture a refund belongs to: its ``up`` link (``.../captures/<id>``)."""
    for link in refund.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "up":
            href = str(link.get("href"))
            if "/captures/" in href:
                return href.rstrip("/").rpartition("/")[2]
    return None


def refund_result(
    refund: dict[str, Any],
    *,
    payment_reference: str | None = None,
    requested: int | None = None,
    our_id: str | None = None,
) -> GatewayRefund:
    status = _status(RefundStatus, refund.get("status"))
    amount = from_paypal(refund.get("amount"))
    custom_id = refund.get("custom_id")
    details = refund.get("status_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return GatewayRefund(
        status=_REFUND_STATUS[status],
        reference=refund.get("id"),
        amount=amount if amount is not None else (requested or 0),
        failure_reason=str(reason) if status is RefundStatus.FAILED and reason else None,
        payment_reference=payment_reference or _capture_of(refund),
        our_id=our_id or (str(custom_id) if str(custom_id).startswith("re_") else None),
        reason=refund.get("note_to_payer"),
    )


# -- payment methods -----------------------------------------------------------------------


_EXPIRY = re.compile(r"(\d+)-(\d+)")  # PayPal's card expiry: YYYY-MM


def _expiry(value: Any) -> tuple[int | None, int | None]:
    found = _EXPIRY.fullmatch(str(value))
    if found:
        return int(found[2]), int(found[1])
    return None, None


def _card(token: str, card: dict[str, Any]) -> CardDetails:
    month, year = _expiry(card.get("expiry"))
    last4 = card.get("last_digits")
    brand = card.get("brand")
    funding = card.get("type")
    details = card.get("bin_details")
    return CardDetails(  # type "card": the default
        token=token,
        brand=str(brand).lower() if brand else None,
        last4=str(last4)[-4:] if last4 and str(last4).isdigit() else None,
        exp_month=month,
        exp_year=year,
        funding=str(funding).lower() if funding else None,
        bin=card_bin(details.get("bin")) if isinstance(details, dict) else None,
    )


def _source_details(token: str, source: Any) -> CardDetails:
    source = source if isinstance(source, dict) else {}
    card = source.get("card")
    if isinstance(card, dict) and "paypal" not in source:
        return _card(token, card)
    if "venmo" in source and "paypal" not in source:
        return CardDetails(token=token, type="venmo", brand="venmo")
    return CardDetails(token=token, type="paypal", brand="paypal")


def card_details_from_order(order: dict[str, Any]) -> CardDetails:
    """An approved order used as a one-off payment method: its token is the order id."""
    return _source_details(str(order["id"]), order.get("payment_source"))


def _kind(source: Any) -> str:
    source = source if isinstance(source, dict) else {}
    for kind in ("paypal", "venmo", "card"):
        if kind in source:
            return kind
    return "paypal"


def card_details_from_vault(vault: dict[str, Any], *, setup: bool = False) -> CardDetails:
    """A Vault v3 payment token (token ``<kind>:<id>``), or a setup token (its bare id, to be
    exchanged for a payment token when attached to a customer)."""
    source = vault.get("payment_source")
    token = str(vault["id"]) if setup else vault_token(_kind(source), str(vault["id"]))
    if isinstance(source, dict) and len(source) > 1:
        source = {_kind(source): source[_kind(source)]}
    return _source_details(token, source)


# -- webhooks ------------------------------------------------------------------------------


def _resource(event: InboundEvent) -> dict[str, Any]:
    resource = event.payload.get("resource")
    return resource if isinstance(resource, dict) else {}


def _custom_id(resource: dict[str, Any]) -> str | None:
    value = resource.get("custom_id")
    return str(value) if value else None


_CAPTURE_EVENTS = frozenset(
    {
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.DENIED",
        "PAYMENT.CAPTURE.PENDING",
        "PAYMENT.CAPTURE.DECLINED",
    }
)
_AUTHORIZATION_EVENTS = frozenset({"PAYMENT.AUTHORIZATION.CREATED", "PAYMENT.AUTHORIZATION.VOIDED"})
_REFUND_EVENTS = frozenset({"PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"})
_ORDER_EVENTS = frozenset({"CHECKOUT.ORDER.APPROVED", "CHECKOUT.ORDER.COMPLETED"})
_DISPUTE_EVENTS = frozenset(
    {"CUSTOMER.DISPUTE.CREATED", "CUSTOMER.DISPUTE.UPDATED", "CUSTOMER.DISPUTE.RESOLVED"}
)


class DisputeStatus(StrEnum):
    """Customer Disputes v1 ``dispute.status``."""

    OPEN = "OPEN"
    WAITING_FOR_BUYER_RESPONSE = "WAITING_FOR_BUYER_RESPONSE"
    WAITING_FOR_SELLER_RESPONSE = "WAITING_FOR_SELLER_RESPONSE"
    UNDER_REVIEW = "UNDER_REVIEW"
    RESOLVED = "RESOLVED"
    OTHER = "OTHER"


class DisputeOutcome(StrEnum):
    """Customer Disputes v1 ``dispute_outcome.outcome_code`` of a RESOLVED dispute."""

    RESOLVED_BUYER_FAVOUR = "RESOLVED_BUYER_FAVOUR"
    RESOLVED_SELLER_FAVOUR = "RESOLVED_SELLER_FAVOUR"
    RESOLVED_WITH_PAYOUT = "RESOLVED_WITH_PAYOUT"
    CANCELED_BY_BUYER = "CANCELED_BY_BUYER"
    ACCEPTED = "ACCEPTED"
    DENIED = "DENIED"
    NONE = "NONE"


def _dispute_status(dispute: dict[str, Any]) -> str:
    """PayPal's dispute status in Stripe's dispute statuses. An INQUIRY (the buyer asked the
    seller first, no money withdrawn) is Stripe's ``warning_*``; a chargeback or a claim
    (CHARGEBACK, PRE_ARBITRATION, ARBITRATION) is a dispute proper. A resolved one is won
    when the seller keeps the money (seller's favour, canceled by the buyer, denied, or PayPal
    paid the buyer itself: RESOLVED_WITH_PAYOUT), lost when the buyer got it back; an
    inquiry closed in the seller's favour is ``warning_closed``. An unknown status or
    outcome raises UnknownStatus (applied again later) rather than guessing."""
    status = _status(DisputeStatus, dispute.get("status"))
    inquiry = dispute.get("dispute_life_cycle_stage") == "INQUIRY"
    prefix = "warning_" if inquiry else ""
    match status:
        case DisputeStatus.OPEN | DisputeStatus.WAITING_FOR_SELLER_RESPONSE | DisputeStatus.OTHER:
            return f"{prefix}needs_response"
        case DisputeStatus.WAITING_FOR_BUYER_RESPONSE | DisputeStatus.UNDER_REVIEW:
            return f"{prefix}under_review"
        case DisputeStatus.RESOLVED:
            outcome_data = dispute.get("dispute_outcome")
            code = outcome_data.get("outcome_code") if isinstance(outcome_data, dict) else None
            outcome = _status(DisputeOutcome, code)
            match outcome:
                case DisputeOutcome.RESOLVED_BUYER_FAVOUR | DisputeOutcome.ACCEPTED:
                    return "lost"
                case (
                    DisputeOutcome.RESOLVED_SELLER_FAVOUR
                    | DisputeOutcome.RESOLVED_WITH_PAYOUT
                    | DisputeOutcome.CANCELED_BY_BUYER
                    | DisputeOutcome.DENIED
                ):
                    return "warning_closed" if inquiry else "won"
                case DisputeOutcome.NONE:
                    raise UnknownStatus("paypal: a resolved dispute without an outcome")
                case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
                    assert_never(outcome)  # pragma: no mutate
        case _:  # pragma: no mutate (unreachable: mypy checks the match is exhaustive)
            assert_never(status)  # pragma: no mutate


def dispute_update(dispute: dict[str, Any]) -> DisputeUpdate:
    """A Customer Disputes v1 dispute (the resource of CUSTOMER.DISPUTE.* events). The payment
    it names is the capture (``disputed_transactions[].seller_transaction_id``), which is what
    paymux stores for a captured PayPal payment."""
    transactions = [t for t in dispute.get("disputed_transactions") or [] if isinstance(t, dict)]
    capture = next(
        (str(t["seller_transaction_id"]) for t in transactions if t.get("seller_transaction_id")),
        None,
    )
    amount = dispute.get("dispute_amount")
    currency = amount.get("currency_code") if isinstance(amount, dict) else None
    reason = dispute.get("reason")
    return DisputeUpdate(
        reference=str(dispute.get("dispute_id") or dispute.get("id")),
        payment_reference=capture,
        amount=from_paypal(amount) or 0,
        currency=str(currency or ""),
        reason=str(reason).lower() if reason else None,
        status=_dispute_status(dispute),
    )


def interpret_event(
    event: InboundEvent,
) -> PaymentUpdate | RefundUpdate | DisputeUpdate | None:
    """What a verified PayPal event means for our objects.

    Captures and authorizations carry our payment id in ``custom_id`` (copied from the
    order's purchase unit); ``result.reference`` is the capture or authorization id, which is
    also what paymux stores, so either lookup finds the payment. PAYMENT.CAPTURE.REFUNDED and
    .REVERSED carry the refund (our refund id in ``custom_id`` when we made it; the capture in
    its ``up`` link). CUSTOMER.DISPUTE.CREATED, .UPDATED and .RESOLVED carry the dispute
    (see ``dispute_update``). CHECKOUT.ORDER.APPROVED of an order of ours reads ``open``: for an
    intent waiting for the payer paymux completes the order; otherwise paymux's confirm
    (called by the page's ``onApprove``) captures or authorizes it; an
    order event that already holds a payment (COMPLETED) is applied like that payment's own
    event.
    """
    resource = _resource(event)
    if not resource:
        return None
    if event.type in _CAPTURE_EVENTS:
        if event.type == "PAYMENT.CAPTURE.DENIED" and "status" not in resource:
            resource = {**resource, "status": "DECLINED"}
        return PaymentUpdate(reference=_custom_id(resource), result=capture_result(resource))
    if event.type in _AUTHORIZATION_EVENTS:
        return PaymentUpdate(reference=_custom_id(resource), result=authorization_result(resource))
    if event.type in _REFUND_EVENTS:
        return RefundUpdate(refund=refund_result(resource))
    if event.type in _ORDER_EVENTS:
        result = order_result(resource)
        ours = _custom_id(_first_unit(resource))
        if result.raw.get("object") == "order" and not (
            event.type == "CHECKOUT.ORDER.APPROVED" and ours
        ):
            return None  # no payment in it yet: nothing moved
        # An approved order of ours with no payment yet reads ``open``: paymux completes it
        # if its intent was waiting for the payer (PAYER_ACTION_REQUIRED), else nothing moves.
        return PaymentUpdate(reference=ours, result=result)
    if event.type in _DISPUTE_EVENTS:
        return dispute_update(resource)
    return None


# -- saving a payment method: Vault v3 setup tokens ---------------------------------------------

# A setup token the payer approved (or one already exchanged, which the same
# PayPal-Request-Id replays) can become a payment token; these wait for the payer.
SETUP_READY = frozenset({"APPROVED", "VAULTED"})
SETUP_WAITING = frozenset({"CREATED", "PAYER_ACTION_REQUIRED"})


def setup_token_request(request: SetupRequest) -> dict[str, Any]:
    """A setup token for the payer's PayPal wallet, for merchant-initiated payments later
    (``usage_type`` MERCHANT): the payer approves it at PayPal, then comes back to
    ``return_url`` (PayPal requires it, and ``cancel_url``, for the wallet)."""
    return_url = request.return_url or ""
    return {
        "payment_source": {
            "paypal": {
                "usage_type": "MERCHANT",
                "experience_context": {"return_url": return_url, "cancel_url": return_url},
            }
        },
        "customer": {"id": request.customer_token},
    }


def setup_pending_result(setup_token: dict[str, Any]) -> SetupResult:
    """A setup token not yet approved: where the payer approves it (its ``approve`` link),
    or, with no link, still being processed."""
    action = _payer_action(setup_token)
    status = GatewayStatus.REQUIRES_ACTION if action else GatewayStatus.PROCESSING
    return SetupResult(
        status=status,
        reference=str(setup_token.get("id") or "") or None,
        next_action=action,
        raw={"id": setup_token.get("id"), "status": setup_token.get("status")},
    )
