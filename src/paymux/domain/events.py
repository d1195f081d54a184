"""The names of the events paymux emits. Each state change writes one in the same transaction."""

from __future__ import annotations

__all__ = ["EVENT_TYPES"]

EVENT_TYPES = frozenset(
    {
        "payment_intent.created",
        "payment_intent.processing",
        "payment_intent.requires_action",
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        # Money moved at the provider after we canceled (a race with the payer's browser):
        # an operator sees it, and paymux voids or refunds it (refund_late_payments).
        "payment_intent.authorized_after_cancel",
        "payment_intent.captured_after_cancel",
        "charge.refunded",
        "refund.created",
        "refund.updated",
        "refund.failed",
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "payment_method.attached",
        "payment_method.detached",
    }
)
