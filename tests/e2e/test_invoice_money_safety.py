"""Money an invoice did not ask for never stays, and a payment an invoice no longer wants can't
charge: the invoice's payment waits for the payer's 3-D Secure challenge (a real sandbox
challenge page) while the invoice is closed or its amount changes.

- Closing the invoice (void, paid out of band) cancels its waiting payment at once.
- A credit note that changes what is due cancels the payment made for the old amount; the
  next payment is for the new amount.
- If the payer still gets through (they finish the challenge between the invoice's change and
  the cancel; played here by writing the change's row as its transaction leaves it, before its
  cancel runs): what the invoice did not need is refunded, all of it for a closed invoice, the
  excess for a lowered one; a payment below what is now due pays part, and the next try
  charges the rest.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from conftest import Api
from support.billing import attach
from support.sandbox_pages import answer_challenge

DAY = 86_400


def waiting_invoice(api: Api, amount: int = 2000) -> tuple[dict[str, Any], dict[str, Any], str]:
    """An open invoice whose payment waits for the payer's 3-D Secure challenge: (invoice, its
    payment intent, customer id). The customer's default card needs no challenge."""
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"]
    default = attach(api, cus, "pm_card_visa")
    api.ok("POST", f"/v1/customers/{cus}",
           {"invoice_settings": {"default_payment_method": default}})
    three_ds = attach(api, cus, "pm_card_threeDSecure2Required")
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": amount, "currency": "usd"})
    api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    tried = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay",
                   {"payment_method": three_ds, "off_session": False})
    assert (tried["status"], tried["amount_remaining"]) == ("open", amount)
    pi = api.ok("GET", f"/v1/payment_intents/{tried['payment_intent']}")
    assert (pi["status"], pi["amount"]) == ("requires_action", amount)
    return tried, pi, cus


def challenge_url(pi: dict[str, Any]) -> str:
    return str(pi["next_action"]["redirect_to_url"]["url"])


def assert_challenge_gone(pi: dict[str, Any]) -> None:
    page = httpx.get(challenge_url(pi), timeout=10)
    assert page.status_code == 404 and "no longer waits" in page.text, page.text


def settled(api: Api, pi_id: str, field: str, value: Any, timeout: float = 20.0) -> dict[str, Any]:
    """The intent once ``field`` reads ``value`` (the worker's job has run)."""
    deadline = time.monotonic() + timeout
    while True:
        pi = api.ok("GET", f"/v1/payment_intents/{pi_id}")
        if pi[field] == value:
            return pi
        if time.monotonic() > deadline:
            raise AssertionError(f"{pi_id}.{field} is {pi[field]!r}, not {value!r}")
        time.sleep(0.05)


def succeeded_charges(api: Api, invoice_id: str) -> list[int]:
    """The amounts the sandbox captured for the invoice's payments."""
    rows = api.server.sql("select id from payment_intents where invoice_id = :i", i=invoice_id)
    return sorted(c["amount"] for (pi_id,) in rows for c in api.charges(pi_id)
                  if c["status"] == "succeeded")


def refunds_of(api: Api, pi_id: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", "/v1/refunds", params={"payment_intent": pi_id})["data"])


# -- closing the invoice cancels its waiting payment ---------------------------------------------
@pytest.mark.parametrize("close", ["void", "paid_out_of_band", "credited_to_zero"])
def test_closing_an_invoice_cancels_the_payment_waiting_for_3ds(api: Api, close: str) -> None:
    invoice, pi, _ = waiting_invoice(api)
    if close == "void":
        api.ok("POST", f"/v1/invoices/{invoice['id']}/void")
    elif close == "paid_out_of_band":
        api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"paid_out_of_band": True})
    else:
        api.ok("POST", "/v1/credit_notes", {"invoice": invoice["id"], "amount": 2000})
    closed = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert closed["status"] == ("void" if close == "void" else "paid")
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert (after["status"], after["amount_received"]) == ("canceled", 0)
    # The payer can't finish the challenge now: it is gone with its payment.
    assert_challenge_gone(pi)
    assert succeeded_charges(api, invoice["id"]) == []
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["amount_paid"] == 0


def test_a_partial_credit_note_replaces_the_payment_made_for_the_old_amount(api: Api) -> None:
    invoice, pi, _ = waiting_invoice(api, 2000)
    api.ok("POST", "/v1/credit_notes", {"invoice": invoice["id"], "amount": 500})
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "canceled"
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay")  # the customer's default card
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 1500, 0)
    assert paid["payment_intent"] != pi["id"]
    assert succeeded_charges(api, invoice["id"]) == [1500]


def test_voiding_a_credit_note_replaces_the_payment_made_for_the_lower_amount(api: Api) -> None:
    invoice, pi, _ = waiting_invoice(api, 2000)
    note = api.ok("POST", "/v1/credit_notes", {"invoice": invoice["id"], "amount": 500})
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "canceled"
    # The hosted page's payment for 1500 waits for its challenge; then the note is voided.
    card = attach(api, invoice["customer"], "pm_card_threeDSecure2Required")
    again = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay",
                   {"payment_method": card, "off_session": False})
    second = api.ok("GET", f"/v1/payment_intents/{again['payment_intent']}")
    assert (second["status"], second["amount"]) == ("requires_action", 1500)
    api.ok("POST", f"/v1/credit_notes/{note['id']}/void")
    assert api.ok("GET", f"/v1/payment_intents/{second['id']}")["status"] == "canceled"
    assert_challenge_gone(second)
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay")
    assert (paid["status"], paid["amount_paid"]) == ("paid", 2000)
    assert succeeded_charges(api, invoice["id"]) == [2000]


