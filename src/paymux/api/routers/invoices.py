"""/v1/invoices: one-off invoices and every invoice's life (draft -> open -> paid | void |
uncollectible), over the invoices core (billing/invoices.py) and the merchant's own drafts
(billing/invoice_manual.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import (
    CreateInvoice,
    FinalizeInvoice,
    InvoiceAction,
    InvoiceDiscount,
    PayInvoice,
    PreviewInvoice,
    UpdateInvoice,
)
from paymux.api.deps import (
    CallerDep,
    ExpandDep,
    ListDep,
    check_expand,
    expanded,
    idempotent,
    list_expanded,
    list_response,
    run,
)
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body
from paymux.billing.invoice_manual import InvoiceDraftUpdate, ManualInvoiceParams
from paymux.domain.errors import PaymuxError

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])
# An id to filter by (no NUL: PostgreSQL text cannot hold one; a 400, never a 500).
RefQuery = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]
KIND = "invoice"
InvoiceStatusFilter = Literal["draft", "open", "paid", "uncollectible", "void"]


def _discount(
    coupon: str | None, discounts: list[InvoiceDiscount] | None
) -> tuple[str | None, str | None]:
    """(coupon, promotion_code) from Stripe's ``coupon`` or ``discounts[0]``."""
    if discounts:
        if coupon is not None:
            raise PaymuxError.of(
                "parameters_exclusive", "Use coupon or discounts, not both.", param="discounts"
            )
        first = discounts[0]
        if (first.coupon is None) == (first.promotion_code is None):
            raise PaymuxError.of(
                "parameter_invalid",
                "A discount names a coupon or a promotion_code (one of them).",
                param="discounts[0]",
            )
        return first.coupon, first.promotion_code
    return coupon, None


@router.post("")
async def create_invoice(c: CallerDep, body: CreateInvoice = wire_body(CreateInvoice)) -> Response:
    check_expand(KIND, body.expand, c)
    coupon, promo = _discount(body.coupon, body.discounts)
    params = ManualInvoiceParams(
        **body.model_dump(exclude={"expand", "discounts", "coupon"}),
        coupon=coupon,
        promotion_code=promo,
    )

    async def create() -> dict[str, Any]:
        view = await c.app.manual_invoices.create(c.account_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, create)


@router.get("")
async def list_invoices(
    c: CallerDep,
    page: ListDep,
    customer: RefQuery = None,
    subscription: RefQuery = None,
    status: Annotated[InvoiceStatusFilter | None, Query()] = None,
    collection_method: Annotated[
        Literal["charge_automatically", "send_invoice"] | None, Query()
    ] = None,
) -> JSONResponse:
    data, more = await c.app.invoices.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        customer=customer,
        subscription=subscription,
        status=status,
        collection_method=collection_method,
        created=page.created,
    )
    return await list_expanded(c, "/v1/invoices", KIND, data, more, page)


# Before the /{invoice_id} routes: "upcoming" and "create_preview" are not invoice ids.
@router.post("/create_preview")
async def create_preview(
    c: CallerDep, body: PreviewInvoice = wire_body(PreviewInvoice)
) -> JSONResponse:
    """Stripe's invoice preview: what the next renewal will invoice (nothing is stored, so
    no Idempotency-Key is needed)."""
    check_expand(KIND, body.expand, c)
    view = await c.app.subscriptions.upcoming(
        c.account_id, customer=body.customer, subscription=body.subscription
    )
    return JSONResponse(await expanded(c, view, body.expand))


@router.get("/upcoming")
async def upcoming_invoice(
    c: CallerDep, expand: ExpandDep, customer: RefQuery = None, subscription: RefQuery = None
) -> JSONResponse:
    """The older form of the preview (API versions before create_preview): the same invoice,
    without an id, as that endpoint answered."""
    check_expand(KIND, expand, c)
    view = await c.app.subscriptions.upcoming(
        c.account_id, customer=customer, subscription=subscription
    )
    return JSONResponse(await expanded(c, {**view, "id": None}, expand))


