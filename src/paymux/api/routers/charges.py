"""/v1/charges: read-only, each the latest attempt of a PaymentIntent (services/charges.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from paymux.api.deps import CallerDep, ExpandDep, ListDep, check_expand, expanded, list_expanded

router = APIRouter(prefix="/v1/charges", tags=["charges"])
KIND = "charge"


@router.get("")
async def list_charges(
    c: CallerDep,
    page: ListDep,
    payment_intent: Annotated[str | None, Query()] = None,
    customer: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    data, more = await c.app.charges.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        payment_intent=payment_intent,
        customer=customer,
        created=page.created,
    )
    return await list_expanded(c, "/v1/charges", KIND, data, more, page)


@router.get("/{charge_id}")
async def retrieve_charge(charge_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.charges.retrieve(c.account_id, charge_id)
    return JSONResponse(await expanded(c, view, expand))
