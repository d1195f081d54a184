"""Security headers on paymux's own web pages, through the running server (SQLite and
PostgreSQL): /docs, /redoc, the hosted invoice page (found and missing) and its PDF carry
nosniff, Referrer-Policy and, when the request came over TLS, HSTS; their HTML is never cached
and has a CSP with ``frame-ancestors``. The JSON API gets HSTS over TLS too. The sandbox's
pages are covered by test_sandbox_hardening.py."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import Api

TLS = {"x-forwarded-proto": "https"}  # as a TLS-terminating proxy on 127.0.0.1 sends it
HALF_A_YEAR = 180 * 24 * 3600


def open_invoice(api: Api) -> dict[str, Any]:
    cus = api.ok("POST", "/v1/customers", {"email": "payer@example.com"})
    invoice = api.ok("POST", "/v1/invoices", {"customer": cus["id"], "currency": "eur"})
    api.ok(
        "POST",
        "/v1/invoiceitems",
        {"customer": cus["id"], "invoice": invoice["id"], "amount": 1500, "currency": "eur"},
    )
    opened = api.ok("POST", f"/v1/invoices/{invoice['id']}/finalize")
    assert opened["hosted_invoice_url"]
    return opened


def page_urls(api: Api) -> dict[str, str]:
    """Each page (path: its expected content type), relative to the server."""
    hosted = httpx.URL(open_invoice(api)["hosted_invoice_url"]).path
    return {
        "/docs": "text/html",
        "/redoc": "text/html",
        hosted: "text/html",
        "/invoices/inv_tok_nobody_has_this_one": "text/html",  # the missing-invoice page
        f"{hosted}/pdf": "application/pdf",
    }


def max_age(hsts: str) -> int:
    first = hsts.split(";")[0].strip()
    assert first.startswith("max-age="), hsts
    return int(first.removeprefix("max-age="))


def test_every_page_over_tls_has_hsts_and_the_security_headers(api: Api) -> None:
    for path, content_type in page_urls(api).items():
        r = httpx.get(f"{api.server.url}{path}", headers=TLS, timeout=30)
        assert r.status_code in (200, 404), (path, r.status_code)
        assert r.headers["content-type"].startswith(content_type), path
        assert max_age(r.headers["strict-transport-security"]) >= HALF_A_YEAR, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
        script_src = next((d for d in csp.split(";") if "script-src" in d), "")
        assert "unsafe-inline" not in script_src, path
        if content_type == "text/html":
            assert r.headers["cache-control"] == "no-store", path
            assert r.headers["x-frame-options"] == "DENY", path
        # One of each: the page's own headers and the shared ones are never both sent.
        for name in ("strict-transport-security", "x-content-type-options", "referrer-policy"):
            assert len(r.headers.get_list(name)) == 1, (path, name)


def test_without_tls_there_is_no_hsts_but_the_other_headers_stay(api: Api) -> None:
    for path in page_urls(api):
        r = httpx.get(f"{api.server.url}{path}", timeout=30)
        assert "strict-transport-security" not in r.headers, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path


def test_the_json_api_over_tls_has_hsts_too(api: Api) -> None:
    over_tls = api.get("/v1/customers", headers=TLS)
    assert over_tls.status_code == 200
    assert max_age(over_tls.headers["strict-transport-security"]) >= HALF_A_YEAR
    plain = api.get("/v1/customers")
    assert plain.status_code == 200 and "strict-transport-security" not in plain.headers
    refused = httpx.get(f"{api.server.url}/v1/customers", headers=TLS, timeout=30)
    assert refused.status_code == 401  # an error answer too
    assert max_age(refused.headers["strict-transport-security"]) >= HALF_A_YEAR
