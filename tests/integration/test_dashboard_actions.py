"""Issue 15's dashboard actions that had no test, in process (services, the HTTP app through
ASGI, the scripted gateway, a clock the test moves; SQLite and PostgreSQL):

- a subscription's item changed (price and quantity) from the billing page: the new item on
  the subscription and on the page, the proration invoice items billing makes (amounts worked
  out by hand below), audited with the user; refused (403, nothing changed) for view-only;
- a review rejected from the fraud page: the held payment is cancelled at the gateway once
  (a second submit of the same form too), the review closes as ``rejected``, audited;
- every state-changing dashboard route (walked from the page modules' routers, so a route
  added later without a line here fails) performed once, each leaving an audit entry with
  the user, the action and the object;
- no page of the dashboard refers to a URL of another origin (src, href, action, CSS
  ``url(``), in the pages or in the stylesheets they load.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from paymux.dashboard.app import loaded_pages
from paymux.dashboard.pages_billing import _SUB_VERBS
from paymux.dashboard.pages_payments import ACTIONS
from paymux.dashboard.render import PREFIX
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

db = migrated_database_fixture("dash_actions")
# The walk and the page scan hold nothing of one database's dialect (the actions' own SQL is
# covered on both by their own tests): SQLite only, to keep the suite's time.
sqlite_db = migrated_database_fixture("dash_actions1", backends=["sqlite"])
_KEY = re.compile(r'name="idempotency_key" value="([^"]+)"')
DAY = 86400


def actor(h: Harness, role: str) -> str:
    return f"dashboard:{role}-{h.account}@example.com".lower()[:64]


async def audit_rows(h: Harness) -> list[tuple[str, str, str | None]]:
    rows = await h.sql(
        "select actor, action, object_id from audit_log where account_id = :a", a=h.account
    )
    return [(str(r[0]), str(r[1]), r[2]) for r in rows]


async def held_for_review(h: Harness, amount: int) -> tuple[str, str]:
    """A payment held by a review rule (authorized, not captured) and its open review."""
    rules = (await h.get("/v1/fraud/rules"))["data"]
    if not any(r["rule"] == "review if :amount: > 1000" for r in rules):
        await ok(h, "/v1/fraud/rules", {"rule": "review if :amount: > 1000"})
    pi = await ok(h, "/v1/payment_intents", {"amount": amount, "currency": "usd"})
    r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
    assert r.status_code == 200, r.text
    assert h.body(r)["status"] == "requires_capture"
    reviews = [
        rv for rv in (await h.get("/v1/reviews?open=true"))["data"]
        if rv["payment_intent"] == pi["id"]
    ]
    assert len(reviews) == 1
    return str(pi["id"]), str(reviews[0]["id"])


def review_form(html: str, review_id: str, verb: str) -> dict[str, str]:
    found = re.search(
        rf'/fraud/reviews/{review_id}/{verb}".*?name="idempotency_key" value="([^"]+)"', html, re.S
    )
    assert found, f"no {verb} form for {review_id}"
    return {"csrf_token": csrf_of(html), "idempotency_key": found.group(1)}


# -- item 2: a subscription changed from the billing page ------------------------------------


def test_an_admin_changes_a_subscription_item_with_its_prorations_and_view_only_cannot(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        customer, basic = await customer_and_price(h, 1000)
        product = await ok(h, "/v1/products", {"name": "Team"})
        team = await ok(h, "/v1/prices", {
            "product": product["id"], "unit_amount": 2500, "currency": "usd",
            "recurring": {"interval": "month"}})
        sub = await ok(h, "/v1/subscriptions", {"customer": customer, "items": [{"price": basic}]})
        item = sub["items"]["data"][0]["id"]
        # The period: 2027-01-15 08:00 to 2027-02-15 08:00 UTC (31 days); 10 days in.
        assert sub["current_period_end"] - sub["current_period_start"] == 31 * DAY
        h.advance(10 * DAY)
        change = f"/dashboard/billing/subscriptions/{sub['id']}/change"
        form = {"item": item, "price": team["id"], "quantity": "2"}

        viewer = await harness_client(h, "view_only")
        seen = await page(viewer, "/dashboard/billing")
        assert f'action="{change}"' not in seen
        r = await viewer.post(change, data={"csrf_token": csrf_of(seen), **form})
        assert r.status_code == 403
        unchanged = await h.get(f"/v1/subscriptions/{sub['id']}")
        assert [(i["price"]["id"], i["quantity"]) for i in unchanged["items"]["data"]] == [
            (basic, 1)]

        admin = await harness_client(h, "admin")
        billing = await page(admin, "/dashboard/billing")
        assert f'action="{change}"' in billing
        r = await admin.post(change, data={"csrf_token": csrf_of(billing), **form})
        assert r.status_code == 303, r.text[:500]
        after = await h.get(f"/v1/subscriptions/{sub['id']}")
        assert [(i["price"]["id"], i["quantity"]) for i in after["items"]["data"]] == [
            (team["id"], 2)]
        shown = await page(admin, "/dashboard/billing")
        assert f"<li>2 \u00d7 {team['id']} ($25.00)</li>" in shown
        assert f"<li>1 \u00d7 {basic} ($10.00)</li>" not in shown
        # Prorations for the 21 days left of 31 (cumulative rounding, billing/rules/proration):
        # unused 1 x $10.00: 1000 - round(1000 * 10/31 = 322.6) = 677 back;
        # 2 x $25.00 for the rest: 5000 - round(5000 * 10/31 = 1612.9) = 3387.
        listed = (await h.get(f"/v1/invoiceitems?customer={customer}&limit=10"))["data"]
        prorations = sorted(i["amount"] for i in listed if i.get("proration"))
        assert prorations == [-677, 3387]
        by_users = [row for row in await audit_rows(h)
                    if row[0].startswith("dashboard:") and not row[1].startswith("dashboard_")]
        assert by_users == [(actor(h, "admin"), "subscription.change", sub["id"])]
        await viewer.aclose()
        await admin.aclose()

    run(db, tmp_path, test)


# -- item 3: a review rejected from the fraud page -------------------------------------------


def test_rejecting_a_review_cancels_its_payment_once_closes_it_and_is_audited(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        pi_id, review_id = await held_for_review(h, 3000)
        support = await harness_client(h, "support")
        fraud = await page(support, "/dashboard/fraud")
        form = review_form(fraud, review_id, "reject")
        path = f"/dashboard/fraud/reviews/{review_id}/reject"
        first = await support.post(path, data=form)
        second = await support.post(path, data=form)  # a double click
        assert (first.status_code, second.status_code) == (303, 303)
        assert h.gw.calls["void"] == 1 and h.gw.calls["capture"] == 0
        assert h.gw.money_captured(pi_id) == 0
        payment = await h.get(f"/v1/payment_intents/{pi_id}")
        assert (payment["status"], payment["cancellation_reason"]) == ("canceled", "fraudulent")
        review = await h.get(f"/v1/reviews/{review_id}")
        # As the API's reject: an uncaptured payment is cancelled, the review closes so.
        assert (review["open"], review["closed_reason"]) == (False, "canceled")
        assert review_id not in await page(support, "/dashboard/fraud")
        assert [row for row in await audit_rows(h) if row[1] == "review.reject"] == [
            (actor(h, "support"), "review.reject", review_id)]
        await support.aclose()

    run(db, tmp_path, test)


# -- item 6: every state-changing route audited ----------------------------------------------


def state_changing_routes() -> set[str]:
    """Every dashboard route that takes anything but GET, from the page modules' routers."""
    return {
        PREFIX + route.path
        for _, module in loaded_pages()
        for route in module.router.routes
        if set(route.methods) - {"GET", "HEAD"}
    }


