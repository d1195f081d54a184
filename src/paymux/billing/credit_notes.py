"""Credit notes (``/v1/credit_notes``): lowering what a finalized invoice asks for, or giving
back part of what was paid, with a paper trail.

Stripe's rule, applied here: a credit note first lowers the invoice's ``amount_remaining`` (and
``amount_due``), never below zero: that part is its ``pre_payment_amount``. What is left, its
``post_payment_amount``, must be given back as the sum of

- ``refund_amount``: a refund of the invoice's payment, through the refunds service (so the
  gateway gives it back, with its own idempotency key); the refund's id is kept;
- ``credit_amount``: a credit to the customer's balance (``adjust_balance``), which the next
  invoice's finalization applies;
- ``out_of_band_amount``: given back outside paymux, recorded only.

Without any of the three, the post-payment part goes to the customer's balance. An open
invoice credited down to zero is paid (nothing is left to collect). A credit note's ``amount``
never exceeds what the invoice still has to credit: its total less the earlier credit notes
(voided ones excepted). Numbers are ``<invoice number>-CN-01``, ``-CN-02``, ..., taken under the
invoice's lock. A credit note can be voided only while its invoice is open (Stripe's rule): the
invoice asks for the amount again.

A refund is a gateway call, so it never runs inside a transaction: the note is written first as
``pending`` (holding its amount and number), the refund is made, then the note is issued with
the refund's id (or removed if the refund was refused).

A refund can also fail later, after its note was issued (the gateway answered ``pending``,
or a card refund bounced back days later). The note stays issued, as a credit note is a
document that only a void changes; the failure is shown, never hidden: the refund is
``failed`` with its ``failure_reason`` (``refund.failed``), the note's ``refunds`` entry says
``amount_refunded: 0`` and ``credit_note.updated`` is sent with it, and an error is logged.
The money is still the merchant's to give back another way (``on_refund_failed``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.balance import record_balance_change
from paymux.billing.clock_time import now_for
from paymux.billing.invoice_core import lock_invoice, queue_release
from paymux.billing.rules.proration import round_half_even_div
from paymux.domain.clock import seconds
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.jobs.queue import enqueue
from paymux.services.context import (
    Context,
    CreatedRange,
    emit,
    get_owned,
    merge_metadata,
    paginate,
    scoped,
)
from paymux.storage.models import (
    CreditNote,
    CustomerBalanceTransaction,
    Invoice,
    InvoiceLine,
    PaymentIntent,
    Refund,
)

if TYPE_CHECKING:
    from paymux.root import Paymux

__all__ = [
    "CREDIT_NOTE_REASONS",
    "CreditNoteLineParams",
    "CreditNoteParams",
    "CreditNotesService",
    "Split",
    "credit_note_view",
    "split_credit",
]

CREDIT_NOTE_REASONS = frozenset(
    {"duplicate", "fraudulent", "order_change", "product_unsatisfactory"}
)
_REFUND_REASON = {"duplicate": "duplicate", "fraudulent": "fraudulent"}
_REFUND_FAILED = ("failed", "canceled")
# A note still pending this long after its request is finished by a job (finish_pending).
FINISH_AFTER_SECONDS = 300.0

log = logging.getLogger(__name__)


def _invalid(message: str, param: str) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=param)


# -- the pure part --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """How a credit note's amount is given back."""

    pre_payment: int
    refund: int
    credit: int
    out_of_band: int


def split_credit(
    amount: int,
    amount_remaining: int,
    *,
    refund: int | None,
    credit: int | None,
    out_of_band: int | None,
    refundable: int,
) -> Split:
    """Stripe's rule (module docstring): the pre-payment part is what the invoice still asks
    for, up to ``amount``; the rest is refund + credit + out of band, exactly. With none of the
    three given, the rest is a balance credit. ``refundable``: what the invoice's payment can
    still give back."""
    pre = min(amount, max(0, amount_remaining))
    post = amount - pre
    given = [v for v in (refund, credit, out_of_band) if v is not None]
    if not given:
        return Split(pre, 0, post, 0)
    r, c, o = refund or 0, credit or 0, out_of_band or 0
    if r + c + o != post:
        raise _invalid(
            f"refund_amount + credit_amount + out_of_band_amount ({r + c + o}) must equal the "
            f"part of the credit note the invoice has been paid for ({post}: the amount "
            f"{amount} less the {pre} still due).",
            "refund_amount" if refund is not None else "credit_amount",
        )
    if r > refundable:
        raise PaymuxError.of(
            "refund_amount_too_large",
            f"refund_amount ({r}) is more than the invoice's payment can still give back "
            f"({refundable}).",
            param="refund_amount",
        )
    return Split(pre, r, c, o)


