"""/v1/payment_intents"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse, Response

from paymux.api.access import publishable_view
from paymux.api.deps import CallerDep, ListDep, idempotent, list_response, require_client_secret
from paymux.api.schemas import (
    CancelPaymentIntent,
    CapturePaymentIntent,
    ConfirmPaymentIntent,
    CreatePaymentIntent,
    UpdatePaymentIntent,
)
from paymux.services.payments import CreateParams, UpdateParams, amount_from, charge_amount

router = APIRouter(prefix="/v1/payment_intents", tags=["payment_intents"])
Optional = Body(default=None)


@router.post("")
async def create_payment_intent(body: CreatePaymentIntent, c: CallerDep) -> Response:
    fields = body.model_dump()
    fields["amount"] = amount_from(body.amount, body.amount_decimal, body.currency)
    charge_amount(fields["amount"], body.currency)  # request validation: never stored
    del fields["amount_decimal"]
    params = CreateParams(**fields)
    return await idempotent(c, body, lambda: c.app.payments.create(c.account_id, params))


@router.get("")
async def list_payment_intents(
    c: CallerDep, page: ListDep, customer: Annotated[str | None, Query()] = None
) -> JSONResponse:
    data, more = await c.app.payments.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        customer=customer,
    )
    return list_response("/v1/payment_intents", data, more)


@router.get("/{pi_id}")
async def retrieve_payment_intent(
    pi_id: str, c: CallerDep, client_secret: Annotated[str | None, Query(max_length=100)] = None
) -> JSONResponse:
    """With a publishable key, ``client_secret`` is required (checked before this runs)."""
    view = await c.app.payments.retrieve(c.account_id, pi_id)
    return JSONResponse(publishable_view(view) if c.kind == "publishable" else view)


@router.post("/{pi_id}")
async def update_payment_intent(pi_id: str, body: UpdatePaymentIntent, c: CallerDep) -> Response:
    params = UpdateParams(**body.model_dump())
    return await idempotent(c, body, lambda: c.app.payments.update(c.account_id, pi_id, params))


@router.post("/{pi_id}/confirm")
async def confirm_payment_intent(
    pi_id: str, c: CallerDep, body: ConfirmPaymentIntent | None = Optional
) -> Response:
    b = body or ConfirmPaymentIntent()
    await require_client_secret(c, pi_id, b)

    async def confirm() -> dict[str, Any]:
        view = await c.app.payments.confirm(
            c.account_id,
            pi_id,
            payment_method=b.payment_method,
            off_session=b.off_session,
            return_url=b.return_url,
            setup_future_usage=b.setup_future_usage,
            verification_token=b.verification_token,
        )
        return publishable_view(view) if c.kind == "publishable" else view

    return await idempotent(c, b, confirm)


@router.post("/{pi_id}/capture")
async def capture_payment_intent(
    pi_id: str, c: CallerDep, body: CapturePaymentIntent | None = Optional
) -> Response:
    b = body or CapturePaymentIntent()
    return await idempotent(
        c, b, lambda: c.app.payments.capture(c.account_id, pi_id, b.amount_to_capture, b.currency)
    )


@router.post("/{pi_id}/cancel")
async def cancel_payment_intent(
    pi_id: str, c: CallerDep, body: CancelPaymentIntent | None = Optional
) -> Response:
    b = body or CancelPaymentIntent()
    return await idempotent(
        c, b, lambda: c.app.payments.cancel(c.account_id, pi_id, b.cancellation_reason)
    )
