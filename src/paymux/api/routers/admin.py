"""/v1/admin: operating the inbound webhook pipeline (dead letters, replay, counters) and the
job queue (list jobs, retry a dead one).

Authenticated with PAYMUX_ADMIN_KEY (``Authorization: Bearer ...``), not an account's key:
the inbox and the jobs belong to the deployment, not to one merchant account.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request

from paymux.api.deps import api_key_from, get_app, unauthenticated
from paymux.api.responses import JSONResponse
from paymux.api.schemas import NoParams
from paymux.api.wire import check_query, wire_body
from paymux.domain.errors import PaymuxError
from paymux.jobs import queue
from paymux.root import Paymux
from paymux.webhooks.inbound import InboxStatus

router = APIRouter(prefix="/v1/admin", tags=["admin"])


async def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> Paymux:
    app = get_app(request)
    expected = app.settings.admin_key
    try:
        key = api_key_from(authorization)  # Bearer, or Basic with the key as the username
    except PaymuxError as exc:
        raise await unauthenticated(request, exc) from None
    if expected is None or not hmac.compare_digest(
        key.encode(), expected.get_secret_value().encode()
    ):
        # Counted per address like a bad account key: guessing is refused with 429.
        raise await unauthenticated(request, PaymuxError.of(
            "api_key_invalid", "Use `Authorization: Bearer <PAYMUX_ADMIN_KEY>`."
        ))
    check_query(request)  # after the key: a request without one is a 401 first
    return app


AdminDep = Annotated[Paymux, Depends(admin)]


@router.get("/webhooks")
async def list_webhooks(
    app: AdminDep,
    status: Annotated[InboxStatus | None, Query()] = None,
    gateway: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    data = await app.webhooks.list_page(status=status, gateway=gateway, limit=limit)
    return JSONResponse({"object": "list", "data": data, "has_more": len(data) == limit})


@router.post("/webhooks/replay_dead")
async def replay_dead(
    app: AdminDep, _: NoParams = wire_body(NoParams, required=False)
) -> dict[str, Any]:
    return {"replayed": await app.webhooks.replay(all_dead=True)}


@router.post("/webhooks/{event_id}/replay")
async def replay_one(
    event_id: str, app: AdminDep, _: NoParams = wire_body(NoParams, required=False)
) -> dict[str, Any]:
    replayed = await app.webhooks.replay(event_id=event_id)
    if not replayed:
        raise PaymuxError.of(
            "resource_missing", f"No such webhook event: '{event_id}'", param="event_id"
        )
    return {"replayed": replayed}


@router.get("/webhooks/stats")
async def webhook_stats(app: AdminDep) -> dict[str, Any]:
    return app.webhooks.stats()


@router.get("/jobs")
async def list_jobs(
    app: AdminDep,
    status: Annotated[Literal["queued", "running", "done", "dead"] | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=queue.MAX_LIST)] = 100,
) -> JSONResponse:
    """Jobs, most recently changed first; ``status=dead`` lists the ones waiting for you."""
    async with app.ctx.db.read() as s:
        data, more = await queue.list_jobs_page(s, status=status, kind=kind or None, limit=limit)
    return JSONResponse({"object": "list", "data": data, "has_more": more})


@router.post("/jobs/{job_id}/retry")
async def retry_job(
    job_id: str, app: AdminDep, _: NoParams = wire_body(NoParams, required=False)
) -> dict[str, Any]:
    """Put a dead job back in the queue, due now, with its attempts reset."""
    if not (job_id.isascii() and job_id.isdigit() and len(job_id) <= 19):  # BIGINT at most
        raise PaymuxError.of("resource_missing", f"No such job: '{job_id[:40]}'", param="id")
    async with app.ctx.db.write() as s:
        return await queue.retry_job(s, int(job_id), now_us=app.ctx.now_us())
