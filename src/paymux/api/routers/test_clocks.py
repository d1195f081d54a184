"""/v1/test_helpers/test_clocks (billing/clocks.py): test mode only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from paymux.api.billing_schemas import AdvanceTestClock, CreateTestClock
from paymux.api.deps import CallerDep, ExpandDep, ListDep, idempotent, list_response, run
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body

router = APIRouter(prefix="/v1/test_helpers/test_clocks", tags=["test_clocks"])


@router.post("")
async def create_test_clock(
    c: CallerDep, body: CreateTestClock = wire_body(CreateTestClock)
) -> Response:
    async def create() -> dict[str, Any]:
        return await c.app.clocks.create(c.account_id, body.frozen_time, body.name)

    return await idempotent(c, body, create)


@router.get("")
async def list_test_clocks(c: CallerDep, page: ListDep) -> JSONResponse:
    data, more = await c.app.clocks.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
    )
    return list_response("/v1/test_helpers/test_clocks", data, more)


@router.get("/{clock_id}")
async def retrieve_test_clock(clock_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    return JSONResponse(await c.app.clocks.retrieve(c.account_id, clock_id))


@router.delete("/{clock_id}")
async def delete_test_clock(clock_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.clocks.delete(c.account_id, clock_id))


@router.post("/{clock_id}/advance")
async def advance_test_clock(
    clock_id: str, c: CallerDep, body: AdvanceTestClock = wire_body(AdvanceTestClock)
) -> Response:
    async def advance() -> dict[str, Any]:
        return await c.app.clocks.advance(c.account_id, clock_id, body.frozen_time)

    return await idempotent(c, body, advance)
