"""/v1/refunds"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from paymux.api.deps import CallerDep, ListDep, idempotent, list_response
from paymux.api.schemas import CreateRefund

router = APIRouter(prefix="/v1/refunds", tags=["refunds"])


@router.post("")
async def create_refund(body: CreateRefund, c: CallerDep) -> Response:
    return await idempotent(
        c,
        body,
        lambda: c.app.refunds.create(
            c.account_id,
            body.payment_intent,
            body.amount,
            body.reason,
            body.metadata,
            currency=body.currency,
        ),
    )


@router.get("")
async def list_refunds(
    c: CallerDep, page: ListDep, payment_intent: Annotated[str | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.refunds.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        payment_intent=payment_intent,
    )
    return list_response("/v1/refunds", data, more)


@router.get("/{refund_id}")
async def retrieve_refund(refund_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.refunds.retrieve(c.account_id, refund_id))
