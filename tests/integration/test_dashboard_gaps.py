"""Issue 15 items the audit found without a test (in process: services, the HTTP app through
ASGI, the scripted gateway, a clock the test moves; SQLite and PostgreSQL):
- a customer's page shows their payments, subscriptions, invoices and credit balance;
- an admin pauses, resumes and cancels a subscription and voids or marks an invoice
  uncollectible from the billing page (through the billing services, audited with the user),
  and the billing page links each invoice's hosted page and PDF, which answer;
- a developer advances a test clock from the billing page (support may not);
- value list items are added and deleted from the fraud page (support may not);
- a payment's page shows its 3-D Secure result;
- the session cookie is ``Secure`` over TLS and not over plain HTTP;
- ``paymux serve``'s sign-in line says how to make the first user, and later how to sign in,
  and holds no secret."""

from __future__ import annotations

import asyncio
import re
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
from sqlalchemy import update

from conftest import make_settings
from paymux.cli_users import login_hint
from paymux.dashboard.auth import LOGIN_COOKIE, SESSION_COOKIE
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from paymux.services.dashboard_users import DashboardUsers
from paymux.storage.models import PaymentIntent
from support.billing_harness import customer_and_price, ok
from support.dashboard import (
    PASSWORD,
    csrf_of,
    harness_browser,
    harness_client,
    harness_user,
    page,
)
from support.dashboard import run_in_harness as run
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.processes import free_port

db = migrated_database_fixture("dash_gaps")


async def post(client: httpx.AsyncClient, path: str, **fields: str) -> httpx.Response:
    token = csrf_of(await page(client, "/dashboard/billing"))
    return await client.post(path, data={"csrf_token": token, **fields})


async def open_invoice(h: Harness, customer: str, amount: int) -> dict[str, Any]:
    await ok(h, "/v1/invoiceitems", {"customer": customer, "amount": amount, "currency": "usd"})
    invoice = await ok(
        h, "/v1/invoices", {"customer": customer, "pending_invoice_items_behavior": "include"}
    )
    return await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {})


def local(url: str) -> str:
    """An absolute URL of this app as a path (and query) for the in-process client."""
    return urlsplit(url)._replace(scheme="", netloc="").geturl()


async def actions_by(h: Harness, action: str) -> list[str]:
    rows, _ = await h.app.audit.list(h.account, limit=10, action=action)
    return [str(r["actor"]) for r in rows]


