"""An invoice as people read it: the words and formatted figures that the hosted invoice page
and the PDF both show, from the invoice's API view. Pure: no I/O.

Money is formatted with Babel for the reader's locale and the invoice's currency
(``Money.format``: the currency's ISO 4217 decimals, the locale's separators and symbol
placement: ``$1,234.56`` in en_US, ``1.234,56 €`` in de). Dates are the locale's long dates,
in UTC (an invoice's dates are UTC days, whatever the reader's zone).

The locale rule (``pick_locale``): an explicit ``?locale=`` (a CLDR id such as ``de``,
``de-DE``, ``en_GB``) if Babel knows it, else the first language of the browser's
``Accept-Language`` that Babel knows, else ``en_US``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

from paymux.money import Money

__all__ = [
    "DEFAULT_LOCALE",
    "DocumentLine",
    "InvoiceDocument",
    "invoice_document",
    "parse_locale",
    "pick_locale",
]

DEFAULT_LOCALE = "en_US"
_STATUS_WORDS = {
    "draft": "Draft",
    "open": "Open",
    "paid": "Paid",
    "void": "Void",
    "uncollectible": "Uncollectible",
}


def parse_locale(value: str | None) -> str | None:
    """``value`` as a Babel locale id (``de_DE``), or None if it is not one Babel knows."""
    if not value or len(value) > 35:
        return None
    try:
        return str(Locale.parse(value.strip().replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def pick_locale(explicit: str | None, accept_language: str | None) -> str:
    """The module docstring's rule."""
    chosen = parse_locale(explicit)
    if chosen:
        return chosen
    for part in (accept_language or "").split(",")[:10]:
        tag = part.split(";", 1)[0].strip()
        if tag and tag != "*":
            found = parse_locale(tag)
            if found:
                return found
    return DEFAULT_LOCALE


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: str
    period: str
    amount: str


@dataclass(frozen=True)
class InvoiceDocument:
    merchant_name: str
    title: str
    number: str
    status: str
    status_word: str
    currency: str
    dates: list[tuple[str, str]]  # (label, value)
    lines: list[DocumentLine]
    totals: list[tuple[str, str]]  # (label, value), in reading order
    amount_due_label: str
    amount_due: str
    description: str | None
    customer: str | None
    payable: bool
    locale: str
    notes: list[str] = field(default_factory=list)


def _date(seconds: int | None, locale: str) -> str | None:
    if seconds is None:
        return None
    day = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date()
    return format_date(day, format="long", locale=locale)


def _rate_label(rate_id: str, labels: dict[str, str]) -> str:
    return labels.get(rate_id, rate_id)


def invoice_document(
    invoice: dict[str, Any],
    merchant_name: str,
    locale: str,
    *,
    tax_rate_labels: dict[str, str] | None = None,
    customer_label: str | None = None,
) -> InvoiceDocument:
    """The document of an invoice view (Stripe's invoice object). ``tax_rate_labels``:
    tax rate id -> "VAT 20%" (the caller loads them); ``customer_label``: who it is billed
    to (the customer's name or email)."""
    labels = tax_rate_labels or {}
    currency = str(invoice["currency"]).upper()

    def money(amount: int) -> str:
        return Money(int(amount), currency).format(locale)

    lines: list[DocumentLine] = []
    for line in invoice["lines"]["data"]:
        period = line.get("period") or {}
        start, end = _date(period.get("start"), locale), _date(period.get("end"), locale)
        shown = "" if start is None else start if start == end else f"{start} - {end}"
        quantity = line.get("quantity")
        lines.append(
            DocumentLine(
                description=str(line.get("description") or "—"),
                quantity="" if quantity is None else str(quantity),
                period=shown,
                amount=money(int(line["amount"])),
            )
        )
    totals: list[tuple[str, str]] = [("Subtotal", money(int(invoice["subtotal"])))]
    for discount in invoice.get("total_discount_amounts") or []:
        name = discount.get("discount") or "Discount"
        totals.append((f"Discount ({name})", money(-int(discount["amount"]))))
    for tax in invoice.get("total_tax_amounts") or []:
        label = _rate_label(str(tax.get("tax_rate")), labels)
        suffix = " (included)" if tax.get("inclusive") else ""
        totals.append((f"{label}{suffix}", money(int(tax["amount"]))))
    totals.append(("Total", money(int(invoice["total"]))))
    starting = int(invoice.get("starting_balance") or 0)
    if starting:
        totals.append(("Applied balance", money(starting)))
    paid = int(invoice.get("amount_paid") or 0)
    if paid:
        totals.append(("Amount paid", money(paid)))
    status = str(invoice["status"])
    remaining = int(invoice.get("amount_remaining") or 0)
    due_label = "Amount remaining" if status == "open" else "Amount due"
    due_value = remaining if status == "open" else int(invoice.get("amount_due") or 0)
    transitions = invoice.get("status_transitions") or {}
    dates: list[tuple[str, str]] = []
    for label, seconds in (
        ("Date of issue", transitions.get("finalized_at") or invoice.get("created")),
        ("Due date", invoice.get("due_date")),
        ("Paid on", transitions.get("paid_at")),
        ("Voided on", transitions.get("voided_at")),
    ):
        shown_date = _date(seconds, locale)
        if shown_date:
            dates.append((label, shown_date))
    notes = []
    if status == "void":
        notes.append("This invoice was voided: nothing is owed.")
    if status == "uncollectible":
        notes.append("This invoice was marked uncollectible.")
    return InvoiceDocument(
        merchant_name=merchant_name,
        title="Invoice",
        number=str(invoice.get("number") or "Draft"),
        status=status,
        status_word=_STATUS_WORDS.get(status, status),
        currency=currency,
        dates=dates,
        lines=lines,
        totals=totals,
        amount_due_label=due_label,
        amount_due=money(due_value),
        description=invoice.get("description"),
        customer=customer_label,
        payable=status == "open" and remaining > 0,
        locale=locale,
        notes=notes,
    )
