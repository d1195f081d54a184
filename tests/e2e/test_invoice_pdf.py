"""The invoice PDF and the hosted invoice page, server-rendered, on a real server over SQLite
and PostgreSQL. The PDF's text is read back with pypdf.

The locale rule checked here (billing/invoice_document.py): ``?locale=`` first, then the
browser's Accept-Language, then en_US. Figures are formatted by Babel: ``$1,413.02`` in en_US,
``1.413,02 €`` in de (Babel writes a no-break space before the euro sign; the PDF's text and the
page may carry it as U+00A0, compared here after mapping it to a plain space)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pypdf

from conftest import Api

MERCHANT = "Acme Testing GmbH"


def plain(text: str) -> str:
    return text.replace("\xa0", " ").replace("\u202f", " ")


def finalized_invoice(api: Api, currency: str) -> dict[str, Any]:
    """Two lines, 1,234.56 and 50.00, with a 10% exclusive tax: subtotal 1,284.56; tax
    123.46 (12,345.6 -> 12,346 half-even) + 5.00 = 128.46; total 1,413.02."""
    api.server.sql("update accounts set name = :n where id = :a", n=MERCHANT, a=api.account_id)
    cus = api.ok("POST", "/v1/customers", {"email": "ada@example.com", "name": "Ada Lovelace"})
    tax = api.ok("POST", "/v1/tax_rates", {"display_name": "Sales tax", "percentage": 10,
                                           "inclusive": False})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": currency,
                                              "default_tax_rates": [tax["id"]]})
    for amount, text in ((123456, "Annual licence"), (5000, "Priority support")):
        api.ok("POST", "/v1/invoiceitems", {
            "customer": cus["id"], "invoice": invoice["id"], "amount": amount,
            "currency": currency, "description": text, "tax_rates": [tax["id"]]})
    done = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    assert (done["subtotal"], done["tax"], done["total"]) == (128456, 12846, 141302)
    return done


def pdf_text(url: str, **params: str) -> str:
    r = httpx.get(url, params=params, timeout=10)  # no API key: the URL's token is the secret
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(r.content))
    return plain("\n".join(page.extract_text() for page in reader.pages))


def test_the_pdf_shows_merchant_number_lines_tax_and_total_in_usd_for_en(api: Api) -> None:
    invoice = finalized_invoice(api, "usd")
    text = pdf_text(invoice["invoice_pdf"])
    for expected in (MERCHANT, invoice["number"], "Ada Lovelace", "Annual licence",
                     "Priority support", "$1,234.56", "$50.00", "Subtotal", "$1,284.56",
                     "Sales tax 10%", "$128.46", "Total", "$1,413.02", "Amount remaining"):
        assert expected in text, (expected, text)


def test_the_pdf_follows_the_locale_eur_in_german(api: Api) -> None:
    invoice = finalized_invoice(api, "eur")
    text = pdf_text(invoice["invoice_pdf"], locale="de")
    for expected in (MERCHANT, invoice["number"], "1.234,56 €", "50,00 €", "1.284,56 €",
                     "128,46 €", "1.413,02 €"):
        assert expected in text, (expected, text)
    assert "$" not in text and "1,413.02" not in text
    # The browser's language counts when no locale is named.
    r = httpx.get(invoice["invoice_pdf"], headers={"accept-language": "de-DE,de;q=0.9"},
                  timeout=10)
    text = plain(pypdf.PdfReader(io.BytesIO(r.content)).pages[0].extract_text())
    assert "1.413,02 €" in text


def test_the_hosted_page_shows_the_invoice_under_a_strict_policy(api: Api) -> None:
    invoice = finalized_invoice(api, "usd")
    r = httpx.get(invoice["hosted_invoice_url"], timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and r.headers["cache-control"] == "no-store"
    page = plain(r.text)
    for expected in (MERCHANT, invoice["number"], "Annual licence", "$1,234.56", "$128.46",
                     "$1,413.02", 'id="status">Open<', 'src="/sandbox/elements"'):
        assert expected in page, expected
    assert "<script>" not in page and "style=" not in page  # nothing inline
    german = plain(httpx.get(invoice["hosted_invoice_url"], params={"locale": "de-DE"},
                             timeout=10).text)
    assert "1.413,02 $" in german and 'lang="de"' in german


def test_unknown_tokens_and_drafts_have_no_page(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {})
    draft = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": "usd"})
    assert draft["hosted_invoice_url"] is None
    token = api.server.sql("select hosted_token from invoices where id = :i", i=draft["id"])[0][0]
    for path in (f"/invoices/{token}", f"/invoices/{token}/pdf", "/invoices/ivt_nothing",
                 "/invoices/ivt_nothing/pdf"):
        r = httpx.get(f"{api.server.url}{path}", timeout=10)
        assert r.status_code == 404 and "Invoice not found" in r.text, path
    r = httpx.post(f"{api.server.url}/invoices/{token}/pay", json={"payment_method": "x"},
                   timeout=10)
    assert r.status_code == 404


def sandbox_token(api: Api, number: str = "4242424242424242") -> str:
    r = httpx.post(f"{api.server.url}/sandbox/v1/tokens", timeout=10, json={
        "number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_the_page_pays_the_intent_a_declined_renewal_left_waiting(api: Api) -> None:
    cus = api.ok("POST", "/v1/customers", {"email": "late@example.com"})
    declining = api.ok("POST", f"/v1/payment_methods/{sandbox_token(api, '4000000000000341')}"
                               "/attach", {"customer": cus["id"]})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": "usd"})
    api.ok("POST", "/v1/invoiceitems", {"customer": cus["id"], "invoice": invoice["id"],
                                         "amount": 2599, "currency": "usd"})
    api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    api.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": declining["id"]})
    failed = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert failed["status"] == "open" and failed["attempt_count"] == 1
    waiting = api.ok("GET", f"/v1/payment_intents/{failed['payment_intent']}")
    assert waiting["status"] == "requires_payment_method"

    pay_url = failed["hosted_invoice_url"] + "/pay"
    # JSON only, and from the page's own origin only.
    assert httpx.post(pay_url, data={"payment_method": "x"}, timeout=10).status_code == 415
    r = httpx.post(pay_url, json={"payment_method": sandbox_token(api)},
                   headers={"origin": "https://evil.example"}, timeout=10)
    assert r.status_code == 403
    assert api.ok("GET", f"/v1/invoices/{invoice['id']}")["status"] == "open"

    r = httpx.post(pay_url, json={"payment_method": sandbox_token(api)},
                   headers={"origin": api.server.url}, timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "paid"}, r.text
    paid = api.ok("GET", f"/v1/invoices/{invoice['id']}")
    assert (paid["status"], paid["amount_paid"]) == ("paid", 2599)
    # The waiting intent was confirmed with the payer's card: no second intent, one charge.
    assert paid["payment_intent"] == waiting["id"]
    assert [c["amount"] for c in api.charges(waiting["id"]) if c["status"] == "succeeded"] == [
        2599]
    again = httpx.post(pay_url, json={"payment_method": sandbox_token(api)}, timeout=10)
    assert again.status_code == 400 and again.json()["code"] == "invoice_unexpected_state"
    page = plain(httpx.get(failed["hosted_invoice_url"], timeout=10).text)
    assert 'id="status">Paid<' in page and 'id="card-frame"' not in page
