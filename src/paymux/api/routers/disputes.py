"""/v1/disputes: chargebacks the gateways reported, recorded on their payments."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from paymux.api.deps import CallerDep, ListDep, list_response

router = APIRouter(prefix="/v1/disputes", tags=["disputes"])


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
    )
    return list_response("/v1/disputes", data, more)
