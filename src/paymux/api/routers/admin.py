"""/v1/admin: operating the inbound webhook pipeline (dead letters, replay, counters).

Authenticated with PAYMUX_ADMIN_KEY (``Authorization: Bearer ...``), not an account's key:
the inbox belongs to the deployment, not to one merchant account.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from paymux.api.deps import get_app
from paymux.domain.errors import PaymuxError
from paymux.services import Paymux

router = APIRouter(prefix="/v1/admin", tags=["admin"])


async def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> Paymux:
    app = get_app(request)
    expected = app.settings.admin_key
    if not authorization:
        raise PaymuxError.of("api_key_missing")
    scheme, _, key = authorization.partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(key.strip().encode(), expected.get_secret_value().encode())
    ):
        raise PaymuxError.of("api_key_invalid", "Use `Authorization: Bearer <PAYMUX_ADMIN_KEY>`.")
    return app


AdminDep = Annotated[Paymux, Depends(admin)]


@router.get("/webhooks")
async def list_webhooks(
    app: AdminDep,
    status: Annotated[str | None, Query()] = None,
    gateway: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    data = await app.webhooks.list_page(status=status, gateway=gateway, limit=limit)
    return JSONResponse({"object": "list", "data": data, "has_more": len(data) == limit})


@router.post("/webhooks/replay_dead")
async def replay_dead(app: AdminDep) -> dict[str, Any]:
    return {"replayed": await app.webhooks.replay(all_dead=True)}


@router.post("/webhooks/{event_id}/replay")
async def replay_one(event_id: str, app: AdminDep) -> dict[str, Any]:
    replayed = await app.webhooks.replay(event_id=event_id)
    if not replayed:
        raise PaymuxError.of(
            "resource_missing", f"No such webhook event: '{event_id}'", param="event_id"
        )
    return {"replayed": replayed}


@router.get("/webhooks/stats")
async def webhook_stats(app: AdminDep) -> dict[str, Any]:
    return app.webhooks.stats()
