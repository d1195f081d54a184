"""The catalog of the events paymux emits: each type, the object its ``data.object`` holds,
and when it is sent. One place: ``emit`` (services/context.py) refuses a type not listed
here, a webhook endpoint's ``enabled_events`` may name only these (or ``*``), and
docs/events.md is generated from it (``render_markdown``; tests/unit/test_event_catalog.py
checks the committed file is the generated one, and that every ``emit(`` call site names a
listed type). Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENT_CATALOG",
    "EVENT_TYPES",
    "EventType",
    "changed_attributes",
    "is_known",
    "render_markdown",
]


@dataclass(frozen=True, slots=True)
class EventType:
    type: str
    object: str  # the ``object`` of the event's data.object
    description: str


def _t(type_: str, object_: str, description: str) -> EventType:
    return EventType(type_, object_, description)


_PI, _SUB = "payment_intent", "subscription"

EVENT_CATALOG: dict[str, EventType] = {
    e.type: e
    for e in (
        # payments (services/payments.py, services/attempts.py, domain/attempts.py)
        _t("payment_intent.created", _PI, "A payment intent was created."),
        _t("payment_intent.processing", _PI, "A payment is processing at the provider."),
        _t("payment_intent.requires_action", _PI, "The payer must act (3-D Secure, redirect)."),
        _t(
            "payment_intent.amount_capturable_updated",
            _PI,
            "An authorization was made: the amount can be captured.",
        ),
        _t("payment_intent.succeeded", _PI, "The payment succeeded."),
        _t("payment_intent.payment_failed", _PI, "A payment attempt failed."),
        _t("payment_intent.canceled", _PI, "The payment intent was canceled."),
        _t(
            "payment_intent.authorized_after_cancel",
            _PI,
            "Money was authorized at the provider after the intent was canceled (a race with "
            "the payer's browser); paymux voids it.",
        ),
        _t(
            "payment_intent.captured_after_cancel",
            _PI,
            "Money was captured at the provider after the intent was canceled; paymux refunds it.",
        ),
        _t(
            "charge.refunded",
            _PI,
            "A payment was refunded, in part or in full (data.object is the payment intent).",
        ),
        _t("charge.dispute.created", "dispute", "The payer disputed a payment."),
        _t("charge.dispute.updated", "dispute", "A dispute changed (evidence, status)."),
        _t("refund.created", "refund", "A refund was created."),
        _t("refund.updated", "refund", "A refund changed (its status)."),
        _t("refund.failed", "refund", "A refund failed."),
        # customers and payment methods
        _t("customer.created", "customer", "A customer was created."),
        _t("customer.updated", "customer", "A customer was updated."),
        _t("customer.deleted", "customer", "A customer was deleted."),
        _t("payment_method.attached", "payment_method", "A payment method was saved."),
        _t("payment_method.detached", "payment_method", "A payment method was detached."),
        _t("setup_intent.created", "setup_intent", "A setup intent was created."),
        _t("setup_intent.requires_action", "setup_intent", "The customer must act to set up."),
        _t("setup_intent.succeeded", "setup_intent", "A payment method was set up."),
        _t("setup_intent.setup_failed", "setup_intent", "Setting up a payment method failed."),
        _t("setup_intent.canceled", "setup_intent", "A setup intent was canceled."),
        # hosted checkout (src/paymux/checkout/)
        _t(
            "checkout.session.completed",
            "checkout.session",
            "A checkout session's payment succeeded (or was authorized, for manual capture), "
            "or its card was saved (mode setup).",
        ),
        _t(
            "checkout.session.expired",
            "checkout.session",
            "A checkout session expired (at expires_at, or by POST .../expire) unpaid.",
        ),
        # fraud reviews (src/paymux/fraud/reviews.py)
        _t(
            "review.opened",
            "review",
            "A review rule let a payment through as an authorization only, and opened a review.",
        ),
        _t(
            "review.closed",
            "review",
            "A review was closed: approved (captured), refunded or canceled.",
        ),
        # the billing catalog (billing/catalog.py)
        _t("product.created", "product", "A product was created."),
        _t("product.updated", "product", "A product was updated."),
        _t("product.deleted", "product", "A product was deleted."),
        _t("price.created", "price", "A price was created."),
        _t("price.updated", "price", "A price was updated."),
        _t("price.deleted", "price", "A price was deleted."),
        _t("coupon.created", "coupon", "A coupon was created."),
        _t("coupon.updated", "coupon", "A coupon was updated."),
        _t("coupon.deleted", "coupon", "A coupon was deleted."),
        _t("promotion_code.created", "promotion_code", "A promotion code was created."),
        _t("promotion_code.updated", "promotion_code", "A promotion code was updated."),
        _t("tax_rate.created", "tax_rate", "A tax rate was created."),
        _t("tax_rate.updated", "tax_rate", "A tax rate was updated."),
        # invoice items, invoices, credit notes
        _t("invoiceitem.created", "invoiceitem", "An invoice item was created."),
        _t("invoiceitem.updated", "invoiceitem", "An invoice item was updated."),
        _t("invoiceitem.deleted", "invoiceitem", "An invoice item was deleted."),
        _t("invoice.created", "invoice", "An invoice was created (a draft)."),
        _t("invoice.updated", "invoice", "An invoice was updated."),
        _t("invoice.finalized", "invoice", "An invoice was finalized (open for payment)."),
        _t("invoice.paid", "invoice", "An invoice was paid."),
        _t("invoice.payment_succeeded", "invoice", "A payment of an invoice succeeded."),
        _t("invoice.payment_failed", "invoice", "A payment of an invoice failed."),
        _t(
            "invoice.payment_action_required",
            "invoice",
            "The customer must act for an invoice's payment.",
        ),
        _t("invoice.upcoming", "invoice", "An invoice is about to be created for a renewal."),
        _t("invoice.voided", "invoice", "An invoice was voided."),
        _t("invoice.marked_uncollectible", "invoice", "An invoice was marked uncollectible."),
        _t("credit_note.created", "credit_note", "A credit note was issued."),
        _t("credit_note.updated", "credit_note", "A credit note was updated."),
        _t("credit_note.voided", "credit_note", "A credit note was voided."),
        # usage meters (billing/meters.py)
        _t("billing.meter.created", "billing.meter", "A meter was created."),
        _t("billing.meter.updated", "billing.meter", "A meter was updated."),
        _t("billing.meter.deactivated", "billing.meter", "A meter was deactivated."),
        _t("billing.meter.reactivated", "billing.meter", "A meter was reactivated."),
        # subscriptions (billing/subscriptions.py, subscription_views.py, dunning.py)
        _t("customer.subscription.created", _SUB, "A subscription was created."),
        _t("customer.subscription.updated", _SUB, "A subscription changed."),
        _t("customer.subscription.deleted", _SUB, "A subscription ended (canceled)."),
        _t(
            "customer.subscription.trial_will_end",
            _SUB,
            "A subscription's trial ends in three days.",
        ),
        _t("customer.subscription.paused", _SUB, "A subscription was paused."),
        _t("customer.subscription.resumed", _SUB, "A paused subscription was resumed."),
        # test clocks (billing/clocks.py)
        _t("test_helpers.test_clock.created", "test_helpers.test_clock", "A test clock was made."),
        _t(
            "test_helpers.test_clock.advancing",
            "test_helpers.test_clock",
            "A test clock started advancing.",
        ),
        _t(
            "test_helpers.test_clock.ready",
            "test_helpers.test_clock",
            "A test clock finished advancing.",
        ),
        _t(
            "test_helpers.test_clock.deleted",
            "test_helpers.test_clock",
            "A test clock was deleted.",
        ),
        # outbound webhooks (paymux/outbound)
        _t(
            "webhook_endpoint.disabled",
            "webhook_endpoint",
            "An endpoint was disabled: it answered 410 Gone, or failed for 5 days.",
        ),
        _t(
            "webhook_endpoint.test",
            "webhook_endpoint",
            (
                "A test event, made by POST /v1/webhook_endpoints/{id}/test and sent to that "
                "endpoint alone, whatever it listens to; listed in /v1/events like any other."
            ),
        ),
    )
}

EVENT_TYPES = frozenset(EVENT_CATALOG)


def is_known(type_: str) -> bool:
    return type_ in EVENT_CATALOG


def changed_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's ``data.previous_attributes``: the top-level fields of ``after`` whose value
    differs from ``before``, with their values in ``before`` (a field ``before`` lacks, from
    an older or other view of the object, is left out). For ``metadata``, as Stripe sends
    it, only the keys that changed, each with its old value (None: the key was not set).
    Pure."""
    previous: dict[str, Any] = {}
    for name, value in after.items():
        if name not in before:  # a field the older snapshot's shape lacked: no change known
            continue
        old = before[name]
        if old == value:
            continue
        if name == "metadata" and isinstance(old, dict) and isinstance(value, dict):
            previous[name] = {k: old.get(k) for k in {*old, *value} if old.get(k) != value.get(k)}
        else:
            previous[name] = old
    return previous


def render_markdown() -> str:
    """docs/events.md: every event type, grouped by the object it carries."""
    lines = [
        "# Events paymux emits",
        "",
        "<!-- Generated from src/paymux/domain/events.py by",
        "     `.venv/bin/python -m paymux.domain.events > docs/events.md`; do not edit by hand",
        "     (tests/unit/test_event_catalog.py checks this file is the generated one). -->",
        "",
        "Every state change records an event in the same transaction (the outbox); "
        "`GET /v1/events` lists them and webhook endpoints receive those they listen to "
        "(`enabled_events`: these types, or `*`). See docs/webhooks.md for the payload.",
        "",
        f"{len(EVENT_CATALOG)} event types.",
    ]
    by_object: dict[str, list[EventType]] = {}
    for e in EVENT_CATALOG.values():
        by_object.setdefault(e.object, []).append(e)
    for obj in sorted(by_object):
        lines += ["", f"## `{obj}`", "", "| type | when |", "| --- | --- |"]
        lines += [f"| `{e.type}` | {e.description} |" for e in sorted(by_object[obj], key=_key)]
    return "\n".join(lines) + "\n"


def _key(e: EventType) -> str:
    return e.type


if __name__ == "__main__":
    print(render_markdown(), end="")
