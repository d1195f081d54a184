"""Invoice items (``/v1/invoiceitems``): one-off charges and credits for a customer.

An item is *pending* (``invoice_id`` None) until the customer's next invoice takes it
(``InvoicesService.create_draft`` pulls the pending items onto the draft), or it is added to a
draft invoice at once (``invoice``). Either way it can be changed or deleted only while
pending or while its invoice is a draft: a finalized invoice never changes.

Its amount is given one of three ways, as on Stripe: ``amount`` (with ``currency``), a one-time
``price`` (times ``quantity``), or ``unit_amount`` times ``quantity`` (with ``currency``). Its
currency must be the customer's (their balance and invoices are in one currency) and, on a
draft, the invoice's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.billing.catalog_checks import currency_code
from paymux.billing.catalog_rows import price_row, price_terms, tax_rate_row
from paymux.billing.catalog_views import price_view, tax_rate_view
from paymux.billing.clock_time import now_for
from paymux.billing.rules.pricing import amount_for
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.services.context import (
    Context,
    emit,
    get_owned,
    merge_metadata,
    paginate,
    scoped,
)
from paymux.storage.models import (
    Customer,
    Invoice,
    InvoiceItem,
    InvoiceLine,
    Price,
    Subscription,
    TaxRate,
)

__all__ = [
    "InvoiceItemParams",
    "InvoiceItemUpdate",
    "InvoiceItemsService",
    "invoice_item_view",
    "item_amount",
]

MAX_AMOUNT = 999_999_999_999


def _seconds(us: int | None) -> int | None:
    return None if us is None else us // 1_000_000


@dataclass
class InvoiceItemParams:
    customer: str
    amount: int | None = None
    currency: str | None = None
    price: str | None = None
    quantity: int | None = None
    unit_amount: int | None = None
    description: str | None = None
    period_start: int | None = None  # seconds
    period_end: int | None = None
    discountable: bool | None = None
    tax_rates: list[str] | None = None
    invoice: str | None = None
    subscription: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class InvoiceItemUpdate:
    amount: int | None = None
    price: str | None = None
    quantity: int | None = None
    unit_amount: int | None = None
    description: str | None = None
    period_start: int | None = None
    period_end: int | None = None
    discountable: bool | None = None
    tax_rates: list[str] | None = None
    metadata: dict[str, str] | None = None


def _invalid(message: str, param: str) -> PaymuxError:
    return PaymuxError.of("parameter_invalid", message, param=param)


def item_amount(
    *,
    amount: int | None,
    unit_amount: int | None,
    quantity: int | None,
    price_unit_amount: int | None,
) -> tuple[int, int, int | None]:
    """(amount, quantity, unit_amount) of an item from what was given: exactly one of an
    ``amount`` (quantity 1), a ``unit_amount`` or a price's unit amount (times ``quantity``,
    default 1). Pure."""
    given = [n for n, v in (("amount", amount), ("unit_amount", unit_amount)) if v is not None]
    if price_unit_amount is not None:
        given.append("price")
    if not given:
        raise PaymuxError.of(
            "parameter_missing",
            "Give one of amount, unit_amount or price.",
            param="amount",
        )
    if len(given) > 1:
        raise PaymuxError.of(
            "parameters_exclusive",
            f"Use only one of amount, unit_amount and price (got {', '.join(given)}).",
            param=given[1],
        )
    if amount is not None:
        if quantity not in (None, 1):
            raise PaymuxError.of(
                "parameters_exclusive",
                "quantity goes with unit_amount or price, not with amount.",
                param="quantity",
            )
        if abs(amount) > MAX_AMOUNT:
            raise _invalid("The amount is too large.", "amount")
        return amount, 1, None
    qty = 1 if quantity is None else quantity
    if qty < 0:
        raise _invalid("quantity must not be negative.", "quantity")
    unit = unit_amount if unit_amount is not None else price_unit_amount
    assert unit is not None
    total = unit * qty
    if abs(total) > MAX_AMOUNT:
        raise _invalid("unit_amount times quantity is too large.", "quantity")
    return total, qty, unit


def invoice_item_view(
    item: InvoiceItem, price: Price | None = None, tax_rates: list[TaxRate] | None = None
) -> dict[str, Any]:
    """Stripe's ``invoiceitem``: ``price`` and ``tax_rates`` as objects (as Stripe shows
    them) when the caller loaded them."""
    price_out: Any = price_view(price) if price is not None else None
    return {
        "id": item.id,
        "object": "invoiceitem",
        "amount": item.amount,
        "currency": item.currency.lower(),
        "customer": item.customer_id,
        "date": _seconds(item.created_us),
        "description": item.description,
        "discountable": bool(item.discountable),
        "discounts": [],
        "invoice": item.invoice_id,
        "livemode": bool(item.livemode),
        "metadata": item.metadata_ or {},
        "period": {
            "start": _seconds(item.period_start_us),
            "end": _seconds(item.period_end_us),
        },
        "price": price_out,
        "proration": bool(item.proration),
        "quantity": item.quantity,
        "subscription": item.subscription_id,
        "subscription_item": item.subscription_item_id,
        "tax_rates": [tax_rate_view(t) for t in tax_rates or []],
        "test_clock": item.test_clock_id,
        "unit_amount": item.unit_amount,
        "unit_amount_decimal": None if item.unit_amount is None else str(item.unit_amount),
    }


async def _view(s: AsyncSession, item: InvoiceItem) -> dict[str, Any]:
    views = await _views(s, [item])
    return views[0]


async def _views(s: AsyncSession, items: list[InvoiceItem]) -> list[dict[str, Any]]:
    """Views of several items with their prices and tax rates in two queries."""
    price_ids = {i.price_id for i in items if i.price_id}
    rate_ids = {r for i in items for r in (i.tax_rate_ids or [])}
    prices: dict[str, Price] = {}
    rates: dict[str, TaxRate] = {}
    if price_ids:
        rows = await s.execute(select(Price).where(Price.id.in_(price_ids)))
        prices = {p.id: p for p in rows.scalars()}
    if rate_ids:
        rows2 = await s.execute(select(TaxRate).where(TaxRate.id.in_(rate_ids)))
        rates = {t.id: t for t in rows2.scalars()}
    return [
        invoice_item_view(
            i,
            prices.get(i.price_id) if i.price_id else None,
            [rates[r] for r in (i.tax_rate_ids or []) if r in rates],
        )
        for i in items
    ]


async def _tax_rate_ids(s: AsyncSession, account_id: str, ids: list[str]) -> list[str]:
    out: list[str] = []
    for index, rate_id in enumerate(ids):
        rate = await tax_rate_row(s, account_id, rate_id, param=f"tax_rates[{index}]")
        if not rate.active and rate_id not in out:
            raise _invalid(f"Tax rate {rate_id} is archived.", f"tax_rates[{index}]")
        if rate_id not in out:
            out.append(rate_id)
    return out


def _period(start: int | None, end: int | None, now_us: int) -> tuple[int, int]:
    if (start is None) != (end is None):
        raise _invalid("period needs both start and end.", "period")
    if start is None or end is None:
        return now_us, now_us
    if start < 0 or end < start:
        raise _invalid("period[end] must not be before period[start].", "period[end]")
    return start * 1_000_000, end * 1_000_000


async def _editable_invoice(
    s: AsyncSession, account_id: str, invoice_id: str, *, param: str = "invoice"
) -> Invoice:
    invoice = await get_owned(s, Invoice, invoice_id, account_id, param=param, lock=True)
    if invoice.status != "draft":
        raise PaymuxError.of(
            "invoice_unexpected_state",
            f"Invoice {invoice.id} is {invoice.status}: only a draft invoice's items can be "
            "added, changed or removed.",
            param=param,
        )
    return invoice


async def _price_for(s: AsyncSession, account_id: str, price_id: str) -> Price:
    price = await price_row(s, account_id, price_id)
    if price.type != "one_time":
        raise _invalid(
            "An invoice item takes a one-time price (a recurring price is billed by a "
            "subscription).",
            "price",
        )
    if not price.active:
        raise _invalid(f"Price {price.id} is archived.", "price")
    return price


def _price_unit(price: Price, quantity: int | None) -> tuple[int, int, int | None]:
    qty = 1 if quantity is None else quantity
    if qty < 0:
        raise _invalid("quantity must not be negative.", "quantity")
    if price.billing_scheme == "per_unit":
        unit = price.unit_amount or 0
        return unit * qty, qty, unit
    # A tiered one-time price: the amount of the quantity, as the pricing rule says.
    return amount_for(price_terms(price), qty), qty, None


class InvoiceItemsService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def create(self, account_id: str, p: InvoiceItemParams) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            customer = await get_owned(s, Customer, p.customer, account_id, param="customer")
            now = await now_for(s, self.ctx, account_id, customer.id)
            price: Price | None = None
            if p.price is not None:
                if p.unit_amount is not None or p.amount is not None:
                    raise PaymuxError.of(
                        "parameters_exclusive",
                        "Use only one of amount, unit_amount and price.",
                        param="price",
                    )
                price = await _price_for(s, account_id, p.price)
                amount, quantity, unit = _price_unit(price, p.quantity)
                currency = price.currency.upper()
                if p.currency is not None and currency_code(p.currency).upper() != currency:
                    raise PaymuxError.of(
                        "currency_mismatch",
                        f"The price is in {currency}, not {p.currency.lower()}.",
                        param="currency",
                    )
            else:
                if p.currency is None:
                    raise PaymuxError.of(
                        "parameter_missing", "Missing required param: currency.", param="currency"
                    )
                currency = currency_code(p.currency).upper()
                amount, quantity, unit = item_amount(
                    amount=p.amount,
                    unit_amount=p.unit_amount,
                    quantity=p.quantity,
                    price_unit_amount=None,
                )
            held = (customer.currency or "").upper()
            if held and held != currency:
                raise PaymuxError.of(
                    "currency_mismatch",
                    f"The customer is billed in {held.lower()}; this item is in "
                    f"{currency.lower()}.",
                    param="currency",
                )
            start, end = _period(p.period_start, p.period_end, now)
            rates = await _tax_rate_ids(s, account_id, p.tax_rates or [])
            invoice: Invoice | None = None
            if p.invoice is not None:
                invoice = await _editable_invoice(s, account_id, p.invoice)
                if invoice.customer_id != customer.id:
                    raise _invalid("The invoice is another customer's.", "invoice")
                if invoice.currency.upper() != currency:
                    raise PaymuxError.of(
                        "currency_mismatch",
                        f"The invoice is in {invoice.currency.lower()}; this item is in "
                        f"{currency.lower()}.",
                        param="currency",
                    )
            if p.subscription is not None:
                sub = await get_owned(
                    s, Subscription, p.subscription, account_id, param="subscription"
                )
                if sub.customer_id != customer.id:
                    raise _invalid("The subscription is another customer's.", "subscription")
            item = InvoiceItem(
                id=new_id("ii"),
                account_id=account_id,
                livemode=bool(customer.livemode),
                customer_id=customer.id,
                invoice_id=None,
                subscription_id=p.subscription,
                price_id=price.id if price is not None else None,
                amount=amount,
                currency=currency,
                quantity=quantity,
                unit_amount=unit,
                description=p.description,
                period_start_us=start,
                period_end_us=end,
                proration=False,
                discountable=True if p.discountable is None else p.discountable,
                tax_rate_ids=rates or None,
                test_clock_id=customer.test_clock_id,
                metadata_=p.metadata or {},
                created_us=now,
            )
            s.add(item)
            if invoice is not None:
                await _attach_to_draft(s, invoice, item)
            view = await _view(s, item)
            await emit(s, account_id, "invoiceitem.created", view, now)
            return view

    async def retrieve(self, account_id: str, item_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return await _view(s, await get_owned(s, InvoiceItem, item_id, account_id))

    async def update(self, account_id: str, item_id: str, p: InvoiceItemUpdate) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            item = await get_owned(s, InvoiceItem, item_id, account_id, lock=True)
            invoice = await self._check_editable(s, account_id, item)
            if item.proration or item.subscription_item_id is not None:
                raise PaymuxError.of(
                    "invoice_unexpected_state",
                    "A subscription's proration item cannot be changed.",
                    param="id",
                )
            priced = p.price is not None or p.unit_amount is not None or p.amount is not None
            if p.price is not None:
                if p.unit_amount is not None or p.amount is not None:
                    raise PaymuxError.of(
                        "parameters_exclusive",
                        "Use only one of amount, unit_amount and price.",
                        param="price",
                    )
                price = await _price_for(s, account_id, p.price)
                if price.currency.upper() != item.currency.upper():
                    raise PaymuxError.of(
                        "currency_mismatch",
                        f"The price is in {price.currency}; the item is in {item.currency}.",
                        param="price",
                    )
                item.amount, item.quantity, item.unit_amount = _price_unit(price, p.quantity)
                item.price_id = price.id
            elif priced:
                item.amount, item.quantity, item.unit_amount = item_amount(
                    amount=p.amount,
                    unit_amount=p.unit_amount,
                    quantity=p.quantity,
                    price_unit_amount=None,
                )
                item.price_id = None
            elif p.quantity is not None:
                if item.price_id is not None:
                    price = await price_row(s, account_id, item.price_id)
                    item.amount, item.quantity, item.unit_amount = _price_unit(price, p.quantity)
                elif item.unit_amount is not None:
                    item.amount, item.quantity, item.unit_amount = item_amount(
                        amount=None,
                        unit_amount=item.unit_amount,
                        quantity=p.quantity,
                        price_unit_amount=None,
                    )
                else:
                    raise _invalid(
                        "This item has an amount, not a unit amount: give unit_amount with "
                        "quantity.",
                        "quantity",
                    )
            if p.description is not None:
                item.description = p.description
            if p.discountable is not None:
                item.discountable = p.discountable
            if p.tax_rates is not None:
                item.tax_rate_ids = await _tax_rate_ids(s, account_id, p.tax_rates) or None
            if p.period_start is not None or p.period_end is not None:
                item.period_start_us, item.period_end_us = _period(
                    p.period_start, p.period_end, item.created_us
                )
            if p.metadata is not None:
                item.metadata_ = merge_metadata(item.metadata_, p.metadata)
            if invoice is not None:
                await _update_on_draft(s, invoice, item)
            view = await _view(s, item)
            await emit(s, account_id, "invoiceitem.updated", view, self.ctx.now_us())
            return view

    async def delete(self, account_id: str, item_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            item = await get_owned(s, InvoiceItem, item_id, account_id, lock=True)
            invoice = await self._check_editable(s, account_id, item)
            view = await _view(s, item)
            await s.delete(item)
            if invoice is not None:
                await _remove_from_draft(s, invoice, item.id)
            await emit(s, account_id, "invoiceitem.deleted", view, self.ctx.now_us())
            return {"id": item.id, "object": "invoiceitem", "deleted": True}

    async def _check_editable(
        self, s: AsyncSession, account_id: str, item: InvoiceItem
    ) -> Invoice | None:
        """The item's draft invoice (None while pending); refused once it is finalized."""
        if item.invoice_id is None:
            return None
        return await _editable_invoice(s, account_id, item.invoice_id, param="id")

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        customer: str | None = None,
        invoice: str | None = None,
        pending: bool | None = None,
        created: Any = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        clauses: list[Any] = []
        if customer is not None:
            clauses.append(InvoiceItem.customer_id == customer)
        if invoice is not None:
            clauses.append(InvoiceItem.invoice_id == invoice)
        if pending is True:
            clauses.append(InvoiceItem.invoice_id.is_(None))
        elif pending is False:
            clauses.append(InvoiceItem.invoice_id.is_not(None))
        if created is not None:
            clauses += created.clauses(InvoiceItem.created_us)
        async with self.ctx.db.read() as s:
            rows, more = await paginate(
                s,
                InvoiceItem,
                scoped(InvoiceItem, account_id).where(*clauses),
                account_id,
                limit=limit,
                starting_after=starting_after,
                ending_before=ending_before,
            )
            return await _views(s, rows), more


