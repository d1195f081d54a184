"""/v1/webhook_endpoints: where an account's events are delivered (paymux/outbound).

The signing ``secret`` is in the answers to the creation and to ``roll_secret`` only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.deps import CallerDep, ListDep, idempotent, list_response, run
from paymux.api.responses import JSONResponse
from paymux.api.schemas import NoParams
from paymux.api.webhook_schemas import (
    CreateWebhookEndpoint,
    ReplayWebhookEvents,
    ResendWebhookEvent,
    RollWebhookSecret,
    UpdateWebhookEndpoint,
)
from paymux.api.wire import wire_body
from paymux.outbound.endpoints import EndpointParams

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhook_endpoints"])


def _params(body: CreateWebhookEndpoint | UpdateWebhookEndpoint) -> EndpointParams:
    fields = body.model_dump(exclude_unset=True, exclude={"connect"})
    return EndpointParams(**fields)


@router.post("")
async def create_webhook_endpoint(
    c: CallerDep, body: CreateWebhookEndpoint = wire_body(CreateWebhookEndpoint)
) -> Response:
    """Not stored under an Idempotency-Key: the stored answer would hold the secret in
    clear (docs/webhooks.md)."""
    params = _params(body)
    return await run(c, lambda: c.app.webhook_endpoints.create(c.account_id, c.livemode, params))


@router.get("")
async def list_webhook_endpoints(c: CallerDep, page: ListDep) -> JSONResponse:
    data, more = await c.app.webhook_endpoints.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
    )
    return list_response("/v1/webhook_endpoints", data, more)


@router.get("/{endpoint_id}")
async def retrieve_webhook_endpoint(endpoint_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.webhook_endpoints.retrieve(c.account_id, endpoint_id))


@router.post("/{endpoint_id}")
async def update_webhook_endpoint(
    endpoint_id: str, c: CallerDep, body: UpdateWebhookEndpoint = wire_body(UpdateWebhookEndpoint)
) -> Response:
    params = _params(body)
    return await idempotent(
        c, body, lambda: c.app.webhook_endpoints.update(c.account_id, endpoint_id, params)
    )


@router.delete("/{endpoint_id}")
async def delete_webhook_endpoint(endpoint_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.webhook_endpoints.delete(c.account_id, endpoint_id))


@router.post("/{endpoint_id}/roll_secret")
async def roll_webhook_secret(
    endpoint_id: str,
    c: CallerDep,
    body: RollWebhookSecret = wire_body(RollWebhookSecret, required=False),
) -> Response:
    """A new secret (not stored under an Idempotency-Key, as for the creation)."""
    return await run(
        c, lambda: c.app.webhook_endpoints.roll_secret(c.account_id, endpoint_id, body.grace_period)
    )


@router.get("/{endpoint_id}/attempts")
async def list_webhook_attempts(
    endpoint_id: str,
    c: CallerDep,
    page: ListDep,
    event: Annotated[str | None, Query(max_length=40)] = None,
) -> JSONResponse:
    data, more = await c.app.webhook_endpoints.attempts(
        c.account_id,
        endpoint_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        event=event,
    )
    return list_response(f"/v1/webhook_endpoints/{endpoint_id}/attempts", data, more)


@router.post("/{endpoint_id}/resend")
async def resend_webhook_event(
    endpoint_id: str, c: CallerDep, body: ResendWebhookEvent = wire_body(ResendWebhookEvent)
) -> Response:
    return await idempotent(
        c, body, lambda: c.app.webhook_endpoints.resend(c.account_id, endpoint_id, body.event)
    )


@router.post("/{endpoint_id}/replay")
async def replay_webhook_events(
    endpoint_id: str,
    c: CallerDep,
    body: ReplayWebhookEvents = wire_body(ReplayWebhookEvents, required=False),
) -> Response:
    return await idempotent(
        c,
        body,
        lambda: c.app.webhook_endpoints.replay(
            c.account_id, endpoint_id, body.created_gte, body.created_lte
        ),
    )


@router.post("/{endpoint_id}/test")
async def test_webhook_endpoint(
    endpoint_id: str, c: CallerDep, _: NoParams = wire_body(NoParams, required=False)
) -> Response:
    return await idempotent(
        c, None, lambda: c.app.webhook_endpoints.send_test(c.account_id, endpoint_id)
    )
