"""/v1/admin/keys: an account's API keys, managed by the operator (PAYMUX_ADMIN_KEY).

A key is shown once, in the answer to its creation (or its roll); afterwards only its
redacted form (``sk_test_...abcd``). Every change is written to the account's audit log with
the actor ``admin``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from paymux.api.responses import JSONResponse
from paymux.api.routers.admin import AdminDep
from paymux.api.schemas import CreateKey, NoParams, RollKey
from paymux.api.wire import wire_body
from paymux.domain.errors import PaymuxError

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"])


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


@router.post("")
async def create_key(
    app: AdminDep, request: Request, body: CreateKey = wire_body(CreateKey)
) -> dict[str, Any]:
    """A new key of a type and mode (a new account unless ``account`` is given); the answer
    carries the key in ``secret``, the only time it is shown."""
    new, view = await app.keys.create(
        body.account,
        kind=body.type,
        livemode=body.livemode,
        name=body.name,
        permissions=body.permissions,
        actor="admin",
        request_id=_request_id(request),
    )
    return {**view, "secret": new.key}


@router.get("")
async def list_keys(
    app: AdminDep, account: Annotated[str | None, Query(max_length=40)] = None
) -> JSONResponse:
    data = await app.keys.list(account)
    return JSONResponse(
        {"object": "list", "url": "/v1/admin/keys", "data": data, "has_more": False}
    )


@router.get("/{key_id}")
async def retrieve_key(key_id: str, app: AdminDep) -> dict[str, Any]:
    return await app.keys.retrieve(key_id)


@router.post("/{key_id}/roll")
async def roll_key(
    key_id: str, app: AdminDep, request: Request, b: RollKey = wire_body(RollKey, required=False)
) -> dict[str, Any]:
    """A new key like this one; this one keeps working ``expires_in`` seconds (0: none)."""
    new, view = await app.keys.roll(
        key_id, b.expires_in, actor="admin", request_id=_request_id(request)
    )
    return {**view, "secret": new.key}


@router.post("/{key_id}/revoke")
async def revoke_key(
    key_id: str,
    app: AdminDep,
    request: Request,
    _: NoParams = wire_body(NoParams, required=False),
) -> dict[str, Any]:
    """Refuse the key from now on (other API processes: within PAYMUX_KEY_CACHE_SECONDS)."""
    view = await app.keys.revoke(key_id, actor="admin", request_id=_request_id(request))
    if view is None:
        raise PaymuxError.of("resource_missing", f"No such API key: '{key_id[:40]}'", param="id")
    return view
