"""The dashboard against bad input, roles and the inbox, in process (services, the HTTP app
through ASGI, the scripted gateway, a clock the test moves) on SQLite and PostgreSQL:

- bad input (a superscript digit, an amount past any column, a NUL in the path, the query, a
  form or the sign-in form) answers a 4xx page or the page with the field's error, never a
  500;
- the customers pager keeps an e-mail with a ``+``; a bad billing cursor is a page, not JSON;
- support (refunds and reviews) may not change subscriptions or invoices;
- a deployment gateway's inbound events (no account) are listed, and replayed, for the
  default account's admins; other accounts do not see them;
- a roll submitted twice says the key was rolled already; ``?done=``/``?resent=`` echo
  only values the dashboard makes."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from paymux.security.envelope import generate_key_entry
from paymux.services.accounts import DEFAULT_ACCOUNT
from support.dashboard import csrf_of, harness_client
from support.databases import migrated_database_fixture
from support.fake_gateway import ProviderEvent, ScriptedGateway
from support.harness import Harness

db = migrated_database_fixture("dash_input")


@asynccontextmanager
async def harness(url: str, tmp: Path, **overrides: Any) -> AsyncIterator[Harness]:
    async with Harness.open(url, tmp, encryption_keys=generate_key_entry("k1"), **overrides) as h:
        yield h


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]], **overrides: Any) -> None:
    async def main() -> None:
        async with harness(db, tmp, **overrides) as h:
            await test(h)

    asyncio.run(main())


async def paid(h: Harness, amount: int = 2000) -> dict[str, Any]:
    r = await h.post(
        "/v1/payment_intents",
        {"amount": amount, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
    )
    assert r.status_code == 200, r.text
    return h.body(r)


# -- bad input ---------------------------------------------------------------------------------
NUL_PATHS = (  # the dashboard's own 400 page
    "/dashboard/payments/pi_%00",
    "/dashboard/customers/cus_%00",
    "/dashboard/webhooks/endpoints/we_%00",
)
NUL_QUERIES = (  # refused by the app's request guard before any route (a JSON 400)
    "/dashboard/payments?starting_after=pi_%00",
    "/dashboard/payments?metadata=k%3D%00",
    "/dashboard/customers?email=a%00b",
)


def test_bad_input_answers_a_page_with_its_error_never_a_500(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        admin = await harness_client(h, "admin")
        for path in NUL_PATHS:
            r = await admin.get(path)
            assert r.status_code == 400, (path, r.status_code, r.text[:300])
            assert "text/html" in r.headers["content-type"], (path, r.text[:300])
            assert "(NUL)" in r.text
        for path in NUL_QUERIES:
            r = await admin.get(path)
            assert r.status_code == 400, (path, r.status_code, r.text[:300])
        # A superscript two is a digit to str.isdigit, not to int(): the default period.
        home = await admin.get("/dashboard?days=%C2%B2")
        assert home.status_code == 200 and "last 30 days" in home.text
        # An amount past any amount column: the field's error, the filter not applied.
        huge = await admin.get(
            "/dashboard/payments",
            params={"currency": "usd", "amount_min": "99999999999999999999999"},
        )
        assert huge.status_code == 200
        assert "An amount from 0 to 999,999,999,999 minor units." in huge.text
        billing = await admin.get("/dashboard/billing?subscriptions_after=sub_nope")
        assert billing.status_code == 200 and "text/html" in billing.headers["content-type"]

        fraud = await admin.get("/dashboard/fraud")
        token = csrf_of(fraud.text)
        rule = {"csrf_token": token, "rule": "Block if :amount_in_usd: > 100000"}
        r = await admin.post("/dashboard/fraud/rules", data={**rule, "priority": "\u00b2"})
        assert r.status_code == 400 and "The priority is a whole number" in r.text
        r = await admin.post("/dashboard/fraud/rules", data={**rule, "description": "a\x00b"})
        assert r.status_code == 400 and "(NUL)" in r.text
        r = await admin.post(
            "/dashboard/billing/subscriptions/sub_any/change",
            data={"csrf_token": token, "item": "si_1", "price": "price_1", "quantity": "\u00b2"},
        )
        assert r.status_code == 400 and "The quantity is a whole number" in r.text
        rules = await h.sql("select count(*) from fraud_rules where account_id = :a", a=h.account)
        assert rules == [(0,)]
        await admin.aclose()

        # The sign-in form: a NUL anywhere, or a superscript code, is a wrong sign-in.
        anon = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=h._asgi), base_url="https://paymux.test"
        )
        for email, code in (("a\x00@example.com", "123456"), ("a@example.com", "\u00b2" * 6)):
            page = await anon.get("/dashboard/login")
            r = await anon.post(
                "/dashboard/login",
                data={
                    "csrf_token": csrf_of(page.text),
                    "email": email,
                    "password": "x" * 12,
                    "code": code,
                },
            )
            assert r.status_code == 401, (email, code, r.status_code, r.text[:300])
            assert "do not match" in r.text
        await anon.aclose()

    run(db, tmp_path, test)


def test_the_customers_pager_keeps_an_email_with_a_plus(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        for n in range(27):
            email = "a+b@example.com" if n % 9 else "a b@example.com"  # 24 of a+b
            assert (await h.post("/v1/customers", {"email": email})).status_code == 200
        for _ in range(3):
            assert (await h.post("/v1/customers", {"email": "a+b@example.com"})).status_code == 200
        admin = await harness_client(h, "admin")
        first = await admin.get("/dashboard/customers", params={"email": "a+b@example.com"})
        assert first.text.count('href="/dashboard/customers/cus_') == 25
        older = re.search(r'href="(\?[^"]+)" rel="next"', first.text)
        assert older, "no pager"
        second = await admin.get("/dashboard/customers" + older.group(1).replace("&amp;", "&"))
        assert second.text.count('href="/dashboard/customers/cus_') == 2
        await admin.aclose()

    run(db, tmp_path, test)


# -- roles -------------------------------------------------------------------------------------
def test_support_may_not_change_subscriptions_or_invoices(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        support = await harness_client(h, "support")
        page = await support.get("/dashboard/billing")
        assert page.status_code == 200
        token = csrf_of(page.text)
        for path in (
            "/dashboard/billing/subscriptions/sub_any/cancel_now",
            "/dashboard/billing/subscriptions/sub_any/change",
            "/dashboard/billing/subscriptions/sub_any/pause",
            "/dashboard/billing/invoices/in_any/void",
            "/dashboard/billing/invoices/in_any/mark_uncollectible",
        ):
            r = await support.post(path, data={"csrf_token": token})
            assert r.status_code == 403, (path, r.status_code)
        # ... while an admin is let through to the service (which finds no such object).
        admin = await harness_client(h, "admin")
        token = csrf_of((await admin.get("/dashboard/billing")).text)
        r = await admin.post("/dashboard/billing/invoices/in_any/void", data={"csrf_token": token})
        assert r.status_code == 400 and "in_any" in r.text
        for client in (support, admin):
            await client.aclose()

    run(db, tmp_path, test)


# -- the inbox of a deployment gateway ---------------------------------------------------------
def _about_nothing(event: ProviderEvent) -> ProviderEvent:
    """``event`` about a payment nobody has (it can never apply: dead after its attempts)."""
    obj = {**event.object, "id": "pay_nobody", "reference": "pi_nobody"}
    return ProviderEvent(event.id + "x", event.type, event.created, obj)


def test_a_deployment_gateways_events_are_the_default_accounts_admins(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        await h.app.accounts.ensure_account(DEFAULT_ACCOUNT)
        await paid(h)
        events = h.gw.take_webhooks()
        assert events
        for event in [*events, _about_nothing(events[-1])]:
            headers, body = h.gw.webhook_request(event)
            r = await h.http.post(f"/webhooks/{h.gw.name}", content=body, headers=headers)
            assert r.status_code == 200, r.text
        await h.drain()
        rows = await h.sql("select id, account_id, status from webhook_inbox order by id")
        assert len(rows) == len(events) + 1 and {r[1] for r in rows} == {None}
        dead = [r[0] for r in rows if r[2] == "dead"]
        assert len(dead) == 1, rows

        admin = await harness_client(h, "admin", account_id=DEFAULT_ACCOUNT)
        listed = (await admin.get("/dashboard/webhooks")).text
        assert sorted(re.findall(r'<tr id="inbox-([^"]+)"', listed)) == sorted(r[0] for r in rows)
        dead_page = (await admin.get("/dashboard/webhooks?status=dead")).text
        assert re.findall(r'<tr id="inbox-([^"]+)"', dead_page) == dead
        r = await admin.post(
            "/dashboard/webhooks/inbound/replay",
            data={"csrf_token": csrf_of(dead_page), "inbox_id": dead[0]},
        )
        assert r.status_code == 303, r.text
        [(status,)] = await h.sql("select status from webhook_inbox where id = :i", i=dead[0])
        assert status == "received"  # queued to be applied again
        audit = await h.sql(
            "select actor, details from audit_log where action = 'webhook_inbox.replay'"
        )
        [(actor, details)] = audit
        assert actor == f"dashboard:admin-{DEFAULT_ACCOUNT}@example.com".lower()
        details = details if isinstance(details, dict) else json.loads(details)
        assert details == {"replayed": [dead[0]]}

        # Not the payment's own account's (nor another role of the default account's).
        for role, account in (("admin", h.account), ("developer", DEFAULT_ACCOUNT)):
            other = await harness_client(h, role, account_id=account)
            page = (await other.get("/dashboard/webhooks")).text
            assert '<tr id="inbox-' not in page, (role, account)
            r = await other.post(
                "/dashboard/webhooks/inbound/replay",
                data={"csrf_token": csrf_of(page), "inbox_id": rows[0][0]},
            )
            assert r.status_code in (400, 403), (role, account, r.status_code)
            await other.aclose()
        await admin.aclose()

    run(db, tmp_path, test, webhook_apply_max_attempts=1)


# -- what a second submit, or a made-up link, shows --------------------------------------------
def test_a_roll_submitted_twice_says_the_key_was_rolled_already(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        admin = await harness_client(h, "admin")
        keys = await admin.get("/dashboard/keys")
        found = re.search(r'action="/dashboard/keys/(\w+)/roll"', keys.text)
        assert found
        form = {"csrf_token": csrf_of(keys.text), "expires_in": "0"}
        first = await admin.post(f"/dashboard/keys/{found.group(1)}/roll", data=form)
        assert first.status_code == 200 and 'id="new-key"' in first.text
        [(new_id,)] = await h.sql("select rolled_to from api_keys where id = :i", i=found.group(1))
        second = await admin.post(f"/dashboard/keys/{found.group(1)}/roll", data=form)
        assert second.status_code == 409
        assert f"was already rolled to {new_id}" in second.text
        assert 'id="new-key"' not in second.text and "sk_test_" not in second.text
        await admin.aclose()

    run(db, tmp_path, test)


def test_done_and_resent_notes_echo_only_what_the_dashboard_makes(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi = await paid(h)
        admin = await harness_client(h, "admin")
        url = f"/dashboard/payments/{pi['id']}"
        made_up = (await admin.get(url, params={"done": "refund of USD 9,999 to IBAN X"})).text
        assert "IBAN X" not in made_up and 'id="done"' not in made_up
        ours = (await admin.get(url, params={"done": "refund"})).text
        assert 'id="done"' in ours and "Done: refund." in ours

        r = await h.post(
            "/v1/webhook_endpoints", {"url": "https://example.com/hook", "enabled_events": ["*"]}
        )
        assert r.status_code == 200, r.text
        endpoint = h.body(r)["id"]
        page = f"/dashboard/webhooks/endpoints/{endpoint}"
        made_up = await admin.get(page, params={"resent": "all your events, to evil.example"})
        assert made_up.status_code == 200 and 'id="resent"' not in made_up.text
        ours = (await admin.get(page, params={"resent": "evt_1AbC"})).text
        assert "Event evt_1AbC is queued to be sent again." in ours
        await admin.aclose()

    run(db, tmp_path, test)


# -- an unexpected failure inside an action ----------------------------------------------------
class _BrokenRefunds(ScriptedGateway):
    """The scripted gateway whose next refund call fails with an error no gateway error type
    names (a bug in a connector, say)."""

    broken = 1

    async def refund(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            self.broken -= 1
            raise RuntimeError("connector bug")
        return await super().refund(*args, **kwargs)


def test_an_unexpected_failure_in_a_refund_is_a_503_page_and_the_form_works_again(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        gateway = _BrokenRefunds()
        async with harness(db, tmp_path, gw=gateway) as h:
            pi = await paid(h)
            admin = await harness_client(h, "admin")
            page = (await admin.get(f"/dashboard/payments/{pi['id']}/refund")).text
            key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
            assert key
            form = {"csrf_token": csrf_of(page), "idempotency_key": key.group(1), "amount": "5.00"}
            first = await admin.post(f"/dashboard/payments/{pi['id']}/refund", data=form)
            assert first.status_code == 503, (first.status_code, first.text[:500])
            assert "text/html" in first.headers["content-type"]
            again = await admin.post(f"/dashboard/payments/{pi['id']}/refund", data=form)
            assert again.status_code == 303, (again.status_code, again.text[:500])
            assert again.headers["location"].endswith("?done=refund")
            await h.drain()
            intent = await h.get(f"/v1/payment_intents/{pi['id']}")
            assert intent["amount_refunded"] == 500
            refunds = await h.sql(
                "select amount, status from refunds where payment_intent_id = :p", p=pi["id"]
            )
            assert [tuple(r) for r in refunds] == [(500, "succeeded")]
            await admin.aclose()

    asyncio.run(main())
