"""/v1/subscription_items (billing/subscription_item_api.py): one item of a subscription."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import (
    CreateSubscriptionItem,
    DeleteSubscriptionItem,
    UpdateSubscriptionItem,
)
from paymux.api.deps import CallerDep, ExpandDep, ListDep, idempotent, list_response, run
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body, wire_query
from paymux.billing.subscriptions import UpdateParams
from paymux.domain.errors import PaymuxError

router = APIRouter(prefix="/v1/subscription_items", tags=["subscription_items"])


@router.post("")
async def create_subscription_item(
    c: CallerDep, body: CreateSubscriptionItem = wire_body(CreateSubscriptionItem)
) -> Response:
    item = body.model_dump(
        include={"price", "quantity", "tax_rates", "metadata"}, exclude_none=True
    )
    update = UpdateParams(
        proration_behavior=body.proration_behavior, proration_date=body.proration_date
    )

    async def create() -> dict[str, Any]:
        return await c.app.subscription_items.create(c.account_id, body.subscription, item, update)

    return await idempotent(c, body, create)


@router.get("")
async def list_subscription_items(
    c: CallerDep,
    page: ListDep,
    subscription: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")] = None,
) -> JSONResponse:
    if not subscription:
        raise PaymuxError.of(
            "parameter_missing", "Missing required param: subscription.", param="subscription"
        )
    data = await c.app.subscription_items.list_for(c.account_id, subscription)
    return list_response("/v1/subscription_items", data[: page.limit], len(data) > page.limit)


@router.get("/{item_id}")
async def retrieve_subscription_item(item_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    return JSONResponse(await c.app.subscription_items.retrieve(c.account_id, item_id))


@router.post("/{item_id}")
async def update_subscription_item(
    item_id: str, c: CallerDep, body: UpdateSubscriptionItem = wire_body(UpdateSubscriptionItem)
) -> Response:
    change = body.model_dump(
        include={"price", "quantity", "tax_rates", "metadata"}, exclude_none=True
    )
    update = UpdateParams(
        proration_behavior=body.proration_behavior, proration_date=body.proration_date
    )

    async def apply() -> dict[str, Any]:
        return await c.app.subscription_items.update(c.account_id, item_id, change, update)

    return await idempotent(c, body, apply)


@router.delete("/{item_id}")
async def delete_subscription_item(
    item_id: str, c: CallerDep, q: DeleteSubscriptionItem = wire_query(DeleteSubscriptionItem)
) -> Response:
    update = UpdateParams(proration_behavior=q.proration_behavior, proration_date=q.proration_date)
    return await run(c, lambda: c.app.subscription_items.delete(c.account_id, item_id, update))
