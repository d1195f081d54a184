"""Races in paying an invoice: a try reserves its PaymentIntent under the invoice's row lock and
never makes a second payment beside one in flight or done, whoever started it (a dunning retry,
POST /v1/invoices/{id}/pay, the hosted page); the amount charged is the one read under the lock.

A payment "in flight" is put in place by writing the intent's row (as a slow gateway or a payer
half-way through the page would leave it); the race between the first read and the lock is
played in the library (SQLite) by committing another writer's change at that point."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, make_settings
from paymux.billing import invoice_payments
from paymux.billing.invoice_payments import attempt_intent_id
from paymux.billing.subscriptions import SubscriptionParams
from paymux.services import Paymux
from paymux.services.customers import CustomerParams
from paymux.storage.models import Invoice
from support.billing import attach, customer_with_card, ts
from support.dbtemplate import migrated_sqlite_file
from support.processes import free_port

DAY = 86_400


def declined_invoice(api: Api, amount: int = 2599) -> tuple[dict[str, Any], str]:
    """An open invoice whose first try was declined: (invoice, customer id)."""
    cus, bad = customer_with_card(api, None, "pm_card_chargeCustomerFail")
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": amount, "currency": "usd"})
    api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    assert api.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": bad}).status_code == 402
    failed = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (failed["status"], failed["attempt_count"]) == ("open", 1)
    return failed, cus


def test_pay_makes_no_second_intent_beside_one_in_flight(api: Api) -> None:
    invoice, cus = declined_invoice(api)
    first = invoice["payment_intent"]
    # The first intent is confirmed again meanwhile (the hosted page) and is processing.
    api.server.sql("update payment_intents set status = 'processing' where id = :i", i=first)
    good = attach(api, cus, "pm_card_visa")
    view = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": good})
    assert (view["status"], view["attempt_count"], view["payment_intent"]) == ("open", 1, first)
    assert view["amount_paid"] == 0
    assert api.charges(attempt_intent_id(invoice["id"], 2)) == []
    count = api.server.sql(
        "select count(*) from payment_intents where invoice_id = :i", i=invoice["id"])[0][0]
    assert count == 1


def test_the_page_makes_no_second_intent_beside_one_in_flight(api: Api) -> None:
    invoice, _ = declined_invoice(api)
    first = invoice["payment_intent"]
    # The invoice's intent waits for confirmation on another gateway than the page's: a payment
    # the page cannot confirm, but one that may still go through.
    api.server.sql("update payment_intents set status = 'requires_confirmation', "
                   "gateway = 'stripe' where id = :i", i=first)
    token = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}).json()["id"]
    r = httpx.post(invoice["hosted_invoice_url"] + "/pay", json={"payment_method": token},
                   headers={"origin": api.server.url}, timeout=10)
    assert r.status_code == 400 and r.json()["code"] == "invoice_unexpected_state", r.text
    after = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (after["status"], after["payment_intent"], after["amount_paid"]) == ("open", first, 0)
    count = api.server.sql(
        "select count(*) from payment_intents where invoice_id = :i", i=invoice["id"])[0][0]
    assert count == 1


def test_a_try_charges_the_amount_read_under_the_lock_and_yields_to_a_new_payment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the library (SQLite): a renewal asked for 3-D Secure off-session and failed; a new try
    with another card. Between its first read and its lock, (1) a credit lowers what is due to 1000: the try charges 1000, not 2500; (2) in a
    second run, another payment takes the invoice meanwhile: the try charges nothing."""
    url = migrated_sqlite_file(tmp_path / "races.db")
    settings = make_settings(url, tmp_path, free_port())

    async def run() -> None:
        app = Paymux(settings)
        try:
            account = (await app.accounts.create_key()).account_id

            async def waiting_invoice(start: int) -> tuple[str, str]:
                c = await app.clocks.create(account, start, "races")
                customer = (
                    await app.customers.create(account, CustomerParams(test_clock=c["id"]))
                )["id"]
                three_ds = await app.customers.attach(
                    account, "pm_card_authenticationRequired", customer
                )
                product = await app.catalog.create_product(account, {"name": "P"})
                p = await app.catalog.create_price(account, {
                    "product": product["id"], "unit_amount": 2500, "currency": "usd",
                    "recurring": {"interval": "month"}})
                sub = await app.subscriptions.create(account, SubscriptionParams(
                    customer=customer, items=[{"price": p["id"]}],
                    default_payment_method=three_ds["id"], trial_period_days=3))
                await app.clocks.advance(account, c["id"], start + 3 * DAY + 3600)
                await app.clocks.run_advance(c["id"])
                sub = await app.subscriptions.retrieve(account, sub["id"])
                invoice = await app.invoices.retrieve(account, sub["latest_invoice"])
                assert (invoice["status"], invoice["attempt_count"]) == ("open", 1)
                pi = await app.payments.retrieve(account, invoice["payment_intent"])
                assert pi["status"] == "requires_payment_method"  # off-session: no 3-D Secure
                good = await app.customers.attach(account, "pm_card_visa", customer)
                return invoice["id"], good["id"]

            meanwhile: list[str] = []

            def reserve_while_another_writes(invoice_id: str, n: int) -> str:
                # Called between the first read and the lock: another writer commits then.
                if meanwhile:
                    with sqlite3.connect(tmp_path / "races.db") as db:
                        db.execute(meanwhile.pop(), {"i": invoice_id})
                return attempt_intent_id(invoice_id, n)

            monkeypatch.setattr(
                invoice_payments, "attempt_intent_id", reserve_while_another_writes
            )

            # (1) What is due drops to 1000 between the first read and the lock.
            invoice_id, good = await waiting_invoice(ts(2027, 3, 1))
            meanwhile.append("update invoices set amount_remaining = 1000 where id = :i")
            paid = await app.invoices.pay(account, invoice_id, payment_method=good)
            assert (paid["status"], paid["amount_paid"]) == ("paid", 1000)
            charged = await app.payments.retrieve(account, attempt_intent_id(invoice_id, 2))
            assert (charged["amount"], charged["status"]) == (1000, "succeeded")

            # (2) Another payment reserved the invoice between the first read and the lock.
            invoice_id, good = await waiting_invoice(ts(2027, 4, 1))
            meanwhile.append(
                "update invoices set payment_intent_id = 'pi_other_payment' where id = :i"
            )
            view = await app.invoices.pay(account, invoice_id, payment_method=good)
            assert (view["status"], view["amount_paid"]) == ("open", 0)
            async with app.ctx.db.read() as s:
                row = await s.get(Invoice, invoice_id)
                assert row is not None and row.payment_intent_id == "pi_other_payment"
            try:
                await app.payments.retrieve(account, attempt_intent_id(invoice_id, 2))
            except Exception as exc:  # never made
                assert getattr(exc, "code", None) == "resource_missing"
            else:
                raise AssertionError("a second intent was made")
        finally:
            await app.close()

    asyncio.run(run())

