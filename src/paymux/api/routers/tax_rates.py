"""/v1/tax_rates: inclusive or exclusive percentages (billing/catalog_tax_rates.py). The
percentage and inclusive are fixed once made; the rest can change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import CreateTaxRate, UpdateTaxRate
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

router = APIRouter(prefix="/v1/tax_rates", tags=["tax_rates"])
KIND = "tax_rate"


@router.post("")
async def create_tax_rate(c: CallerDep, body: CreateTaxRate = wire_body(CreateTaxRate)) -> Response:
    check_expand(KIND, body.expand, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def create() -> dict[str, Any]:
        view = await c.app.catalog.create_tax_rate(c.account_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("")
async def list_tax_rates(
    c: CallerDep,
    page: ListDep,
    active: Annotated[bool | None, Query()] = None,
    inclusive: Annotated[bool | None, Query()] = None,
) -> JSONResponse:
    data, more = await c.app.catalog.list_tax_rates(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        active=active,
        inclusive=inclusive,
        created=page.created,
    )
    return await list_expanded(c, "/v1/tax_rates", KIND, data, more, page)


@router.get("/{tax_rate_id}")
async def retrieve_tax_rate(tax_rate_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.catalog.retrieve_tax_rate(c.account_id, tax_rate_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/{tax_rate_id}")
async def update_tax_rate(
    tax_rate_id: str, c: CallerDep, body: UpdateTaxRate = wire_body(UpdateTaxRate)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = body.model_dump(exclude={"expand"}, exclude_unset=True)

    async def update() -> dict[str, Any]:
        view = await c.app.catalog.update_tax_rate(c.account_id, tax_rate_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)
