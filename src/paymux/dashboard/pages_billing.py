"""Billing: products and prices, subscriptions (change the price or quantity of an item,
cancel now or at the period end, pause and resume collection), invoices (the hosted page and
its PDF, void, mark uncollectible), coupons, and test clocks (advance; test mode only).

Everyone may look. Subscription and invoice actions are for admins (``ADMIN``: support's
role is refunds and reviews, not billing), advancing a test clock for admin and developer
(``DEVELOPERS``). Every action goes through
the billing services, as the API's, and is audited with the user."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.billing.subscriptions import UpdateParams
from paymux.dashboard.actions import record_action
from paymux.dashboard.auth import ADMIN, ANY, DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.page_helpers import done, field, refused
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError

__all__ = ["parse_clock_time", "router"]

router = APIRouter()
Viewer = Annotated[CurrentUser, Depends(require_role(*ANY))]
Admin = Annotated[CurrentUser, Depends(require_role(*ADMIN))]
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
_BACK = f"{PREFIX}/billing"
_PAGE = 50
_SUB_VERBS = ("change", "cancel_now", "cancel_at_period_end", "pause", "resume_collection")


def parse_clock_time(value: str) -> int:
    """A ``datetime-local`` value (``2026-05-27T10:30``, read as UTC) as epoch seconds."""
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC)
    except ValueError:
        raise PaymuxError.of(
            "parameter_invalid",
            "Give the time as YYYY-MM-DDTHH:MM (UTC).",
            param="frozen_time",
        ) from None
    return int(moment.timestamp())


@router.get("/billing")
async def billing_page(request: Request, user: Viewer) -> Response:
    app = core(request)
    cursor = request.query_params.get("subscriptions_after") or None
    page: dict[str, Any] = {"limit": _PAGE, "starting_after": None, "ending_before": None}
    products, _ = await app.catalog.list_products(user.account_id, **page)
    prices, _ = await app.catalog.list_prices(user.account_id, **page)
    try:
        subscriptions, more_subs = await app.subscriptions.list_page(
            user.account_id, limit=_PAGE, starting_after=cursor, ending_before=None
        )
    except PaymuxError:  # a cursor that is not a subscription of this account and mode
        subscriptions, more_subs = [], False
    invoices, _ = await app.invoices.list_page(user.account_id, limit=_PAGE)
    coupons, _ = await app.catalog.list_coupons(user.account_id, **page)
    clocks: list[dict[str, Any]] = []
    if not user.livemode:
        clocks, _ = await app.clocks.list_page(user.account_id, limit=_PAGE)
    return render(
        request,
        "dashboard/billing.html",
        user=user,
        products=products,
        prices=prices,
        recurring=[p for p in prices if p.get("type") == "recurring" and p.get("active")],
        subscriptions=subscriptions,
        more_subs=more_subs,
        invoices=invoices,
        coupons=coupons,
        clocks=clocks,
        can_act=user.can(ADMIN),
        can_clock=user.can(DEVELOPERS),
    )


def _update_of(verb: str, form: Any) -> UpdateParams:
    if verb == "change":
        item, price = field(form, "item"), field(form, "price")
        quantity = field(form, "quantity") or "1"
        if not item or not price:
            raise PaymuxError.of("parameter_missing", "Pick an item and a price.", param="price")
        if not re.fullmatch(r"[0-9]{1,6}", quantity) or not 0 < int(quantity) <= 100_000:
            raise PaymuxError.of(
                "parameter_invalid",
                "The quantity is a whole number from 1 to 100000.",
                param="quantity",
            )
        return UpdateParams(items=[{"id": item, "price": price, "quantity": int(quantity)}])
    if verb == "cancel_at_period_end":
        return UpdateParams(cancel_at_period_end=True)
    if verb == "pause":
        return UpdateParams(pause_collection={"behavior": "void"})
    return UpdateParams(pause_collection="")  # resume_collection


@router.post("/billing/subscriptions/{sub_id}/{verb}")
async def subscription_action(request: Request, sub_id: str, verb: str, user: Admin) -> Response:
    form = await request.form()
    subs = core(request).subscriptions
    try:
        if verb not in _SUB_VERBS:
            raise PaymuxError.of(
                "parameter_invalid", "No such subscription action.", param="action"
            )
        if verb == "cancel_now":
            await subs.cancel(user.account_id, sub_id)
        else:
            await subs.update(user.account_id, sub_id, _update_of(verb, form))
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request, user, f"subscription.{verb}", object_type="subscription", object_id=sub_id
    )
    return done(_BACK + "#subscriptions")


@router.post("/billing/invoices/{invoice_id}/{verb}")
async def invoice_action(request: Request, invoice_id: str, verb: str, user: Admin) -> Response:
    invoices = core(request).invoices
    try:
        if verb == "void":
            await invoices.void(user.account_id, invoice_id)
        elif verb == "mark_uncollectible":
            await invoices.mark_uncollectible(user.account_id, invoice_id)
        else:
            raise PaymuxError.of("parameter_invalid", "No such invoice action.", param="action")
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request, user, f"invoice.{verb}", object_type="invoice", object_id=invoice_id
    )
    return done(_BACK + "#invoices")


@router.post("/billing/test_clocks/{clock_id}/advance")
async def advance_clock(request: Request, clock_id: str, user: Developer) -> Response:
    form = await request.form()
    try:
        to = parse_clock_time(field(form, "frozen_time"))
        await core(request).clocks.advance(user.account_id, clock_id, to)
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request,
        user,
        "test_clock.advance",
        object_type="test_helpers.test_clock",
        object_id=clock_id,
        details={"frozen_time": to},
    )
    return done(_BACK + "#test-clocks")
