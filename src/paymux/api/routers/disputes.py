"""/v1/disputes: chargebacks the gateways reported, recorded on their payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from paymux.api.deps import CallerDep, ExpandDep, ListDep, check_expand, expanded, list_expanded

router = APIRouter(prefix="/v1/disputes", tags=["disputes"])
KIND = "dispute"


@router.get("")
async def list_disputes(
    c: CallerDep, page: ListDep, payment_intent: Annotated[str | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.events.list_disputes(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        payment_intent=payment_intent,
        created=page.created,
    )
    return await list_expanded(c, "/v1/disputes", KIND, data, more, page)


@router.get("/{dispute_id}")
async def retrieve_dispute(dispute_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.events.retrieve_dispute(c.account_id, dispute_id)
    return JSONResponse(await expanded(c, view, expand))
