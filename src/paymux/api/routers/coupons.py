"""/v1/coupons: discounts (billing/catalog_discounts.py). A coupon's id may be the
merchant's own; its discount and duration are fixed once made (name and metadata change)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from paymux.api.billing_schemas import CreateCoupon, UpdateCoupon
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
from paymux.api.wire import wire_body

router = APIRouter(prefix="/v1/coupons", tags=["coupons"])
KIND = "coupon"


def _without_applies_to(paths: list[str] | None) -> list[str]:
    """Stripe shows ``applies_to`` only with ``expand[]=applies_to``; paymux always does."""
    return [p for p in paths or [] if p not in ("applies_to", "data.applies_to")]


@router.post("")
async def create_coupon(c: CallerDep, body: CreateCoupon = wire_body(CreateCoupon)) -> Response:
    paths = _without_applies_to(body.expand)
    check_expand(KIND, paths, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def create() -> dict[str, Any]:
        return await expanded(c, await c.app.catalog.create_coupon(c.account_id, params), paths)

    return await idempotent(c, body, create)


@router.get("")
async def list_coupons(c: CallerDep, page: ListDep) -> JSONResponse:
    data, more = await c.app.catalog.list_coupons(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        created=page.created,
    )
    page = replace(page, expand=_without_applies_to(page.expand))
    return await list_expanded(c, "/v1/coupons", KIND, data, more, page)


@router.get("/{coupon_id}")
async def retrieve_coupon(coupon_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    paths = _without_applies_to(expand)
    check_expand(KIND, paths, c)
    view = await c.app.catalog.retrieve_coupon(c.account_id, coupon_id)
    return JSONResponse(await expanded(c, view, paths))


@router.post("/{coupon_id}")
async def update_coupon(
    coupon_id: str, c: CallerDep, body: UpdateCoupon = wire_body(UpdateCoupon)
) -> Response:
    paths = _without_applies_to(body.expand)
    check_expand(KIND, paths, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def update() -> dict[str, Any]:
        view = await c.app.catalog.update_coupon(c.account_id, coupon_id, params)
        return await expanded(c, view, paths)

    return await idempotent(c, body, update)


@router.delete("/{coupon_id}")
async def delete_coupon(coupon_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.catalog.delete_coupon(c.account_id, coupon_id))
