"""/v1/connections: the account's gateway connections (credentials write-only)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from paymux.api.deps import CallerDep, idempotent, list_response, run
from paymux.api.responses import JSONResponse
from paymux.api.schemas import CreateConnection, NoParams, UpdateConnection
from paymux.api.wire import wire_body
from paymux.gateways.connectors import connectors
from paymux.services.connections import ConnectionParams

router = APIRouter(tags=["connections"])


@router.post("/v1/connections")
async def create_connection(
    c: CallerDep, body: CreateConnection = wire_body(CreateConnection)
) -> Response:
    fields = body.model_dump()
    if "livemode" not in body.model_fields_set:
        fields["livemode"] = None  # the key's mode (services/connections.py)
    params = ConnectionParams(**fields)
    return await idempotent(c, body, lambda: c.app.connections.create(c.account_id, params))


@router.get("/v1/connections")
async def list_connections(c: CallerDep) -> JSONResponse:
    return list_response("/v1/connections", await c.app.connections.all(c.account_id), False)


@router.get("/v1/connections/gateways")
async def list_gateways(c: CallerDep) -> JSONResponse:
    """The gateways this build can connect to: the credential fields each needs (secret ones
    marked), and what it can do."""
    data = [
        {
            "object": "gateway",
            "id": name,
            "credentials": [
                {
                    "name": field,
                    "secret": field in connector.secret_fields(),
                    "required": info.is_required(),
                }
                for field, info in connector.credentials.model_fields.items()
            ],
            "capabilities": sorted(connector.capabilities),
            "livemode": not connector.test_only,
        }
        for name, connector in sorted(connectors().items())
    ]
    return list_response("/v1/connections/gateways", data, False)


@router.get("/v1/connections/{connection_id}")
async def retrieve_connection(connection_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.connections.retrieve(c.account_id, connection_id))


@router.post("/v1/connections/{connection_id}")
async def update_connection(
    connection_id: str, c: CallerDep, body: UpdateConnection = wire_body(UpdateConnection)
) -> Response:
    params = ConnectionParams(**body.model_dump(exclude_unset=True))
    return await idempotent(
        c, body, lambda: c.app.connections.update(c.account_id, connection_id, params)
    )


@router.post("/v1/connections/{connection_id}/test")
async def test_connection(
    connection_id: str, c: CallerDep, _: NoParams = wire_body(NoParams, required=False)
) -> Response:
    """Whether the connection's stored credentials work: one read-only call to its gateway
    (nothing moves). 200 either way, with ``ok`` and, when not, the error's stable code and
    a message naming the connection (never a credential); audited."""
    return await run(c, lambda: c.app.connections.test(c.account_id, connection_id))


@router.delete("/v1/connections/{connection_id}")
async def delete_connection(connection_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.connections.delete(c.account_id, connection_id))
