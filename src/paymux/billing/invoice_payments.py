"""Paying an invoice: an off-session PaymentIntent on the invoice's payment method, through
the same payment service and gateways as one-time payments.

The PaymentIntent of the n-th try of an invoice has an id derived from the invoice and n
(``attempt_intent_id``), noted on the invoice (``payment_intent_id``) in a transaction of its
own BEFORE the payment service is called. A crash anywhere and a retry of the job computes
the same id, and the payment service resumes that intent instead of making another (its
gateway idempotency key derives from the intent id, so the gateway never charges twice).

The outcome reaches the invoice through ONE hook (``on_intent_settled``), run by the attempt
engine in the transaction that settles the intent, whichever path settled it: this call, a
gateway webhook, the recovery job, or the payer completing 3-D Secure on the hosted page.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.clock_time import clock_now
from paymux.billing.dunning import exhaust, on_payment_failed
from paymux.billing.invoice_core import InvoicesCore
from paymux.billing.rules.retries import HARD_DECLINES
from paymux.domain.errors import PaymuxError
from paymux.money import min_charge_amount
from paymux.services.context import current_livemode, get_owned, ref_key
from paymux.services.payments import CreateParams, PaymentsService
from paymux.storage.models import Customer, Invoice, PaymentIntent, PaymentMethod, Subscription

__all__ = ["InvoicePayments", "attempt_intent_id", "live_intent"]

log = logging.getLogger(__name__)

_PAYABLE = ("open", "uncollectible")
# An invoice's intent in one of these is over and failed: a new try may replace it. Any other
# status (requires_action, requires_confirmation, processing, requires_capture, succeeded) is a
# payment in flight or done: no second one is made beside it.
_REPLACEABLE = ("requires_payment_method", "canceled")


async def live_intent(s: AsyncSession, invoice: Invoice) -> PaymentIntent | None:
    """The invoice's current intent if it is in flight or done (not replaceable)."""
    if not invoice.payment_intent_id:
        return None
    pi = await s.get(PaymentIntent, invoice.payment_intent_id, populate_existing=True)
    return pi if pi is not None and pi.status not in _REPLACEABLE else None


