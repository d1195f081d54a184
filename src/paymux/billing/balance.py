"""A customer's credit balance (Stripe's ``customer.balance``) and its history.

The balance is one integer in one currency: negative is credit the customer holds (applied
to their next invoice), positive is an amount they owe (added to it). Every change is a
``CustomerBalanceTransaction`` carrying the balance after it, written in the caller's
transaction under the customer row's lock, so two concurrent changes (a credit note and an
invoice's finalization) serialize and the history's last ``ending_balance`` always equals
``Customer.balance``.

The first change fixes the balance's currency (``Customer.currency``, which invoices set
too); a change in another currency is refused: paymux never converts money.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.clock import seconds
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.money.currencies import get_currency
from paymux.money.errors import MoneyError
from paymux.services.context import Context, get_owned, page_of
from paymux.storage.models import Customer, CustomerBalanceTransaction

__all__ = [
    "BALANCE_TRANSACTION_TYPES",
    "CUSTOMER_LOCK",
    "BalanceService",
    "adjust_balance",
    "balance_transaction_view",
    "record_balance_change",
]

# How billing locks a customer's row (SQLAlchemy's ``with_for_update`` flags): FOR NO KEY
# UPDATE on PostgreSQL. It serializes balance changes as FOR UPDATE did, but a foreign key's
# KEY SHARE (an invoice, an intent or a balance transaction inserted for the customer in an
# open transaction) does not block it: two renewals of one customer's subscriptions, each
# holding its new invoice's KEY SHARE, deadlocked upgrading to FOR UPDATE.
CUSTOMER_LOCK: dict[str, Any] = {"key_share": True}

# Stripe's types that paymux writes: a merchant's adjustment, a balance applied to (or
# carried from) an invoice, and a credit note's credit.
BALANCE_TRANSACTION_TYPES = frozenset(
    {
        "adjustment",
        "applied_to_invoice",
        "credit_note",
        "initial",
        "invoice_overpaid",
        "invoice_too_large",
        "invoice_too_small",
        "unapplied_from_invoice",
    }
)


def balance_transaction_view(t: CustomerBalanceTransaction) -> dict[str, Any]:
    return {
        "id": t.id,
        "object": "customer_balance_transaction",
        "amount": t.amount,
        "currency": t.currency.lower(),
        "customer": t.customer_id,
        "credit_note": t.credit_note_id,
        "invoice": t.invoice_id,
        "description": t.description,
        "ending_balance": t.ending_balance,
        "type": t.type,
        "metadata": {},
        "created": seconds(t.created_us),
        "livemode": bool(t.livemode),
    }


def _currency(code: str) -> str:
    try:
        return get_currency(code).code  # stored upper-case, as invoices store theirs
    except MoneyError as exc:
        raise PaymuxError.of(
            "currency_unknown", f"Invalid currency: {code}.", param="currency"
        ) from exc


async def adjust_balance(
    s: AsyncSession,
    account_id: str,
    customer_id: str,
    amount: int,
    currency: str,
    type: str,
    *,
    invoice_id: str | None = None,
    credit_note_id: str | None = None,
    description: str | None = None,
    now_us: int,
) -> int:
    """Change the customer's balance by ``amount`` (negative: credit to the customer) in the
    caller's transaction, record it, and return the new balance.

    Locks the customer row first (FOR UPDATE on PostgreSQL), so the read-modify-write is
    safe against concurrent adjustments. A currency other than the balance's is refused
    (``currency_mismatch``); the first change (or invoice) sets the balance's currency."""
    txn = await record_balance_change(
        s,
        account_id,
        customer_id,
        amount,
        currency,
        type,
        invoice_id=invoice_id,
        credit_note_id=credit_note_id,
        description=description,
        now_us=now_us,
    )
    return txn.ending_balance


async def record_balance_change(
    s: AsyncSession,
    account_id: str,
    customer_id: str,
    amount: int,
    currency: str,
    type: str,
    *,
    invoice_id: str | None = None,
    credit_note_id: str | None = None,
    description: str | None = None,
    now_us: int,
) -> CustomerBalanceTransaction:
    """``adjust_balance``, answering the transaction it wrote."""
    if type not in BALANCE_TRANSACTION_TYPES:
        raise ValueError(f"unknown customer balance transaction type {type!r}")
    code = _currency(currency)
    # The row lock first (``CUSTOMER_LOCK``: FOR NO KEY UPDATE, which the KEY SHARE of a
    # foreign key to the customer, held by whoever inserted an invoice of theirs, never
    # blocks), then the ownership check on the row it read.
    await s.get(Customer, customer_id, with_for_update=CUSTOMER_LOCK)
    customer = await get_owned(
        s, Customer, customer_id, account_id, param="customer", include_deleted=True
    )
    held = (customer.currency or "").upper() or None
    if held is None:
        customer.currency = code
    elif held != code:
        raise PaymuxError.of(
            "currency_mismatch",
            f"The customer's balance is in {held.lower()}; it cannot change by an amount in "
            f"{code.lower()}.",
            param="currency",
        )
    ending = customer.balance + amount
    txn = CustomerBalanceTransaction(
        id=new_id("cbtxn"),
        account_id=account_id,
        livemode=bool(customer.livemode),
        customer_id=customer_id,
        type=type,
        amount=amount,
        currency=code,
        ending_balance=ending,
        invoice_id=invoice_id,
        credit_note_id=credit_note_id,
        description=description,
        created_us=now_us,
    )
    s.add(txn)
    customer.balance = ending
    customer.updated_us = now_us
    return txn


class BalanceService:
    """/v1/customers/{id}/balance_transactions: a merchant's adjustments, and the history."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def create(
        self,
        account_id: str,
        customer_id: str,
        *,
        amount: int,
        currency: str,
        description: str | None = None,
    ) -> dict[str, Any]:
        if amount == 0:
            raise PaymuxError.of(
                "parameter_invalid", "The amount must not be zero.", param="amount"
            )
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            txn = await record_balance_change(
                s,
                account_id,
                customer_id,
                amount,
                currency,
                "adjustment",
                description=description,
                now_us=now,
            )
            return balance_transaction_view(txn)

    async def retrieve(self, account_id: str, customer_id: str, txn_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            t = await get_owned(s, CustomerBalanceTransaction, txn_id, account_id)
            if t.customer_id != customer_id:
                raise PaymuxError.of(
                    "resource_missing",
                    f"No such customer balance transaction: '{txn_id}'",
                    param="id",
                )
            return balance_transaction_view(t)

    async def list_page(
        self,
        account_id: str,
        customer_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        async with self.ctx.db.read() as s:
            await get_owned(s, Customer, customer_id, account_id, param="customer")
        return await page_of(
            self.ctx,
            CustomerBalanceTransaction,
            account_id,
            balance_transaction_view,
            CustomerBalanceTransaction.customer_id == customer_id,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
        )
