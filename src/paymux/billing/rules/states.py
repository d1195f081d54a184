"""The two state tables of billing: subscriptions and invoices. Explicit: every allowed move
is one row of a dict literal, anything else is refused with a stable error code.

Subscription statuses and moves follow Stripe's documented lifecycle:

- ``incomplete``: created with charge_automatically and the first invoice not (yet) paid --
  its payment failed or needs the customer's action. Paid within 23 h -> ``active``; else
  ``incomplete_expired``, which is terminal (the open invoice is voided, nothing more bills).
- ``trialing``: in a trial; when the trial ends the subscription goes ``active`` and the
  renewal invoice then decides (paid: stays active; failed: ``past_due``). A trial that ends
  without a payment method under ``missing_payment_method=pause`` goes ``paused``.
- ``past_due``: a renewal invoice failed (or awaits 3-D Secure); invoices still renew. When
  the retries run out the configured end applies: ``canceled``, ``unpaid`` or stay past_due.
- ``unpaid``: retries exhausted; invoices are created but not attempted. Paying the open
  invoice brings it back to ``active``.
- ``paused``: bills nothing until resumed. Stripe enters it only from a trial that ends without
  a payment method, so ``trialing`` is its only way in. Not to be confused with
  ``pause_collection``, which keeps creating invoices and leaves the status alone (no row
  here: it is not a status).
- ``canceled``: terminal. A leftover invoice may still be paid (the status stays canceled).

A paid invoice is one trigger, ``invoice_paid``, whichever invoice it was (the first, a
renewal, a retry, a proration): Stripe's statuses do not tell them apart, and neither does the
paid hook (``dunning.on_invoice_paid``). Every row is fired by a service and tested through
the HTTP API: tests/unit/billing/test_billing_state_rows_reached.py names the test per row.
"""

from __future__ import annotations

from enum import StrEnum

from paymux.domain.errors import PaymuxError

__all__ = [
    "INVOICE_TRANSITIONS",
    "SUBSCRIPTION_TRANSITIONS",
    "InvoiceAction",
    "InvoiceStatus",
    "SubscriptionStatus",
    "SubscriptionTrigger",
    "next_invoice_status",
    "next_subscription_status",
]


class SubscriptionStatus(StrEnum):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    PAUSED = "paused"


class SubscriptionTrigger(StrEnum):
    FIRST_PAYMENT_FAILED = "first_payment_failed"
    FIRST_PAYMENT_REQUIRES_ACTION = "first_payment_requires_action"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIAL_STARTED = "trial_started"
    TRIAL_ENDED = "trial_ended"
    RENEWAL_FAILED = "renewal_failed"
    RENEWAL_REQUIRES_ACTION = "renewal_requires_action"
    INVOICE_PAID = "invoice_paid"
    RETRIES_EXHAUSTED_CANCEL = "retries_exhausted_cancel"
    RETRIES_EXHAUSTED_UNPAID = "retries_exhausted_unpaid"
    RETRIES_EXHAUSTED_PAST_DUE = "retries_exhausted_past_due"
    CANCELED = "canceled"
    PAUSED = "paused"
    RESUMED = "resumed"


_S = SubscriptionStatus
_T = SubscriptionTrigger

_SubscriptionMove = tuple[SubscriptionStatus, SubscriptionTrigger]

