"""/v1/credit_notes: lowering or giving back part of a finalized invoice
(billing/credit_notes.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from paymux.api.billing_schemas import (
    CreateCreditNote,
    CreditNoteLine,
    InvoiceAction,
    PreviewCreditNote,
    UpdateCreditNote,
)
from paymux.api.deps import CallerDep, ExpandDep, ListDep, check_expand, idempotent, list_response
from paymux.api.responses import JSONResponse
from paymux.api.wire import wire_body, wire_query
from paymux.billing.credit_notes import CreditNoteLineParams, CreditNoteParams

router = APIRouter(prefix="/v1/credit_notes", tags=["credit_notes"])
# An id to filter by (no NUL: PostgreSQL text cannot hold one; a 400, never a 500).
RefQuery = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]
KIND = "credit_note"


def _lines(lines: list[CreditNoteLine] | None) -> list[CreditNoteLineParams] | None:
    return None if lines is None else [CreditNoteLineParams(**x.model_dump()) for x in lines]


def _params(body: CreateCreditNote | PreviewCreditNote) -> CreditNoteParams:
    metadata = body.metadata if isinstance(body, CreateCreditNote) else {}
    return CreditNoteParams(
        invoice=body.invoice,
        amount=body.amount,
        lines=_lines(body.lines),
        reason=body.reason,
        memo=body.memo,
        refund_amount=body.refund_amount,
        credit_amount=body.credit_amount,
        out_of_band_amount=body.out_of_band_amount,
        metadata=metadata,
    )


@router.post("")
async def create_credit_note(
    c: CallerDep, body: CreateCreditNote = wire_body(CreateCreditNote)
) -> Response:
    check_expand(KIND, body.expand, c)
    params = _params(body)
    return await idempotent(c, body, lambda: c.app.credit_notes.create(c.account_id, params))


@router.get("")
async def list_credit_notes(
    c: CallerDep,
    page: ListDep,
    invoice: RefQuery = None,
    customer: RefQuery = None,
) -> JSONResponse:
    check_expand(KIND, page.expand, c, listed=True)
    data, more = await c.app.credit_notes.list_page(
        c.account_id,
        limit=page.limit,
        starting_after=page.starting_after,
        ending_before=page.ending_before,
        invoice=invoice,
        customer=customer,
        created=page.created,
    )
    return list_response("/v1/credit_notes", data, more)


@router.get("/preview")
async def preview_credit_note(
    c: CallerDep, q: PreviewCreditNote = wire_query(PreviewCreditNote)
) -> JSONResponse:
    """The credit note a create with these parameters would issue; nothing is kept."""
    check_expand(KIND, q.expand, c)
    return JSONResponse(await c.app.credit_notes.preview(c.account_id, _params(q)))


@router.get("/{note_id}")
async def retrieve_credit_note(note_id: str, c: CallerDep, expand: ExpandDep) -> JSONResponse:
    check_expand(KIND, expand, c)
    return JSONResponse(await c.app.credit_notes.retrieve(c.account_id, note_id))


@router.get("/{note_id}/lines")
async def list_credit_note_lines(note_id: str, c: CallerDep, page: ListDep) -> JSONResponse:
    view = await c.app.credit_notes.retrieve(c.account_id, note_id)
    lines: list[dict[str, Any]] = list(view["lines"]["data"])
    return list_response(
        f"/v1/credit_notes/{note_id}/lines", lines[: page.limit], len(lines) > page.limit
    )


@router.post("/{note_id}")
async def update_credit_note(
    note_id: str, c: CallerDep, body: UpdateCreditNote = wire_body(UpdateCreditNote)
) -> Response:
    check_expand(KIND, body.expand, c)

    async def update() -> dict[str, Any]:
        return await c.app.credit_notes.update(
            c.account_id, note_id, memo=body.memo, metadata=body.metadata
        )

    return await idempotent(c, body, update)


@router.post("/{note_id}/void")
async def void_credit_note(
    note_id: str, c: CallerDep, body: InvoiceAction = wire_body(InvoiceAction, required=False)
) -> Response:
    """Only while its invoice is open (Stripe's rule): the invoice asks for the amount again."""
    check_expand(KIND, body.expand, c)
    return await idempotent(c, body, lambda: c.app.credit_notes.void(c.account_id, note_id))
