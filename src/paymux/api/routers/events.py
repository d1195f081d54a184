"""/v1/events"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from paymux.api.deps import CallerDep, ListParams, list_params, list_response
from paymux.api.responses import JSONResponse
from paymux.api.schemas import EventsQuery
from paymux.api.wire import wire_query
from paymux.services.expand import Expander

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("")
async def list_events(
    c: CallerDep,
    page: Annotated[ListParams, Depends(list_params)],
    q: EventsQuery = wire_query(EventsQuery),
    type: Annotated[str | None, Query()] = None,
    object_id: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    data, more = await c.app.events.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        type=type,
        types=q.types,
        object_id=object_id,
        created=page.created,
    )
    Expander.check("event", page.expand, listed=True)  # a snapshot: nothing expands
    return list_response("/v1/events", data, more)


@router.get("/{event_id}")
async def retrieve_event(event_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.events.retrieve(c.account_id, event_id))
