"""Paying a hosted invoice in headless chromium (support/cdp.py): the card goes into the
sandbox's own card form, framed by the invoice page; the card needs 3-D Secure, the payer
completes the challenge and lands back on the invoice page, which shows it paid; the API
agrees. Skipped when chromium is missing, except under CI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Api
from support.cdp import Browser, Page, started_browser

pytestmark = pytest.mark.browser

THREE_DS_CARD = "4000002760003184"  # the sandbox's "3DS always required" card
FRAME = "document.getElementById('card-frame')"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from started_browser()


def csp_violations(page: Page) -> list[str]:
    page.evaluate("1")
    texts = [
        str(e.get("params", {}).get("entry", {}).get("text", ""))
        for e in page.events
        if e.get("method") == "Log.entryAdded"
    ]
    return [t for t in texts if "Content Security Policy" in t]


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab = browser.page()
    tab.send("Log.enable")
    try:
        yield tab
        assert csp_violations(tab) == []  # the invoice page and the frame work under their CSP
    finally:
        tab.close()


def open_invoice(api: Api, amount: int) -> dict[str, Any]:
    """An open invoice that nobody charged yet (auto_advance false: no payment job)."""
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com", "name": "Payer"})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": "eur"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus["id"], "invoice": invoice["id"],
                                         "amount": amount, "currency": "eur",
                                         "description": "Workshop seat"})
    opened = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    assert opened["status"] == "open" and opened["payment_intent"] is None
    return opened


def pay_in_frame(page: Page, number: str) -> None:
    page.wait_for(f"{FRAME}.contentDocument && "
                  f"{FRAME}.contentDocument.querySelector('#submit')?.disabled === false")
    fields = json.dumps([["number", number], ["cvc", "123"], ["postal_code", "10001"]])
    page.evaluate(f"""(() => {{ const doc = {FRAME}.contentDocument;
        for (const [f, v] of {fields}) doc.getElementById(f).value = v;
        doc.getElementById('card-form').requestSubmit(); return true; }})()""")


def test_a_hosted_invoice_needing_3ds_is_paid_in_the_browser(page: Page, api: Api) -> None:
    invoice = open_invoice(api, 4200)
    page.navigate(invoice["hosted_invoice_url"])
    assert page.evaluate("document.getElementById('status').textContent") == "Open"
    assert page.evaluate("document.getElementById('number').textContent") == invoice["number"]
    # No card field on the invoice page itself: only in the gateway's framed form.
    assert page.evaluate("document.querySelectorAll('input').length") == 0

    pay_in_frame(page, THREE_DS_CARD)
    page.wait_for("location.pathname.startsWith('/sandbox/3ds/') && "
                  "document.readyState === 'complete' && "
                  "document.getElementById('complete') !== null")
    assert "4200 EUR" in page.evaluate("document.body.textContent")
    page.click("#complete")

    # Back on the invoice page, which shows it paid.
    page.wait_for(f"location.href.startsWith({json.dumps(invoice['hosted_invoice_url'])})"
                  " && document.getElementById('status') !== null")
    status = page.wait_for("document.getElementById('status').textContent === 'Paid' && 'Paid'")
    assert status == "Paid"
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"], paid["amount_remaining"]) == ("paid", 4200, 0)
    pi = api.ok("GET", f"/v1/payment_intents/{paid['payment_intent']}")
    assert (pi["status"], pi["amount_received"]) == ("succeeded", 4200)
    assert len(api.charges(pi["id"])) == 1


def test_a_declined_card_leaves_the_invoice_open_with_a_message(page: Page, api: Api) -> None:
    invoice = open_invoice(api, 1500)
    page.navigate(invoice["hosted_invoice_url"])
    pay_in_frame(page, "4000000000009995")  # insufficient funds
    state = page.wait_for(
        "document.getElementById('pay-status').dataset.state === 'failed' && "
        "document.getElementById('pay-status').textContent")
    assert "insufficient" in state.lower() or "declined" in state.lower(), state
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"
