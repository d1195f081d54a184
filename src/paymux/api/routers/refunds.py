"""/v1/refunds"""

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
from paymux.api.schemas import CreateRefund, UpdateMetadata
from paymux.api.wire import wire_body
from paymux.domain.errors import PaymuxError
from paymux.services.charges import intent_id

router = APIRouter(prefix="/v1/refunds", tags=["refunds"])
KIND = "refund"


@router.post("")
async def create_refund(c: CallerDep, body: CreateRefund = wire_body(CreateRefund)) -> Response:
    check_expand(KIND, body.expand, c)
    payment_intent = body.payment_intent or (intent_id(body.charge) if body.charge else None)
    if payment_intent is None:
        raise PaymuxError.of(
            "parameter_missing",
            "Missing required param: payment_intent (or charge).",
            param="payment_intent",
        )
    if body.payment_intent and body.charge and intent_id(body.charge) != body.payment_intent:
        raise PaymuxError.of(
            "parameter_invalid",
            "The charge is not this payment intent's.",
            param="charge",
        )

    async def create() -> dict[str, Any]:
        view = await c.app.refunds.create(
            c.account_id,
            payment_intent,
            body.amount,
            body.reason,
            body.metadata,
            currency=body.currency,
        )
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("")
async def list_refunds(
    c: CallerDep,
    page: ListDep,
    payment_intent: Annotated[str | None, Query()] = None,
    charge: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    if charge is not None:
        # A charge is its intent's (services/charges.py): its refunds are the intent's.
        payment_intent = intent_id(charge) or charge
    data, more = await c.app.refunds.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        payment_intent=payment_intent,
        created=page.created,
    )
    return await list_expanded(c, "/v1/refunds", KIND, data, more, page)


@router.get("/{refund_id}")
async def retrieve_refund(refund_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.refunds.retrieve(c.account_id, refund_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/{refund_id}")
async def update_refund(
    refund_id: str, c: CallerDep, body: UpdateMetadata = wire_body(UpdateMetadata)
) -> Response:
    """A refund's metadata, in any state."""
    check_expand(KIND, body.expand, c)

    async def update() -> dict[str, Any]:
        view = await c.app.refunds.update(c.account_id, refund_id, body.metadata)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)