# -- the payer got through before the cancel: what was not needed goes back --------------------
@pytest.mark.parametrize("closed_as", ["void", "paid_out_of_band", "credited_to_zero"])
def test_money_reaching_a_closed_invoice_is_refunded(api: Api, closed_as: str) -> None:
    invoice, pi, _ = waiting_invoice(api, 2000)
    # The close committed (its row as that transaction leaves it: a paid invoice lets go of
    # the intent that did not pay it); its cancel has not run yet when the payer finishes.
    if closed_as == "void":
        api.server.sql("update invoices set status = 'void', amount_remaining = 0 "
                       "where id = :i", i=invoice["id"])
    elif closed_as == "paid_out_of_band":
        api.server.sql("update invoices set status = 'paid', amount_remaining = 0, "
                       "paid_out_of_band = true, payment_intent_id = null where id = :i",
                       i=invoice["id"])
    else:
        api.server.sql("update invoices set status = 'paid', amount_remaining = 0, "
                       "amount_due = 0, payment_intent_id = null where id = :i", i=invoice["id"])
    answer_challenge(challenge_url(pi), "complete")
    after = settled(api, pi["id"], "amount_refunded", 2000)
    assert (after["status"], after["amount_received"]) == ("succeeded", 2000)
    [refund] = refunds_of(api, pi["id"])
    assert (refund["amount"], refund["metadata"]["paymux_reason"]) == (2000, "invoice_overpaid")
    view = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (view["status"], view["amount_paid"]) == ("void" if closed_as == "void" else "paid", 0)


def test_a_credit_to_zero_lets_go_of_the_waiting_intent(api: Api) -> None:
    """What the case above plays by hand: the credit note that pays the invoice leaves it
    naming no intent, so a late success of the old one is never taken as its payment."""
    invoice, pi, _ = waiting_invoice(api, 2000)
    api.ok("POST", "/v1/credit_notes", {"invoice": invoice["id"], "amount": 2000})
    view = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (view["status"], view["payment_intent"], view["amount_paid"]) == ("paid", None, 0)
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "canceled"


def test_a_partly_paid_invoice_cannot_be_voided(api: Api) -> None:
    invoice, _, _ = waiting_invoice(api, 2000)
    api.server.sql("update invoices set amount_paid = 500, amount_remaining = 1500 "
                   "where id = :i", i=invoice["id"])
    r = api.post(f"/v1/invoices/{invoice['id']}/void")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invoice_unexpected_state"
    assert r.json()["error"]["param"] == "id"
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"


def test_a_payment_above_what_is_now_due_pays_the_invoice_and_the_excess_is_refunded(
    api: Api,
) -> None:
    invoice, pi, _ = waiting_invoice(api, 2000)
    # A credit of 500 committed; its cancel of the 2000 payment has not run yet.
    api.server.sql("update invoices set amount_remaining = 1500, amount_due = 1500 "
                   "where id = :i", i=invoice["id"])
    answer_challenge(challenge_url(pi), "complete")
    view = api.wait_for(f"/v1/invoices/{invoice['id']}", "status", "paid")
    assert (view["amount_paid"], view["amount_remaining"]) == (1500, 0)
    settled(api, pi["id"], "amount_refunded", 500)
    [refund] = refunds_of(api, pi["id"])
    assert (refund["amount"], refund["status"]) == (500, "succeeded")


def test_a_payment_below_what_is_now_due_pays_part_and_the_next_try_charges_the_rest(
    api: Api,
) -> None:
    invoice, pi, _ = waiting_invoice(api, 2000)
    # A credit note was voided: 2500 is due again; its cancel of the 2000 payment has not run.
    api.server.sql("update invoices set amount_remaining = 2500, amount_due = 2500 "
                   "where id = :i", i=invoice["id"])
    answer_challenge(challenge_url(pi), "complete")
    # The part is recorded, and the worker's next try charges the rest to the default card.
    view = api.wait_for(f"/v1/invoices/{invoice['id']}", "status", "paid")
    assert (view["amount_paid"], view["amount_remaining"]) == (2500, 0)
    assert view["payment_intent"] != pi["id"]
    assert succeeded_charges(api, invoice["id"]) == [500, 2000]
    assert refunds_of(api, pi["id"]) == []


# -- the hosted page is no card-testing oracle ----------------------------------------------------
def test_the_hosted_page_refuses_new_cards_after_ten_payments_in_an_hour(api: Api) -> None:
    # The fraud screen's card-testing default (5 declines from one address) would stop these
    # payments first (tests/e2e/test_fraud.py shows that defence); an allow rule of this
    # account's, which Radar's order puts before every block, leaves the page's own limit
    # alone to show.
    api.ok("POST", "/v1/fraud/rules", {"rule": "allow if :currency: = 'usd'"})
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})["id"]
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus, "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus, "invoice": invoice["id"],
                                         "amount": 1200, "currency": "usd"})
    opened = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")

    def page_pay(number: str) -> httpx.Response:
        token = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
            "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}).json()["id"]
        return httpx.post(opened["hosted_invoice_url"] + "/pay", json={"payment_method": token},
                          headers={"origin": api.server.url}, timeout=10)

    for _ in range(10):  # declined cards: each a payment of its own
        r = page_pay("4000000000000002")
        assert r.status_code == 402, r.text
    refused = page_pay("4242424242424242")  # even a good card: the page is closed for now
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited", refused.text
    tried = api.server.sql(
        "select count(*) from gateway_attempts a join payment_intents p on p.id = a.object_id "
        "where p.invoice_id = :i and a.operation = 'authorize'", i=invoice["id"])[0][0]
    assert tried == 10
    # The merchant, with the API key, can still collect it.
    good = attach(api, cus, "pm_card_visa")
    paid = api.ok("POST", f"/v1/invoices/{invoice['id']}/pay", {"payment_method": good})
    assert paid["status"] == "paid"
