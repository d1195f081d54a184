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
        "setup_intent.created",
        "setup_intent.requires_action",
        "setup_intent.succeeded",
        "setup_intent.setup_failed",
        "setup_intent.canceled",
        # the billing catalog (billing/catalog.py)
        "product.created",
        "product.updated",
        "product.deleted",
        "price.created",
        "price.updated",
        "price.deleted",
        "coupon.created",
        "coupon.updated",
        "coupon.deleted",
        "promotion_code.created",
        "promotion_code.updated",
        "tax_rate.created",
        "tax_rate.updated",
        # invoice items, drafts edited through the API, credit notes (H6)
        "invoiceitem.created",
        "invoiceitem.updated",
        "invoiceitem.deleted",
        "invoice.updated",
        "credit_note.created",
        "credit_note.updated",
        "credit_note.voided",
        # usage meters (billing/meters.py)
        "billing.meter.created",
        "billing.meter.updated",
        "billing.meter.deactivated",
        "billing.meter.reactivated",
        # billing: invoices, subscriptions, test clocks (billing/invoices.py, subscriptions.py,
        # dunning.py, clocks.py)
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "invoice.upcoming",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.trial_will_end",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "test_helpers.test_clock.created",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.ready",
        "test_helpers.test_clock.deleted",
    }
)