@dataclass
class CreditNoteLineParams:
    type: str  # invoice_line_item | custom_line_item
    invoice_line_item: str | None = None
    amount: int | None = None
    quantity: int | None = None
    unit_amount: int | None = None
    description: str | None = None


@dataclass
class CreditNoteParams:
    invoice: str
    amount: int | None = None
    lines: list[CreditNoteLineParams] | None = None
    reason: str | None = None
    memo: str | None = None
    refund_amount: int | None = None
    credit_amount: int | None = None
    out_of_band_amount: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _credited_before(notes: list[CreditNote]) -> dict[str, int]:
    """How much of each invoice line earlier (not voided) notes credited, before tax."""
    out: dict[str, int] = {}
    for note in notes:
        for line in note.lines or []:
            ref = line.get("invoice_line_item")
            if ref:
                out[ref] = out.get(ref, 0) + int(line.get("amount", 0))
    return out


def _note_lines(
    asked: list[CreditNoteLineParams], lines: dict[str, InvoiceLine], before: dict[str, int]
) -> list[dict[str, Any]]:
    """The note's lines: each invoice line's credited amount (given, or quantity times its
    unit amount) with its share of the line's exclusive tax; custom lines at unit_amount
    times quantity, untaxed."""
    out: list[dict[str, Any]] = []
    for i, p in enumerate(asked):
        param = f"lines[{i}]"
        if p.type == "custom_line_item":
            if p.unit_amount is None or p.description is None:
                raise PaymuxError.of(
                    "parameter_missing",
                    "A custom_line_item needs unit_amount and description.",
                    param=f"{param}[unit_amount]",
                )
            qty = 1 if p.quantity is None else p.quantity
            out.append(
                {
                    "id": new_id("cnli"),
                    "type": "custom_line_item",
                    "invoice_line_item": None,
                    "description": p.description,
                    "quantity": qty,
                    "unit_amount": p.unit_amount,
                    "amount": p.unit_amount * qty,
                    "tax_amounts": [],
                }
            )
            continue
        if p.invoice_line_item is None or p.invoice_line_item not in lines:
            raise PaymuxError.of(
                "resource_missing",
                f"No such line item on this invoice: '{p.invoice_line_item}'",
                param=f"{param}[invoice_line_item]",
            )
        line = lines[p.invoice_line_item]
        net = line.amount - line.discount_amount
        if (p.amount is None) == (p.quantity is None):
            raise PaymuxError.of(
                "parameters_exclusive",
                "Credit an invoice line by amount or by quantity (one of them).",
                param=f"{param}[amount]",
            )
        if p.quantity is not None:
            if not line.quantity or line.amount % line.quantity:
                raise _invalid(
                    "This line has no whole unit amount: credit it by amount.",
                    f"{param}[quantity]",
                )
            amount = (line.amount // line.quantity) * p.quantity
        else:
            assert p.amount is not None
            amount = p.amount
        left = net - before.get(line.id, 0)
        if amount <= 0 or amount > left:
            raise PaymuxError.of(
                "amount_invalid",
                f"A line can be credited up to what it charged and was not credited yet "
                f"({left}); asked {amount}.",
                param=f"{param}[amount]",
            )
        before[line.id] = before.get(line.id, 0) + amount
        taxes = [
            {
                "tax_rate": t.get("tax_rate"),
                "inclusive": bool(t.get("inclusive")),
                "amount": round_half_even_div(int(t.get("amount", 0)) * amount, net) if net else 0,
            }
            for t in line.tax_amounts or []
        ]
        out.append(
            {
                "id": new_id("cnli"),
                "type": "invoice_line_item",
                "invoice_line_item": line.id,
                "description": line.description,
                "quantity": p.quantity,
                "unit_amount": None if p.quantity is None else amount // max(p.quantity, 1),
                "amount": amount,
                "tax_amounts": taxes,
            }
        )
    return out


def _lines_total(lines: list[dict[str, Any]]) -> int:
    exclusive = sum(
        int(t["amount"]) for line in lines for t in line["tax_amounts"] if not t["inclusive"]
    )
    return sum(int(line["amount"]) for line in lines) + exclusive


# -- views ---------------------------------------------------------------------------------------
def _line_view(note: CreditNote, line: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": line["id"],
        "object": "credit_note_line_item",
        "amount": line["amount"],
        "description": line.get("description"),
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": line.get("invoice_line_item"),
        "livemode": bool(note.livemode),
        "quantity": line.get("quantity"),
        "tax_amounts": [
            {
                "amount": t["amount"],
                "inclusive": t["inclusive"],
                "tax_rate": t["tax_rate"],
                "taxability_reason": None,
                "taxable_amount": None,
            }
            for t in line.get("tax_amounts", [])
        ],
        "tax_rates": [],
        "type": line["type"],
        "unit_amount": line.get("unit_amount"),
        "unit_amount_decimal": (
            None if line.get("unit_amount") is None else str(line.get("unit_amount"))
        ),
    }


def credit_note_view(
    note: CreditNote, balance_txn: str | None = None, *, refund_failed: bool = False
) -> dict[str, Any]:
    """Stripe's credit note. ``refund_failed``: its refund failed after the note was issued
    (the refunds entry then shows nothing refunded)."""
    lines = note.lines or []
    pre = note.amount - note.refund_amount - note.credit_amount - note.out_of_band_amount
    taxes: dict[tuple[str, bool], int] = {}
    for line in lines:
        for t in line.get("tax_amounts", []):
            key = (str(t["tax_rate"]), bool(t["inclusive"]))
            taxes[key] = taxes.get(key, 0) + int(t["amount"])
    exclusive = sum(a for (_, inclusive), a in taxes.items() if not inclusive)
    inclusive_tax = sum(a for (_, inclusive), a in taxes.items() if inclusive)
    subtotal = note.amount - exclusive
    return {
        "id": note.id,
        "object": "credit_note",
        "amount": note.amount,
        "amount_shipping": 0,
        "created": seconds(note.created_us),
        "currency": note.currency.lower(),
        "customer": note.customer_id,
        "customer_balance_transaction": balance_txn,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": seconds(note.created_us),
        "invoice": note.invoice_id,
        "lines": {
            "object": "list",
            "data": [_line_view(note, line) for line in lines],
            "has_more": False,
            "url": f"/v1/credit_notes/{note.id}/lines",
        },
        "livemode": bool(note.livemode),
        "memo": note.memo,
        "metadata": note.metadata_ or {},
        "number": note.number,
        "out_of_band_amount": note.out_of_band_amount or None,
        "pdf": None,
        "pre_payment_amount": pre,
        "post_payment_amount": note.amount - pre,
        "reason": note.reason,
        "refund": note.refund_id,
        "refunds": (
            [
                {
                    "amount_refunded": 0 if refund_failed else note.refund_amount,
                    "refund": note.refund_id,
                }
            ]
            if note.refund_id
            else []
        ),
        "shipping_cost": None,
        "status": note.status,
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal - inclusive_tax,
        "tax_amounts": [
            {"amount": a, "inclusive": inc, "tax_rate": rate, "taxability_reason": None}
            for (rate, inc), a in taxes.items()
        ],
        "total": note.amount,
        "total_excluding_tax": note.amount - exclusive - inclusive_tax,
        "type": "post_payment" if note.amount - pre > 0 else "pre_payment",
        "voided_at": seconds(note.voided_at_us),
    }


# -- the service ---------------------------------------------------------------------------------
@dataclass
class _Planned:
    note: CreditNote
    payment_intent_id: str | None


class CreditNotesService:
    def __init__(self, ctx: Context, app: Paymux) -> None:
        self.ctx = ctx
        self.app = app

    @staticmethod
    async def _balance_txn(s: AsyncSession, note: CreditNote) -> str | None:
        txn: str | None = (
            await s.execute(
                select(CustomerBalanceTransaction.id).where(
                    CustomerBalanceTransaction.credit_note_id == note.id,
                    CustomerBalanceTransaction.type == "credit_note",
                )
            )
        ).scalar_one_or_none()
        return txn

    async def _view(self, s: AsyncSession, note: CreditNote) -> dict[str, Any]:
        txn = await self._balance_txn(s, note)
        failed = False
        if note.refund_id is not None:
            status = (
                await s.execute(select(Refund.status).where(Refund.id == note.refund_id))
            ).scalar_one_or_none()
            failed = status in _REFUND_FAILED
        return credit_note_view(note, txn, refund_failed=failed)

    async def on_refund_failed(self, s: AsyncSession, refund: Refund) -> None:
        """The engine's hook, in the transaction that marks ``refund`` failed: if it is the
        refund of an issued credit note, the note says so (``credit_note.updated``, its
        refunds entry showing nothing refunded) and an error is logged; the note stays
        issued (see the module docstring). A note still pending is dropped by its request
        or its job (``finish_pending``), which see the failure themselves."""
        note_id = (refund.metadata_ or {}).get("credit_note")
        if not note_id:
            return
        note = await s.get(CreditNote, note_id)
        if note is None or note.account_id != refund.account_id or note.status != "issued":
            return
        if note.refund_id != refund.id:
            return
        log.error(
            "refund %s of credit note %s failed (%s): %s %s was not given back to the "
            "customer; give it back another way",
            refund.id,
            note.id,
            refund.failure_reason,
            refund.amount,
            refund.currency,
        )
        view = credit_note_view(note, await self._balance_txn(s, note), refund_failed=True)
        await emit(s, note.account_id, "credit_note.updated", view, self.ctx.now_us())

    async def _plan(
        self, s: AsyncSession, account_id: str, p: CreditNoteParams, *, write: bool
    ) -> _Planned:
        """Check the request against the invoice and build the note (pending if it refunds).
        ``write``: under the invoice's lock, keeping the note; else a preview."""
        if p.reason is not None and p.reason not in CREDIT_NOTE_REASONS:
            raise _invalid(
                f"reason must be one of {', '.join(sorted(CREDIT_NOTE_REASONS))}.", "reason"
            )
        # Written: locked after its subscription (``lock_invoice``), as a note that settles
        # the invoice moves the subscription (``_issue``).
        invoice = (
            await lock_invoice(s, account_id, p.invoice, param="invoice")
            if write
            else await get_owned(s, Invoice, p.invoice, account_id, param="invoice")
        )
        if invoice.status not in ("open", "paid"):
            raise PaymuxError.of(
                "invoice_unexpected_state",
                f"This invoice is {invoice.status}: a credit note is for an open or paid invoice.",
                param="invoice",
            )
        earlier = list(
            (
                await s.execute(
                    select(CreditNote).where(
                        CreditNote.invoice_id == invoice.id, CreditNote.status != "void"
                    )
                )
            ).scalars()
        )
        lines: list[dict[str, Any]] = []
        if p.lines:
            invoice_lines = {
                line.id: line
                for line in (
                    await s.execute(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
                ).scalars()
            }
            lines = _note_lines(p.lines, invoice_lines, _credited_before(earlier))
            amount = _lines_total(lines)
            if p.amount is not None and p.amount != amount:
                raise _invalid(
                    f"amount ({p.amount}) must equal the lines' total ({amount}).", "amount"
                )
        elif p.amount is not None:
            amount = p.amount
        else:
            raise PaymuxError.of(
                "parameter_missing", "Give the amount to credit, or lines.", param="amount"
            )
        creditable = invoice.total - sum(n.amount for n in earlier)
        if amount <= 0 or amount > creditable:
            raise PaymuxError.of(
                "amount_invalid",
                f"The credit note's amount must be positive and at most what the invoice can "
                f"still be credited ({creditable}); it is {amount}.",
                param="amount",
            )
        pi = (
            await s.get(PaymentIntent, invoice.payment_intent_id)
            if invoice.payment_intent_id
            else None
        )
        if invoice.status == "open" and pi is not None and pi.status == "processing":
            raise PaymuxError.of(
                "invoice_unexpected_state",
                "A payment of this invoice is in flight: credit it once it has settled.",
                param="invoice",
            )
        refundable = 0
        if invoice.status == "paid" and pi is not None and pi.status == "succeeded":
            refunded_by_notes = sum(n.refund_amount for n in earlier)
            refundable = min(
                pi.amount_received - pi.amount_refunded - pi.amount_refund_pending,
                invoice.amount_paid - refunded_by_notes,
            )
        split = split_credit(
            amount,
            invoice.amount_remaining if invoice.status == "open" else 0,
            refund=p.refund_amount,
            credit=p.credit_amount,
            out_of_band=p.out_of_band_amount,
            refundable=max(0, refundable),
        )
        count = (
            await s.execute(
                select(func.count())
                .select_from(CreditNote)
                .where(CreditNote.invoice_id == invoice.id)
            )
        ).scalar_one()
        now = await now_for(s, self.ctx, account_id, invoice.customer_id)
        note = CreditNote(
            id=new_id("cn"),
            account_id=account_id,
            livemode=bool(invoice.livemode),
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            number=f"{invoice.number}-CN-{int(count) + 1:02d}",
            status="pending" if split.refund else "issued",
            amount=amount,
            currency=invoice.currency,
            refund_amount=split.refund,
            credit_amount=split.credit,
            out_of_band_amount=split.out_of_band,
            refund_id=None,
            reason=p.reason,
            memo=p.memo,
            lines=lines,
            metadata_=p.metadata or {},
            voided_at_us=None,
            created_us=now,
        )
        return _Planned(note, pi.id if pi is not None else None)

    async def preview(self, account_id: str, p: CreditNoteParams) -> dict[str, Any]:
        """The note that ``create`` would issue, not kept (Stripe's ``/preview``)."""
        async with self.ctx.db.read() as s:
            planned = await self._plan(s, account_id, p, write=False)
            planned.note.status = "issued"
            view = credit_note_view(planned.note)
            view["id"] = None
            return view

    async def create(self, account_id: str, p: CreditNoteParams) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            planned = await self._plan(s, account_id, p, write=True)
            note = planned.note
            s.add(note)
            issued = await self._issue(s, note) if note.status == "issued" else None
            if issued is None:
                # Should this request die between here and the note's issue, the job
                # finishes the note from the refund it finds (or drops it if none was made).
                await enqueue(
                    s,
                    "finish_credit_note",
                    {"account_id": account_id, "note_id": note.id},
                    now_us=self.ctx.now_us(),
                    delay=FINISH_AFTER_SECONDS,
                    dedupe_key=f"finish:{note.id}",
                    account_id=account_id,
                )
        if issued is not None:
            if planned.payment_intent_id is not None:
                await self.app.invoices.release(account_id, planned.payment_intent_id)
            return issued
        assert planned.payment_intent_id is not None
        try:
            refund = await self.app.refunds.create(
                account_id,
                planned.payment_intent_id,
                note.refund_amount,
                _REFUND_REASON.get(p.reason or "", "requested_by_customer"),
                {"credit_note": note.id, "invoice": note.invoice_id},
            )
        except PaymuxError:
            await self._drop_pending(account_id, note.id)
            raise
        if refund.get("status") in ("failed", "canceled"):
            await self._drop_pending(account_id, note.id)
            raise PaymuxError.of(
                "gateway_invalid_request",
                f"The gateway refused the refund ({refund.get('failure_reason')}); no credit "
                "note was issued.",
                param="refund_amount",
            )
        async with self.ctx.db.write() as s:
            row = await get_owned(s, CreditNote, note.id, account_id, lock=True)
            if row.status != "pending":  # finished by the job meanwhile
                return await self._view(s, row)
            # The refund's state under its intent's lock, the lock the engine takes to fail
            # it: a failure that lands while we issue finds the note issued (on_refund_failed).
            await s.get(PaymentIntent, planned.payment_intent_id, with_for_update=True)
            status = (
                await s.execute(
                    select(Refund.status, Refund.failure_reason).where(
                        Refund.id == str(refund["id"])
                    )
                )
            ).one_or_none()
            if status is None or status.status not in _REFUND_FAILED:
                row.refund_id = str(refund["id"])
                row.status = "issued"
                return await self._issue(s, row)
            await s.delete(row)
            reason = status.failure_reason
        raise PaymuxError.of(
            "gateway_invalid_request",
            f"The gateway refused the refund ({reason}); no credit note was issued.",
            param="refund_amount",
        )

    async def finish_pending(self, account_id: str, note_id: str) -> None:
        """Job ``finish_credit_note``: a note still ``pending`` long after its request (which
        died between writing it and issuing it) is issued with the refund that request made,
        found by the refund's ``credit_note`` metadata, or dropped when no refund was made or
        the gateway refused it (the request never answered success: its retry makes a new
        note). Under the note's lock, like the request's own last step."""
        async with self.ctx.db.write() as s:
            row = await s.get(CreditNote, note_id, with_for_update=True, populate_existing=True)
            if row is None or row.account_id != account_id or row.status != "pending":
                return
            invoice = await s.get(Invoice, row.invoice_id)
            pi_id = invoice.payment_intent_id if invoice is not None else None
            if pi_id:  # the refunds' states under the lock the engine takes to change them
                await s.get(PaymentIntent, pi_id, with_for_update=True)
            refunds = (
                (await s.execute(select(Refund).where(Refund.payment_intent_id == pi_id)))
                .scalars()
                .all()
                if pi_id
                else []
            )
            made = [r for r in refunds if (r.metadata_ or {}).get("credit_note") == note_id]
            live = [r for r in made if r.status not in _REFUND_FAILED]
            if not live:
                log.warning("dropping credit note %s: its refund was never made", note_id)
                await s.delete(row)
                return
            row.refund_id = live[0].id
            row.status = "issued"
            await self._issue(s, row)

    async def _drop_pending(self, account_id: str, note_id: str) -> None:
        async with self.ctx.db.write() as s:
            row = await s.get(CreditNote, note_id)
            if row is not None and row.account_id == account_id and row.status == "pending":
                await s.delete(row)

    async def _issue(self, s: AsyncSession, note: CreditNote) -> dict[str, Any]:
        """The note's effects, in the caller's transaction: the invoice asks for less (paid
        when nothing is left), the balance credit, the event."""
        invoice = await lock_invoice(s, note.account_id, note.invoice_id)
        now = note.created_us
        pre = note.amount - note.refund_amount - note.credit_amount - note.out_of_band_amount
        paid_now = False
        if pre:
            invoice.amount_remaining -= pre
            invoice.amount_due -= pre
            invoice.updated_us = now
            paid_now = invoice.status == "open" and invoice.amount_remaining == 0
            if not paid_now:  # paid: settle_paid releases it
                await queue_release(s, self.ctx, invoice)
        if note.credit_amount:
            await record_balance_change(
                s,
                note.account_id,
                note.customer_id,
                -note.credit_amount,
                note.currency,
                "credit_note",
                invoice_id=invoice.id,
                credit_note_id=note.id,
                description=f"Credit note {note.number}",
                now_us=now,
            )
        await s.flush()
        view = await self._view(s, note)
        await emit(s, note.account_id, "credit_note.created", view, now)
        if paid_now:
            await self.app.invoices.settle_paid(s, invoice, now, amount=0)
        return view

    async def retrieve(self, account_id: str, note_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return await self._view(s, await get_owned(s, CreditNote, note_id, account_id))

    async def update(
        self,
        account_id: str,
        note_id: str,
        *,
        memo: str | None,
        metadata: dict[str, str] | None,
    ) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            note = await get_owned(s, CreditNote, note_id, account_id, lock=True)
            if memo is not None:
                note.memo = memo or None
            if metadata is not None:
                note.metadata_ = merge_metadata(note.metadata_, metadata)
            view = await self._view(s, note)
            await emit(s, account_id, "credit_note.updated", view, self.ctx.now_us())
            return view

    async def void(self, account_id: str, note_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            note = await get_owned(s, CreditNote, note_id, account_id, lock=True)
            invoice = await get_owned(s, Invoice, note.invoice_id, account_id, lock=True)
            if note.status != "issued" or invoice.status != "open":
                raise PaymuxError.of(
                    "invoice_unexpected_state",
                    f"A credit note can be voided only while it is issued and its invoice is "
                    f"open (this note is {note.status}, its invoice {invoice.status}).",
                    param="id",
                )
            now = await now_for(s, self.ctx, account_id, invoice.customer_id)
            pre = note.amount - note.refund_amount - note.credit_amount - note.out_of_band_amount
            invoice.amount_remaining += pre
            invoice.amount_due += pre
            invoice.updated_us = now
            await queue_release(s, self.ctx, invoice)
            waiting = invoice.payment_intent_id
            if note.credit_amount:  # none on an open invoice today; undone all the same
                await record_balance_change(
                    s,
                    account_id,
                    note.customer_id,
                    note.credit_amount,
                    note.currency,
                    "credit_note",
                    invoice_id=invoice.id,
                    credit_note_id=note.id,
                    description=f"Credit note {note.number} voided",
                    now_us=now,
                )
            note.status = "void"
            note.voided_at_us = now
            view = await self._view(s, note)
            await emit(s, account_id, "credit_note.voided", view, now)
        if waiting is not None:
            await self.app.invoices.release(account_id, waiting)
        return view

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        invoice: str | None = None,
        customer: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        query = scoped(CreditNote, account_id).where(CreditNote.status != "pending")
        if invoice is not None:
            query = query.where(CreditNote.invoice_id == invoice)
        if customer is not None:
            query = query.where(CreditNote.customer_id == customer)
        if created is not None:
            query = query.where(*created.clauses(CreditNote.created_us))
        async with self.ctx.db.read() as s:
            rows, more = await paginate(
                s,
                CreditNote,
                query,
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return [await self._view(s, row) for row in rows], more
