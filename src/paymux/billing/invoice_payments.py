"""Paying an invoice: an off-session PaymentIntent on the invoice's payment method, through
the same payment service and gateways as one-time payments.

The PaymentIntent of the n-th try of an invoice has an id derived from the invoice and n
(``attempt_intent_id``), noted on the invoice (``payment_intent_id``) in a transaction of its
own BEFORE the payment service is called. A crash anywhere and a retry of the job computes
the same id, and the payment service resumes that intent instead of making another (its
gateway idempotency key derives from the intent id, so the gateway never charges twice).
The merchant's ``POST /v1/invoices/{id}/pay`` and a dunning try at the same count derive the
same id too: a try that finds the invoice's payment lease live (any holder) does not charge
beside it (``payment_lease.lease_live``): the merchant's gets a 400, the job's waits.

The outcome reaches the invoice through ONE hook (``on_intent_settled``), run by the attempt
engine in the transaction that settles the intent, whichever path settled it: this call, a
gateway webhook, the recovery job, or the payer completing 3-D Secure on the hosted page.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.clock_time import clock_now
from paymux.billing.dunning import exhaust, on_payment_failed
from paymux.billing.invoice_core import InvoicesCore, lock_invoice
from paymux.billing.payment_lease import (
    check_start,
    lease_live,
    lease_seconds,
    release_lease,
    superseded,
    take_lease,
    taken_over,
)
from paymux.billing.rules.retries import HARD_DECLINES
from paymux.domain.attempts import Operation
from paymux.domain.errors import PaymuxError
from paymux.jobs.queue import enqueue
from paymux.money import min_charge_amount
from paymux.services.attempts import PENDING
from paymux.services.context import current_livemode, emit, get_owned, ref_key
from paymux.services.payments import CreateParams, PaymentsService
from paymux.services.refunds import RefundsService, derived_refund_id
from paymux.storage.models import (
    Customer,
    GatewayAttempt,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    Refund,
    Subscription,
)

__all__ = ["InvoicePayments", "attempt_intent_id", "failure_code", "live_intent"]

log = logging.getLogger(__name__)

_PAYABLE = ("open", "uncollectible")
# An invoice's intent in one of these is over and failed: a new try may replace it. Any other
# status (requires_action, requires_confirmation, processing, requires_capture, succeeded) is a
# payment in flight or done: no second one is made beside it. (A succeeded intent of an invoice
# still open paid part of it, the hook has counted it: see ``replaceable``.)
_REPLACEABLE = ("requires_payment_method", "canceled")
# An intent that waits for the payer (a card, a confirmation, 3-D Secure): it can still charge
# once they act, so an invoice that no longer wants it at that amount cancels it (``release``).
WAITING = ("requires_payment_method", "requires_confirmation", "requires_action")
# The metadata key naming who made an invoice's payment: "automatic" (a renewal, a dunning
# retry, a new default card: jobs) or "manual" (POST /pay, the hosted page). See ``_failed``.
TRY_KIND = "paymux_try"
# How long ``release`` waits for a cancel of the intent that another release started (its
# gateway call in flight) to be answered, and how often it looks (seconds).
RELEASE_WAIT = 10.0
RELEASE_LOOK = 0.02
# Why paymux gives back money that reached an invoice it was not needed for (refund metadata).
RETURNED = "invoice_overpaid"


async def _canceling(s: AsyncSession, pi_id: str) -> bool:
    """Whether a cancel of the intent is in flight (its attempt pending: the gateway's void
    called, its answer not recorded yet)."""
    found = await s.scalar(
        select(GatewayAttempt.id)
        .where(
            GatewayAttempt.object_id == pi_id,
            GatewayAttempt.operation == Operation.CANCEL,
            GatewayAttempt.status == PENDING,
        )
        .limit(1)
    )
    return found is not None


def replaceable(pi: PaymentIntent, invoice: Invoice) -> bool:
    """Whether a new try of ``invoice`` may replace its intent ``pi``: ``pi`` failed or was
    canceled, or it succeeded for part of an invoice still payable (the rest is due)."""
    return pi.status in _REPLACEABLE or (pi.status == "succeeded" and invoice.status in _PAYABLE)


async def live_intent(s: AsyncSession, invoice: Invoice) -> PaymentIntent | None:
    """The invoice's current intent if it is in flight or done (not replaceable)."""
    if not invoice.payment_intent_id:
        return None
    pi = await s.get(PaymentIntent, invoice.payment_intent_id, populate_existing=True)
    return pi if pi is not None and not replaceable(pi, invoice) else None


