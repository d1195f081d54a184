"""Developers: the account's gateway connections of the session's mode (as
``GET /v1/connections`` lists them, with the environment's), with add, replace credentials,
disable and enable, through ``services/connections.py``. Admins and developers only; testing
a connection's credentials (one read-only call to its gateway) is for admins.

Credentials are write-only: the page shows the masked hints the service keeps (``••••`` and
at most the last four characters), never a value; secret fields are password inputs; a blank
field on a credentials form keeps its stored value. A refused form (an unknown gateway, a
credential the gateway's model refuses) answers 400 naming the field and stores nothing.
Every change is audited with the dashboard user (never a credential: the gateway and the
field names only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from paymux.dashboard.actions import record_action
from paymux.dashboard.auth import ADMIN, DEVELOPERS, CurrentUser, core, require_role
from paymux.dashboard.page_helpers import done, field, refused
from paymux.dashboard.render import PREFIX, render
from paymux.domain.errors import PaymuxError
from paymux.gateways.connectors import Connector, connectors
from paymux.services.connections import ConnectionParams

__all__ = ["router"]

router = APIRouter()
Developer = Annotated[CurrentUser, Depends(require_role(*DEVELOPERS))]
Admin = Annotated[CurrentUser, Depends(require_role(*ADMIN))]
_BACK = f"{PREFIX}/connections"
_NAME_MAX = 100


def _fields(connector: Connector) -> list[dict[str, Any]]:
    """A gateway's credential fields as the forms ask them."""
    secret = set(connector.secret_fields())
    return [
        {"name": name, "secret": name in secret, "required": info.is_required()}
        for name, info in connector.credentials.model_fields.items()
    ]


def _gateways(user: CurrentUser) -> dict[str, list[dict[str, Any]]]:
    return {
        name: _fields(c)
        for name, c in sorted(connectors().items())
        if not (user.livemode and c.test_only)
    }


def _credentials(form: Any, fields: list[dict[str, Any]]) -> dict[str, str]:
    return {f["name"]: v for f in fields if (v := field(form, f"cred_{f['name']}"))}


@router.get("/connections")
async def connections_page(request: Request, user: Developer) -> Response:
    rows = [
        c
        for c in await core(request).connections.all(user.account_id)
        if c["livemode"] == user.livemode
    ]
    gateways = _gateways(user)
    return render(
        request,
        "dashboard/connections.html",
        user=user,
        rows=rows,
        gateways=gateways,
    )


@router.post("/connections/new")
async def create_connection(request: Request, user: Developer) -> Response:
    form = await request.form()
    gateway = field(form, "gateway")[:40]
    fields = _gateways(user).get(gateway)
    if fields is None:
        error = PaymuxError.of(
            "parameter_invalid", "Pick a gateway from the list.", param="gateway"
        )
        return refused(request, user, error)
    credentials = _credentials(form, fields)
    try:
        view = await core(request).connections.create(
            user.account_id,
            ConnectionParams(
                gateway=gateway,
                credentials=credentials,
                livemode=user.livemode,
                name=field(form, "name")[:_NAME_MAX] or None,
            ),
        )
    except PaymuxError as exc:
        return refused(request, user, exc)
    await record_action(
        request,
        user,
        "connection.create",
        object_type="connection",
        object_id=view["id"],
        details={"gateway": gateway, "fields": sorted(credentials)},
    )
    return done(_BACK)


async def _update(
    request: Request, user: CurrentUser, connection_id: str, params: ConnectionParams, action: str
) -> Response:
    try:
        await core(request).connections.update(user.account_id, connection_id, params)
    except PaymuxError as exc:
        return refused(request, user, exc)
    details = {"fields": sorted(params.credentials)} if params.credentials else None
    await record_action(
        request,
        user,
        action,
        object_type="connection",
        object_id=connection_id,
        details=details,
    )
    return done(_BACK)


@router.post("/connections/{connection_id}/credentials")
async def replace_credentials(request: Request, connection_id: str, user: Developer) -> Response:
    form = await request.form()
    try:
        current = await core(request).connections.retrieve(user.account_id, connection_id)
    except PaymuxError as exc:
        return refused(request, user, exc)
    connector = connectors().get(str(current["gateway"]))
    fields = _fields(connector) if connector is not None else []
    credentials = _credentials(form, fields)
    if not credentials:
        error = PaymuxError.of(
            "parameter_missing", "Fill in at least one credential.", param="credentials"
        )
        return refused(request, user, error)
    params = ConnectionParams(credentials=credentials)
    return await _update(request, user, connection_id, params, "connection.credentials")


@router.post("/connections/{connection_id}/test")
async def test_credentials(request: Request, connection_id: str, user: Admin) -> Response:
    """Test the stored credentials (``services/connections.py``: never shows one); the
    outcome is shown and audited with the user, whether they worked or not."""
    try:
        result = await core(request).connections.test(user.account_id, connection_id)
    except PaymuxError as exc:
        return refused(request, user, exc)
    error = result["error"] or {}
    await record_action(
        request,
        user,
        "connection.test",
        object_type="connection",
        object_id=connection_id,
        details={"status": result["status"], **({"code": error["code"]} if error else {})},
    )
    return render(request, "dashboard/connection_test.html", user=user, result=result)


@router.post("/connections/{connection_id}/{change}")
async def switch(request: Request, connection_id: str, change: str, user: Developer) -> Response:
    if change not in ("disable", "enable"):
        error = PaymuxError.of("resource_missing", "No such action.", param="action")
        return refused(request, user, error)
    params = ConnectionParams(disabled=change == "disable")
    return await _update(request, user, connection_id, params, f"connection.{change}")
