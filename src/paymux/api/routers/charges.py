"""/v1/charges: each the latest attempt of a PaymentIntent (services/charges.py); read-only
but for Stripe's update of its description, metadata and receipt email."""

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
)
from paymux.api.responses import JSONResponse
from paymux.api.schemas import Email, Expandable, Metadata, Shipping, Text
from paymux.api.stripe_shapes import shaped
from paymux.api.wire import wire_body

router = APIRouter(prefix="/v1/charges", tags=["charges"])
KIND = "charge"


@router.get("")
async def list_charges(
    c: CallerDep,
    page: ListDep,
    payment_intent: Annotated[str | None, Query()] = None,
    customer: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    data, more = await c.app.charges.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        payment_intent=payment_intent,
        customer=customer,
        created=page.created,
    )
    data = [await shaped(c, item) for item in data]
    return await list_expanded(c, "/v1/charges", KIND, data, more, page)


@router.get("/{charge_id}")
async def retrieve_charge(charge_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.charges.retrieve(c.account_id, charge_id)
    return JSONResponse(await shaped(c, await expanded(c, view, expand)))


@router.get("/{charge_id}/refunds")
async def list_charge_refunds(charge_id: str, c: CallerDep, page: ListDep) -> JSONResponse:
    """The charge's refunds (Stripe's older ``GET /v1/charges/{id}/refunds``, the ``url`` of
    the ``refunds`` list an old pinned version shows on a charge): its intent's refunds."""
    charge = await c.app.charges.retrieve(c.account_id, charge_id)  # 404 if not the account's
    data, more = await c.app.refunds.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        payment_intent=str(charge["payment_intent"]),
        created=page.created,
    )
    return await list_expanded(c, f"/v1/charges/{charge_id}/refunds", "refund", data, more, page)


class UpdateCharge(Expandable):
    """What Stripe lets change on a charge in any state and paymux keeps."""

    description: Text | None = None
    metadata: Metadata | None = None
    receipt_email: Email | None = None
    shipping: Shipping | Literal[""] | None = None  # "" removes it


@router.post("/{charge_id}")
async def update_charge(
    charge_id: str, c: CallerDep, body: UpdateCharge = wire_body(UpdateCharge)
) -> Response:
    """A charge's description, metadata, receipt email and shipping (its intent's: the charge
    is a view of the intent's latest attempt). The amounts never change here."""
    check_expand(KIND, body.expand, c)

    async def update() -> dict[str, Any]:
        view = await c.app.charges.update(
            c.account_id,
            charge_id,
            description=body.description,
            metadata=body.metadata,
            receipt_email=body.receipt_email,
            shipping=(
                body.shipping.model_dump() if isinstance(body.shipping, Shipping) else body.shipping
            ),
        )
        return await shaped(c, await expanded(c, view, body.expand))

    return await idempotent(c, body, update)
