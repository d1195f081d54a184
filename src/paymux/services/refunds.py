"""Refunds: full, partial, several partials; never more than was captured.

The amount is reserved on the intent (``amount_refund_pending``) by one conditional UPDATE
before the gateway call, so two concurrent partial refunds can never add up to more than
what was received. The outcome moves the reservation into ``amount_refunded`` or releases it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.attempts import refundable
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.domain.states import PaymentIntentStatus, RefundStatus, check_operation
from paymux.gateways.base import GatewayRefund
from paymux.money import Money
from paymux.services.attempts import AttemptEngine, state_of
from paymux.services.audit import audit_in
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    merge_metadata,
    page_of,
)
from paymux.services.idempotency import current_claim, record_recovery_point
from paymux.services.payments import check_currency
from paymux.services.views import refund_view
from paymux.storage.models import GatewayAttempt, PaymentIntent, Refund

__all__ = ["REFUND_REASONS", "RefundsService", "derived_refund_id"]

REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


def derived_refund_id(payment_intent_id: str, purpose: str) -> str:
    """The id of the one refund paymux itself makes of ``payment_intent_id`` for ``purpose``
    (a job's refund, such as giving back what an invoice did not need): the same for every
    run of that job, so a second run (a lease that ran out mid-run, a crash) finds the
    first's refund, and its gateway idempotency key (``<refund id>:refund``), instead of
    making another."""
    digest = hashlib.sha256(f"{payment_intent_id}:{purpose}".encode()).hexdigest()
    return f"re_{digest[:24]}"


class RefundsService:
    def __init__(self, ctx: Context, engine: AttemptEngine | None = None) -> None:
        self.ctx = ctx
        self.engine = engine or AttemptEngine(ctx)

    async def create(
        self,
        account_id: str,
        payment_intent: str,
        amount: int | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        *,
        currency: str | None = None,
        late_payment: bool = False,
        refund_id: str | None = None,
    ) -> dict[str, Any]:
        """Refund ``amount`` (all that is left by default). ``late_payment``: give back money
        that landed on a canceled intent (the reconciler's and the late-payment job's path).

        ``refund_id``: the refund's id, derived by a job from its object and step
        (``derived_refund_id``). If a refund with it exists, nothing new is made: that one is
        resumed (its call settled by asking the gateway) and returned. It is looked for under
        the intent's row lock, so two runs at once make one refund."""
        if reason is not None and reason not in REFUND_REASONS:
            raise PaymuxError.of(
                "parameter_invalid",
                f"reason must be one of {', '.join(sorted(REFUND_REASONS))}.",
                param="reason",
            )
        if amount is not None and amount <= 0:
            raise PaymuxError.of(
                "amount_invalid",
                "The refund amount must be a positive integer in minor units.",
                param="amount",
            )
        claim = current_claim.get()
        if claim is not None and claim.recovery_point == "refund_started" and claim.object_id:
            return await self.outcome(account_id, claim.object_id)
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            pi = await get_owned(
                s,
                PaymentIntent,
                payment_intent,
                account_id,
                param="payment_intent",
                lock=refund_id is not None,
            )
            made = await s.get(Refund, refund_id) if refund_id is not None else None
            if made is not None:
                if made.account_id != account_id or made.payment_intent_id != pi.id:
                    raise PaymuxError.of(
                        "parameter_invalid", f"Refund {refund_id} is another payment's.", param="id"
                    )
                found: str | None = made.id
            else:
                found = None
                if not (late_payment and pi.status == PaymentIntentStatus.CANCELED):
                    check_operation("refund", pi.status)
                check_currency(currency, pi.currency)
                value = await self._reserve(s, pi, amount, now)
                refund = Refund(
                    id=refund_id or new_id("re"),
                    account_id=account_id,
                    payment_intent_id=pi.id,
                    amount=value,
                    currency=pi.currency,
                    reason=reason,
                    status=RefundStatus.PENDING,
                    failure_reason=None,
                    livemode=pi.livemode,
                    gateway_reference=None,
                    metadata_=metadata or {},
                    created_us=now,
                    updated_us=now,
                )
                s.add(refund)
                await emit(s, account_id, "refund.created", refund_view(refund), now)
                attempt = self.engine.start_refund(s, refund, pi, {"amount": value})
                await record_recovery_point(s, "refund_started", refund.id)
                reference, in_currency = pi.gateway_reference, pi.currency
        if found is not None:
            return await self.outcome(account_id, found)  # an earlier run made it: resumed
        assert reference is not None
        gateway = await self.ctx.gateway_of(pi)
        key = attempt.idempotency_key
        outcome = await self.engine.execute(
            attempt,
            lambda: gateway.refund(
                reference, Money(value, in_currency), reason, idempotency_key=key
            ),
        )
        if outcome is None:
            return refund_view(refund)  # the API layer audits this answer after it

        async def answered(s: AsyncSession, settled: Refund) -> None:
            # The request's audit entry, in the transaction that records the outcome.
            await audit_in(s, refund_view(settled), self.ctx.now_us())

        return refund_view(await self.engine.settle_refund(attempt.id, outcome, then=answered))

    @staticmethod
    async def _reserve(s: AsyncSession, pi: PaymentIntent, amount: int | None, now: int) -> int:
        """Reserve the refund's amount (all that is left by default) on the intent, by one
        conditional UPDATE; returns it. Refused when more than is left is asked for."""
        remaining = refundable(state_of(pi))
        if remaining <= 0:
            raise PaymuxError.of(
                "charge_already_refunded",
                f"PaymentIntent {pi.id} has already been refunded in full.",
                param="payment_intent",
            )
        value = remaining if amount is None else amount
        reserved = await s.execute(
            update(PaymentIntent)
            .where(
                PaymentIntent.id == pi.id,
                PaymentIntent.amount_received
                - PaymentIntent.amount_refunded
                - PaymentIntent.amount_refund_pending
                >= value,
            )
            .values(
                amount_refund_pending=PaymentIntent.amount_refund_pending + value,
                updated_us=now,
            )
        )
        if getattr(reserved, "rowcount", 1) != 1 or value > remaining:
            raise PaymuxError.of(
                "refund_amount_too_large",
                f"Refund amount ({value}) is greater than the amount that can still be "
                f"refunded ({remaining}).",
                param="amount",
            )
        return value

    async def outcome(self, account_id: str, refund_id: str) -> dict[str, Any]:
        """A refund's real state, once a call of ours still in flight has been settled."""
        async with self.ctx.db.read() as s:
            await get_owned(s, Refund, refund_id, account_id)
            pending = list(
                (
                    await s.execute(
                        select(GatewayAttempt.id).where(
                            GatewayAttempt.object_id == refund_id,
                            GatewayAttempt.status == "pending",
                        )
                    )
                ).scalars()
            )
        for attempt_id in pending:
            await self.engine.recover(attempt_id)
        return await self.retrieve(account_id, refund_id)

    async def apply_in(self, s: AsyncSession, refund: Refund, outcome: GatewayRefund) -> bool:
        """Apply a provider's word on ``refund`` in the caller's transaction (the engine's)."""
        return await self.engine.apply_refund_report(s, refund, outcome)

    async def record_external(
        self, s: AsyncSession, pi: PaymentIntent, outcome: GatewayRefund
    ) -> Refund:
        """A refund made outside paymux (e.g. in the gateway's dashboard): record it as ours."""
        now = self.ctx.now_us()
        reason = outcome.reason if outcome.reason in REFUND_REASONS else None
        refund = Refund(
            id=new_id("re"),
            account_id=pi.account_id,
            payment_intent_id=pi.id,
            amount=outcome.amount,
            currency=pi.currency,
            reason=reason,
            status=RefundStatus.PENDING,
            failure_reason=None,
            livemode=pi.livemode,
            gateway_reference=outcome.reference,
            metadata_={},
            created_us=now,
            updated_us=now,
        )
        s.add(refund)
        pi.amount_refund_pending += outcome.amount
        await s.flush()
        await emit(s, pi.account_id, "refund.created", refund_view(refund), now)
        await self.apply_in(s, refund, outcome)
        return refund

    async def pending_refunds(self, limit: int = 500) -> list[tuple[str, str]]:
        """Refunds still pending after reconcile_after_seconds, oldest first."""
        cutoff = self.ctx.now_us() - int(self.ctx.settings.reconcile_after_seconds * 1e6)
        async with self.ctx.db.read() as s:
            rows = await s.execute(
                select(Refund.id, Refund.account_id)
                .where(Refund.status == RefundStatus.PENDING, Refund.updated_us < cutoff)
                .order_by(Refund.updated_us, Refund.id)
                .limit(limit)
            )
            return [(str(a), str(b)) for a, b in rows.all()]

    async def update(
        self, account_id: str, refund_id: str, metadata: dict[str, str] | None
    ) -> dict[str, Any]:
        """A refund's metadata, in any state (Stripe lets nothing else change)."""
        async with self.ctx.db.write() as s:
            refund = await get_owned(s, Refund, refund_id, account_id, lock=True)
            if metadata is not None:
                refund.metadata_ = merge_metadata(refund.metadata_, metadata)
                refund.updated_us = max(self.ctx.now_us(), refund.updated_us)
            return refund_view(refund)

    async def retrieve(self, account_id: str, refund_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return refund_view(await get_owned(s, Refund, refund_id, account_id))

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        payment_intent: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Refund,
            account_id,
            refund_view,
            Refund.payment_intent_id == payment_intent if payment_intent else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )
