"""Issue 15: what the dashboard shows, read from the rendered HTML and compared with figures
worked out by hand (in process: services, the HTTP app through ASGI, the scripted gateway, a
clock the test moves; SQLite and PostgreSQL):

- the payments list filtered by gateway and by creation day lists exactly the expected
  payments (made on different days by moving the clock; the harness has one gateway, so the
  rows of the "other" gateway are marked so in the table directly, the one write not made
  through the services);
- the home page's MRR, active subscriptions, churn and failed renewals in dunning, after
  subscriptions were made, one renewal declined and one subscription cancelled.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlalchemy import text

from support.billing_harness import customer_and_price, ok
from support.dashboard import harness_client
from support.dashboard import run_in_harness as run
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness

db = migrated_database_fixture("dash_figures")
DAY = 86400
_ROW = re.compile(r'<td><a href="/dashboard/payments/(pi_\w+)">')


async def listed(client: httpx.AsyncClient, query: str) -> list[str]:
    r = await client.get(f"/dashboard/payments?{query}")
    assert r.status_code == 200, (query, r.status_code, r.text[:400])
    return _ROW.findall(r.text)


def test_the_gateway_and_date_filters_list_exactly_the_expected_payments(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        # The clock starts at 2027-01-15 08:00 UTC: three payments that day, two the next
        # (2027-01-16), one two days later (2027-01-18).
        made: dict[str, str] = {}
        # (A minute apart at least, so the list's newest-first order is theirs.)
        for name, advance in (("a", 0), ("b", 60), ("c", 60), ("d", DAY), ("e", 60),
                              ("f", 2 * DAY)):
            h.advance(advance)
            pi = await ok(h, "/v1/payment_intents", {
                "amount": 1000, "currency": "usd", "confirm": True, "payment_method": "tok_visa"})
            made[name] = pi["id"]
        # Gateways: b, d and f "stripe", the others "sandbox".
        for name in made:
            gateway = "stripe" if name in "bdf" else "sandbox"
            async with h.app.ctx.db.write() as s:
                await s.execute(text("update payment_intents set gateway = :g where id = :i"),
                                {"g": gateway, "i": made[name]})
        viewer = await harness_client(h, "view_only")

        def ids(*names: str) -> list[str]:
            return [made[n] for n in names]  # newest first, as the list shows them

        assert await listed(viewer, "") == ids("f", "e", "d", "c", "b", "a")
        assert await listed(viewer, "gateway=stripe") == ids("f", "d", "b")
        assert await listed(viewer, "gateway=sandbox") == ids("e", "c", "a")
        assert await listed(viewer, "created_from=2027-01-16&created_to=2027-01-16") == ids(
            "e", "d")
        assert await listed(viewer, "created_from=2027-01-16") == ids("f", "e", "d")
        assert await listed(viewer, "created_to=2027-01-15") == ids("c", "b", "a")
        assert await listed(
            viewer, "gateway=stripe&created_from=2027-01-16&created_to=2027-01-17") == ids("d")
        assert await listed(viewer, "gateway=paypal") == []
        assert await listed(viewer, "created_from=2027-01-17&created_to=2027-01-17") == []
        await viewer.aclose()

    run(db, tmp_path, test)


def test_the_home_page_shows_mrr_active_churn_and_dunning_as_worked_out_by_hand(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        # 2027-01-15 08:00: E ($9.00 a month) starts.
        customer, nine = await customer_and_price(h, 900)
        product = (await h.get(f"/v1/prices/{nine}"))["product"]

        async def price(amount: int, interval: str = "month") -> str:
            made = await ok(h, "/v1/prices", {"product": product, "unit_amount": amount,
                                              "currency": "usd", "recurring": {"interval": interval}})
            return str(made["id"])

        async def subscribe(price_id: str, quantity: int = 1) -> str:
            sub = await ok(h, "/v1/subscriptions", {
                "customer": customer, "items": [{"price": price_id, "quantity": quantity}]})
            assert sub["status"] == "active", sub["status"]
            return str(sub["id"])

        await subscribe(nine)  # E
        # 2027-02-04 08:00: A $15.00/month, B 2 x $12.00/month, C $120.00/year, D $20.00/month.
        h.advance(20 * DAY)
        await subscribe(await price(1500))  # A
        await subscribe(await price(1200), quantity=2)  # B
        await subscribe(await price(12000, "year"))  # C
        d = await subscribe(await price(2000))  # D
        # 2027-02-16 08:00: E's period ended (2027-02-15 08:00); its renewal is declined.
        h.advance(12 * DAY)
        h.gw.script("authorize", Outcome.decline("card_declined"))
        await h.drain()
        renewals = [
            (i["status"], i["attempt_count"], i["amount_remaining"])
            for i in (await h.get(f"/v1/invoices?customer={customer}&limit=20"))["data"]
            if i["billing_reason"] == "subscription_cycle"
        ]
        assert renewals == [("open", 1, 900)], renewals
        r = await h.http.delete(f"/v1/subscriptions/{d}")  # D ends today
        assert r.status_code == 200, r.text

        viewer = await harness_client(h, "view_only")
        r = await viewer.get("/dashboard?days=7")
        assert r.status_code == 200
        home = r.text
        # MRR (active and past due): A 1500 + B 2 x 1200 + C 12000 / 12 + E 900 = 5800.
        assert '<dd id="mrr">$58.00 (4 subscriptions)</dd>' in home
        assert '<dd id="active-subscriptions">4</dd>' in home  # A, B, C, E
        # The 7 days from 2027-02-10: live at their start A, B, C, D, E; D ended in them.
        assert '<dd id="churn">1 of 5 (20.0%)</dd>' in home
        # E's renewal invoice: open, tried once, $9.00 owed.
        assert '<dd id="dunning">1 \u00b7 $9.00 owed</dd>' in home
        await viewer.aclose()

    run(db, tmp_path, test)