@router.get("/{invoice_id}")
async def retrieve_invoice(invoice_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    view = await c.app.invoices.retrieve(c.account_id, invoice_id)
    return JSONResponse(await expanded(c, view, expand))


@router.get("/{invoice_id}/lines")
async def list_invoice_lines(invoice_id: str, c: CallerDep, page: ListDep) -> JSONResponse:
    """The invoice's lines in order; ``starting_after``/``ending_before`` are line ids."""
    view = await c.app.invoices.retrieve(c.account_id, invoice_id)
    lines: list[dict[str, Any]] = list(view["lines"]["data"])
    ids = [line["id"] for line in lines]
    for cursor, param in (
        (page.starting_after, "starting_after"),
        (page.ending_before, "ending_before"),
    ):
        if cursor is not None and cursor not in ids:
            raise PaymuxError.of("resource_missing", f"No such line item: '{cursor}'", param=param)
    if page.starting_after is not None:
        lines = lines[ids.index(page.starting_after) + 1 :]
        chosen, more = lines[: page.limit], len(lines) > page.limit
    elif page.ending_before is not None:
        lines = lines[: ids.index(page.ending_before)]
        chosen, more = lines[-page.limit :], len(lines) > page.limit
    else:
        chosen, more = lines[: page.limit], len(lines) > page.limit
    return list_response(f"/v1/invoices/{invoice_id}/lines", chosen, more)


@router.post("/{invoice_id}")
async def update_invoice(
    invoice_id: str, c: CallerDep, body: UpdateInvoice = wire_body(UpdateInvoice)
) -> Response:
    check_expand(KIND, body.expand, c)
    coupon, promo = _discount(body.coupon, body.discounts)
    if promo is not None:
        raise PaymuxError.of(
            "parameter_invalid",
            "A draft's discount is changed by coupon; a promotion code applies at creation.",
            param="discounts[0][promotion_code]",
        )
    params = InvoiceDraftUpdate(
        **body.model_dump(exclude={"expand", "discounts", "coupon"}), coupon=coupon
    )

    async def update() -> dict[str, Any]:
        view = await c.app.manual_invoices.update(c.account_id, invoice_id, params)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, update)


@router.delete("/{invoice_id}")
async def delete_invoice(invoice_id: str, c: CallerDep) -> Response:
    """A draft only (void an open invoice): its items go back to pending."""
    return await run(c, lambda: c.app.manual_invoices.delete_draft(c.account_id, invoice_id))


@router.post("/{invoice_id}/finalize")
async def finalize_invoice(
    invoice_id: str,
    c: CallerDep,
    body: FinalizeInvoice = wire_body(FinalizeInvoice, required=False),
) -> Response:
    check_expand(KIND, body.expand, c)

    async def finalize() -> dict[str, Any]:
        if body.auto_advance is not None:
            await c.app.manual_invoices.update(
                c.account_id, invoice_id, InvoiceDraftUpdate(auto_advance=body.auto_advance)
            )
        view = await c.app.invoices.finalize(c.account_id, invoice_id)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, finalize)


@router.post("/{invoice_id}/pay")
async def pay_invoice(
    invoice_id: str, c: CallerDep, body: PayInvoice = wire_body(PayInvoice, required=False)
) -> Response:
    """Charge an open invoice now (a draft is finalized first), or mark it paid out of band.
    A decline answers the card error; the invoice stays open with the attempt counted."""
    check_expand(KIND, body.expand, c)
    if body.paid_out_of_band and body.payment_method is not None:
        raise PaymuxError.of(
            "parameters_exclusive",
            "paid_out_of_band takes no payment_method.",
            param="payment_method",
        )

    async def pay() -> dict[str, Any]:
        view = await c.app.invoices.pay(
            c.account_id,
            invoice_id,
            payment_method=body.payment_method,
            off_session=body.off_session,
            paid_out_of_band=body.paid_out_of_band,
        )
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, pay)


@router.post("/{invoice_id}/void")
async def void_invoice(
    invoice_id: str, c: CallerDep, body: InvoiceAction = wire_body(InvoiceAction, required=False)
) -> Response:
    check_expand(KIND, body.expand, c)

    async def void() -> dict[str, Any]:
        view = await c.app.invoices.void(c.account_id, invoice_id)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, void)


@router.post("/{invoice_id}/mark_uncollectible")
async def mark_invoice_uncollectible(
    invoice_id: str, c: CallerDep, body: InvoiceAction = wire_body(InvoiceAction, required=False)
) -> Response:
    check_expand(KIND, body.expand, c)

    async def mark() -> dict[str, Any]:
        view = await c.app.invoices.mark_uncollectible(c.account_id, invoice_id)
        return await expanded(c, view, body.expand)

    return await idempotent(c, body, mark)
