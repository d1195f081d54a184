"""/v1/reviews: the review queue (fraud/reviews.py), in Stripe's shape. Approve captures
the held payment; reject (paymux's) cancels it, or refunds it if it was captured."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.deps import CallerDep, ListDep, idempotent, list_response
from paymux.api.responses import JSONResponse
from paymux.api.schemas import Body
from paymux.api.wire import wire_body

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])


@router.get("")
async def list_reviews(
    c: CallerDep, page: ListDep, open: Annotated[bool | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.reviews.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        open=open,
        created=page.created,
    )
    return list_response("/v1/reviews", data, more)


@router.get("/{review_id}")
async def retrieve_review(review_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.reviews.retrieve(c.account_id, review_id))


@router.post("/{review_id}/approve")
async def approve_review(
    review_id: str, c: CallerDep, body: Body = wire_body(Body, required=False)
) -> Response:
    return await idempotent(c, body, lambda: c.app.reviews.approve(c.account_id, review_id))


@router.post("/{review_id}/reject")
async def reject_review(
    review_id: str, c: CallerDep, body: Body = wire_body(Body, required=False)
) -> Response:
    return await idempotent(c, body, lambda: c.app.reviews.reject(c.account_id, review_id))
