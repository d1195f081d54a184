"""/v1/prices: the catalog's prices (billing/catalog_products.py). A price's money terms are
immutable; update changes only active, nickname, lookup_key, metadata and tax_behavior."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import CreatePrice, PriceListQuery, UpdatePrice
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
from paymux.api.wire import wire_body, wire_query

router = APIRouter(prefix="/v1/prices", tags=["prices"])
KIND = "price"


def _without_tiers(paths: list[str] | None) -> list[str]:
    """Stripe shows a price's tiers only with ``expand[]=tiers``; paymux always shows them,
    so that expand is accepted and has nothing left to do."""
    return [p for p in paths or [] if p not in ("tiers", "data.tiers")]


@router.post("")
async def create_price(c: CallerDep, body: CreatePrice = wire_body(CreatePrice)) -> Response:
    paths = _without_tiers(body.expand)
    check_expand(KIND, paths, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def create() -> dict[str, Any]:
        view = await c.app.catalog.create_price(c.account_id, params)
        return await expanded(c, view, paths)

    return await idempotent(c, body, create)


@router.get("")
async def list_prices(
    c: CallerDep,
    page: ListDep,
    active: Annotated[bool | None, Query()] = None,
    currency: Annotated[str | None, Query(max_length=3)] = None,
    product: Annotated[str | None, Query(max_length=255)] = None,
    type: Annotated[Literal["one_time", "recurring"] | None, Query()] = None,
    q: PriceListQuery = wire_query(PriceListQuery),
) -> JSONResponse:
    recurring = q.recurring
    data, more = await c.app.catalog.list_prices(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        active=active,
        currency=currency,
        product=product,
        type=type,
        lookup_keys=q.lookup_keys,
        interval=recurring.interval if recurring else None,
        usage_type=recurring.usage_type if recurring else None,
        created=page.created,
    )
    page = replace(page, expand=_without_tiers(page.expand))
    return await list_expanded(c, "/v1/prices", KIND, data, more, page)


@router.get("/{price_id}")
async def retrieve_price(price_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    paths = _without_tiers(expand)
    check_expand(KIND, paths, c)
    view = await c.app.catalog.retrieve_price(c.account_id, price_id)
    return JSONResponse(await expanded(c, view, paths))


@router.post("/{price_id}")
async def update_price(
    price_id: str, c: CallerDep, body: UpdatePrice = wire_body(UpdatePrice)
) -> Response:
    paths = _without_tiers(body.expand)
    check_expand(KIND, paths, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def update() -> dict[str, Any]:
        view = await c.app.catalog.update_price(c.account_id, price_id, params)
        return await expanded(c, view, paths)

    return await idempotent(c, body, update)
