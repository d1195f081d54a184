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
from paymux.gateways.base import PaymentUpdate
from paymux.storage.models import PaymentIntent, PaymentMethod

__all__ = [
    "card_options",
    "is_recurring",
    "needs_charge_read",
    "record_network_reference",
    "requested_option",
]

# Where a webhook can leave a payment whose charge is read again: money held or received.
# (Not a decline: a retrieve's FAILED answer on a failed intent counts as a new decline,
# domain/attempts.py ``apply_report``, so a declined charge's result waits for the next read.)
_CHARGED = frozenset({S.SUCCEEDED, S.REQUIRES_CAPTURE})


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


def is_recurring(pi: PaymentIntent) -> bool:
    """A merchant-initiated charge under the customer's recurring agreement: an invoice
    charged off session (billing/invoice_payments.py pays renewals, their retries and
    automatically collected invoices off session, with the invoice named on the intent).
    A merchant's own off-session charge (no invoice) is unscheduled, not recurring."""
    return bool(pi.off_session and pi.invoice_id)


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


def needs_charge_read(change: PaymentUpdate, moved: bool, pi: PaymentIntent) -> bool:
    """Whether a webhook just applied leaves ``pi`` to be read again for its charge: the event
    moved it (its outcome came by webhook, as after the payer's 3-D Secure) to money held or
    received, named the charge by id only (Stripe's ``latest_charge``), and no 3-D
    Secure result is recorded. The read (``refresh_intent``) is the worker's: a read-only
    retrieve with the charge expanded, outside any transaction."""
    return change.charge_unread and moved and pi.status in _CHARGED and pi.three_d_secure is None


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
