"""Charges: Stripe's record of one attempt to move a payment's money, read-only here but for
the annotations Stripe lets change in any state (description, metadata, receipt email).

paymux keeps the money on the PaymentIntent and its gateway attempts; a Charge is a view of
the intent's latest authorization (what Stripe's ``latest_charge`` names): its amount,
capture and refunds, outcome, and the card it ran on. Its id is the intent's with ``ch_``
for ``pi_`` (``pi_ab12`` has ``ch_ab12``), so it needs no table of its own. One charge per
intent: an intent confirmed again after a decline shows the latest attempt.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.domain.states import PaymentIntentStatus as S
from paymux.services.context import Context, CreatedRange, get_owned, merge_metadata, page_of
from paymux.services.customers import contact
from paymux.services.views import charge_id, has_charge, shipping_view
from paymux.storage.models import PaymentIntent, PaymentMethod

__all__ = ["ChargesService", "charge_id", "charge_view", "has_charge", "intent_id"]

_CHARGED = frozenset({S.REQUIRES_CAPTURE, S.SUCCEEDED})


def intent_id(ch_id: str) -> str | None:
    return "pi_" + ch_id.removeprefix("ch_") if ch_id.startswith("ch_") else None


def charged_method_id(pi: PaymentIntent) -> str | None:
    """The payment method the charge ran on: the intent's, or, after a decline took it off
    the intent (as on Stripe), the one its ``last_payment_error`` names: a failed charge
    still shows its card and its 3-D Secure result (``failed``)."""
    if pi.payment_method_id:
        return pi.payment_method_id
    failed_with = (pi.last_payment_error or {}).get("payment_method")
    return failed_with if isinstance(failed_with, str) else None


def _status(pi: PaymentIntent) -> str:
    if pi.status in _CHARGED or pi.amount_received > 0 or pi.authorized_us is not None:
        return "succeeded"
    if pi.status == S.PROCESSING:
        return "pending"
    return "failed"


def _fraud_outcome(pi: PaymentIntent, status: str) -> dict[str, Any]:
    """The fraud decision's part of ``outcome`` (fraud/decisions.py): risk level, score and
    rule; a block or a review shows as its own type."""
    decided = (pi.fraud_outcome or {}).get("outcome")
    if not decided:
        return {}
    fields = {name: decided.get(name) for name in ("risk_level", "risk_score", "rule")}
    if decided.get("type") == "blocked" or (
        decided.get("type") == "manual_review" and status == "succeeded"
    ):
        for name in ("type", "reason", "network_status", "seller_message"):
            fields[name] = decided.get(name)
    return fields


def charge_view(pi: PaymentIntent, pm: PaymentMethod | None) -> dict[str, Any]:
    status = _status(pi)
    error = pi.last_payment_error if status == "failed" else None
    captured = pi.amount_received > 0
    card = None
    if pm is not None:
        card = {
            "brand": pm.card_brand,
            "last4": pm.card_last4,
            "exp_month": pm.card_exp_month,
            "exp_year": pm.card_exp_year,
            "fingerprint": pm.card_fingerprint,
            "country": pm.card_country,
            "funding": pm.card_funding,
            # The confirmation's 3-D Secure outcome (Stripe's shape, plus liability_shift);
            # None when none ran.
            "three_d_secure": pi.three_d_secure,
        }
    return {
        "id": charge_id(pi.id),
        "object": "charge",
        "amount": pi.amount,
        "amount_captured": pi.amount_received,
        "amount_refunded": pi.amount_refunded,
        "captured": captured,
        "currency": pi.currency.lower(),
        "customer": pi.customer_id,
        "description": pi.description,
        "failure_code": (error or {}).get("code"),
        "failure_message": (error or {}).get("message"),
        "gateway": pi.gateway,
        "livemode": bool(pi.livemode),
        "metadata": pi.metadata_ or {},
        "outcome": {
            "type": "authorized" if status == "succeeded" else "issuer_declined",
            "reason": (error or {}).get("decline_code"),
            "seller_message": "Payment complete." if status == "succeeded" else None,
            **_fraud_outcome(pi, status),
        }
        if status != "pending"
        else None,
        "paid": status == "succeeded",
        "payment_intent": pi.id,
        "payment_method": charged_method_id(pi),
        "payment_method_details": {"type": "card", "card": card} if card else None,
        "receipt_email": pi.receipt_email,
        "shipping": shipping_view(pi.shipping, carrier=True),  # the intent's, as on Stripe
        "refunded": pi.amount_refunded > 0 and pi.amount_refunded >= pi.amount_received,
        "statement_descriptor": pi.statement_descriptor,
        "statement_descriptor_suffix": pi.statement_descriptor_suffix,
        "status": status,
        "created": (pi.authorized_us or pi.updated_us) // 1_000_000,
    }


async def load_charge(
    s: AsyncSession, account_id: str, ch_id: str, *, param: str = "id"
) -> dict[str, Any]:
    """A charge of the account (404 if there is none, never a leak)."""
    missing = PaymuxError.of("resource_missing", f"No such charge: '{ch_id}'", param=param)
    pi_id = intent_id(ch_id)
    if pi_id is None:
        raise missing
    try:
        pi = await get_owned(s, PaymentIntent, pi_id, account_id, param=param)
    except PaymuxError:
        raise missing from None
    if not has_charge(pi):
        raise missing
    pm = await _charged_method(s, pi)
    return charge_view(pi, pm)


async def _charged_method(s: AsyncSession, pi: PaymentIntent) -> PaymentMethod | None:
    found = charged_method_id(pi)
    return await s.get(PaymentMethod, found) if found else None


class ChargesService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def retrieve(self, account_id: str, ch_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return await load_charge(s, account_id, ch_id)

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        payment_intent: str | None = None,
        customer: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Charges newest first (by their intent's creation), only intents that have one."""
        tried = (PaymentIntent.confirm_count > 0) & (PaymentIntent.status != S.REQUIRES_ACTION)
        views, more = await page_of(
            self.ctx,
            PaymentIntent,
            account_id,
            lambda pi: pi,
            tried,
            PaymentIntent.id == payment_intent if payment_intent else None,
            PaymentIntent.customer_id == customer if customer else None,
            limit=limit,
            starting_after=intent_id(starting_after) if starting_after else None,
            ending_before=intent_id(ending_before) if ending_before else None,
            created=created,
        )
        intents: list[Any] = views
        async with self.ctx.db.read() as s:
            out = []
            for pi in intents:
                pm = await _charged_method(s, pi)
                out.append(charge_view(pi, pm))
        return out, more

    async def update(
        self,
        account_id: str,
        ch_id: str,
        *,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        receipt_email: str | None = None,
        shipping: dict[str, Any] | str | None = None,
    ) -> dict[str, Any]:
        """Stripe's charge update, for what it lets change in any state: the description,
        the metadata (``""`` removes a key), the receipt email and the shipping (a tracking
        number comes after the payment; ``""`` removes it). A charge is a view of its
        intent's latest attempt, so these are the intent's own fields: the intent shows them
        too. Nothing about the money changes."""
        async with self.ctx.db.write() as s:
            await load_charge(s, account_id, ch_id)  # 404 unless the charge exists
            pi_id = intent_id(ch_id)
            assert pi_id is not None
            pi = await get_owned(s, PaymentIntent, pi_id, account_id, lock=True)
            if description is not None:
                pi.description = description or None  # "" clears, as on Stripe
            if receipt_email is not None:
                pi.receipt_email = receipt_email or None
            if metadata is not None:
                pi.metadata_ = merge_metadata(pi.metadata_, metadata)
            if shipping is not None:
                pi.shipping = contact(shipping) if isinstance(shipping, dict) else None
            pi.updated_us = max(self.ctx.now_us(), pi.updated_us)
            pm = await _charged_method(s, pi)
            return charge_view(pi, pm)
