"""The customers pages: a list (cursor pagination, by e-mail), and a customer's page with
their saved payment methods (brand, last 4, expiry: never more), payments, subscriptions,
invoices and credit balance. Read only; every role may look."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from paymux.dashboard.auth import ANY, CurrentUser, core, require_role
from paymux.dashboard.filters import parse_filters
from paymux.dashboard.page_helpers import pager
from paymux.dashboard.render import render
from paymux.domain.errors import PaymuxError
from paymux.services.payment_reads import PaymentReads

__all__ = ["router"]

router = APIRouter()
PAGE_SIZE = 25
SECTION_SIZE = 10


def _card(pm: dict[str, Any]) -> dict[str, Any]:
    """A saved payment method as the page shows it: brand, last 4, expiry."""
    card = pm.get("card") or {}
    return {
        "id": pm["id"],
        "type": pm.get("type"),
        "brand": card.get("brand"),
        "last4": card.get("last4"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
    }


@router.get("/customers")
async def customers(
    request: Request, user: Annotated[CurrentUser, Depends(require_role(*ANY))]
) -> HTMLResponse:
    q = request.query_params
    after, before = q.get("starting_after") or None, q.get("ending_before") or None
    email = (q.get("email") or "").strip()[:254] or None
    try:
        rows, more = await core(request).customers.list_page(
            user.account_id,
            limit=PAGE_SIZE,
            starting_after=after,
            ending_before=before,
            email=email,
        )
    except PaymuxError:
        rows, more = [], False
    older, newer = pager(rows, more, after, before)

    def link(**cursor: str) -> str:
        return "?" + urlencode({**cursor, **({"email": email} if email else {})})

    return render(
        request,
        "dashboard/customers.html",
        user=user,
        rows=rows,
        email=email or "",
        older=link(starting_after=older) if older else None,
        newer=link(ending_before=newer) if newer else None,
    )


@router.get("/customers/{customer_id}")
async def customer(
    request: Request,
    customer_id: str,
    user: Annotated[CurrentUser, Depends(require_role(*ANY))],
) -> HTMLResponse:
    app = core(request)
    account = user.account_id
    try:
        found = await app.customers.retrieve(account, customer_id)
    except PaymuxError:
        return render(
            request,
            "dashboard/message.html",
            user=user,
            status=404,
            title="No such customer",
            message=f"There is no customer {customer_id}.",
        )
    methods = [_card(pm) for pm in await app.customers.list_payment_methods(account, customer_id)]
    payments, _ = await PaymentReads(app.ctx).search(
        account, parse_filters({"customer": customer_id}), limit=SECTION_SIZE
    )
    subscriptions, _ = await app.subscriptions.list_page(
        account, limit=SECTION_SIZE, customer=customer_id
    )
    invoices, _ = await app.invoices.list_page(account, limit=SECTION_SIZE, customer=customer_id)
    return render(
        request,
        "dashboard/customer.html",
        user=user,
        c=found,
        methods=methods,
        payments=payments,
        subscriptions=subscriptions,
        invoices=invoices,
    )