# -- a draft invoice's lines follow its items ---------------------------------------------------
# The invoices core makes a draft's lines from the pending items when it creates the draft;
# an item added to (changed on, removed from) a draft afterwards changes its line here. The
# draft's totals are computed at finalization, from its lines.
def _line_values(item: InvoiceItem) -> dict[str, Any]:
    return {
        "type": "invoiceitem",
        "subscription_id": item.subscription_id,
        "subscription_item_id": item.subscription_item_id,
        "invoice_item_id": item.id,
        "price_id": item.price_id,
        "description": item.description,
        "quantity": item.quantity,
        "amount": item.amount,
        "currency": item.currency.upper(),
        "period_start_us": item.period_start_us,
        "period_end_us": item.period_end_us,
        "proration": bool(item.proration),
        "discountable": bool(item.discountable),
        "discount_amount": 0,
        "tax_amounts": [
            {"tax_rate": r, "amount": 0, "inclusive": False} for r in item.tax_rate_ids or []
        ],
    }


async def _line_of(s: AsyncSession, invoice_id: str, item_id: str) -> InvoiceLine | None:
    found = await s.execute(
        select(InvoiceLine).where(
            InvoiceLine.invoice_id == invoice_id, InvoiceLine.invoice_item_id == item_id
        )
    )
    return found.scalars().first()


async def _attach_to_draft(s: AsyncSession, invoice: Invoice, item: InvoiceItem) -> None:
    item.invoice_id = invoice.id
    last = (
        await s.execute(
            select(func.max(InvoiceLine.position)).where(InvoiceLine.invoice_id == invoice.id)
        )
    ).scalar_one_or_none()
    s.add(
        InvoiceLine(
            id=new_id("il"),
            account_id=invoice.account_id,
            invoice_id=invoice.id,
            position=0 if last is None else int(last) + 1,
            metadata_={},
            **_line_values(item),
        )
    )


async def _update_on_draft(s: AsyncSession, invoice: Invoice, item: InvoiceItem) -> None:
    line = await _line_of(s, invoice.id, item.id)
    if line is None:
        await _attach_to_draft(s, invoice, item)
        return
    for name, value in _line_values(item).items():
        setattr(line, name, value)


async def _remove_from_draft(s: AsyncSession, invoice: Invoice, item_id: str) -> None:
    line = await _line_of(s, invoice.id, item_id)
    if line is not None:
        await s.delete(line)
