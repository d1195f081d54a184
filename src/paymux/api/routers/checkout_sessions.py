"""/v1/checkout/sessions (Stripe's Checkout Sessions; src/paymux/checkout/): create, retrieve,
list (filters ``status``, ``customer``, ``customer_details[email]``, ``payment_intent``,
``setup_intent``, ``created``), ``POST /{id}/expire`` and ``GET /{id}/line_items``. The
session's ``url`` is the hosted page at paymux's own origin (web/checkout.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_response,
)
from paymux.api.responses import JSONResponse
from paymux.api.schemas import (
    Body,
    CaptureMethod,
    Currency,
    Email,
    Expandable,
    Id,
    Metadata,
    NoParams,
    Text,
)
from paymux.api.wire import wire_body, wire_query
from paymux.checkout.service import LineItemParams, SessionParams

router = APIRouter(prefix="/v1/checkout/sessions", tags=["checkout_sessions"])
KIND = "checkout.session"

Url = Annotated[str, Field(min_length=1, max_length=2048)]


class ProductData(Body):
    name: Annotated[str, Field(min_length=1, max_length=250)]
    description: Text | None = None
    metadata: Metadata = Field(default_factory=dict)


class PriceData(Body):
    currency: Currency
    unit_amount: StrictInt | None = None
    product: Id | None = None
    product_data: ProductData | None = None
    recurring: dict[str, Any] | None = Field(
        default=None, description="Refused: subscription mode is not offered yet."
    )


class LineItem(Body):
    price: Id | None = None
    price_data: PriceData | None = None
    quantity: StrictInt = 1


class PaymentIntentData(Body):
    capture_method: CaptureMethod | None = None
    description: Text | None = None
    metadata: Metadata = Field(default_factory=dict)


class SetupIntentData(Body):
    description: Text | None = None
    metadata: Metadata = Field(default_factory=dict)


class CreateCheckoutSession(Expandable):
    mode: Literal["payment", "setup", "subscription"] | None = None
    line_items: Annotated[list[LineItem], Field(max_length=100)] | None = None
    customer: Id | None = None
    customer_email: Email | None = None
    success_url: Url | None = None
    cancel_url: Url | None = None
    expires_at: StrictInt | None = None
    # "paypal": in setup mode, PayPal's buttons save the payer's wallet (the hosted page).
    payment_method_types: (
        Annotated[list[Literal["card", "paypal"]], Field(min_length=1, max_length=5)] | None
    ) = None
    metadata: Metadata = Field(default_factory=dict)
    client_reference_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    locale: Literal["auto", "en", "fr", "de", "es"] | None = None
    currency: Currency | None = None
    payment_intent_data: PaymentIntentData | None = None
    setup_intent_data: SetupIntentData | None = None
    gateway: Id | None = Field(default=None, description="paymux's: the connection to use.")


class CustomerDetailsFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Annotated[str, Field(max_length=512)] | None = None


class SessionsQuery(BaseModel):
    """The bracket-form filters of the list: ``customer_details[email]``."""

    model_config = ConfigDict(extra="forbid")
    customer_details: CustomerDetailsFilter | None = None


def _params(body: CreateCheckoutSession) -> SessionParams:
    pi_data = body.payment_intent_data or PaymentIntentData()
    si_data = body.setup_intent_data or SetupIntentData()
    capture = pi_data.capture_method or "automatic"
    return SessionParams(
        mode=body.mode,
        line_items=[
            LineItemParams(
                quantity=item.quantity,
                price=item.price,
                price_data=item.price_data.model_dump(exclude_none=True)
                if item.price_data is not None
                else None,
            )
            for item in body.line_items or []
        ],
        customer=body.customer,
        customer_email=body.customer_email,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        expires_at=body.expires_at,
        payment_method_types=list(body.payment_method_types or []) or None,
        metadata=dict(body.metadata),
        client_reference_id=body.client_reference_id,
        locale=None if body.locale in (None, "auto") else body.locale,
        currency=body.currency,
        capture_method="manual" if capture == "manual" else "automatic",
        description=pi_data.description if body.mode == "payment" else si_data.description,
        intent_metadata=dict(pi_data.metadata if body.mode == "payment" else si_data.metadata),
        gateway=body.gateway,
    )


@router.post("")
async def create_checkout_session(
    c: CallerDep, body: CreateCheckoutSession = wire_body(CreateCheckoutSession)
) -> Response:
    check_expand(KIND, body.expand, c)

    async def create() -> dict[str, Any]:
        view = await c.app.checkout.create(c.account_id, _params(body))
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


# An id in a list filter: PostgreSQL text can't hold U+0000, so it is a 400 here, never a 500.
_IdQuery = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]


@router.get("")
async def list_checkout_sessions(
    c: CallerDep,
    page: ListDep,
    status: Annotated[Literal["open", "complete", "expired"] | None, Query()] = None,
    customer: _IdQuery = None,
    payment_intent: _IdQuery = None,
    setup_intent: _IdQuery = None,
    q: SessionsQuery = wire_query(SessionsQuery),
) -> JSONResponse:
    check_expand(KIND, page.expand, c, listed=True)
    data, more = await c.app.checkout.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        created=page.created,
        status=status,
        customer=customer,
        customer_email=q.customer_details.email if q.customer_details else None,
        payment_intent=payment_intent,
        setup_intent=setup_intent,
    )
    return list_response("/v1/checkout/sessions", data, more)


@router.get("/{session_id}")
async def retrieve_checkout_session(
    session_id: str, c: CallerDep, expand: ExpandDep
) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.checkout.retrieve(c.account_id, session_id)
    return JSONResponse(await expanded(c, view, expand))


@router.post("/{session_id}/expire")
async def expire_checkout_session(
    session_id: str, c: CallerDep, body: NoParams = wire_body(NoParams, required=False)
) -> Response:
    async def expire() -> dict[str, Any]:
        return await c.app.checkout.expire(c.account_id, session_id)

    return await idempotent(c, body, expire)


@router.get("/{session_id}/line_items")
async def list_line_items(session_id: str, c: CallerDep, page: ListDep) -> JSONResponse:
    data, more = await c.app.checkout.line_items(
        c.account_id,
        session_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
    )
    return list_response(f"/v1/checkout/sessions/{session_id}/line_items", data, more)
