"""/v1/customers and /v1/payment_methods"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_expanded,
    run,
)
from paymux.api.responses import JSONResponse
from paymux.api.schemas import (
    AttachPaymentMethod,
    CreateCustomer,
    CreatePaymentMethod,
    NoParams,
    UpdateCustomer,
    UpdateMetadata,
)
from paymux.api.wire import wire_body
from paymux.domain.errors import PaymuxError
from paymux.services.customers import CustomerParams, TokenData

router = APIRouter(tags=["customers"])
CUSTOMER, PAYMENT_METHOD = "customer", "payment_method"


@router.post("/v1/customers")
async def create_customer(
    c: CallerDep, body: CreateCustomer = wire_body(CreateCustomer)
) -> Response:
    check_expand(CUSTOMER, body.expand, c)
    params = CustomerParams(**body.model_dump(exclude={"expand"}))

    async def create() -> dict[str, Any]:
        return await expanded(c, await c.app.customers.create(c.account_id, params), body.expand)

    return await idempotent(c, body, create)


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
        created=page.created,
    )
    return await list_expanded(c, "/v1/customers", CUSTOMER, data, more, page)


@router.get("/v1/customers/{customer_id}")
async def retrieve_customer(customer_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(CUSTOMER, expand, c)
    view = await c.app.customers.retrieve(c.account_id, customer_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/v1/customers/{customer_id}")
async def update_customer(
    customer_id: str, c: CallerDep, body: UpdateCustomer = wire_body(UpdateCustomer)
) -> Response:
    check_expand(CUSTOMER, body.expand, c)
    params = CustomerParams(**body.model_dump(exclude={"expand"}))

    async def update() -> dict[str, Any]:
        view = await c.app.customers.update(c.account_id, customer_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


@router.delete("/v1/customers/{customer_id}")
async def delete_customer(customer_id: str, c: CallerDep) -> Response:
    return await run(c, lambda: c.app.customers.delete(c.account_id, customer_id))


PaymentMethodType = Literal["card", "paypal"]


async def _payment_methods_of(
    c: CallerDep, customer_id: str, kind: PaymentMethodType | None, url: str
) -> JSONResponse:
    data = await c.app.customers.list_payment_methods(c.account_id, customer_id)
    if kind is not None:
        data = [pm for pm in data if pm["type"] == kind]
    return JSONResponse({"object": "list", "url": url, "data": data, "has_more": False})


@router.get("/v1/customers/{customer_id}/payment_methods")
async def list_customer_payment_methods(
    customer_id: str, c: CallerDep, type: Annotated[PaymentMethodType | None, Query()] = None
) -> JSONResponse:
    url = f"/v1/customers/{customer_id}/payment_methods"
    return await _payment_methods_of(c, customer_id, type, url)


@router.get("/v1/payment_methods")
async def list_payment_methods(
    c: CallerDep,
    customer: Annotated[str | None, Query(max_length=255)] = None,
    type: Annotated[PaymentMethodType | None, Query()] = None,
) -> JSONResponse:
    """A customer's saved payment methods (Stripe's list needs the customer here too)."""
    if not customer:
        raise PaymuxError.of(
            "parameter_missing", "Missing required param: customer.", param="customer"
        )
    return await _payment_methods_of(c, customer, type, "/v1/payment_methods")


@router.post("/v1/payment_methods")
async def create_payment_method(
    c: CallerDep, body: CreatePaymentMethod = wire_body(CreatePaymentMethod)
) -> Response:
    """A detached payment method from a gateway token (``card[token]=tok_visa``), as Stripe
    makes one; attach it to a customer, or pay with it, later. Card data never reaches
    paymux: there is no ``card[number]`` (nor expiry, nor CVC) to send."""
    check_expand(PAYMENT_METHOD, body.expand, c)
    data = TokenData.of(body.model_dump(include={"card", "billing_details", "metadata"}))

    async def create() -> dict[str, Any]:
        view = await c.app.customers.create_payment_method(c.account_id, data, body.gateway)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("/v1/payment_methods/{pm_id}")
async def retrieve_payment_method(pm_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(PAYMENT_METHOD, expand, c)
    view = await c.app.customers.retrieve_payment_method(c.account_id, pm_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/v1/payment_methods/{pm_id}")
async def update_payment_method(
    pm_id: str, c: CallerDep, body: UpdateMetadata = wire_body(UpdateMetadata)
) -> Response:
    """A payment method's metadata (its card details are the gateway's)."""
    check_expand(PAYMENT_METHOD, body.expand, c)

    async def update() -> dict[str, Any]:
        view = await c.app.customers.update_payment_method(c.account_id, pm_id, body.metadata)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


@router.post("/v1/payment_methods/{pm_id}/attach")
async def attach_payment_method(
    pm_id: str, c: CallerDep, body: AttachPaymentMethod = wire_body(AttachPaymentMethod)
) -> Response:
    check_expand(PAYMENT_METHOD, body.expand, c)

    async def attach() -> dict[str, Any]:
        view = await c.app.customers.attach(c.account_id, pm_id, body.customer, body.gateway)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, attach)


@router.post("/v1/payment_methods/{pm_id}/detach")
async def detach_payment_method(
    pm_id: str, c: CallerDep, _: NoParams = wire_body(NoParams, required=False)
) -> Response:
    return await idempotent(c, {}, lambda: c.app.customers.detach(c.account_id, pm_id))
