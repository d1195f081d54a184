"""/v1/products: the catalog's products (billing/catalog_products.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import CreateProduct, UpdateProduct
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

router = APIRouter(prefix="/v1/products", tags=["products"])
KIND = "product"


@router.post("")
async def create_product(c: CallerDep, body: CreateProduct = wire_body(CreateProduct)) -> Response:
    """A product; with ``default_price_data`` its first price too, as its default_price."""
    check_expand(KIND, body.expand, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def create() -> dict[str, Any]:
        view = await c.app.catalog.create_product(c.account_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("")
async def list_products(
    c: CallerDep, page: ListDep, active: Annotated[bool | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.catalog.list_products(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        active=active,
        created=page.created,
    )
    return await list_expanded(c, "/v1/products", KIND, data, more, page)


@router.get("/{product_id}")
async def retrieve_product(product_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.catalog.retrieve_product(c.account_id, product_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/{product_id}")
async def update_product(
    product_id: str, c: CallerDep, body: UpdateProduct = wire_body(UpdateProduct)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def update() -> dict[str, Any]:
        view = await c.app.catalog.update_product(c.account_id, product_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


@router.delete("/{product_id}")
async def delete_product(product_id: str, c: CallerDep) -> Response:
    """Only a product without prices (Stripe's rule): else 400 ``resource_in_use``."""
    return await run(c, lambda: c.app.catalog.delete_product(c.account_id, product_id))
