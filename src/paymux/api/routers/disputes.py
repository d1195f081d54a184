"""/v1/disputes: chargebacks the gateways reported, recorded on their payments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

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
from paymux.api.schemas import UpdateMetadata
from paymux.api.wire import wire_body

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


@router.post("/{dispute_id}")
async def update_dispute(
    dispute_id: str, c: CallerDep, body: UpdateMetadata = wire_body(UpdateMetadata)
) -> Response:
    """A dispute's metadata, in any state. Stripe's ``evidence`` and ``submit`` are not
    taken (400 ``parameter_unknown``): evidence goes to the gateway's own dashboard."""
    check_expand(KIND, body.expand, c)

    async def update() -> dict[str, Any]:
        view = await c.app.events.update_dispute(c.account_id, dispute_id, body.metadata)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)
