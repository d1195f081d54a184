"""The invoice's payment lease: one charge path at a time.

An invoice can be charged by its dunning schedule (a job: ``InvoicePayments.attempt``) and by
its payer on the hosted page (``hosted_payments.pay_from_page``). Each reserves the intent it
will charge under the invoice's row lock, then lets the lock go before the payment service
records the intent's start (a gateway call never runs inside a transaction). Between the two
there is a window where the invoice shows an intent that does not yet look in flight (not
made yet, or a declined one being confirmed again); a path arriving then would start a
second charge beside it (the second payment was refunded automatically, but a customer saw
two charges).

The lease closes it: under the same lock that reserves the intent, the path takes the lease
(``payment_lease_holder``: the intent's id; ``payment_lease_until_us``: until when, wall
clock) and gives it back once the payment service has answered, when the intent's own status
says whether a payment is in flight. Any other path that finds a live lease held for another
intent does not charge: the page answers that a payment is under way; a dunning try is put
off until the lease ends (a job), so it is never lost. A try of the invoice's own schedule
(``InvoicePayments.attempt``: the dunning job, or the merchant's ``/pay``) defers to a live
lease whoever holds it (``lease_live``): both derive the same intent id for one try count.
A process that dies holding a lease lets it lapse: it lasts as long as the gateway calls
before a payment's start may take (``lease_seconds``), after which the intent's own status
(and its settlement job) answer for it.

The payment's start checks it too (``check_start``, the payment service's ``start_guard``,
in the transaction that records the start): a path slower than its whole lease (a process
stalled between taking it and starting) may find that another path took the invoice
meanwhile. Its start is then refused and nothing is written: no attempt, no gateway call.

The rules are pure functions over the invoice row; the caller holds its lock.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.services.context import Context
from paymux.storage.models import Invoice, PaymentIntent

__all__ = [
    "check_start",
    "held_by_other",
    "lease_live",
    "lease_seconds",
    "release_lease",
    "superseded",
    "take_lease",
    "taken_over",
]

log = logging.getLogger(__name__)


# Gateway calls a path may make between taking the lease and recording its start, counting
# that start: describing the card and making it from a token (the hosted page's
# ``payment_method_data``), then the authorize the start precedes.
_CALLS_BEFORE_START = 3


def lease_seconds(ctx: Context) -> float:
    """How long a lease lasts: as long as every gateway call before the payment's start may
    take with its retries (``attempt_settle_after_seconds`` is one call's budget). A lease
    that lapsed while the page was still describing the card let a dunning try charge beside
    it (review finding); a dead process's lease holds the invoice's dunning off this long."""
    return _CALLS_BEFORE_START * float(ctx.settings.attempt_settle_after_seconds)


def lease_live(invoice: Invoice, now_us: int) -> bool:
    """Whether any path holds a live lease on ``invoice``, whoever it names. A try of the
    dunning schedule and the merchant's ``POST /v1/invoices/{id}/pay`` at the same try
    count derive the same intent id (``attempt_intent_id``), so the holder can't tell them
    apart: a try finding a live lease defers to it (review finding: both made the intent,
    and the second insert failed with a 500), and a crashed try's lease lapses by itself."""
    return (
        invoice.payment_lease_holder is not None and (invoice.payment_lease_until_us or 0) > now_us
    )


def held_by_other(invoice: Invoice, holder: str, now_us: int) -> bool:
    """Whether a live lease on ``invoice`` is held for another intent than ``holder`` (the
    same holder is a re-run of the same try: it resumes its own intent)."""
    other = invoice.payment_lease_holder
    return other is not None and other != holder and (invoice.payment_lease_until_us or 0) > now_us


def superseded(invoice: Invoice, pi_id: str, now_us: int) -> str | None:
    """Why a payment of ``invoice`` by intent ``pi_id`` must not start now, or None: the
    invoice is closed, another intent holds its live lease, or the invoice names another
    intent (this path's lease lapsed and another path took the invoice, maybe done already).
    An intent the invoice names and no live lease of another's: it may start (a path with no
    lease of its own, such as the browser confirming ``default_incomplete``, included)."""
    if invoice.status not in ("open", "uncollectible"):
        return f"This invoice is {invoice.status}: there is nothing to pay."
    if held_by_other(invoice, pi_id, now_us) or invoice.payment_intent_id not in (None, pi_id):
        return "Another payment of this invoice started meanwhile: this one was not started."
    return None


async def check_start(s: AsyncSession, pi: PaymentIntent, now_us: int) -> None:
    """The payment service's ``start_guard``: in the transaction that records the start of
    ``pi``'s authorize (after the intent's row, before any gateway call), with the invoice's
    row locked (the intent, then its invoice: the order the settling hook takes them in).
    Raises ``invoice_unexpected_state`` if ``superseded``; the transaction is then rolled
    back whole. An invoice that names no intent is made to name this one."""
    if pi.invoice_id is None:
        return
    invoice = await s.get(Invoice, pi.invoice_id, with_for_update=True, populate_existing=True)
    if invoice is None or invoice.account_id != pi.account_id:
        return
    why = superseded(invoice, pi.id, now_us)
    if why is not None:
        log.warning("not starting %s for invoice %s: %s", pi.id, invoice.id, why)
        raise PaymuxError.of("invoice_unexpected_state", why, param="invoice")
    if invoice.payment_intent_id is None:
        # The invoice names the payment that starts, before any gateway call: a twin click
        # whose create failed may have taken the noted id off (hosted_payments._unnote) and
        # given back the lease both clicks shared; ``live_intent`` then still sees this
        # payment, and a merchant's /pay or a retry does not start a second one beside it.
        invoice.payment_intent_id = pi.id


def take_lease(invoice: Invoice, holder: str, now_us: int, seconds: float) -> int:
    """Lease ``invoice`` to ``holder``; returns the lease's end, which names this taking of it:
    two runs of one try (the same holder, the second after the first's lease lapsed) hold
    leases with different ends (``taken_over``)."""
    until = now_us + int(seconds * 1_000_000)
    invoice.payment_lease_holder = holder
    invoice.payment_lease_until_us = until
    return until


def taken_over(invoice: Invoice, until: int, now_us: int) -> bool:
    """Whether a live lease on ``invoice`` is another taking than the one that ended at
    ``until``: a path slower than its lease finds that another run (of the same try, maybe)
    holds the invoice now. Its own failure is then not the try's: that run answers for it."""
    return lease_live(invoice, now_us) and invoice.payment_lease_until_us != until


async def release_lease(
    ctx: Context, invoice_id: str, holder: str, until: int | None = None
) -> None:
    """Give the lease back if ``holder`` still holds it (one short transaction); with
    ``until``, only that taking of it (never the lease another run of the same try took after
    this one's lapsed). A failure is logged, not raised: the lease lapses by itself."""
    held = [Invoice.id == invoice_id, Invoice.payment_lease_holder == holder]
    if until is not None:
        held.append(Invoice.payment_lease_until_us == until)
    try:
        async with ctx.db.write() as s:
            # One conditional UPDATE: its WHERE is checked under the row's lock.
            await s.execute(
                update(Invoice)
                .where(*held)
                .values(payment_lease_holder=None, payment_lease_until_us=None)
                .execution_options(synchronize_session=False)
            )
    except Exception as exc:  # the lease ends at its time anyway
        log.warning("payment lease of %s not released: %s", invoice_id, type(exc).__name__)