def attempt_intent_id(invoice_id: str, n: int) -> str:
    """The PaymentIntent id of the n-th try of an invoice: the same for every run of it."""
    digest = hashlib.sha256(f"{invoice_id}:{n}".encode()).hexdigest()[:24]
    return f"pi_{digest}"


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
                invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
                now = await clock_now(s, self.ctx, invoice.test_clock_id)
                await self.settle_paid(s, invoice, now, amount=0, out_of_band=True)
                return await self.view_in(s, invoice)
        await self.attempt(
            account_id, invoice_id, payment_method=payment_method, off_session=off_session
        )
        return await self.retrieve(account_id, invoice_id)

    async def _payment_method(self, s: AsyncSession, invoice: Invoice) -> PaymentMethod | None:
        """The invoice's, else its subscription's, else the customer's default."""
        pm_id = invoice.default_payment_method_id
        if pm_id is None and invoice.subscription_id is not None:
            sub = await s.get(Subscription, invoice.subscription_id)
            pm_id = sub.default_payment_method_id if sub is not None else None
        if pm_id is None:
            customer = await s.get(Customer, invoice.customer_id)
            pm_id = customer.default_payment_method if customer is not None else None
        return None if pm_id is None else await s.get(PaymentMethod, pm_id)

    async def attempt(
        self,
        account_id: str,
        invoice_id: str,
        *,
        payment_method: str | None = None,
        off_session: bool = True,
        from_job: bool = False,
    ) -> None:
        """One try at charging an open invoice (see the module docstring)."""
        async with self.ctx.db.read() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id)
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
            await self._failed_without_intent(account_id, invoice_id, n - 1, None)
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
            if await live_intent(s, locked) is not None:
                return  # a payment is in flight or done: never a second one beside it
            # What is charged is what is due now, read under the lock (a credit note may
            # have lowered it since the first read).
            amount, currency = locked.amount_remaining, locked.currency
            customer_id, livemode, number = locked.customer_id, locked.livemode, locked.number
            too_small = 0 < amount < min_charge_amount(currency)
            if not too_small:
                locked.payment_intent_id = pi_id  # reserved before the payment service hears
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
                    metadata={"invoice": invoice_id},
                ),
            )
        except PaymuxError as exc:
            # A decline was applied to the invoice by the hook; anything refused before the
            # payment was tried (a detached card) is a failed try here. Asked through the
            # API (POST /v1/invoices/{id}/pay), the error is the answer, as on Stripe (402).
            await self._failed_without_intent(account_id, invoice_id, n - 1, exc.decline_code)
            if not from_job:
                raise
        finally:
            current_livemode.reset(token)

    async def _too_small(self, account_id: str, invoice_id: str) -> None:
        """An amount below the currency's minimum charge is not charged: it is carried to
        the customer's balance (the next invoice collects it) and the invoice is paid, as
        Stripe does."""
        from paymux.billing.balance import adjust_balance

        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
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
            pi_id = attempt_intent_id(invoice_id, invoice.attempt_count + 1)
            live = await live_intent(s, invoice)
            if live is not None and live.id != pi_id:
                return
            invoice.payment_intent_id = pi_id
            pm = await self._payment_method(s, invoice)
            amount, currency = invoice.amount_remaining, invoice.currency
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
                    metadata={"invoice": invoice_id},
                ),
            )
        finally:
            current_livemode.reset(token)

    async def _failed_without_intent(
        self, account_id: str, invoice_id: str, count: int, decline_code: str | None
    ) -> None:
        """Count a try that never reached the gateway (no payment method, a refused one),
        unless the hook counted it already."""
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
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
            now = await clock_now(s, self.ctx, invoice.test_clock_id)
            await on_payment_failed(
                s, self.ctx, invoice, now, decline_code=decline_code, views=self
            )

    async def on_intent_settled(
        self, s: AsyncSession, pi: PaymentIntent, events: tuple[str, ...]
    ) -> None:
        """The hook (see the module docstring): in the intent's settling transaction."""
        assert pi.invoice_id is not None
        invoice = await s.get(Invoice, pi.invoice_id, with_for_update=True)
        if invoice is None or invoice.account_id != pi.account_id:
            return
        now = await clock_now(s, self.ctx, invoice.test_clock_id)
        if "payment_intent.succeeded" in events:
            if invoice.status in _PAYABLE:
                invoice.attempt_count += 1  # Stripe counts the successful try too
                invoice.payment_intent_id = pi.id
                await self.settle_paid(s, invoice, now, amount=pi.amount_received or pi.amount)
            else:
                log.warning(
                    "payment %s succeeded for invoice %s, which is %s",
                    pi.id,
                    invoice.id,
                    invoice.status,
                )
            return
        if invoice.status != "open" or pi.id != invoice.payment_intent_id:
            return
        if "payment_intent.payment_failed" in events:
            code = (pi.last_payment_error or {}).get("decline_code") or (
                pi.last_payment_error or {}
            ).get("code")
            await on_payment_failed(s, self.ctx, invoice, now, decline_code=code, views=self)
        elif "payment_intent.requires_action" in events:
            await on_payment_failed(
                s, self.ctx, invoice, now, decline_code="authentication_required", views=self
            )

    async def retry(self, account_id: str, invoice_id: str, *, at_us: int | None = None) -> None:
        """A dunning retry (job ``invoice_retry``, or a test clock's step at ``at_us``)."""
        async with self.ctx.db.write() as s:
            invoice = await get_owned(s, Invoice, invoice_id, account_id, lock=True)
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
            code = ((pi.last_payment_error or {}).get("decline_code") if pi else None) or None
            if code in HARD_DECLINES:
                sub = (
                    await s.get(Subscription, invoice.subscription_id, with_for_update=True)
                    if invoice.subscription_id
                    else None
                )
                await exhaust(s, self.ctx, invoice, sub, now)
                return
        await self.attempt(account_id, invoice_id, from_job=True)
