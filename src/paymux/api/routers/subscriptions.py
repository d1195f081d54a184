"""/v1/subscriptions (billing/subscriptions.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import (
    CancelSubscription,
    CreateSubscription,
    ResumeSubscription,
    UpdateSubscription,
)
from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_expanded,
    run,
)
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body, wire_query
from paymux.billing.subscriptions import SubscriptionParams, UpdateParams
from paymux.domain.errors import PaymuxError

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
KIND = "subscription"
RefQuery = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]

Status = Literal[
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
]


def _no_description(description: str | None) -> None:
    """Stripe's ``description`` of a subscription: paymux keeps none yet, so it is refused
    rather than dropped (a caller would read it back as null)."""
    if description is not None:
        raise PaymuxError.of(
            "parameter_unknown",
            "paymux does not keep a subscription's description yet: leave description out "
            "(metadata keeps any text of yours).",
            param="description",
        )


@router.post("")
async def create_subscription(
    c: CallerDep, body: CreateSubscription = wire_body(CreateSubscription)
) -> Response:
    check_expand(KIND, body.expand, c)
    _no_description(body.description)
    params = SubscriptionParams(
        customer=body.customer,
        items=[item.model_dump(exclude_none=True) for item in body.items],
        default_payment_method=body.default_payment_method,
        trial_period_days=body.trial_period_days,
        trial_end=body.trial_end,
        billing_cycle_anchor=body.billing_cycle_anchor,
        collection_method=body.collection_method,
        days_until_due=body.days_until_due,
        coupon=body.coupon,
        promotion_code=body.promotion_code,
        discounts=[d.model_dump(exclude_none=True) for d in body.discounts or []] or None,
        payment_behavior=body.payment_behavior,
        cancel_at_period_end=body.cancel_at_period_end,
        cancel_at=body.cancel_at,
        metadata=body.metadata,
        default_tax_rates=body.default_tax_rates,
        trial_settings=body.trial_settings.model_dump() if body.trial_settings else None,
    )

    async def create() -> dict[str, Any]:
        view = await c.app.subscriptions.create(c.account_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("")
async def list_subscriptions(
    c: CallerDep,
    page: ListDep,
    customer: RefQuery = None,
    status: Annotated[Status | None, Query()] = None,
    price: RefQuery = None,
    test_clock: RefQuery = None,
) -> JSONResponse:
    data, more = await c.app.subscriptions.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        customer=customer,
        status=status,
        price=price,
        test_clock=test_clock,
        created=page.created,
    )
    return await list_expanded(c, "/v1/subscriptions", KIND, data, more, page)


@router.get("/{sub_id}")
async def retrieve_subscription(sub_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.subscriptions.retrieve(c.account_id, sub_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/{sub_id}")
async def update_subscription(
    sub_id: str, c: CallerDep, body: UpdateSubscription = wire_body(UpdateSubscription)
) -> Response:
    check_expand(KIND, body.expand, c)
    _no_description(body.description)
    params = UpdateParams(
        items=(
            None if body.items is None else [i.model_dump(exclude_none=True) for i in body.items]
        ),
        proration_behavior=body.proration_behavior,
        proration_date=body.proration_date,
        cancel_at_period_end=body.cancel_at_period_end,
        cancel_at=body.cancel_at,
        pause_collection=(
            body.pause_collection.model_dump()
            if body.pause_collection not in (None, "")
            and not isinstance(body.pause_collection, str)
            else body.pause_collection
        ),
        default_payment_method=body.default_payment_method,
        coupon=body.coupon,
        promotion_code=body.promotion_code,
        trial_end=body.trial_end,
        metadata=body.metadata,
        collection_method=body.collection_method,
        days_until_due=body.days_until_due,
        default_tax_rates=body.default_tax_rates,
        payment_behavior=body.payment_behavior,
        paymux_apply_at=body.paymux_apply_at,
    )

    async def update() -> dict[str, Any]:
        view = await c.app.subscriptions.update(c.account_id, sub_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


@router.delete("/{sub_id}")
async def cancel_subscription(
    sub_id: str, c: CallerDep, body: CancelSubscription = wire_query(CancelSubscription)
) -> Response:
    """Cancel now (Stripe's DELETE), optionally invoicing a prorated credit at once."""
    return await run(
        c,
        lambda: c.app.subscriptions.cancel(
            c.account_id, sub_id, invoice_now=body.invoice_now, prorate=body.prorate
        ),
    )


@router.post("/{sub_id}/resume")
async def resume_subscription(
    sub_id: str, c: CallerDep, body: ResumeSubscription = wire_body(ResumeSubscription)
) -> Response:
    check_expand(KIND, body.expand, c)

    async def resume() -> dict[str, Any]:
        view = await c.app.subscriptions.resume(c.account_id, sub_id)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, resume)
