"""The review queue (``/v1/reviews``, Stripe's ``review`` object).

A payment a ``review`` rule matched is authorized only; when its authorization is applied
(``payment_intent.amount_capturable_updated``, on whichever path) a review opens in that
same transaction, with ``review.opened``. Closing follows the money, also in the
transaction that moves it, so a crash between the call and the review's update can't leave
them apart:

- approve (``POST /v1/reviews/{id}/approve``): captures the payment; its
  ``payment_intent.succeeded`` closes the review as ``approved``;
- reject (``POST /v1/reviews/{id}/reject``, paymux's; Stripe has you refund): cancels a held
  authorization (closed ``canceled``) or refunds a captured payment (closed ``refunded``).

A payment a ``review`` rule matched that was captured at once (its gateway can't hold funds:
``hold`` false in its decision) opens its review when it succeeds (``_on_succeeded``);
approving it closes it with no gateway call, rejecting it refunds the money. One whose
payment is canceled is closed by rejecting it. While money is moving (a capture or cancel
in flight: ``processing``) approve and reject are a 400 ``payment_intent_unexpected_state``:
the review closes when the movement lands.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.domain.states import PaymentIntentStatus as S
from paymux.domain.states import RefundStatus
from paymux.services.context import Context, CreatedRange, emit, get_owned, page_of, react_to
from paymux.services.payments import PaymentsService
from paymux.services.refunds import RefundsService
from paymux.services.views import charge_id
from paymux.storage.models import PaymentIntent, Refund, Review

__all__ = ["Reviews", "review_view"]

# A review's intent, by the review's key: the account is compared on the row. With
# ``account_id = :a`` in the statement, a plan PostgreSQL keeps without statistics may walk
# the account's reviews through (account_id, created_us) (tests/integration/
# test_key_lookup_plans.py; docs/operations.md, "Statistics and kept plans").
_INTENT_OF_REVIEW = select(Review.payment_intent_id, Review.account_id).where(
    Review.id == bindparam("id")
)


def review_view(row: Review) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "review",
        "billing_zip": None,
        "charge": charge_id(row.payment_intent_id),
        "closed_reason": row.closed_reason,
        "created": row.created_us // 1_000_000,
        "ip_address": row.ip_address,
        "ip_address_location": {"country": row.ip_country} if row.ip_country else None,
        "livemode": bool(row.livemode),
        "open": bool(row.open),
        "opened_reason": row.opened_reason,
        "payment_intent": row.payment_intent_id,
        "reason": row.reason,
        "rule": row.rule_id,
        "session": {"user_agent": row.user_agent} if row.user_agent else None,
    }


async def _open_review_of(s: AsyncSession, pi_id: str) -> Review | None:
    found = await s.execute(
        select(Review).where(Review.payment_intent_id == pi_id, Review.open.is_(True)).limit(1)
    )
    return found.scalars().first()


async def _on_authorized(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
    """A payment a review rule matched is authorized: open its review (once)."""
    pi = await s.get(PaymentIntent, str(obj["id"]))
    outcome = ((pi.fraud_outcome or {}) if pi is not None else {}).get("outcome") or {}
    if pi is None or outcome.get("type") != "manual_review":
        return
    if await _open_review_of(s, pi.id) is not None:
        return
    await _open(s, account_id, pi, now)


async def _open(s: AsyncSession, account_id: str, pi: PaymentIntent, now: int) -> None:
    outcome = (pi.fraud_outcome or {}).get("outcome") or {}
    payer = (pi.fraud_outcome or {}).get("payer") or {}
    facts = (pi.fraud_outcome or {}).get("facts") or {}
    row = Review(
        id=new_id("prv"),
        account_id=account_id,
        livemode=bool(pi.livemode),
        payment_intent_id=pi.id,
        open=True,
        opened_reason="rule",
        reason="rule",
        rule_id=(outcome.get("rule") or {}).get("id"),
        ip_address=payer.get("ip_address"),
        ip_country=facts.get("ip_country"),
        user_agent=payer.get("user_agent"),
        created_us=now,
    )
    s.add(row)
    await s.flush()
    await emit(s, account_id, "review.opened", review_view(row), now)


async def _close(s: AsyncSession, account_id: str, row: Review, reason: str, now: int) -> None:
    row.open = False
    row.reason = reason
    row.closed_reason = reason
    row.closed_us = now
    await s.flush()
    await emit(s, account_id, "review.closed", review_view(row), now)


def _closer(reason: str) -> Any:
    async def close(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
        row = await _open_review_of(s, str(obj["id"]))
        if row is not None:
            await _close(s, account_id, row, reason, now)

    return close


_ON_APPROVED = _closer("approved")


async def _on_succeeded(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
    """A reviewed payment is captured: its open review closes ``approved``. One captured
    at once, never authorized alone (``hold`` false: the gateway can't hold funds; or a
    gateway that captured although asked to hold), has had no review yet: it opens now, on
    the captured money (rejecting it refunds)."""
    if await _open_review_of(s, str(obj["id"])) is not None:
        await _ON_APPROVED(s, account_id, obj, now)
        return
    pi = await s.get(PaymentIntent, str(obj["id"]))
    record = (pi.fraud_outcome or {}) if pi is not None else {}
    if pi is None or (record.get("outcome") or {}).get("type") != "manual_review":
        return
    # One opened at the authorization (and closed since) is not opened again.
    if await s.scalar(select(Review.id).where(Review.payment_intent_id == pi.id).limit(1)):
        return
    await _open(s, account_id, pi, now)


_ON_CANCELED = _closer("canceled")
_ON_REFUNDED = _closer("refunded")


def _fully_refunded(obj: dict[str, Any], pi: Any) -> bool:
    """The gate of the refund reaction: ``charge.refunded`` follows every refund that
    succeeds, a part too (as Stripe's does); the payment's review closes ``refunded`` only
    once all the money received went back (``obj``: the intent as emitted)."""
    received = int(obj.get("amount_received") or 0)
    return received > 0 and int(obj.get("amount_refunded") or 0) >= received


def _was_reviewed(obj: dict[str, Any], pi: Any) -> bool:
    """The gate of the intent reactions (``react_to``'s ``when``): a review is opened only
    for an intent whose decision was ``manual_review`` (``_on_authorized``), and that
    decision is not replaced while the review can be open (a new confirm, the only writer of
    ``fraud_outcome`` besides a block, starts only from requires_payment_method /
    requires_confirmation, before any authorization). Without the emitter's row: run."""
    if pi is None:
        return True
    outcome = (pi.fraud_outcome or {}).get("outcome") or {}
    return bool(outcome.get("type") == "manual_review")


async def _refund_under_way(s: AsyncSession, pi_id: str) -> bool:
    """Whether a refund of the payment waits for the gateway's answer (a reject's, whose
    answer was lost): an approve meanwhile would close the review ``approved`` of money
    that is going back."""
    pending = await s.scalar(
        select(Refund.id)
        .where(Refund.payment_intent_id == pi_id, Refund.status == RefundStatus.PENDING)
        .limit(1)
    )
    return pending is not None


class Reviews:
    def __init__(self, ctx: Context, payments: PaymentsService, refunds: RefundsService) -> None:
        self.ctx = ctx
        self.payments = payments
        self.refunds = refunds
        react_to("payment_intent.amount_capturable_updated", _on_authorized, when=_was_reviewed)
        react_to("payment_intent.succeeded", _on_succeeded, when=_was_reviewed)
        react_to("payment_intent.canceled", _ON_CANCELED, when=_was_reviewed)
        react_to("charge.refunded", _ON_REFUNDED, when=_fully_refunded)

    async def retrieve(self, account_id: str, review_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return review_view(await get_owned(s, Review, review_id, account_id))

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        open: bool | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            Review,
            account_id,
            review_view,
            Review.open.is_(open) if open is not None else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    async def _open(self, account_id: str, review_id: str) -> tuple[Review, str]:
        async with self.ctx.db.read() as s:
            row = await get_owned(s, Review, review_id, account_id)
            if not row.open:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"The review {review_id} is closed ({row.closed_reason}).",
                    param="id",
                )
            pi = await get_owned(s, PaymentIntent, row.payment_intent_id, account_id)
            return row, pi.status

    async def approve(self, account_id: str, review_id: str) -> dict[str, Any]:
        row, status = await self._open(account_id, review_id)
        if status == S.REQUIRES_CAPTURE:
            await self.payments.capture(account_id, row.payment_intent_id)
        else:  # captured already (a gateway that can't hold funds): nothing to move
            await self._close_now(account_id, review_id, "approved", S.SUCCEEDED, "approve")
        return await self.retrieve(account_id, review_id)

    async def reject(self, account_id: str, review_id: str) -> dict[str, Any]:
        row, status = await self._open(account_id, review_id)
        if status == S.REQUIRES_CAPTURE:
            await self.payments.cancel(account_id, row.payment_intent_id, "fraudulent")
        elif status == S.SUCCEEDED:
            await self.refunds.create(account_id, row.payment_intent_id, reason="fraudulent")
        else:  # canceled already: nothing to move
            await self._close_now(account_id, review_id, "canceled", S.CANCELED, "reject")
        return await self.retrieve(account_id, review_id)

    async def _close_now(
        self, account_id: str, review_id: str, reason: str, needs: S, verb: str
    ) -> None:
        """Close with no money moving, only when the payment is already where ``reason``
        says (read under the lock): a capture or cancel still in flight (``processing``)
        is a 400, so a review never says ``canceled`` of money that is being captured."""
        async with self.ctx.db.write() as s:
            # The intent first, then the review: the order the transactions that move the
            # money take them in (they close the review), so the two never deadlock.
            found = (await s.execute(_INTENT_OF_REVIEW, {"id": review_id})).first()
            pi_id = found.payment_intent_id if found and found.account_id == account_id else None
            pi = await get_owned(s, PaymentIntent, str(pi_id), account_id, lock=True)
            row = await get_owned(s, Review, review_id, account_id, lock=True)
            refunding = verb == "approve" and await _refund_under_way(s, pi.id)
            if pi.status != needs or refunding:
                moving = " (money is moving: try again when it settles)" * (
                    pi.status == S.PROCESSING or refunding
                )
                raise PaymuxError.of(
                    "payment_intent_unexpected_state",
                    f"You cannot {verb} this review: its PaymentIntent has a status of "
                    f"{pi.status}{moving}.",
                    param="id",
                    status=pi.status,
                )
            if row.open:
                await _close(s, account_id, row, reason, self.ctx.now_us())
