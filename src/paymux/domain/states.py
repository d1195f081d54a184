"""The payment intent and refund state machines: one explicit table each.

``TRANSITIONS`` lists every state change the code may make; ``OPERATIONS`` lists the states
from which each API operation may start. Anything else is ``payment_intent_unexpected_state``.
"""

from __future__ import annotations

from enum import StrEnum

from paymux.domain.errors import PaymuxError

__all__ = [
    "OPERATIONS",
    "REFUND_TRANSITIONS",
    "TRANSITIONS",
    "PaymentIntentStatus",
    "RefundStatus",
    "check_operation",
    "check_transition",
]


class PaymentIntentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


S = PaymentIntentStatus

# The provider's word wins: a payment confirmed in the payer's browser (Stripe.js) reaches us
# by webhook while our intent still awaits a payment method, so every open state can move
# straight to any outcome.
_OUTCOMES = frozenset(
    {S.REQUIRES_ACTION, S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.CANCELED}
)
TRANSITIONS: dict[PaymentIntentStatus, frozenset[PaymentIntentStatus]] = {
    S.REQUIRES_PAYMENT_METHOD: _OUTCOMES | {S.REQUIRES_CONFIRMATION},
    S.REQUIRES_CONFIRMATION: _OUTCOMES | {S.REQUIRES_PAYMENT_METHOD},
    # While a gateway call is in flight the intent is `processing`; the call's outcome
    # decides where it goes next.
    S.PROCESSING: frozenset(
        {
            S.REQUIRES_PAYMENT_METHOD,
            S.REQUIRES_CONFIRMATION,
            S.REQUIRES_ACTION,
            S.REQUIRES_CAPTURE,
            S.SUCCEEDED,
            S.CANCELED,
        }
    ),
    S.REQUIRES_ACTION: frozenset(
        {S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.REQUIRES_PAYMENT_METHOD, S.CANCELED}
    ),
    S.REQUIRES_CAPTURE: frozenset({S.PROCESSING, S.SUCCEEDED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.CANCELED: frozenset(),
}

OPERATIONS: dict[str, frozenset[PaymentIntentStatus]] = {
    "update": frozenset({S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION}),
    "confirm": frozenset({S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION}),
    "capture": frozenset({S.REQUIRES_CAPTURE}),
    "cancel": frozenset(
        {
            S.REQUIRES_PAYMENT_METHOD,
            S.REQUIRES_CONFIRMATION,
            S.REQUIRES_ACTION,
            S.REQUIRES_CAPTURE,
        }
    ),
    "refund": frozenset({S.SUCCEEDED}),
}

REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset(
        {RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED}
    ),
    # A refund can still fail after it looked successful (the bank returns it).
    RefundStatus.SUCCEEDED: frozenset({RefundStatus.FAILED}),
    RefundStatus.FAILED: frozenset(),
    RefundStatus.CANCELED: frozenset(),
}


def check_operation(operation: str, current: str) -> None:
    """Raise ``payment_intent_unexpected_state`` unless ``operation`` may start in ``current``."""
    if PaymentIntentStatus(current) not in OPERATIONS[operation]:
        allowed = ", ".join(sorted(OPERATIONS[operation]))
        raise PaymuxError.of(
            "payment_intent_unexpected_state",
            f"You cannot {operation} this PaymentIntent because it has a status of "
            f"{current}. {operation.capitalize()} is allowed from: {allowed}.",
            status=current,
        )


def check_transition(current: str, target: str) -> bool:
    """True when ``current -> target`` is in the table (staying put is always allowed)."""
    return (
        current == target
        or PaymentIntentStatus(target) in TRANSITIONS[PaymentIntentStatus(current)]
    )
