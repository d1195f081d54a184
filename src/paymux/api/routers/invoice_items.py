"""/v1/invoiceitems: one-off charges and credits for a customer's next (or a draft) invoice
(billing/invoice_items.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import CreateInvoiceItem, UpdateInvoiceItem
from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    idempotent,
    list_response,
    run,
)
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body
from paymux.billing.invoice_items import InvoiceItemParams, InvoiceItemUpdate

router = APIRouter(prefix="/v1/invoiceitems", tags=["invoice_items"])
# An id to filter by (no NUL: PostgreSQL text cannot hold one; a 400, never a 500).
RefQuery = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]
KIND = "invoiceitem"


@router.post("")
async def create_invoice_item(
    c: CallerDep, body: CreateInvoiceItem = wire_body(CreateInvoiceItem)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = InvoiceItemParams(
        **body.model_dump(exclude={"expand", "period"}),
        period_start=body.period.start if body.period else None,
        period_end=body.period.end if body.period else None,
    )
    return await idempotent(c, body, lambda: c.app.invoice_items.create(c.account_id, params))


@router.get("")
async def list_invoice_items(
    c: CallerDep,
    page: ListDep,
    customer: RefQuery = None,
    invoice: RefQuery = None,
    pending: Annotated[bool | None, Query()] = None,
) -> JSONResponse:
    check_expand(KIND, page.expand, c, listed=True)
    data, more = await c.app.invoice_items.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        customer=customer,
        invoice=invoice,
        pending=pending,
        created=page.created,
    )
    return list_response("/v1/invoiceitems", data, more)


@router.get("/{item_id}")
async def retrieve_invoice_item(item_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    return JSONResponse(await c.app.invoice_items.retrieve(c.account_id, item_id))


@router.post("/{item_id}")
async def update_invoice_item(
    item_id: str, c: CallerDep, body: UpdateInvoiceItem = wire_body(UpdateInvoiceItem)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = InvoiceItemUpdate(
        **body.model_dump(exclude={"expand", "period"}),
        period_start=body.period.start if body.period else None,
        period_end=body.period.end if body.period else None,
    )

    async def update() -> dict[str, Any]:
        return await c.app.invoice_items.update(c.account_id, item_id, params)

    return await idempotent(c, body, update)


@router.delete("/{item_id}")
async def delete_invoice_item(item_id: str, c: CallerDep) -> Response:
    """Only a pending item or one on a draft invoice."""
    return await run(c, lambda: c.app.invoice_items.delete(c.account_id, item_id))
