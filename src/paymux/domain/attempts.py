"""Attempts and the provider's word: the pure rules that move a payment intent's money.

A gateway call is an *attempt* of one ``Operation``. It records the state the intent started
from and what it aims at, so an attempt that is abandoned (the call is known not to have
happened) puts the intent back exactly where it was, whatever the operation.

``apply_report`` is the one rule for what the provider says about a payment, whether the
answer comes back from our own call, from a webhook, or from asking the provider
(retrieve, lookup, the reconciler): (current state, report) -> (new state, events, and what
must still be done about money that moved against our record). The provider's truth wins:
an outcome is applied to any intent we still think is open, including one the payer
confirmed in the browser, and money that lands on a canceled intent is recorded and flagged
to be given back.

``reserve_refund`` and ``apply_refund`` are the same for refunds.
Everything here is plain values in, plain values out: no I/O, no clock, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from paymux.domain.states import PaymentIntentStatus, RefundStatus

__all__ = [
    "ABANDONED_TARGET",
    "CANCELLATION_REASONS",
    "Change",
    "IntentState",
    "Operation",
    "ProviderStatus",
    "Report",
    "abandon",
    "apply_refund",
    "apply_report",
    "inconsistencies",
    "refundable",
    "target_of",
]

S = PaymentIntentStatus

# Stripe's list; the API schema, the service and the docs all read this one.
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")


class Operation(StrEnum):
    """What a gateway call does. Stored on the attempt; never a bare string in code."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    CANCEL = "cancel"
    REFUND = "refund"


class ProviderStatus(StrEnum):
    """A provider payment's state, in the terms every connector maps to."""

    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    PROCESSING = "processing"
    FAILED = "failed"
    CANCELED = "canceled"
    # The provider payment exists (opened for the browser) but nothing was tried on it yet:
    # a confirm of ours that finds this never happened.
    OPEN = "open"


# Where an abandoned attempt of each operation leaves an intent that was `processing` when we
# know nothing of where it started (rows written before attempts recorded it).
ABANDONED_TARGET: dict[Operation, PaymentIntentStatus] = {
    Operation.AUTHORIZE: S.REQUIRES_PAYMENT_METHOD,
    Operation.CAPTURE: S.REQUIRES_CAPTURE,
    Operation.CANCEL: S.REQUIRES_CAPTURE,
}


@dataclass(frozen=True, slots=True)
class IntentState:
    """The money-bearing fields of a payment intent."""

    status: PaymentIntentStatus
    amount: int
    amount_capturable: int = 0
    amount_received: int = 0
    amount_refunded: int = 0
    amount_refund_pending: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """What the provider says a payment is now."""

    status: ProviderStatus
    amount_authorized: int = 0
    amount_captured: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    state: IntentState
    events: tuple[str, ...] = ()
    declined: bool = False  # the intent goes back for a new payment method, with this error
    late_capture: int = 0  # money received on a canceled intent: give it back
    late_authorization: bool = False  # an authorization held on a canceled intent: void it

    @property
    def moved(self) -> bool:
        return bool(self.events) or self.late_capture > 0 or self.late_authorization


_OPEN = frozenset({S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION, S.PROCESSING})
_UNPAID = _OPEN | {S.REQUIRES_ACTION}


def apply_report(
    state: IntentState,
    report: Report,
    *,
    operation: Operation | None = None,
    from_status: PaymentIntentStatus | None = None,
) -> Change:
    """Apply the provider's word on a payment.

    ``operation`` and ``from_status`` describe our own call this report answers (None for a
    webhook or a retrieve that answers no call of ours)."""
    status = state.status
    unchanged = Change(state)
    if report.status is ProviderStatus.OPEN:
        return unchanged  # nothing was tried: not an answer to any call
    waiting = (
        ProviderStatus.FAILED,
        ProviderStatus.PROCESSING,
        ProviderStatus.REQUIRES_ACTION,
    )
    if state.amount_capturable > 0 and report.status in waiting:
        # An authorization is held (requires_capture, or our capture or void in flight): a
        # failure, or an earlier stage of the payment, can't undo it. Our own capture or void
        # answered this way did not happen: back to where it started.
        if (
            operation in (Operation.CAPTURE, Operation.CANCEL)
            and status is S.PROCESSING
            and (report.status is not ProviderStatus.PROCESSING)
        ):
            return Change(replace(state, status=from_status or ABANDONED_TARGET[operation]))
        return unchanged
    if report.status is ProviderStatus.FAILED:
        if operation in (Operation.CAPTURE, Operation.CANCEL):
            # Our capture or void was refused: the authorization is still held.
            if status is S.PROCESSING:
                back = from_status or ABANDONED_TARGET[operation]
                return Change(replace(state, status=back))
            return unchanged
        if status in _UNPAID:  # nothing is held here: the guard above returned
            return Change(
                replace(state, status=S.REQUIRES_PAYMENT_METHOD),
                ("payment_intent.payment_failed",),
                declined=True,
            )
        return unchanged
    if report.status is ProviderStatus.PROCESSING:
        if status in (S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION, S.REQUIRES_ACTION):
            return Change(replace(state, status=S.PROCESSING), ("payment_intent.processing",))
        return unchanged
    if report.status is ProviderStatus.REQUIRES_ACTION:
        if status in _OPEN:
            return Change(
                replace(state, status=S.REQUIRES_ACTION), ("payment_intent.requires_action",)
            )
        return unchanged
    if report.status is ProviderStatus.REQUIRES_CAPTURE:
        if status in _UNPAID:
            held = report.amount_authorized or state.amount
            return Change(
                replace(state, status=S.REQUIRES_CAPTURE, amount_capturable=held),
                ("payment_intent.amount_capturable_updated",),
            )
        if status is S.CANCELED:
            return Change(
                state, ("payment_intent.authorized_after_cancel",), late_authorization=True
            )
        return unchanged
    if report.status is ProviderStatus.SUCCEEDED:
        if status in _UNPAID or status is S.REQUIRES_CAPTURE:
            received = report.amount_captured or state.amount_capturable or state.amount
            return Change(
                replace(state, status=S.SUCCEEDED, amount_received=received, amount_capturable=0),
                ("payment_intent.succeeded",),
            )
        if status is S.CANCELED and report.amount_captured > state.amount_received:
            late = report.amount_captured - state.amount_received
            return Change(
                replace(state, amount_received=report.amount_captured),
                ("payment_intent.captured_after_cancel",),
                late_capture=late,
            )
        return unchanged
    # CANCELED
    if status in _UNPAID or status is S.REQUIRES_CAPTURE:
        return Change(
            replace(state, status=S.CANCELED, amount_capturable=0), ("payment_intent.canceled",)
        )
    return unchanged