def never_started(pi: PaymentIntent) -> bool:
    """Whether ``pi`` was made and never confirmed: nothing of it reached a gateway."""
    return pi.status == "requires_confirmation" and pi.confirm_count == 0


def failure_code(pi: PaymentIntent) -> str | None:
    """What a failed try of ``pi`` is judged by for dunning (``rules.retries``): its last
    error's decline code, else its code (a gateway's ``incorrect_number`` carries no decline
    code, and is a hard decline all the same)."""
    error = pi.last_payment_error or {}
    code = error.get("decline_code") or error.get("code")
    return str(code) if code else None


def attempt_intent_id(invoice_id: str, n: int) -> str:
    """The PaymentIntent id of the n-th try of an invoice: the same for every run of it."""
    return _intent_id(invoice_id, n, 0)


def _intent_id(invoice_id: str, n: int, k: int) -> str:
    """``k`` > 0 names the k-th new intent of the same try, after the invoice's amount changed
    under an intent that had not charged (``reservable_id``)."""
    seed = f"{invoice_id}:{n}" if k == 0 else f"{invoice_id}:{n}:{k}"
    return f"pi_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


def resumable(pi: PaymentIntent, amount: int) -> bool:
    """Whether a try at ``amount`` may resume ``pi`` (its reserved id exists): it is for that
    amount and was neither canceled nor tried and declined (a manual try, which does not move
    the try count, leaves one behind under the same count)."""
    tried_and_failed = pi.status == "requires_payment_method" and pi.confirm_count > 0
    return pi.status != "canceled" and pi.amount == amount and not tried_and_failed


async def reservable_id(s: AsyncSession, invoice_id: str, n: int, amount: int) -> str:
    """Under the invoice's lock: the id for a try at ``amount``. The try's usual id, unless an
    intent with it exists that can't be resumed for this amount (canceled by ``release``, or
    for another amount); then the next unused one. The same answer for every re-run of a try
    whose intent was reserved and never made, or made and resumable."""
    for k in range(64):
        pi_id = _intent_id(invoice_id, n, k)
        existing = await s.get(PaymentIntent, pi_id)
        if existing is None or resumable(existing, amount):
            return pi_id
    raise PaymuxError.of(
        "invoice_unexpected_state",
        "This invoice had too many payments in one try; try again later.",
        param="id",
    )