def test_a_customers_page_shows_payments_subscriptions_invoices_and_credit_balance(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        customer, price = await customer_and_price(h, 1500)
        sub = await ok(h, "/v1/subscriptions", {"customer": customer, "items": [{"price": price}]})
        assert sub["status"] == "active"
        invoice = await open_invoice(h, customer, 900)
        await ok(
            h,
            f"/v1/customers/{customer}/balance_transactions",
            {"amount": -700, "currency": "usd"},
        )
        payment = await ok(
            h,
            "/v1/payment_intents",
            {
                "amount": 4321,
                "currency": "usd",
                "customer": customer,
                "payment_method": "tok_visa",
                "confirm": True,
            },
        )
        viewer = await harness_client(h, "view_only")
        html = await page(viewer, f"/dashboard/customers/{customer}")
        assert '<dd id="balance">$7.00</dd>' in html  # a credit of 7.00
        assert sub["id"] in html
        assert (invoice.get("number") or invoice["id"]) in html
        assert "$9.00" in html  # the open invoice's total
        assert payment["id"] in html and "$43.21" in html
        await viewer.aclose()

    run(db, tmp_path, test)


def test_an_admin_pauses_resumes_cancels_and_voids_from_the_billing_page(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        customer, price = await customer_and_price(h, 1500)
        sub = await ok(h, "/v1/subscriptions", {"customer": customer, "items": [{"price": price}]})
        to_void = await open_invoice(h, customer, 900)
        to_write_off = await open_invoice(h, customer, 800)
        admin = await harness_client(h, "admin")
        base = f"/dashboard/billing/subscriptions/{sub['id']}"

        r = await post(admin, f"{base}/pause")
        assert r.status_code == 303, r.text[:500]
        paused = await h.get(f"/v1/subscriptions/{sub['id']}")
        assert paused["pause_collection"]["behavior"] == "void"
        assert (await post(admin, f"{base}/resume_collection")).status_code == 303
        assert (await h.get(f"/v1/subscriptions/{sub['id']}"))["pause_collection"] is None
        assert (await post(admin, f"{base}/cancel_now")).status_code == 303
        assert (await h.get(f"/v1/subscriptions/{sub['id']}"))["status"] == "canceled"

        billing = await page(admin, "/dashboard/billing")
        for invoice in (to_void, to_write_off):  # the hosted page and the PDF, linked
            hosted, pdf = invoice["hosted_invoice_url"], invoice["invoice_pdf"]
            assert f'href="{escape(hosted)}"' in billing and f'href="{escape(pdf)}"' in billing
        hosted_page = await h.http.get(local(to_void["hosted_invoice_url"]))
        assert hosted_page.status_code == 200 and str(to_void["number"]) in hosted_page.text
        document = await h.http.get(local(to_void["invoice_pdf"]))
        assert document.status_code == 200 and document.content.startswith(b"%PDF")

        r = await post(admin, f"/dashboard/billing/invoices/{to_void['id']}/void")
        assert r.status_code == 303, r.text[:500]
        r = await post(
            admin, f"/dashboard/billing/invoices/{to_write_off['id']}/mark_uncollectible"
        )
        assert r.status_code == 303, r.text[:500]
        assert (await h.get(f"/v1/invoices/{to_void['id']}"))["status"] == "void"
        assert (await h.get(f"/v1/invoices/{to_write_off['id']}"))["status"] == "uncollectible"

        actor = f"dashboard:admin-{h.account}@example.com".lower()[:64]
        for action in ("subscription.pause", "subscription.cancel_now", "invoice.void"):
            assert await actions_by(h, action) == [actor], action
        await admin.aclose()

    run(db, tmp_path, test)


def test_a_developer_advances_a_test_clock_from_the_billing_page(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        clock = await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": 1_800_000_000})
        path = f"/dashboard/billing/test_clocks/{clock['id']}/advance"
        support = await harness_client(h, "support")
        r = await post(support, path, frozen_time="2027-01-20T08:00")
        assert r.status_code == 403
        dev = await harness_client(h, "developer")
        bad = await post(dev, path, frozen_time="next tuesday")
        assert bad.status_code == 400 and "frozen_time" in bad.text
        r = await post(dev, path, frozen_time="2027-01-20T08:00")  # 2027-01-15 08:00 + 5 days
        assert r.status_code == 303, r.text[:500]
        await h.drain()
        found = await h.get(f"/v1/test_helpers/test_clocks/{clock['id']}")
        assert (found["status"], found["frozen_time"]) == ("ready", 1_800_432_000)
        assert await actions_by(h, "test_clock.advance") == [
            f"dashboard:developer-{h.account}@example.com".lower()[:64]
        ]
        for client in (support, dev):
            await client.aclose()

    run(db, tmp_path, test)


def test_value_list_items_are_added_and_deleted_from_the_fraud_page(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        lst = await ok(
            h,
            "/v1/radar/value_lists",
            {"alias": "blocked_emails_dash", "name": "Blocked e-mails", "item_type": "email"},
        )
        add = f"/dashboard/fraud/lists/{lst['id']}/items"
        support = await harness_client(h, "support")
        token = csrf_of(await page(support, "/dashboard/fraud"))
        r = await support.post(add, data={"csrf_token": token, "value": "no@example.com"})
        assert r.status_code == 403
        dev = await harness_client(h, "developer")
        token = csrf_of(await page(dev, "/dashboard/fraud"))
        r = await dev.post(add, data={"csrf_token": token, "value": "fraudster@example.com"})
        assert r.status_code == 303, r.text[:500]
        items = await h.get(f"/v1/radar/value_list_items?value_list={lst['id']}")
        assert [i["value"] for i in items["data"]] == ["fraudster@example.com"]
        assert "fraudster@example.com" in await page(dev, "/dashboard/fraud")
        item_id = items["data"][0]["id"]
        r = await dev.post(f"/dashboard/fraud/items/{item_id}/delete", data={"csrf_token": token})
        assert r.status_code == 303, r.text[:500]
        items = await h.get(f"/v1/radar/value_list_items?value_list={lst['id']}")
        assert items["data"] == []
        for client in (support, dev):
            await client.aclose()

    run(db, tmp_path, test)


def test_the_session_cookie_is_secure_over_tls_only(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        for scheme in ("https", "http"):
            email, code = await harness_user(h, "view_only", email=f"{scheme}@example.com")
            async with harness_browser(h, scheme=scheme) as client:
                form = await client.get("/dashboard/login")
                sent = [v for k, v in form.headers.multi_items() if k == "set-cookie"]
                login_cookie = next(v for v in sent if v.startswith(f"{LOGIN_COOKIE}="))
                token = csrf_of(form.text)
                r = await client.post(
                    "/dashboard/login",
                    data={
                        "csrf_token": token,
                        "email": email,
                        "password": PASSWORD,
                        "code": code,
                        "next": "/dashboard",
                    },
                )  # the sign-in form's cookie goes back from the client's jar
            assert r.status_code == 303, (scheme, r.status_code, r.text[:300])
            session = next(
                v
                for k, v in r.headers.multi_items()
                if k == "set-cookie" and v.startswith(f"{SESSION_COOKIE}=")
            )
            flags = {part.strip().lower() for part in session.split(";")}
            assert ("secure" in flags) is (scheme == "https"), (scheme, session)
            assert ("secure" in {p.strip().lower() for p in login_cookie.split(";")}) is (
                scheme == "https"
            )

    run(db, tmp_path, test)


def test_serve_says_how_to_make_the_first_user_then_how_to_sign_in_and_no_secret(
    db: str, tmp_path: Path
) -> None:
    keys = generate_key_entry("k1")
    settings = make_settings(db, tmp_path, free_port(), encryption_keys=keys)
    base = "http://127.0.0.1:8000"
    first = login_hint(settings, base)
    assert first.startswith("Dashboard: http://127.0.0.1:8000/dashboard")
    assert "paymux users create --email" in first and "PAYMUX_ENCRYPTION_KEYS" not in first
    unkeyed = login_hint(make_settings(db, tmp_path, free_port()), base)
    assert "set PAYMUX_ENCRYPTION_KEYS, then run `paymux users create" in unkeyed

    async def make_user() -> str:
        app = Paymux(settings)
        try:
            account = (await app.accounts.create_key()).account_id
            users = DashboardUsers(app.ctx, app.connections.keyring)
            new = await users.create(
                email="first@example.com", password=PASSWORD, role="admin", account_id=account
            )
            return str(new.provisioning_uri)
        finally:
            await app.close()

    uri = asyncio.run(make_user())
    later = login_hint(settings, base)
    assert "sign in with your e-mail, password and authenticator code" in later
    assert "users create" not in later
    secret = pyotp.parse_uri(uri).secret
    for line in (first, unkeyed, later):
        assert "otpauth://totp" not in line and secret not in line and PASSWORD not in line
        assert keys.split(":", 1)[-1] not in line
        assert not re.search(r"[sr]k_(test|live)_", line)


def test_a_payments_page_shows_its_3d_secure_result(db: str, tmp_path: Path) -> None:
    """The result as the attempt engine records it (``payment_intents.three_d_secure``:
    tests/integration/test_three_d_secure_api.py proves the recording) is on the page."""

    async def test(h: Harness) -> None:
        plain = await ok(
            h,
            "/v1/payment_intents",
            {"amount": 1000, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
        )
        checked = await ok(
            h,
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
        )
        result = {"result": "authenticated", "version": "2.2.0", "liability_shift": True}
        async with h.app.ctx.db.write() as s:
            await s.execute(
                update(PaymentIntent)
                .where(PaymentIntent.id == checked["id"])
                .values(three_d_secure=result)
            )
        support = await harness_client(h, "support")
        html = await page(support, f"/dashboard/payments/{checked['id']}")
        section = html.split('id="tds-h"', 1)[1].split("</section>", 1)[0]
        assert "<dd>authenticated</dd>" in section and "<dd>2.2.0</dd>" in section
        assert 'id="tds-h"' not in await page(support, f"/dashboard/payments/{plain['id']}")
        await support.aclose()

    run(db, tmp_path, test)