def abandon(
    state: IntentState, operation: Operation, from_status: PaymentIntentStatus | None
) -> Change:
    """Our call is known not to have happened (refused before it reached the processor):
    the intent goes back to where the attempt started."""
    if state.status is not S.PROCESSING:
        return Change(state)
    back = from_status or ABANDONED_TARGET[operation]
    if operation is Operation.AUTHORIZE:
        # The payer must try again: the same as a failure, without a decline code.
        return Change(
            replace(state, status=S.REQUIRES_PAYMENT_METHOD, amount_capturable=0),
            ("payment_intent.payment_failed",),
            declined=True,
        )
    return Change(replace(state, status=back))


def target_of(operation: Operation, *, capture: bool = True) -> str:
    """What a successful attempt of ``operation`` leads to: an intent status, or for a
    refund the refund's status."""
    if operation is Operation.AUTHORIZE:
        return S.SUCCEEDED if capture else S.REQUIRES_CAPTURE
    if operation is Operation.CAPTURE:
        return S.SUCCEEDED
    if operation is Operation.CANCEL:
        return S.CANCELED
    return RefundStatus.SUCCEEDED


def refundable(state: IntentState) -> int:
    """What can still be refunded: received, less refunded and reserved."""
    return state.amount_received - state.amount_refunded - state.amount_refund_pending


_REFUND_MOVES: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset(
        {RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED}
    ),
    # A refund can still fail after it looked successful (the bank returns it).
    RefundStatus.SUCCEEDED: frozenset({RefundStatus.FAILED}),
    RefundStatus.FAILED: frozenset(),
    RefundStatus.CANCELED: frozenset(),
}


def apply_refund(
    state: IntentState, old: RefundStatus, new: RefundStatus, amount: int
) -> IntentState | None:
    """The intent's amounts after a refund of ``amount`` moves old -> new; None if the move
    is not a legal one (a late or repeated report)."""
    if new not in _REFUND_MOVES[old]:
        return None
    pending, refunded = state.amount_refund_pending, state.amount_refunded
    if old is RefundStatus.PENDING:
        pending -= amount
    if new is RefundStatus.SUCCEEDED:
        refunded += amount
    if old is RefundStatus.SUCCEEDED:
        refunded -= amount
    return replace(state, amount_refund_pending=pending, amount_refunded=refunded)


def inconsistencies(state: IntentState) -> list[str]:
    """What is wrong with an intent's amounts for its status; empty when consistent."""
    problems: list[str] = []
    if state.amount_received > state.amount:
        problems.append("amount_received > amount")
    if state.amount_refunded + state.amount_refund_pending > state.amount_received:
        problems.append("refunded and pending refunds exceed amount_received")
    if min(state.amount_refunded, state.amount_refund_pending, state.amount_received) < 0:
        problems.append("a negative amount")
    if state.status is S.SUCCEEDED and state.amount_received <= 0:
        problems.append("succeeded with nothing received")
    if state.status is S.REQUIRES_CAPTURE and (
        state.amount_capturable <= 0 or state.amount_received != 0
    ):
        problems.append("requires_capture without a held amount, or with money received")
    # A held authorization shows on requires_capture, and on processing while our capture or
    # void of it is in flight.
    if state.status not in (S.REQUIRES_CAPTURE, S.PROCESSING) and state.amount_capturable != 0:
        problems.append(f"{state.status} with an amount capturable")
    if state.status not in (S.SUCCEEDED, S.CANCELED) and state.amount_received != 0:
        problems.append(f"{state.status} with money received")
    return problems