class InvoicePayments(InvoicesCore):
    payments: PaymentsService

    async def pay(
        self,
        account_id: str,
        invoice_id: str,
        *,
        payment_method: str | None = None,
        off_session: bool = True,
        paid_out_of_band: bool = False,
    ) -> dict[str, Any]:
        """Stripe's POST /v1/invoices/{id}/pay: a draft is finalized first; then charged (or
        marked paid out of band). A decline answers the invoice (open, attempted)."""
        async with self.ctx.db.read() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id)
            status = invoice.status
        if status == "draft":
            await self.finalize(account_id, invoice_id, charge=False)
        if paid_out_of_band:
            async with self.ctx.db.write() as s:
                invoice = await lock_invoice(s, account_id, invoice_id)
                waiting = invoice.payment_intent_id  # settle_paid lets go of it
                now = await clock_now(s, self.ctx, invoice.test_clock_id)
                await self.settle_paid(s, invoice, now, amount=0, out_of_band=True)
                view = await self.view_in(s, invoice)
            if waiting is not None:
                await self.release(account_id, waiting)
            return view
        await self.attempt(
            account_id, invoice_id, payment_method=payment_method, off_session=off_session
        )
        return await self.retrieve(account_id, invoice_id)

    async def void(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        """Stripe's void, refused once part of the invoice was paid (that money would be
        neither owed nor given back); the queued ``release`` of its waiting intent is run at
        once too, so the caller finds it canceled (the job then finds nothing to do)."""
        async with self.ctx.db.read() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id)
            if invoice.status in _PAYABLE and invoice.amount_paid > 0:
                raise PaymuxError.of(
                    "invoice_unexpected_state",
                    f"{invoice.amount_paid} of this invoice was paid already: it can't be "
                    "voided. Credit it (POST /v1/credit_notes) instead.",
                    param="id",
                )
        view = await super().void(account_id, invoice_id)
        pi_id = view.get("payment_intent")
        if isinstance(pi_id, str):
            await self.release(account_id, pi_id)
        return view

    async def _payment_method(self, s: AsyncSession, invoice: Invoice) -> PaymentMethod | None:
        """The invoice's, else its subscription's, else the customer's default: one query
        (the defaults in scalar subqueries) when the invoice names none."""
        if invoice.default_payment_method_id is not None:
            return await s.get(PaymentMethod, invoice.default_payment_method_id)
        customer_pm = (
            select(Customer.default_payment_method)
            .where(Customer.id == invoice.customer_id)
            .scalar_subquery()
        )
        pm_id: ColumnElement[str | None] = customer_pm
        if invoice.subscription_id is not None:
            sub_pm = (
                select(Subscription.default_payment_method_id)
                .where(Subscription.id == invoice.subscription_id)
                .scalar_subquery()
            )
            pm_id = func.coalesce(sub_pm, customer_pm)
        found = await s.execute(select(PaymentMethod).where(PaymentMethod.id == pm_id))
        return found.scalar_one_or_none()

    async def attempt(
        self,
        account_id: str,
        invoice_id: str,
        *,
        payment_method: str | None = None,
        off_session: bool = True,
        from_job: bool = False,
        only_try: int | None = None,
    ) -> None:
        """One try at charging an open invoice (see the module docstring). ``only_try``: a job
        queued as the safety net of one inline try (its number) does nothing once the count
        has moved past it (that try was made, and answered)."""
        async with self.ctx.db.read() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id)
            if only_try is not None and invoice.attempt_count + 1 != only_try:
                return
            if invoice.status not in _PAYABLE:
                if from_job:
                    return
                raise PaymuxError.of(
                    "invoice_unexpected_state",
                    f"This invoice is {invoice.status}; only an open invoice can be paid.",
                    param="id",
                )
            n = invoice.attempt_count + 1
            previous = (
                await s.get(PaymentIntent, invoice.payment_intent_id)
                if invoice.payment_intent_id
                else None
            )
            pm: PaymentMethod | None = None
            pm_ref = payment_method
            if pm_ref is None:
                pm = await self._payment_method(s, invoice)
                pm_ref = pm.id if pm is not None else None
            elif pm_ref.startswith("pm_"):
                pm = await get_owned(s, PaymentMethod, pm_ref, account_id, param="payment_method")
            seen_pi_id = invoice.payment_intent_id
            amount, currency = invoice.amount_remaining, invoice.currency
        if previous is not None and previous.status == "requires_action":
            # A try that waits for the payer's 3-D Secure: a new one replaces it (never both).
            try:
                await self.payments.cancel(account_id, previous.id, "automatic")
            except PaymuxError as exc:
                log.info("could not cancel %s before a new try: %s", previous.id, exc.code)
                return
        if pm_ref is None:
            if not from_job:
                raise PaymuxError.of(
                    "parameter_missing",
                    "This invoice has no payment method: give payment_method, or set the "
                    "customer's invoice_settings.default_payment_method.",
                    param="payment_method",
                )
            await self._failed_without_intent(account_id, invoice_id, n - 1, None, automatic=True)
            return
        if 0 < amount < min_charge_amount(currency):
            await self._too_small(account_id, invoice_id)
            return
        pi_id = attempt_intent_id(invoice_id, n)
        async with self.ctx.db.write() as s:
            locked = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            if locked.status not in _PAYABLE or locked.attempt_count != n - 1:
                return  # another run got there first
            if locked.payment_intent_id != seen_pi_id:
                return  # another payment (the hosted page, a retry) started meanwhile
            live = await live_intent(s, locked)
            if live is not None and not never_started(live):
                return  # a payment is in flight or done: never a second one beside it
            # A never-started intent (its run died between making it and confirming it) is
            # resumed below under the same id: reservable_id names it again, and the create
            # confirms it (``_resume_create``); while its path's lease is live, a job defers.
            # What is charged is what is due now, read under the lock (a credit note may
            # have lowered it since the first read).
            amount, currency = locked.amount_remaining, locked.currency
            customer_id, livemode, number = locked.customer_id, locked.livemode, locked.number
            too_small = 0 < amount < min_charge_amount(currency)
            if not too_small:
                pi_id = await reservable_id(s, invoice_id, n, amount)
                wall = self.ctx.now_us()
                if lease_live(locked, wall):
                    # Another path holds the invoice's charge path (payment_lease): the hosted
                    # page's payment, or this very try run by the other of the merchant's
                    # /pay and the dunning job (the same intent id): no second charge beside
                    # it; a job's try waits until the lease ends.
                    if not from_job:
                        raise PaymuxError.of(
                            "invoice_unexpected_state",
                            "A payment of this invoice is already under way.",
                            param="id",
                        )
                    await self._after_lease(s, locked, n, wall)
                    return
                locked.payment_intent_id = pi_id  # reserved before the payment service hears
                mine = take_lease(locked, pi_id, wall, lease_seconds(self.ctx))
        if too_small:
            await self._too_small(account_id, invoice_id)
            return
        gateway = ref_key(pm.gateway, pm.connection_id) if pm is not None else None
        token = current_livemode.set(bool(livemode))
        try:
            await self.payments.create(
                account_id,
                CreateParams(
                    id=pi_id,
                    invoice_id=invoice_id,
                    amount=amount,
                    currency=currency,
                    customer=customer_id,
                    payment_method=pm_ref,
                    gateway=gateway,
                    confirm=True,
                    off_session=off_session,
                    description=f"Invoice {number}" if number else None,
                    metadata={
                        "invoice": invoice_id,
                        TRY_KIND: "automatic" if from_job else "manual",
                    },
                ),
            )
        except PaymuxError as exc:
            # A decline was applied to the invoice by the hook; anything refused before the
            # payment was tried (a detached card) is a failed try here. Asked through the
            # API (POST /v1/invoices/{id}/pay), the error is the answer, as on Stripe (402).
            await release_lease(self.ctx, invoice_id, pi_id, mine)
            if await self._overtaken(account_id, invoice_id, pi_id, n, mine, from_job=from_job):
                # Another path took the invoice while this one was slower than its lease: its
                # start was refused (``check_start``), or another run of this very try (the
                # job's retry, resuming the same intent) holds the invoice now and answers for
                # the try. Not a failed try.
                await self.release(account_id, pi_id)  # made, never started: canceled
            else:
                await self._failed_without_intent(
                    account_id, invoice_id, n - 1, exc.decline_code, automatic=from_job
                )
            if not from_job:
                raise
        finally:
            # Given back on every way out (a second release is a no-op): once the start is
            # recorded the intent's own status guards it; an exception before the start
            # leaves nothing in flight that would need the lease.
            current_livemode.reset(token)
            await release_lease(self.ctx, invoice_id, pi_id, mine)

    async def guard_start(self, s: AsyncSession, pi: PaymentIntent) -> None:
        """The payment service's ``start_guard`` (``payment_lease.check_start``)."""
        await check_start(s, pi, self.ctx.now_us())

    async def _overtaken(
        self, account_id: str, invoice_id: str, pi_id: str, n: int, mine: int, *, from_job: bool
    ) -> bool:
        """After ``pi_id``'s payment was refused: whether the invoice was taken by another
        path (``payment_lease.superseded``), or by another run of the same try once this
        one's lease (ending at ``mine``) lapsed (``taken_over``: both confirm one intent, and
        its conditional start lets one through), under its lock. A job's try ``n`` is then put
        off (``_after_lease``), never lost: it does nothing if the other payment paid."""
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            wall = self.ctx.now_us()
            if superseded(invoice, pi_id, wall) is None and not taken_over(invoice, mine, wall):
                return False
            if from_job and invoice.status in _PAYABLE and invoice.attempt_count == n - 1:
                await self._after_lease(s, invoice, n, wall)
            return True

    async def _after_lease(self, s: AsyncSession, invoice: Invoice, n: int, wall: int) -> None:
        """Put the job's try ``n`` off until the lease on ``invoice`` (locked) ends: the same
        ``invoice_pay`` job a first try has, due when the lease lapses; it does nothing if the
        leased payment paid the invoice, or once the try count moved past ``n``.

        On a test clock the try is a step of the clock instead, due at the clock's time
        (``next_payment_attempt``, now at the latest): the clock's advance runs it in order,
        waiting for the lease to end first (``ClocksService.run_advance``); a job on the wall
        clock would run it after the advance, at whatever time the clock shows then."""
        if invoice.test_clock_id is not None:
            now = await clock_now(s, self.ctx, invoice.test_clock_id)
            due = invoice.next_payment_attempt_us
            invoice.next_payment_attempt_us = now if due is None else min(due, now)
            return
        until = invoice.payment_lease_until_us or wall
        await enqueue(
            s,
            "invoice_pay",
            {"account_id": invoice.account_id, "invoice_id": invoice.id, "try": n},
            now_us=wall,
            delay=(until - wall) / 1_000_000 + 1.0,
            dedupe_key=f"pay:{invoice.id}:{n}:after:{until}",
            account_id=invoice.account_id,
        )

    async def _too_small(self, account_id: str, invoice_id: str) -> None:
        """An amount below the currency's minimum charge is not charged: it is carried to
        the customer's balance (the next invoice collects it) and the invoice is paid, as
        Stripe does."""
        from paymux.billing.balance import adjust_balance

        async with self.ctx.db.write() as s:
            invoice = await lock_invoice(s, account_id, invoice_id)
            if invoice.status not in _PAYABLE:
                return
            now = await clock_now(s, self.ctx, invoice.test_clock_id)
            await adjust_balance(
                s,
                account_id,
                invoice.customer_id,
                invoice.amount_remaining,
                invoice.currency,
                "invoice_too_small",
                invoice_id=invoice.id,
                description="Below the minimum charge: carried to the next invoice.",
                now_us=now,
            )
            await self.settle_paid(s, invoice, now, amount=0)

    async def open_intent(self, account_id: str, invoice_id: str) -> None:
        """The invoice's PaymentIntent, opened and not confirmed (``default_incomplete``):
        the browser confirms it with its client secret, 3-D Secure included; the hook then
        pays the invoice."""
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
            if invoice.status != "open":
                return
            # Reserved under the invoice's lock, like attempt(): the next try's id, and never
            # beside a payment in flight or done (a retry, the hosted page).
            amount, currency = invoice.amount_remaining, invoice.currency
            if await live_intent(s, invoice) is not None:
                return  # in flight, done, or waiting (one at another amount is released)
            pi_id = await reservable_id(s, invoice_id, invoice.attempt_count + 1, amount)
            invoice.payment_intent_id = pi_id
            pm = await self._payment_method(s, invoice)
            customer_id, livemode = invoice.customer_id, invoice.livemode
        token = current_livemode.set(bool(livemode))
        try:
            await self.payments.create(
                account_id,
                CreateParams(
                    id=pi_id,
                    invoice_id=invoice_id,
                    amount=amount,
                    currency=currency,
                    customer=customer_id,
                    payment_method=pm.id if pm is not None else None,
                    gateway=pm.gateway if pm is not None else None,
                    setup_future_usage="off_session",
                    metadata={"invoice": invoice_id, TRY_KIND: "manual"},  # the payer's
                ),
            )
        finally:
            current_livemode.reset(token)

    async def _failed_without_intent(
        self,
        account_id: str,
        invoice_id: str,
        count: int,
        decline_code: str | None,
        *,
        automatic: bool,
    ) -> None:
        """Count a try that never reached the gateway (no payment method, a refused one),
        unless the hook counted it already (and as the hook does: ``_failed``)."""
        async with self.ctx.db.write() as s:
            invoice = await lock_invoice(s, account_id, invoice_id)
            if invoice.status != "open" or invoice.attempt_count != count:
                return
            pi = (
                await s.get(PaymentIntent, invoice.payment_intent_id)
                if invoice.payment_intent_id
                else None
            )
            if pi is not None and pi.status not in (
                "requires_payment_method",
                "requires_confirmation",
                "canceled",
            ):
                return  # in flight or settled: the hook answers for it
            if pi is not None and pi.status == "requires_payment_method" and pi.confirm_count:
                return  # the gateway declined it: the hook counted it (or, manual, not)
            now = await clock_now(s, self.ctx, invoice.test_clock_id)
            await self._failed(s, invoice, now, decline_code, automatic=automatic)

    async def _failed(
        self, s: AsyncSession, invoice: Invoice, now: int, code: str | None, *, automatic: bool
    ) -> None:
        """A failed try, as Stripe counts them: the first try of an invoice counts, and after
        it only automatic ones (renewals, dunning retries, a new default card). A payer's or
        merchant's own tries (the hosted page, POST /pay) send ``invoice.payment_failed`` but
        neither use up the retry schedule nor move the subscription."""
        if automatic or invoice.attempt_count == 0:
            await on_payment_failed(s, self.ctx, invoice, now, decline_code=code, views=self)
            return
        invoice.updated_us = now
        view = await self.view_in(s, invoice)
        await emit(s, invoice.account_id, "invoice.payment_failed", view, now)
        if code == "authentication_required":
            await emit(s, invoice.account_id, "invoice.payment_action_required", view, now)

    async def on_intent_settled(
        self, s: AsyncSession, pi: PaymentIntent, events: tuple[str, ...]
    ) -> None:
        """The hook (see the module docstring): in the intent's settling transaction.

        Locks the invoice's subscription before the invoice, the order every renewal step
        takes them in (the other order can deadlock on PostgreSQL)."""
        assert pi.invoice_id is not None
        peek = await s.get(Invoice, pi.invoice_id)
        if peek is None or peek.account_id != pi.account_id:
            return
        if peek.subscription_id is not None:
            await s.get(Subscription, peek.subscription_id, with_for_update=True)
        invoice = await s.get(Invoice, pi.invoice_id, with_for_update=True, populate_existing=True)
        assert invoice is not None
        now = await clock_now(s, self.ctx, invoice.test_clock_id)
        if "payment_intent.succeeded" in events:
            await self._apply_success(s, invoice, pi, now)
            return
        if invoice.status != "open" or pi.id != invoice.payment_intent_id:
            return
        # Unmarked (made before the mark existed): automatic, so dunning never stalls.
        automatic = (pi.metadata_ or {}).get(TRY_KIND, "automatic") == "automatic"
        if "payment_intent.payment_failed" in events:
            code = failure_code(pi)
            await self._failed(s, invoice, now, code, automatic=automatic)
        elif "payment_intent.requires_action" in events:
            await self._failed(s, invoice, now, "authentication_required", automatic=automatic)

    async def _apply_success(
        self, s: AsyncSession, invoice: Invoice, pi: PaymentIntent, now: int
    ) -> None:
        """Money received for ``invoice``: it pays what is due, never more. What it was not
        needed for is given back (``return_payment``): all of it when the invoice was already
        paid another way or voided, the excess when a credit lowered the amount while the
        payment was on its way. Less than due (a credit note voided meanwhile) is a part
        payment: the invoice stays open and its next try charges the rest."""
        received = pi.amount_received or pi.amount
        if invoice.status not in _PAYABLE:
            paid_by_it = (
                invoice.status == "paid"
                and invoice.payment_intent_id == pi.id
                and not invoice.paid_out_of_band
            )
            if not paid_by_it:
                await self._queue_return(s, invoice, pi, received, "the invoice is closed")
            return
        invoice.attempt_count += 1  # Stripe counts the successful try too
        invoice.payment_intent_id = pi.id
        due = invoice.amount_remaining
        if received >= due:
            await self.settle_paid(s, invoice, now, amount=due, by_intent=pi.id)
            if received > due:
                await self._queue_return(s, invoice, pi, received - due, "more than was due")
            return
        invoice.amount_paid += received
        invoice.amount_remaining = due - received
        invoice.next_payment_attempt_us = now
        invoice.updated_us = now
        await emit(s, invoice.account_id, "invoice.updated", await self.view_in(s, invoice), now)
        if invoice.collection_method == "charge_automatically":
            await enqueue(
                s,
                "invoice_pay",
                {"account_id": invoice.account_id, "invoice_id": invoice.id},
                now_us=self.ctx.now_us(),
                dedupe_key=f"pay:{invoice.id}:rest:{invoice.attempt_count}",
                account_id=invoice.account_id,
            )

    async def _queue_return(
        self, s: AsyncSession, invoice: Invoice, pi: PaymentIntent, amount: int, why: str
    ) -> None:
        log.warning(
            "payment %s brought %s %s to invoice %s (%s): %s",
            pi.id,
            amount,
            pi.currency,
            invoice.id,
            invoice.status,
            why,
        )
        if not self.ctx.settings.refund_late_payments:
            return  # PAYMUX_REFUND_LATE_PAYMENTS=false: an operator decides
        await enqueue(
            s,
            "return_invoice_payment",
            {"account_id": pi.account_id, "pi_id": pi.id, "amount": amount},
            now_us=self.ctx.now_us(),
            dedupe_key=f"return:{pi.id}",
            account_id=pi.account_id,
        )

    async def return_payment(self, account_id: str, pi_id: str, amount: int) -> None:
        """Give back ``amount`` of ``pi_id`` that its invoice did not need (job
        ``return_invoice_payment``). At most one such refund per intent: its id is derived
        from the intent and this purpose (``derived_refund_id``), and the refunds service
        looks for it under the intent's row lock, so a second run of the job (its lease ran
        out mid-run, a crash after the gateway call) finds the first's refund and resumes it
        (same gateway idempotency key) instead of making another.

        A refund the gateway refuses is recorded ``failed`` (``refund.failed`` is sent to the
        merchant's webhooks) and logged as an error: the money stays with the merchant until
        a person refunds it (docs/billing.md). The job then ends: running it again would find
        that failed refund, and a new gateway answer needs a new refund."""
        refund_id = derived_refund_id(pi_id, RETURNED)
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, pi_id)
            if pi is None or pi.account_id != account_id:
                return
            refunds = (
                await s.execute(select(Refund).where(Refund.payment_intent_id == pi_id))
            ).scalars()
            if any(
                r.id != refund_id and (r.metadata_ or {}).get("paymux_reason") == RETURNED
                for r in refunds
            ):
                return  # made before refund ids were derived
            livemode, invoice_id, currency = pi.livemode, pi.invoice_id, pi.currency
        token = current_livemode.set(bool(livemode))
        try:
            view = await RefundsService(self.ctx, self.payments.engine).create(
                account_id,
                pi_id,
                amount,
                "duplicate",
                {"paymux_reason": RETURNED, "invoice": invoice_id or ""},
                refund_id=refund_id,
            )
        except PaymuxError as exc:
            if exc.code == "gateway_invalid_request":
                view = {"id": refund_id, "status": "failed", "failure_reason": exc.gateway_code}
            elif exc.code in ("charge_already_refunded", "refund_amount_too_large"):
                log.warning("nothing left to give back on %s: %s", pi_id, exc.code)
                return
            else:
                raise
        finally:
            current_livemode.reset(token)
        if view.get("status") in ("failed", "canceled"):
            log.error(
                "the gateway refused refund %s giving back %s %s of %s to its payer (invoice "
                "%s, %s): the money stays with the merchant; refund it by hand",
                view.get("id"),
                amount,
                currency,
                pi_id,
                invoice_id,
                view.get("failure_reason"),
            )

    async def release(self, account_id: str, pi_id: str) -> None:
        """Cancel ``pi_id`` if it still waits for the payer and its invoice no longer wants
        it at its amount: closed (paid another way, void), another intent now, or another
        amount due (a credit note). Job ``release_invoice_intent``, queued in the transaction
        that changed the invoice (``queue_release``), and called once at once after it."""
        async with self.ctx.db.read() as s:
            pi = await s.get(PaymentIntent, pi_id)
            if pi is None or pi.account_id != account_id or pi.invoice_id is None:
                return
            # Charged, charging, or over: the hook answers for its money. Unless it is being
            # canceled by the other release of the same change (the job and the call right
            # after the change both run, either first): answered once that cancel is.
            other = pi.status == "processing" and await _canceling(s, pi_id)
            waiting = pi.status in WAITING
            invoice = await s.get(Invoice, pi.invoice_id)
            wanted = (
                invoice is not None
                and invoice.status in _PAYABLE
                and invoice.payment_intent_id == pi.id
                and invoice.amount_remaining == pi.amount
            )
            if wanted:
                return
            livemode = pi.livemode
        if not waiting:
            if other:
                await self._until_answered(pi_id)
            return
        token = current_livemode.set(bool(livemode))
        try:
            await self.payments.cancel(account_id, pi_id, "abandoned")
        except PaymuxError as exc:
            refused = exc.code == "payment_intent_unexpected_state"
            if refused and await self._cancel_in_flight(pi_id):
                await self._until_answered(pi_id)  # the other release's cancel, started first
                return
            # It moved on meanwhile (the payer finished): if money came, the hook returns it.
            log.warning("could not cancel %s, no longer wanted: %s", pi_id, exc.code)
        finally:
            current_livemode.reset(token)

    async def _cancel_in_flight(self, pi_id: str) -> bool:
        async with self.ctx.db.read() as s:
            return await _canceling(s, pi_id)

    async def _until_answered(self, pi_id: str) -> None:
        """Until the intent's cancel in flight is answered (no cancel attempt pending), at
        most ``RELEASE_WAIT``: the caller of a void or a credit note then finds the intent as
        that cancel left it, whichever release started it. Past the wait (a gateway slow to
        answer) the job's attempt, or recovery, finishes it."""
        deadline = time.monotonic() + RELEASE_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(RELEASE_LOOK)
            if not await self._cancel_in_flight(pi_id):
                return
        log.warning("the cancel of %s is still unanswered after %.0f s", pi_id, RELEASE_WAIT)

    async def retry(self, account_id: str, invoice_id: str, *, at_us: int | None = None) -> None:
        """A dunning retry (job ``invoice_retry``, or a test clock's step at ``at_us``)."""
        async with self.ctx.db.write() as s:
            # The subscription first: the end of the retries (``exhaust``) moves it.
            invoice = await lock_invoice(s, account_id, invoice_id)
            now = (
                at_us if at_us is not None else await clock_now(s, self.ctx, invoice.test_clock_id)
            )
            due = invoice.next_payment_attempt_us
            if invoice.status != "open" or due is None or due > now:
                return
            pi = (
                await s.get(PaymentIntent, invoice.payment_intent_id)
                if invoice.payment_intent_id
                else None
            )
            # The code the failed try was judged by (``on_intent_settled``): a hard decline
            # carried as the error's code (``incorrect_number``) is one too.
            code = failure_code(pi) if pi else None
            if code in HARD_DECLINES:
                sub = (
                    await s.get(Subscription, invoice.subscription_id)  # locked above
                    if invoice.subscription_id
                    else None
                )
                await exhaust(s, self.ctx, invoice, sub, now)
                return
        await self.attempt(account_id, invoice_id, from_job=True)
