"""3-D Secure on a payment intent (issue 12 section 3): which option a confirmation asks its
gateway for, and the card's stored-credential reference for merchant-initiated charges.

Pure rules over the intent's stored fields; the connectors map the option to their own
words (Stripe passes it through; PayPal SCA_ALWAYS / SCA_WHEN_REQUIRED; Square asks for a
verifyBuyer token; the sandbox shows its challenge page).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.states import PaymentIntentStatus as S
from paymux.storage.models import PaymentIntent, PaymentMethod

__all__ = ["card_options", "record_network_reference", "requested_option"]


def card_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """Stripe's ``payment_method_options`` as stored: only what was given (None: nothing)."""
    card = {k: v for k, v in ((options or {}).get("card") or {}).items() if v is not None}
    return {"card": card} if card else None


def requested_option(pi: PaymentIntent) -> str | None:
    """What this confirmation asks the gateway for: the merchant's
    ``payment_method_options[card][request_three_d_secure]``, raised to ``any`` when a
    request_3ds fraud rule matched (a ``challenge`` stays a challenge); None off session,
    where no payer is there to authenticate."""
    if pi.off_session:
        return None
    asked = ((pi.payment_method_options or {}).get("card") or {}).get("request_three_d_secure")
    if _fraud_asks(pi) and asked != "challenge":
        return "any"
    return str(asked) if asked else None


def _fraud_asks(pi: PaymentIntent) -> bool:
    """A request_3ds rule matched this confirm (fraud/decisions.py ``outcome_of``), and was
    not turned into a review because the gateway can't be asked (``_fail_closed``: the
    review's rule is then the request_3ds rule itself)."""
    outcome = (pi.fraud_outcome or {}).get("outcome") or {}
    rule_3ds = outcome.get("request_3ds")
    if rule_3ds is None:
        return False
    rule = outcome.get("rule") or {}
    return not (outcome.get("type") == "manual_review" and rule.get("id") == rule_3ds)


async def record_network_reference(
    s: AsyncSession, pi: PaymentIntent, new: S, network_transaction_id: str
) -> None:
    """The card saved by this customer-initiated payment (``setup_future_usage``) keeps the
    network's id of its first successful payment: merchant-initiated charges of the card
    reference it (Visa's and Mastercard's stored-credential rules). Set once, never moved."""
    if pi.off_session or not pi.payment_method_id or new not in (S.SUCCEEDED, S.REQUIRES_CAPTURE):
        return
    await s.execute(
        update(PaymentMethod)
        .where(
            PaymentMethod.id == pi.payment_method_id,
            PaymentMethod.network_transaction_id.is_(None),
        )
        .values(network_transaction_id=network_transaction_id[:255])
    )