async def open_invoice(h: Harness, customer: str, amount: int) -> str:
    await ok(h, "/v1/invoiceitems", {"customer": customer, "amount": amount, "currency": "usd"})
    invoice = await ok(
        h, "/v1/invoices", {"customer": customer, "pending_invoice_items_behavior": "include"}
    )
    return str((await ok(h, f"/v1/invoices/{invoice['id']}/finalize", {}))["id"])


class Walk:
    """Performs dashboard actions as one user, noting for each route template what the audit
    log must then hold: (actor, action, object id; None: any object)."""

    def __init__(self, client: httpx.AsyncClient, token: str, actor: str) -> None:
        self.client, self.token, self.actor = client, token, actor
        self.expected: list[tuple[str, str, str, str | None]] = []  # template, actor, ...

    async def post(
        self, template: str, path: str, action: str, object_id: str | None,
        status: int = 303, client: httpx.AsyncClient | None = None,
        actor: str | None = None, **data: str,
    ) -> httpx.Response:
        form = {"csrf_token": self.token, **data} if client is None else data
        r = await (client or self.client).post(path, data=form)
        assert r.status_code == status, (path, r.status_code, r.text[:400])
        self.expected.append((template, actor or self.actor, action, object_id))
        return r

    async def money(self, pi_id: str, action: str, expected: str, object_id: str | None) -> None:
        confirm = await page(self.client, f"/dashboard/payments/{pi_id}/{action}")
        key = _KEY.search(confirm)
        assert key, f"no idempotency key on the {action} form"
        await self.post(
            f"{PREFIX}/payments/{{pi_id}}/{{action}}", f"/dashboard/payments/{pi_id}/{action}",
            expected, object_id, idempotency_key=key.group(1),
        )


