"""/v1/billing/meters, /v1/billing/meter_events and /v2/billing/meter_event_stream

The stream is the high-throughput way in (up to 100 events a request, JSON only, as Stripe's
v2 meter event stream; here authenticated with the account's key like every other route):
every event is checked first and a bad one answers 400 naming it
(``events[3][payload][value]``) with nothing stored; otherwise all are stored (repeated
identifiers ignored) and the answer is ``{}``. Its body is read with ``json.loads`` and
checked by billing/meter_ingest.py without a model object per event.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import CreateMeter, CreateMeterEvent, UpdateMeter
from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_expanded,
    list_response,
)
from paymux.api.responses import JSONResponse
from paymux.api.schemas import Expandable
from paymux.api.wire import wire_body
from paymux.billing.meter_ingest import MAX_BATCH, parse_stream, single_event
from paymux.billing.meters import MeterParams, SummaryRange
from paymux.domain.errors import PaymuxError

router = APIRouter(tags=["meters"])
METER = "billing.meter"
_METERS = "/v1/billing/meters"

# The stream's body, for the OpenAPI document (the route reads it itself).
_STREAM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            "items": {
                                "type": "object",
                                "required": ["event_name", "payload"],
                                "additionalProperties": False,
                                "properties": {
                                    "event_name": {"type": "string", "maxLength": 100},
                                    "payload": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "identifier": {"type": "string", "maxLength": 100},
                                    "timestamp": {"type": "string", "format": "date-time"},
                                },
                            },
                        }
                    },
                }
            }
        },
    }
}


@router.post(_METERS)
async def create_meter(c: CallerDep, body: CreateMeter = wire_body(CreateMeter)) -> Response:
    check_expand(METER, body.expand, c)

    async def create() -> dict[str, Any]:
        if body.event_time_window is not None:
            raise PaymuxError.of(
                "parameter_invalid",
                "paymux meters aggregate raw events: event_time_window (pre-aggregated "
                "events) is not supported.",
                param="event_time_window",
            )
        params = MeterParams(
            display_name=body.display_name,
            event_name=body.event_name,
            formula=body.default_aggregation.formula,
            customer_key=(
                body.customer_mapping.event_payload_key
                if body.customer_mapping
                else "stripe_customer_id"
            ),
            value_key=body.value_settings.event_payload_key if body.value_settings else "value",
        )
        return await expanded(c, await c.app.meters.create(c.account_id, params), body.expand)

    return await idempotent(c, body, create)


@router.get(_METERS)
async def list_meters(
    c: CallerDep,
    page: ListDep,
    status: Annotated[Literal["active", "inactive"] | None, Query()] = None,
) -> JSONResponse:
    data, more = await c.app.meters.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        status=status,
        created=page.created,
    )
    return await list_expanded(c, _METERS, METER, data, more, page)


@router.get(_METERS + "/{meter_id}")
async def retrieve_meter(meter_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(METER, expand, c)
    view = await c.app.meters.retrieve(c.account_id, meter_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post(_METERS + "/{meter_id}")
async def update_meter(
    meter_id: str, c: CallerDep, body: UpdateMeter = wire_body(UpdateMeter)
) -> Response:
    check_expand(METER, body.expand, c)

    async def update() -> dict[str, Any]:
        view = await c.app.meters.update(c.account_id, meter_id, body.display_name)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


async def _set_status(c: CallerDep, meter_id: str, body: Expandable, active: bool) -> Response:
    check_expand(METER, body.expand, c)

    async def change() -> dict[str, Any]:
        view = await c.app.meters.set_status(c.account_id, meter_id, active)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, change)


@router.post(_METERS + "/{meter_id}/deactivate")
async def deactivate_meter(
    meter_id: str, c: CallerDep, body: Expandable = wire_body(Expandable, required=False)
) -> Response:
    """No new events for the meter; the recorded ones still count."""
    return await _set_status(c, meter_id, body, active=False)


@router.post(_METERS + "/{meter_id}/reactivate")
async def reactivate_meter(
    meter_id: str, c: CallerDep, body: Expandable = wire_body(Expandable, required=False)
) -> Response:
    return await _set_status(c, meter_id, body, active=True)


@router.get(_METERS + "/{meter_id}/event_summaries")
async def list_event_summaries(
    meter_id: str,
    c: CallerDep,
    expand: ExpandDep,
    customer: Annotated[str | None, Query(max_length=255)] = None,
    start_time: Annotated[int | None, Query()] = None,
    end_time: Annotated[int | None, Query()] = None,
    value_grouping_window: Annotated[Literal["hour", "day"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: Annotated[str | None, Query(max_length=255)] = None,
    ending_before: Annotated[str | None, Query(max_length=255)] = None,
) -> JSONResponse:
    """The meter's aggregated usage by a customer over ``[start_time, end_time)``: one
    summary, or one per hour or UTC day."""
    check_expand("billing.meter_event_summary", expand, c, listed=True)
    for name, value in (("customer", customer), ("start_time", start_time), ("end_time", end_time)):
        if value is None or value == "":
            raise PaymuxError.of(
                "parameter_missing", f"Missing required param: {name}.", param=name
            )
    if starting_after and ending_before:
        raise PaymuxError.of(
            "parameters_exclusive",
            "Use starting_after or ending_before, not both.",
            param="ending_before",
        )
    assert customer is not None and start_time is not None and end_time is not None
    if "\x00" in customer:
        raise PaymuxError.of(
            "parameter_invalid", "customer must not contain NUL characters.", param="customer"
        )
    data, more = await c.app.meters.event_summaries(
        c.account_id,
        meter_id,
        SummaryRange(customer, start_time, end_time, value_grouping_window),
        limit=limit,
        starting_after=starting_after,
        ending_before=ending_before,
    )
    return list_response(f"{_METERS}/{meter_id}/event_summaries", data, more)


@router.post("/v1/billing/meter_events")
async def create_meter_event(
    c: CallerDep, body: CreateMeterEvent = wire_body(CreateMeterEvent)
) -> Response:
    """One usage report: its answer is the event as sent (a repeated identifier is
    accepted and ignored)."""
    check_expand("billing.meter_event", body.expand, c)

    async def create() -> dict[str, Any]:
        event = single_event(body.event_name, body.payload, body.identifier, body.timestamp)
        views = await c.app.meters.record_events(c.account_id, [event])
        return views[0]

    return await idempotent(c, body, create)


@router.post("/v2/billing/meter_event_stream", openapi_extra=_STREAM_BODY)
async def create_meter_event_stream(c: CallerDep) -> Response:
    """Up to 100 usage reports, all stored or none (400 naming the first bad event)."""
    raw = await c.request.body()
    media = c.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def record() -> dict[str, Any]:
        if media != "application/json":
            raise PaymuxError.of(
                "parameter_invalid",
                "The meter event stream takes a JSON body (Content-Type: application/json).",
            )
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        events = parse_stream(body)
        await c.app.meters.record_events(c.account_id, events, answers=False)
        return {}

    # Under an Idempotency-Key, the fingerprint covers the body (by its hash).
    keyed = "idempotency-key" in c.request.headers
    payload = {"body_sha256": hashlib.sha256(raw).hexdigest()} if keyed else {}
    return await idempotent(c, payload, record)
