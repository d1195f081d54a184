"""Stripe's ``expand[]``: an id in a response replaced by the object it names.

``expand=["customer", "latest_charge.payment_method"]`` on a PaymentIntent gives its customer
and its charge in full, the charge's payment method in full too. A list expands its items'
fields with ``data.`` in front (``data.customer``). Up to four levels, as on Stripe. Only the
fields below can be expanded; any other path is a 400 naming ``expand``. An expanded object
is the caller's account's like any other read (a null stays null).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.services.attempts import intent_view
from paymux.services.charges import load_charge
from paymux.services.context import Context, get_owned
from paymux.services.views import customer_view, payment_method_view
from paymux.storage.models import Customer, PaymentIntent, PaymentMethod

__all__ = ["EXPANDABLE", "MAX_DEPTH", "Expander", "Loader"]

MAX_DEPTH = 4

# object type -> its expandable fields -> the type of object each names.
EXPANDABLE: dict[str, dict[str, str]] = {
    "payment_intent": {
        "customer": "customer",
        "payment_method": "payment_method",
        "latest_charge": "charge",
    },
    "charge": {
        "customer": "customer",
        "payment_intent": "payment_intent",
        "payment_method": "payment_method",
    },
    "refund": {"payment_intent": "payment_intent", "charge": "charge"},
    "dispute": {"payment_intent": "payment_intent", "charge": "charge"},
    "payment_method": {"customer": "customer"},
    "customer": {"default_payment_method": "payment_method"},
    # the billing catalog (billing/catalog.py)
    "price": {"product": "product"},
    "product": {"default_price": "price"},
    "promotion_code": {"customer": "customer"},
    "setup_intent": {"customer": "customer", "payment_method": "payment_method"},
    # subscriptions and invoices (billing/subscriptions.py, billing/invoices.py)
    "subscription": {
        "customer": "customer",
        "latest_invoice": "invoice",
        "default_payment_method": "payment_method",
    },
    "invoice": {
        "customer": "customer",
        "subscription": "subscription",
        "payment_intent": "payment_intent",
        "default_payment_method": "payment_method",
    },
}

Loader = Callable[[AsyncSession, str, str], Awaitable[dict[str, Any]]]


def _cannot(path: str) -> PaymuxError:
    return PaymuxError.of(
        "parameter_invalid", f"This property cannot be expanded ({path}).", param="expand"
    )


class Expander:
    def __init__(self, ctx: Context, loaders: Mapping[str, Loader]) -> None:
        """``loaders``: what loads the objects of the packages above services (billing's
        prices, products, subscriptions and invoices), handed in by the composition root
        (``paymux.root``); services' own objects are loaded here."""
        self.ctx = ctx
        self._loaders: dict[str, Loader] = {
            "customer": self._customer,
            "payment_method": self._payment_method,
            "payment_intent": self._payment_intent,
            "charge": self._charge,
            **loaders,
        }
        missing = {t for fields in EXPANDABLE.values() for t in fields.values()} - set(
            self._loaders
        )
        if missing:
            raise ValueError(f"no loader for the expandable types {sorted(missing)}")

    @staticmethod
    def check(kind: str, paths: list[str], *, listed: bool = False) -> None:
        """Refuse a path that can't be expanded before any work is done."""
        for path in paths:
            parts = path.split(".")
            if listed:
                if parts[0] != "data" or len(parts) < 2:
                    raise _cannot(path)
                parts = parts[1:]
            if len(parts) > MAX_DEPTH:
                raise _cannot(path)
            current = kind
            for part in parts:
                target = EXPANDABLE.get(current, {}).get(part)
                if target is None:
                    raise _cannot(path)
                current = target

    @staticmethod
    def targets(kind: str, paths: list[str], *, listed: bool = False) -> set[str]:
        """The object types ``paths`` would load (for a restricted key's grants)."""
        out: set[str] = set()
        for path in paths:
            current = kind
            for part in path.split(".")[1 if listed else 0 :]:
                current = EXPANDABLE.get(current, {}).get(part, "")
                if current:
                    out.add(current)
        return out

    async def one(self, account_id: str, view: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        """``view`` with ``paths`` expanded (in place; also returned)."""
        if not paths:
            return view
        self.check(str(view.get("object")), paths)
        async with self.ctx.db.read() as s:
            for path in paths:
                await self._expand(s, account_id, view, path.split("."))
        return view

    async def many(
        self, account_id: str, kind: str, views: list[dict[str, Any]], paths: list[str]
    ) -> list[dict[str, Any]]:
        """A list's items with ``data.<path>`` expanded."""
        if not paths:
            return views
        self.check(kind, paths, listed=True)
        async with self.ctx.db.read() as s:
            for view in views:
                for path in paths:
                    await self._expand(s, account_id, view, path.split(".")[1:])
        return views

    async def _expand(
        self, s: AsyncSession, account_id: str, view: dict[str, Any], parts: list[str]
    ) -> None:
        field, rest = parts[0], parts[1:]
        value = view.get(field)
        if isinstance(value, str):
            target = EXPANDABLE[str(view["object"])][field]
            value = await self._loaders[target](s, account_id, value)
            view[field] = value
        if rest and isinstance(value, dict):
            await self._expand(s, account_id, value, rest)

    async def _customer(self, s: AsyncSession, account_id: str, object_id: str) -> dict[str, Any]:
        customer = await get_owned(
            s, Customer, object_id, account_id, param="expand", include_deleted=True
        )
        return customer_view(customer)

    async def _payment_method(
        self, s: AsyncSession, account_id: str, object_id: str
    ) -> dict[str, Any]:
        pm = await get_owned(s, PaymentMethod, object_id, account_id, param="expand")
        return payment_method_view(pm)

    async def _payment_intent(
        self, s: AsyncSession, account_id: str, object_id: str
    ) -> dict[str, Any]:
        pi = await get_owned(s, PaymentIntent, object_id, account_id, param="expand")
        return intent_view(self.ctx, pi)

    async def _charge(self, s: AsyncSession, account_id: str, object_id: str) -> dict[str, Any]:
        return await load_charge(s, account_id, object_id, param="expand")