def test_every_state_changing_dashboard_route_leaves_an_audit_entry_with_the_user(
    sqlite_db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        # Objects to act on (through the API); the review rule is off once the two payments
        # it holds are made.
        held = [await held_for_review(h, 3000 + i) for i in range(2)]
        review_rule = next(r["id"] for r in (await h.get("/v1/fraud/rules"))["data"])
        await h.app.fraud_rules.set_status(h.account, review_rule, "disabled")
        paid = await ok(h, "/v1/payment_intents", {
            "amount": 900, "currency": "usd", "confirm": True, "payment_method": "tok_visa"})
        to_capture, to_cancel = [
            await ok(h, "/v1/payment_intents", {
                "amount": 800, "currency": "usd", "confirm": True, "payment_method": "tok_visa",
                "capture_method": "manual"})
            for _ in range(2)]
        customer, price = await customer_and_price(h, 1500)
        subs = [await ok(h, "/v1/subscriptions", {"customer": customer, "items": [{"price": p}]})
                for p in (price, price)]
        invoices = [await open_invoice(h, customer, 700) for _ in range(2)]
        clock = await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": 1_800_000_000})
        value_list = await ok(h, "/v1/radar/value_lists", {
            "alias": "blocked_mails", "name": "Blocked", "item_type": "email"})
        endpoint = await ok(h, "/v1/webhook_endpoints", {
            "url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
        event_id = (await h.get("/v1/events?limit=1"))["data"][0]["id"]
        to_roll, _ = await h.app.keys.create(h.account)
        to_revoke, _ = await h.app.keys.create(h.account)

        admin = await harness_client(h, "admin")
        walk = Walk(admin, csrf_of(await page(admin, "/dashboard/billing")), actor(h, "admin"))
        P = PREFIX

        await walk.money(to_capture["id"], "capture", "payment_intent.capture", to_capture["id"])
        await walk.money(to_cancel["id"], "cancel", "payment_intent.cancel", to_cancel["id"])
        await walk.money(paid["id"], "refund", "refund.create", None)

        sub_t = f"{P}/billing/subscriptions/{{sub_id}}/{{verb}}"
        first, second = subs[0]["id"], subs[1]["id"]
        item = subs[0]["items"]["data"][0]["id"]
        await walk.post(sub_t, f"{P}/billing/subscriptions/{first}/change",
                        "subscription.change", first, item=item, price=price, quantity="3")
        for verb in ("pause", "resume_collection", "cancel_at_period_end"):
            await walk.post(sub_t, f"{P}/billing/subscriptions/{first}/{verb}",
                            f"subscription.{verb}", first)
        await walk.post(sub_t, f"{P}/billing/subscriptions/{second}/cancel_now",
                        "subscription.cancel_now", second)
        inv_t = f"{P}/billing/invoices/{{invoice_id}}/{{verb}}"
        for invoice, verb in zip(invoices, ("void", "mark_uncollectible"), strict=True):
            await walk.post(inv_t, f"{P}/billing/invoices/{invoice}/{verb}",
                            f"invoice.{verb}", invoice)
        await walk.post(f"{P}/billing/test_clocks/{{clock_id}}/advance",
                        f"{P}/billing/test_clocks/{clock['id']}/advance", "test_clock.advance",
                        clock["id"], frozen_time="2027-01-16T08:00")

        fraud = await page(admin, "/dashboard/fraud")
        review_t = f"{P}/fraud/reviews/{{review_id}}/{{verb}}"
        for (_, review_id), verb in zip(held, ("approve", "reject"), strict=True):
            form = review_form(fraud, review_id, verb)
            await walk.post(review_t, f"{P}/fraud/reviews/{review_id}/{verb}",
                            f"review.{verb}", review_id, idempotency_key=form["idempotency_key"])
        await walk.post(f"{P}/fraud/rules", f"{P}/fraud/rules", "fraud_rule.create", None,
                        rule="block if :amount: > 99999999")
        rule_id = next(r["id"] for r in (await h.get("/v1/fraud/rules"))["data"]
                       if r["rule"] == "block if :amount: > 99999999")
        for verb in ("disable", "enable"):
            await walk.post(f"{P}/fraud/rules/{{rule_id}}/{{verb}}",
                            f"{P}/fraud/rules/{rule_id}/{verb}", f"fraud_rule.{verb}", rule_id)
        await walk.post(f"{P}/fraud/lists/{{list_id}}/items",
                        f"{P}/fraud/lists/{value_list['id']}/items", "value_list_item.create",
                        None, value="bad@example.com")
        items = (await h.get(f"/v1/radar/value_list_items?value_list={value_list['id']}"))
        item_id = items["data"][0]["id"]
        await walk.post(f"{P}/fraud/items/{{item_id}}/delete", f"{P}/fraud/items/{item_id}/delete",
                        "value_list_item.delete", item_id)

        await walk.post(f"{P}/webhooks/inbound/replay", f"{P}/webhooks/inbound/replay",
                        "webhook_inbox.replay", None)
        await walk.post(f"{P}/webhooks/endpoints/{{endpoint_id}}/resend",
                        f"{P}/webhooks/endpoints/{endpoint['id']}/resend",
                        "webhook_endpoint.resend", endpoint["id"], event=event_id)

        await walk.post(f"{P}/keys/new", f"{P}/keys/new", "key.create", None, status=200,
                        type="secret", name="walk")
        await walk.post(f"{P}/keys/{{key_id}}/roll", f"{P}/keys/{to_roll.key_id}/roll", "key.roll",
                        to_roll.key_id, status=200, expires_in="0")
        await walk.post(f"{P}/keys/{{key_id}}/revoke", f"{P}/keys/{to_revoke.key_id}/revoke",
                        "key.revoke", to_revoke.key_id)

        await walk.post(f"{P}/connections/new", f"{P}/connections/new", "connection.create",
                        None, gateway="sandbox", name="walk")
        conn = next(c["id"] for c in await h.app.connections.all(h.account)
                    if c["source"] == "api")
        await walk.post(f"{P}/connections/{{connection_id}}/credentials",
                        f"{P}/connections/{conn}/credentials", "connection.credentials", conn,
                        cred_webhook_secret="whsec_walk_0123456789")
        await walk.post(f"{P}/connections/{{connection_id}}/test",
                        f"{P}/connections/{conn}/test", "connection.test", conn, status=200)
        for change in ("disable", "enable"):
            await walk.post(f"{P}/connections/{{connection_id}}/{{change}}",
                            f"{P}/connections/{conn}/{change}", f"connection.{change}", conn)

        # The session's own routes: a sign-in through the form (audited by the users
        # service), a switch of mode, a sign-out.
        _, code = await harness_user(h, "view_only", email="walker@example.com")
        browser = harness_browser(h)
        login_token = csrf_of(await page(browser, "/dashboard/login"))
        await walk.post(f"{P}/login", f"{P}/login", "dashboard_session.create", None,
                        client=browser, actor="dashboard:walker@example.com",
                        csrf_token=login_token, email="walker@example.com", password=PASSWORD,
                        code=code, next="/dashboard")
        token = csrf_of(await page(browser, "/dashboard"))
        await walk.post(f"{P}/mode", f"{P}/mode", "dashboard_session.mode", None,
                        client=browser, actor="dashboard:walker@example.com",
                        csrf_token=token, mode="live", next="/dashboard")
        await walk.post(f"{P}/logout", f"{P}/logout", "dashboard_session.logout", None,
                        client=browser, actor="dashboard:walker@example.com", csrf_token=token)
        await browser.aclose()
        await admin.aclose()

        # Every route performed: one added later without a line above fails here.
        assert {t for t, *_ in walk.expected} == state_changing_routes()
        # ...and every verb the verb-taking routes know (a new one needs a line above).
        assert set(ACTIONS) == {"capture", "cancel", "refund"}
        assert set(_SUB_VERBS) == {
            "change", "cancel_now", "cancel_at_period_end", "pause", "resume_collection"}
        rows = await audit_rows(h)
        for template, who, action, object_id in walk.expected:
            found = [r for r in rows if r[0] == who and r[1] == action
                     and (object_id is None or r[2] == object_id)]
            assert found, f"{template}: no audit entry {action} on {object_id} by {who}"

    run(sqlite_db, tmp_path, test)


# -- item 7: offline assets -------------------------------------------------------------------

_REFERENCE = re.compile(
    r"""(?:\b(?:src|href|action|formaction|poster|srcset|data|xlink:href)\s*=\s*["']([^"']*)["'])"""
    r"""|(?:url\(\s*["']?([^"')]+)["']?\s*\))|(?:@import\s+["']([^"']+)["'])""",
    re.I,
)
ORIGIN = "https://paymux.test"


def references(text: str) -> list[str]:
    return [unescape(next(g for g in m.groups() if g is not None)).strip()
            for m in _REFERENCE.finditer(text)]


def foreign(url: str, base: str, own: set[str]) -> bool:
    """Whether ``url`` (as found on a page at ``base``) is on another origin."""
    if url.startswith(("#", "data:", "mailto:")) or not url:
        return False
    absolute = urlsplit(urljoin(base, url))
    return f"{absolute.scheme}://{absolute.netloc}" not in own


def test_no_dashboard_page_refers_to_another_origin(sqlite_db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        paid = await ok(h, "/v1/payment_intents", {
            "amount": 2500, "currency": "usd", "confirm": True, "payment_method": "tok_visa"})
        customer, price = await customer_and_price(h, 1200)
        await ok(h, "/v1/subscriptions", {"customer": customer, "items": [{"price": price}]})
        endpoint = await ok(h, "/v1/webhook_endpoints", {
            "url": "https://hooks.example.com/in", "enabled_events": ["*"]})
        await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": 1_800_000_000})
        admin = await harness_client(h, "admin")
        ids = {"pi_id": paid["id"], "customer_id": customer, "endpoint_id": endpoint["id"],
               "action": "refund"}
        paths = []
        for _, module in loaded_pages():
            for route in module.router.routes:
                if "GET" in route.methods:
                    paths.append(PREFIX + route.path.format(**ids))
        assert len(paths) >= 14
        own = {ORIGIN, h.app.settings.base_url().rstrip("/")}
        stylesheets: set[str] = set()
        for path in paths:
            r = await admin.get(path)
            assert r.status_code == 200, (path, r.status_code)
            base = f"{ORIGIN}{path}"
            found = references(r.text)
            assert found, path
            bad = [u for u in found if foreign(u, base, own)]
            assert bad == [], (path, bad)
            stylesheets |= {urljoin(base, u) for u in found if u.split("?")[0].endswith(".css")}
        signed_out = harness_browser(h)  # at ORIGIN
        login = await signed_out.get("/dashboard/login")
        assert [u for u in references(login.text) if foreign(u, ORIGIN, own)] == []
        assert stylesheets, "no stylesheet found on the pages"
        for sheet in stylesheets:
            css = await signed_out.get(sheet.removeprefix(ORIGIN))
            assert css.status_code == 200, sheet
            assert [u for u in references(css.text) if foreign(u, sheet, own)] == [], sheet
        # The check itself: a page's link elsewhere would be caught.
        assert foreign("https://cdn.example.com/htmx.js", f"{ORIGIN}/dashboard", own)
        assert foreign("//cdn.example.com/x.css", f"{ORIGIN}/dashboard", own)
        assert not foreign("/dashboard/static/dashboard.css", f"{ORIGIN}/dashboard", own)
        await signed_out.aclose()
        await admin.aclose()

    run(sqlite_db, tmp_path, test)
