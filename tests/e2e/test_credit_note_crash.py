"""A credit note that refunds is written ``pending``, then its refund is made (a gateway call,
outside any transaction), then it is issued. A process that dies between those steps leaves a
pending note; the job queued with it (``finish_credit_note``) finishes it: issued with the
refund the dead request made, found by the refund's ``credit_note`` metadata, or dropped if no
refund was made. Never a second refund, never a note left pending.

The crash is played in a second paymux instance on the test server's database and sandbox, its
refund call replaced by one that dies (a BaseException, as a killed task) before or after the
real refund."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import Api
from paymux.billing.credit_notes import CreditNoteParams
from paymux.services import Paymux
from support.invoices import paid_invoice


class Died(BaseException):
    """The process died here."""


def die_in_refund(api: Api, invoice_id: str, *, after_refund: bool) -> str:
    """Credit 1000 of the invoice as a refund in a paymux whose process dies in the refund
    step; returns the pending note's id."""

    async def run() -> None:
        app = Paymux(api.server.settings)
        real = app.refunds.create

        async def dying(*args: Any, **kw: Any) -> dict[str, Any]:
            if after_refund:
                await real(*args, **kw)
            raise Died

        app.refunds.create = dying  # type: ignore[method-assign]
        try:
            with pytest.raises(Died):
                await app.credit_notes.create(
                    api.account_id,
                    CreditNoteParams(invoice=invoice_id, amount=1000, refund_amount=1000),
                )
        finally:
            await app.close()

    asyncio.run(run())
    [(note_id,)] = api.server.sql(
        "select id from credit_notes where invoice_id = :i and status = 'pending'", i=invoice_id)
    return str(note_id)


def finish(api: Api, note_id: str) -> None:
    """What the worker does when the note's job comes due (its delay is not waited out)."""

    async def run() -> None:
        app = Paymux(api.server.settings)
        try:
            await app.credit_notes.finish_pending(api.account_id, note_id)
        finally:
            await app.close()

    asyncio.run(run())


def finish_jobs(api: Api, note_id: str) -> list[tuple[str, Any]]:
    return [(status, run_at) for status, run_at, payload in api.server.sql(
        "select status, run_at_us, payload from jobs where kind = 'finish_credit_note'")
        if note_id in str(payload)]


def test_a_note_whose_request_died_after_its_refund_is_issued_with_that_refund(
    api: Api,
) -> None:
    invoice = paid_invoice(api)
    note_id = die_in_refund(api, invoice["id"], after_refund=True)
    assert api.get(f"/v1/credit_notes/{note_id}").status_code == 200  # kept, not listed
    assert api.ok("GET", "/v1/credit_notes", params={"invoice": invoice["id"]})["data"] == []
    [(status, _)] = finish_jobs(api, note_id)
    assert status == "queued"
    [refund] = api.ok("GET", "/v1/refunds",
                      params={"payment_intent": invoice["payment_intent"]})["data"]
    assert (refund["amount"], refund["metadata"]["credit_note"]) == (1000, note_id)

    finish(api, note_id)
    finish(api, note_id)  # a second run changes nothing
    note = api.ok("GET", f"/v1/credit_notes/{note_id}")
    assert (note["status"], note["refund"], note["amount"]) == ("issued", refund["id"], 1000)
    listed = api.ok("GET", "/v1/credit_notes", params={"invoice": invoice["id"]})["data"]
    assert [n["id"] for n in listed] == [note_id]
    refunds = api.ok("GET", "/v1/refunds",
                     params={"payment_intent": invoice["payment_intent"]})["data"]
    assert [r["id"] for r in refunds] == [refund["id"]]
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    assert pi["amount_refunded"] == 1000


def test_a_note_whose_request_died_before_its_refund_is_dropped(api: Api) -> None:
    invoice = paid_invoice(api)
    note_id = die_in_refund(api, invoice["id"], after_refund=False)
    finish(api, note_id)
    assert api.get(f"/v1/credit_notes/{note_id}").status_code == 404
    assert api.ok("GET", "/v1/refunds",
                  params={"payment_intent": invoice["payment_intent"]})["data"] == []
    pi = api.ok("GET", f"/v1/payment_intents/{invoice['payment_intent']}")
    assert (pi["amount_refunded"], pi["amount_received"]) == (0, 3000)
    # The invoice can be credited again in full: nothing of the dead note is left.
    again = api.ok("POST", "/v1/credit_notes",
                   {"invoice": invoice["id"], "amount": 3000, "refund_amount": 3000})
    assert (again["status"], again["amount"]) == ("issued", 3000)
