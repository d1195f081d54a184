"""/v1/promotion_codes: customer-facing codes for coupons (billing/catalog_discounts.py).

The coupon is embedded in the answer (``coupon``, as Stripe's API before 2025-09 shows it) and
named in ``promotion[coupon]`` (the current shape); ``expand[]=promotion.coupon`` puts the
embedded coupon there too. Create takes the coupon either way: ``coupon`` or
``promotion[coupon]`` (what stripe-python 13+ sends)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import CreatePromotionCode, UpdatePromotionCode
from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_expanded,
)
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body

router = APIRouter(prefix="/v1/promotion_codes", tags=["promotion_codes"])
KIND = "promotion_code"
_EMBEDDED = "promotion.coupon"


def _split(paths: list[str] | None, prefix: str = "") -> tuple[list[str], bool]:
    """(the paths left for the expander, whether ``promotion.coupon`` was asked for)."""
    wanted = prefix + _EMBEDDED
    rest = [p for p in paths or [] if p != wanted]
    return rest, len(rest) != len(paths or [])


def _embed(view: dict[str, Any], coupon: bool) -> dict[str, Any]:
    if coupon and isinstance(view.get("promotion"), dict):
        view["promotion"] = {**view["promotion"], "coupon": view["coupon"]}
    return view


@router.post("")
async def create_promotion_code(
    c: CallerDep, body: CreatePromotionCode = wire_body(CreatePromotionCode)
) -> Response:
    paths, coupon = _split(body.expand)
    check_expand(KIND, paths, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def create() -> dict[str, Any]:
        view = await c.app.catalog.create_promotion_code(c.account_id, params)
        return _embed(await expanded(c, view, paths), coupon)

    return await idempotent(c, body, create)


@router.get("")
async def list_promotion_codes(
    c: CallerDep,
    page: ListDep,
    code: Annotated[str | None, Query(max_length=100)] = None,
    coupon: Annotated[str | None, Query(max_length=100)] = None,
    active: Annotated[bool | None, Query()] = None,
    customer: Annotated[str | None, Query(max_length=255)] = None,
) -> JSONResponse:
    data, more = await c.app.catalog.list_promotion_codes(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        code=code,
        coupon=coupon,
        active=active,
        customer=customer,
        created=page.created,
    )
    paths, embed = _split(page.expand, "data.")
    data = [_embed(view, embed) for view in data]
    return await list_expanded(
        c, "/v1/promotion_codes", KIND, data, more, replace(page, expand=paths)
    )


@router.get("/{promo_id}")
async def retrieve_promotion_code(promo_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    paths, coupon = _split(expand)
    check_expand(KIND, paths, c)
    view = await c.app.catalog.retrieve_promotion_code(c.account_id, promo_id)
    return JSONResponse(_embed(await expanded(c, view, paths), coupon))


@router.post("/{promo_id}")
async def update_promotion_code(
    promo_id: str, c: CallerDep, body: UpdatePromotionCode = wire_body(UpdatePromotionCode)
) -> Response:
    paths, coupon = _split(body.expand)
    check_expand(KIND, paths, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def update() -> dict[str, Any]:
        view = await c.app.catalog.update_promotion_code(c.account_id, promo_id, params)
        return _embed(await expanded(c, view, paths), coupon)

    return await idempotent(c, body, update)
