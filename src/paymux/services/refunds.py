"""Refunds: full, partial, several partials; never more than was captured.

The amount is reserved on the intent (``amount_refund_pending``) by one conditional UPDATE
before the gateway call, so two concurrent partial refunds can never add up to more than
what was received. The outcome moves the reservation into ``amount_refunded`` or releases it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.domain.states import REFUND_TRANSITIONS, RefundStatus, check_operation
from paymux.gateways.base import (
    GatewayInvalidRequest,
    GatewayRateLimited,
    GatewayRefund,
    GatewayUnavailable,
)
from paymux.money import Money
from paymux.services.context import Context, emit, get_owned, page_of
from paymux.services.gateway_calls import call_with_retries, defer_attempt, start_attempt
from paymux.services.payments import check_currency
from paymux.services.views import payment_intent_view, refund_view
from paymux.storage.models import GatewayAttempt, PaymentIntent, Refund

__all__ = ["REFUND_REASONS", "RefundsService"]

REFUND_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


class RefundsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def create(
        self,
        account_id: str,
        payment_intent: str,
        amount: int | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        *,
        currency: str | None = None,
    ) -> dict[str, Any]:
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
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            pi = await get_owned(
                s, PaymentIntent, payment_intent, account_id, param="payment_intent"
            )
            check_operation("refund", pi.status)
            check_currency(currency, pi.currency)
            remaining = pi.amount_received - pi.amount_refunded - pi.amount_refund_pending
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
            refund = Refund(
                id=new_id("re"),
                account_id=account_id,
                payment_intent_id=pi.id,
                amount=value,
                currency=pi.currency,
                reason=reason,
                status=RefundStatus.PENDING,
                failure_reason=None,
                gateway_reference=None,
                metadata_=metadata or {},
                created_us=now,
                updated_us=now,
            )
            s.add(refund)
            await emit(s, account_id, "refund.created", refund_view(refund), now)
            attempt = await start_attempt(
                s,
                account_id=account_id,
                gateway=pi.gateway,
                operation="refund",
                object_id=refund.id,
                idempotency_key=f"{refund.id}:refund",
                request={"amount": value, "reason": reason},
                now_us=now,
            )
            reference, currency, gateway_name = pi.gateway_reference, pi.currency, pi.gateway
        assert reference is not None
        gateway = self.ctx.gateway(gateway_name)
        try:
            outcome = await call_with_retries(
                self.ctx.settings,
                lambda: gateway.refund(
                    reference,
                    Money(value, currency),
                    reason,
                    idempotency_key=attempt.idempotency_key,
                ),
            )
        except (GatewayUnavailable, GatewayRateLimited) as exc:
            async with self.ctx.db.write() as s:
                await defer_attempt(s, attempt.id, exc, self.ctx.settings, now_us=self.ctx.now_us())
            return refund_view(refund)
        except GatewayInvalidRequest as exc:
            await self.apply(
                refund.id, GatewayRefund("failed", None, value, exc.code), attempt_id=attempt.id
            )
            raise PaymuxError.of(
                "gateway_invalid_request",
                f"The gateway refused the refund: {exc}",
                gateway=gateway_name,
                gateway_code=exc.code,
            ) from exc
        return await self.apply(refund.id, outcome, attempt_id=attempt.id)

    async def apply(
        self, refund_id: str, outcome: GatewayRefund, *, attempt_id: str | None = None
    ) -> dict[str, Any]:
        """Apply a gateway's word on a refund (sync answer or settlement). Idempotent."""
        async with self.ctx.db.write() as s:
            refund = await s.get(Refund, refund_id)
            assert refund is not None
            if attempt_id is not None:
                attempt = await s.get(GatewayAttempt, attempt_id)
                if attempt is not None and attempt.status == "pending":
                    attempt.status = "settled"
                    attempt.result = {"status": outcome.status, "reference": outcome.reference}
                    attempt.updated_us = self.ctx.now_us()
            await self.apply_in(s, refund, outcome)
            return refund_view(refund)

    async def apply_in(self, s: AsyncSession, refund: Refund, outcome: GatewayRefund) -> bool:
        """Move ``refund`` (and its intent's amounts) to the gateway's status, in the caller's
        transaction, if that is a legal move. True if anything changed."""
        now = self.ctx.now_us()
        await s.flush()
        pi = await s.get(
            PaymentIntent, refund.payment_intent_id, with_for_update=True, populate_existing=True
        )
        assert pi is not None
        # Read the refund again under the intent's lock: a webhook may just have moved it.
        await s.refresh(refund, with_for_update=True)
        if outcome.reference and not refund.gateway_reference:
            refund.gateway_reference = outcome.reference
        old, new = RefundStatus(refund.status), RefundStatus(outcome.status)
        if old == new or new not in REFUND_TRANSITIONS[old]:
            return False
        if old is RefundStatus.PENDING:
            pi.amount_refund_pending -= refund.amount
        if new is RefundStatus.SUCCEEDED:
            pi.amount_refunded += refund.amount
        if old is RefundStatus.SUCCEEDED and new is RefundStatus.FAILED:
            pi.amount_refunded -= refund.amount
        refund.status = new
        refund.failure_reason = outcome.failure_reason
        refund.updated_us = now
        pi.updated_us = now
        await emit(s, refund.account_id, "refund.updated", refund_view(refund), now)
        if new is RefundStatus.SUCCEEDED:
            await emit(s, refund.account_id, "charge.refunded", payment_intent_view(pi), now)
        if new is RefundStatus.FAILED:
            await emit(s, refund.account_id, "refund.failed", refund_view(refund), now)
        return True

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

    async def settle_attempt(self, attempt: GatewayAttempt) -> None:
        async with self.ctx.db.read() as s:
            refund = await s.get(Refund, attempt.object_id)
            assert refund is not None
            pi = await s.get(PaymentIntent, refund.payment_intent_id)
            assert pi is not None and pi.gateway_reference is not None
        gateway = self.ctx.gateway(attempt.gateway)
        outcome = await gateway.refund(
            pi.gateway_reference,
            Money(refund.amount, refund.currency),
            refund.reason,
            idempotency_key=attempt.idempotency_key,
        )
        await self.apply(refund.id, outcome, attempt_id=attempt.id)

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
        )
