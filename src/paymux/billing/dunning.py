"""Dunning: what a subscription invoice's payment outcome does to the invoice's retries and
to its subscription, in the transaction that settled the payment.

- Paid: the subscription takes ``invoice_paid`` (incomplete / past_due / unpaid -> active;
  active, trialing and canceled stay).
- Failed: ``attempt_count`` + 1, ``invoice.payment_failed``; the first invoice of an incomplete
  subscription is not retried (it expires after 23 h instead); a renewal moves the
  subscription to past_due and the next try is ``rules.retries.next_retry_us`` counted from
  the first failure (the invoice's finalization: a renewal is tried when it is finalized).
- A hard decline is never retried: the subscription stays past_due until the retry window
  closes (``retry_window_end_us``), when the configured end applies, as after the last failed
  retry. ``next_payment_attempt`` shows that time (no charge is made then, only the end).
- 3-D Secure needed off-session (``authentication_required``): also
  ``invoice.payment_action_required`` carrying the hosted invoice page.
- Retries exhausted: ``PAYMUX_BILLING_DUNNING_END`` (cancel | unpaid | past_due).

Retries are jobs (``invoice_retry``, queued with a delay and a dedupe key); on a test clock
the clock's advance runs them at their time instead.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.rules.retries import (
    DEFAULT_RETRY_DAYS,
    HARD_DECLINES,
    EndPolicy,
    exhausted_trigger,
    next_retry_us,
    retry_window_end_us,
)
from paymux.billing.rules.states import SubscriptionTrigger as T
from paymux.billing.subscription_times import next_due, upcoming_lead_us
from paymux.billing.subscription_views import move
from paymux.jobs.queue import enqueue
from paymux.services.context import Context, emit
from paymux.storage.models import Invoice, Subscription

__all__ = [
    "exhaust",
    "on_invoice_paid",
    "on_payment_failed",
    "retry_schedule",
    "retry_with_new_method",
]

log = logging.getLogger(__name__)


def retry_schedule(ctx: Context) -> tuple[int | float, ...]:
    """PAYMUX_BILLING_RETRY_DAYS (``1,2,3,5,7,10,14``); the default if unreadable."""
    raw = ctx.settings.billing_retry_days
    try:
        days = tuple(float(x) if "." in x else int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        log.error("PAYMUX_BILLING_RETRY_DAYS %r is not a list of days; using the default", raw)
        return DEFAULT_RETRY_DAYS
    return days


def end_policy(ctx: Context) -> EndPolicy:
    policy: EndPolicy = ctx.settings.billing_dunning_end
    return policy


async def _sub(s: AsyncSession, invoice: Invoice) -> Subscription | None:
    if invoice.subscription_id is None:
        return None
    return await s.get(Subscription, invoice.subscription_id, with_for_update=True)


async def on_invoice_paid(s: AsyncSession, ctx: Context, invoice: Invoice, now: int) -> None:
    sub = await _sub(s, invoice)
    if sub is None or sub.status in ("paused", "incomplete_expired"):
        return  # no invoice_paid row: a paused one bills nothing, an expired one's is void
    # trialing (the 0 invoice opening a trial) and canceled (a leftover invoice paid) take it
    # too: their rows keep the status, and no event is sent.
    was_incomplete = sub.status == "incomplete"
    await move(s, sub, T.INVOICE_PAID, now)
    if was_incomplete:
        sub.next_due_us = next_due(sub, upcoming_us=upcoming_lead_us(ctx))


async def on_payment_failed(
    s: AsyncSession,
    ctx: Context,
    invoice: Invoice,
    now: int,
    *,
    decline_code: str | None,
    views: Any,
) -> None:
    """A failed try of ``invoice`` (locked), in the settling transaction. ``views``: the
    invoices service (for the invoice's view)."""
    invoice.attempt_count += 1
    invoice.updated_us = now
    action = decline_code == "authentication_required"
    sub = await _sub(s, invoice)
    first_invoice = sub is not None and sub.status == "incomplete"
    schedule = retry_schedule(ctx)
    nxt: int | None = None
    exhausted = False
    if not first_invoice and invoice.collection_method == "charge_automatically":
        first = invoice.finalized_at_us or now
        nxt = next_retry_us(invoice.attempt_count, first, schedule, decline_code)
        if nxt is None and decline_code in HARD_DECLINES:
            window = retry_window_end_us(first, schedule)
            nxt = window if window > now else None
        exhausted = nxt is None
    invoice.next_payment_attempt_us = nxt
    view = await views.view_in(s, invoice)
    await emit(s, invoice.account_id, "invoice.payment_failed", view, now)
    if action:
        await emit(s, invoice.account_id, "invoice.payment_action_required", view, now)
    if sub is not None and sub.status in ("incomplete", "active", "past_due"):
        if first_invoice:
            trigger = T.FIRST_PAYMENT_REQUIRES_ACTION if action else T.FIRST_PAYMENT_FAILED
        else:
            trigger = T.RENEWAL_REQUIRES_ACTION if action else T.RENEWAL_FAILED
        await move(s, sub, trigger, now)
    if exhausted:
        await exhaust(s, ctx, invoice, sub, now)
    elif nxt is not None and invoice.test_clock_id is None:
        await enqueue(
            s,
            "invoice_retry",
            {"account_id": invoice.account_id, "invoice_id": invoice.id},
            now_us=ctx.now_us(),
            delay=max(0.0, (nxt - ctx.now_us()) / 1_000_000),
            dedupe_key=f"retry:{invoice.id}:{invoice.attempt_count}",
            account_id=invoice.account_id,
        )


async def exhaust(
    s: AsyncSession, ctx: Context, invoice: Invoice, sub: Subscription | None, now: int
) -> None:
    """Retries are over: no more tries; the subscription takes the configured end."""
    invoice.next_payment_attempt_us = None
    if sub is None or sub.status != "past_due":
        return
    policy = end_policy(ctx)
    if policy == "cancel":
        sub.cancellation_details = {
            "comment": None,
            "feedback": None,
            "reason": "payment_failed",
        }
    await move(s, sub, exhausted_trigger(policy), now)


async def retry_with_new_method(
    s: AsyncSession, account_id: str, customer_id: str, now_us: int
) -> None:
    """A new default payment method on the customer: its open invoices whose payment failed
    are retried at once (a job per invoice, queued in the caller's transaction)."""
    found = await s.execute(
        select(Invoice.id).where(
            Invoice.account_id == account_id,
            Invoice.customer_id == customer_id,
            Invoice.status == "open",
            Invoice.attempt_count > 0,
            Invoice.collection_method == "charge_automatically",
        )
    )
    for (invoice_id,) in found.all():
        await enqueue(
            s,
            "invoice_pay",
            {"account_id": account_id, "invoice_id": invoice_id},
            now_us=now_us,
            dedupe_key=f"pay:{invoice_id}:new_method",
            account_id=account_id,
        )