SUBSCRIPTION_TRANSITIONS: dict[_SubscriptionMove, SubscriptionStatus] = {
    # First invoice of a charge_automatically subscription.
    (_S.INCOMPLETE, _T.INVOICE_PAID): _S.ACTIVE,  # the first invoice paid, at once or in 23 h
    (_S.INCOMPLETE, _T.FIRST_PAYMENT_FAILED): _S.INCOMPLETE,  # may still be paid within 23 h
    (_S.INCOMPLETE, _T.FIRST_PAYMENT_REQUIRES_ACTION): _S.INCOMPLETE,  # awaiting 3-D Secure
    (_S.INCOMPLETE, _T.INCOMPLETE_EXPIRED): _S.INCOMPLETE_EXPIRED,  # 23 h passed unpaid
    (_S.INCOMPLETE, _T.CANCELED): _S.CANCELED,
    # Trials. trial_started from active/trialing: an update that sets (or moves) trial_end.
    (_S.ACTIVE, _T.TRIAL_STARTED): _S.TRIALING,
    (_S.TRIALING, _T.TRIAL_STARTED): _S.TRIALING,
    (_S.TRIALING, _T.INVOICE_PAID): _S.TRIALING,  # the 0-amount invoice opening the trial
    (_S.TRIALING, _T.TRIAL_ENDED): _S.ACTIVE,  # the renewal invoice's outcome decides next
    (_S.TRIALING, _T.PAUSED): _S.PAUSED,  # no payment method, missing_payment_method=pause
    (_S.TRIALING, _T.CANCELED): _S.CANCELED,  # includes missing_payment_method=cancel
    # Renewals.
    (_S.ACTIVE, _T.INVOICE_PAID): _S.ACTIVE,  # a renewal, or an always_invoice proration
    (_S.ACTIVE, _T.RENEWAL_FAILED): _S.PAST_DUE,
    (_S.ACTIVE, _T.RENEWAL_REQUIRES_ACTION): _S.PAST_DUE,  # invoice stays open for 3-D Secure
    (_S.ACTIVE, _T.CANCELED): _S.CANCELED,
    # Dunning.
    (_S.PAST_DUE, _T.INVOICE_PAID): _S.ACTIVE,  # a retry, or the customer on the hosted page
    (_S.PAST_DUE, _T.RENEWAL_FAILED): _S.PAST_DUE,  # a retry failed, or the next period's one
    (_S.PAST_DUE, _T.RENEWAL_REQUIRES_ACTION): _S.PAST_DUE,
    (_S.PAST_DUE, _T.RETRIES_EXHAUSTED_CANCEL): _S.CANCELED,
    (_S.PAST_DUE, _T.RETRIES_EXHAUSTED_UNPAID): _S.UNPAID,
    (_S.PAST_DUE, _T.RETRIES_EXHAUSTED_PAST_DUE): _S.PAST_DUE,
    (_S.PAST_DUE, _T.CANCELED): _S.CANCELED,
    (_S.UNPAID, _T.INVOICE_PAID): _S.ACTIVE,
    (_S.UNPAID, _T.CANCELED): _S.CANCELED,
    # Paused (status), resumed by the merchant (POST /v1/subscriptions/{id}/resume).
    (_S.PAUSED, _T.RESUMED): _S.ACTIVE,
    (_S.PAUSED, _T.CANCELED): _S.CANCELED,
    # Terminal: a leftover invoice of a canceled subscription may be paid; status unchanged.
    (_S.CANCELED, _T.INVOICE_PAID): _S.CANCELED,
}


def next_subscription_status(status: str, trigger: str) -> SubscriptionStatus:
    """The status after ``trigger`` in ``status``; PaymuxError ``subscription_unexpected_state``
    for a move not in the table (including unknown statuses and triggers)."""
    try:
        key = (SubscriptionStatus(status), SubscriptionTrigger(trigger))
        return SUBSCRIPTION_TRANSITIONS[key]
    except (ValueError, KeyError):
        raise PaymuxError.of(
            "subscription_unexpected_state",
            f"A subscription in status {status!r} cannot take {trigger!r}.",
            param="status",
        ) from None


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class InvoiceAction(StrEnum):
    FINALIZE = "finalize"
    PAY = "pay"
    VOID = "void"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"


_I = InvoiceStatus
_A = InvoiceAction

#: Stripe's invoice lifecycle. Deleting a draft is not a transition: the row goes.
INVOICE_TRANSITIONS: dict[tuple[InvoiceStatus, str], InvoiceStatus] = {
    (_I.DRAFT, _A.FINALIZE): _I.OPEN,  # then immutable, and only then charged
    (_I.OPEN, _A.PAY): _I.PAID,
    (_I.UNCOLLECTIBLE, _A.PAY): _I.PAID,  # a late payment still settles it
    (_I.OPEN, _A.VOID): _I.VOID,
    (_I.UNCOLLECTIBLE, _A.VOID): _I.VOID,
    (_I.OPEN, _A.MARK_UNCOLLECTIBLE): _I.UNCOLLECTIBLE,
}


def next_invoice_status(status: str, action: str) -> InvoiceStatus:
    """The status after ``action`` on an invoice in ``status``; PaymuxError
    ``invoice_unexpected_state`` for a move not in the table."""
    try:
        return INVOICE_TRANSITIONS[(InvoiceStatus(status), InvoiceAction(action))]
    except (ValueError, KeyError):
        raise PaymuxError.of(
            "invoice_unexpected_state",
            f"An invoice in status {status!r} does not allow {action!r} "
            "(draft -> open -> paid | void | uncollectible).",
            param="status",
        ) from None
