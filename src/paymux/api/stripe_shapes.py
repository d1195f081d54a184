"""Answers shaped for an old pinned ``Stripe-Version``: the breaking shape changes a typical
integration reads, served as Stripe served them before the change.

paymux answers today's shape (``STRIPE_API_VERSION``) by default and to every version from
``2022-11-15`` on. For a request pinned before it (``Stripe-Version: 2022-08-01``, an old SDK's
default), as Stripe did then (docs.stripe.com/changelog/2022-11-15):

- a PaymentIntent carries ``charges``, a list object of its charges (``intent.charges.data[0]``
  in older code), besides ``latest_charge``, which Stripe showed on those versions too;
- a Charge carries ``refunds``, a list object of its refunds, which Stripe stopped including
  by default.

Anything else is today's shape on every version: docs/stripe-compatibility.md says which.
The version rule (``lists_charges``) is pure; the shaping reads through the services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from paymux.api.deps import Caller
from paymux.domain.errors import PaymuxError

__all__ = [
    "CHARGES_LISTED_BEFORE",
    "lists_charges",
    "shaped",
    "shaped_error",
    "shaping_errors",
    "version_day",
]

# The first version without PaymentIntent.charges and Charge.refunds.
CHARGES_LISTED_BEFORE = date(2022, 11, 15)
_MOST = 100  # Stripe's list objects of this kind carried at most a page of 100


def version_day(version: str | None) -> date | None:
    """The date of a ``Stripe-Version`` value (``2022-08-01``, ``2025-03-31.basil``), or None
    (none sent; the middleware has already refused a malformed one)."""
    if not version:
        return None
    try:
        return date.fromisoformat(version.strip().split(".", 1)[0])
    except ValueError:
        return None


def lists_charges(version: str | None) -> bool:
    """Whether answers to this version carry ``charges`` on a PaymentIntent and ``refunds``
    on a Charge."""
    day = version_day(version)
    return day is not None and day < CHARGES_LISTED_BEFORE


def _list(
    url: str, data: list[dict[str, Any]], more: bool, total: int | None = None
) -> dict[str, Any]:
    """A list object as those versions had it: ``total_count`` counts every item, not only
    the first page's (``total``, when there are more)."""
    return {
        "object": "list",
        "data": data,
        "has_more": more,
        "total_count": len(data) if total is None else total,
        "url": url,
    }


async def _charge_refunds(c: Caller, charge: dict[str, Any]) -> dict[str, Any]:
    pi_id = charge.get("payment_intent")
    pi_id = pi_id.get("id") if isinstance(pi_id, dict) else pi_id
    data: list[dict[str, Any]] = []
    more = False
    total = 0
    if isinstance(pi_id, str):
        data, more = await c.app.refunds.list_page(
            c.account_id, limit=_MOST, starting_after=None, ending_before=None,
            payment_intent=pi_id,
        )
        total, page, rest = len(data), data, more
        while rest and page:  # more than a page of refunds: count the rest, a page at a time
            page, rest = await c.app.refunds.list_page(
                c.account_id, limit=_MOST, starting_after=str(page[-1]["id"]),
                ending_before=None, payment_intent=pi_id,
            )
            total += len(page)
    return _list(f"/v1/charges/{charge['id']}/refunds", data, more, total)


async def _intent_charges(c: Caller, intent: dict[str, Any]) -> dict[str, Any]:
    latest = intent.get("latest_charge")
    data: list[dict[str, Any]] = []
    if isinstance(latest, dict):
        data = [dict(latest)]
    elif isinstance(latest, str):
        data = [await c.app.charges.retrieve(c.account_id, latest)]
    for charge in data:
        charge["refunds"] = await _charge_refunds(c, charge)
    return _list(f"/v1/charges?payment_intent={intent['id']}", data, False)


async def shaped(c: Caller, view: dict[str, Any]) -> dict[str, Any]:
    """``view`` (a PaymentIntent, a Charge, or a list object of either) as the request's
    ``Stripe-Version`` had it; unchanged for today's versions."""
    if not lists_charges(c.request.headers.get("stripe-version")):
        return view
    kind = view.get("object")
    if kind == "list":
        view["data"] = [await shaped(c, item) for item in view.get("data", [])]
    elif kind == "payment_intent":
        view["charges"] = await _intent_charges(c, view)
        if isinstance(view.get("latest_charge"), dict):  # expanded: shaped as a charge
            view["latest_charge"] = await shaped(c, view["latest_charge"])
    elif kind == "charge":
        view["refunds"] = await _charge_refunds(c, view)
        if isinstance(view.get("payment_intent"), dict):  # expanded: shaped as an intent
            view["payment_intent"] = await shaped(c, view["payment_intent"])
    return view


async def shaped_error(c: Caller, error: PaymuxError) -> None:
    """The PaymentIntent a refusal carries (``error.payment_intent``, a decline's), as the
    request's version had it. A publishable key's view is made by ``deps`` and has no
    ``charges`` on any version."""
    intent = error.extra.get("payment_intent")
    if isinstance(intent, dict) and c.kind != "publishable":
        error.extra["payment_intent"] = await shaped(c, dict(intent))


def shaping_errors(
    c: Caller, operation: Callable[[], Awaitable[dict[str, Any]]]
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``operation``, whose refusals carry their intent as the request's version had it."""

    async def run() -> dict[str, Any]:
        try:
            return await operation()
        except PaymuxError as error:
            await shaped_error(c, error)
            raise

    return run
