"""/v1/customers and /v1/payment_methods"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from paymux.api.deps import CallerDep, ListDep, idempotent, list_response, run
from paymux.api.schemas import AttachPaymentMethod, CreateCustomer, UpdateCustomer
from paymux.services.customers import CustomerParams

router = APIRouter(tags=["customers"])


@router.post("/v1/customers")
async def create_customer(body: CreateCustomer, c: CallerDep) -> Response:
    params = CustomerParams(**body.model_dump())
    return await idempotent(c, body, lambda: c.app.customers.create(c.account_id, params))


@router.get("/v1/customers")
async def list_customers(
    c: CallerDep, page: ListDep, email: Annotated[str | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.customers.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        email=email,
    )
    return list_response("/v1/customers", data, more)


@router.get("/v1/customers/{customer_id}")
async def retrieve_customer(customer_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.customers.retrieve(c.account_id, customer_id))


@router.post("/v1/customers/{customer_id}")
async def update_customer(customer_id: str, body: UpdateCustomer, c: CallerDep) -> Response:
    params = CustomerParams(**body.model_dump())
    return await idempotent(
        c, body, lambda: c.app.customers.update(c.account_id, customer_id, params)
    )


@router.delete("/v1/customers/{customer_id}")
async def delete_customer(customer_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.customers.delete(c.account_id, customer_id))


@router.get("/v1/customers/{customer_id}/payment_methods")
async def list_customer_payment_methods(customer_id: str, c: CallerDep) -> JSONResponse:
    data = await c.app.customers.list_payment_methods(c.account_id, customer_id)
    return list_response(f"/v1/customers/{customer_id}/payment_methods", data, False)


@router.get("/v1/payment_methods/{pm_id}")
async def retrieve_payment_method(pm_id: str, c: CallerDep) -> JSONResponse:
    return JSONResponse(await c.app.customers.retrieve_payment_method(c.account_id, pm_id))


@router.post("/v1/payment_methods/{pm_id}/attach")
async def attach_payment_method(pm_id: str, body: AttachPaymentMethod, c: CallerDep) -> Response:
    return await idempotent(
        c, body, lambda: c.app.customers.attach(c.account_id, pm_id, body.customer, body.gateway)
    )


@router.post("/v1/payment_methods/{pm_id}/detach")
async def detach_payment_method(pm_id: str, c: CallerDep) -> Response:
    return await idempotent(c, {}, lambda: c.app.customers.detach(c.account_id, pm_id))
