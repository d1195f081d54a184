"""The dashboard's home, billing, fraud, webhooks and keys pages in process (services, HTTP
app through ASGI, the scripted gateway, a clock the test moves) on SQLite and PostgreSQL:
what each shows, who may act, that every action goes through the same services (a review
approved twice captures once, a roll stops the old key, a resend reaches the receiver
again), and that no page carries a full key or a webhook secret."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from paymux.outbound.delivery import DeliveryRunner
from paymux.security.envelope import generate_key_entry
from support.dashboard import csrf_of, harness_client, page
from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness
from support.webhook_receiver import Receiver

db = migrated_database_fixture("dash_pages")
_ACTION_KEY = re.compile(
    r'/fraud/reviews/(\w+)/approve".*?name="idempotency_key" value="([^"]+)"', re.S
)


@asynccontextmanager
async def harness(url: str, tmp: Path) -> AsyncIterator[Harness]:
    async with Harness.open(url, tmp, encryption_keys=generate_key_entry("k1")) as h:
        yield h


async def sign_in(h: Harness, role: str) -> httpx.AsyncClient:
    """A client with a dashboard session of a new user of ``role`` on the harness's account."""
    return await harness_client(h, role, email=f"{role}@example.com")


async def ok(h: Harness, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await h.post(path, body or {})
    assert r.status_code == 200, r.text
    return h.body(r)


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with harness(db, tmp) as h:
            await test(h)

    asyncio.run(main())


def test_every_page_renders_its_objects_and_no_key_or_secret(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        paid = await ok(
            h,
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd", "confirm": True, "payment_method": "tok_visa"},
        )
        assert paid["status"] == "succeeded"
        h.gw.script("authorize", Outcome.decline("card_declined"))
        failed = await ok(h, "/v1/payment_intents", {"amount": 1500, "currency": "usd"})
        r = await h.post(
            f"/v1/payment_intents/{failed['id']}/confirm", {"payment_method": "tok_visa"}
        )
        assert r.status_code == 402
        error = r.json()["error"]
        reason = error["decline_code"] or error["code"]
        product = await ok(h, "/v1/products", {"name": "Gold plan"})
        await ok(
            h,
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "usd",
                "unit_amount": 1234,
                "recurring": {"interval": "month"},
            },
        )
        await ok(h, "/v1/coupons", {"percent_off": 25, "duration": "once", "name": "Quarter"})
        clock = await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": 1_800_000_000})
        rule = await ok(h, "/v1/fraud/rules", {"rule": "review if :amount: > 90000"})
        endpoint = await ok(
            h,
            "/v1/webhook_endpoints",
            {
                "url": "http://127.0.0.1:9/hook",
                "enabled_events": ["*"],
            },
        )
        admin = await sign_in(h, "admin")
        pages = {
            "home": await page(admin, "/dashboard?days=7"),
            "billing": await page(admin, "/dashboard/billing"),
            "fraud": await page(admin, "/dashboard/fraud"),
            "webhooks": await page(admin, "/dashboard/webhooks"),
            "endpoint": await page(admin, f"/dashboard/webhooks/endpoints/{endpoint['id']}"),
            "keys": await page(admin, "/dashboard/keys"),
        }
        home = pages["home"]
        assert '<dd id="succeeded">1</dd>' in home and '<dd id="failed">1</dd>' in home
        assert '<dd id="success-rate">50.0%</dd>' in home
        assert 'role="img"' in home and '<title id="declines-title">Declines by reason' in home
        assert f'data-label="{reason}"' in home
        assert "$20.00" in home  # the day's volume, in the chart's point title and the table
        assert "Gold plan" in pages["billing"] and "$12.34" in pages["billing"]
        assert "Quarter" in pages["billing"] and clock["id"] in pages["billing"]
        assert "review if :amount: &gt; 90000" in pages["fraud"] and rule["id"] in pages["fraud"]
        assert "http://127.0.0.1:9/hook" in pages["webhooks"]
        assert h.key[-4:] in pages["keys"] and "sk_test_..." in pages["keys"]
        for name, html in pages.items():
            assert h.key not in html, name
            assert endpoint["secret"] not in html, name
            assert "whsec_" not in html, name

    run(db, tmp_path, test)


def test_a_support_user_cannot_see_or_roll_keys(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        support = await sign_in(h, "support")
        home = await page(support, "/dashboard")
        assert 'href="/dashboard/keys"' not in home
        assert (await support.get("/dashboard/keys")).status_code == 403
        key_id = (await h.app.keys.list(h.account))[0]["id"]
        r = await support.post(
            f"/dashboard/keys/{key_id}/roll", data={"csrf_token": csrf_of(home), "expires_in": "0"}
        )
        assert r.status_code == 403
        assert h.key not in r.text
        assert (await h.http.get("/v1/payment_intents")).status_code == 200  # not rolled
        viewer = await sign_in(h, "view_only")
        assert (await viewer.get("/dashboard/keys")).status_code == 403

    run(db, tmp_path, test)


def test_rolling_a_key_shows_the_new_one_once_and_stops_the_old(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        admin = await sign_in(h, "admin")
        keys = await page(admin, "/dashboard/keys")
        key_id = (await h.app.keys.list(h.account))[0]["id"]
        r = await admin.post(
            f"/dashboard/keys/{key_id}/roll", data={"csrf_token": csrf_of(keys), "expires_in": "0"}
        )
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        new_key = re.search(r'id="new-key"[^>]*value="(sk_test_\w+)"', r.text)
        assert new_key, r.text
        fresh = new_key.group(1)
        assert fresh != h.key
        assert (await h.http.get("/v1/payment_intents")).status_code == 401
        with_new = await h.http.get(
            "/v1/payment_intents", headers={"authorization": f"Bearer {fresh}"}
        )
        assert with_new.status_code == 200
        after = await page(admin, "/dashboard/keys")
        assert fresh not in after and "rolled to" in after
        audit = await h.sql(
            "select actor, action from audit_log where account_id = :a and action = 'key.roll'",
            a=h.account,
        )
        assert [tuple(row) for row in audit] == [("dashboard:admin@example.com", "key.roll")]

    run(db, tmp_path, test)


async def held_for_review(h: Harness, amount: int) -> tuple[str, str]:
    await ok(h, "/v1/fraud/rules", {"rule": "review if :amount: > 1000"})
    pi = await ok(h, "/v1/payment_intents", {"amount": amount, "currency": "usd"})
    r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_visa"})
    assert r.status_code == 200, r.text
    assert h.body(r)["status"] == "requires_capture"
    reviews = (await h.get("/v1/reviews?open=true"))["data"]
    assert len(reviews) == 1
    return str(pi["id"]), str(reviews[0]["id"])


def test_approving_a_review_twice_captures_once(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        pi_id, review_id = await held_for_review(h, 3000)
        support = await sign_in(h, "support")
        fraud = await page(support, "/dashboard/fraud")
        found = _ACTION_KEY.search(fraud)
        assert found and found.group(1) == review_id
        form = {"csrf_token": csrf_of(fraud), "idempotency_key": found.group(2)}
        first = await support.post(f"/dashboard/fraud/reviews/{review_id}/approve", data=form)
        second = await support.post(f"/dashboard/fraud/reviews/{review_id}/approve", data=form)
        assert (first.status_code, second.status_code) == (303, 303)
        assert h.gw.money_captured(pi_id) == 3000
        assert h.gw.calls["capture"] == 1
        review = await h.get(f"/v1/reviews/{review_id}")
        assert (review["open"], review["closed_reason"]) == (False, "approved")
        assert review_id not in await page(support, "/dashboard/fraud")

    run(db, tmp_path, test)


def test_a_view_only_user_cannot_decide_and_a_post_without_csrf_is_refused(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        _, review_id = await held_for_review(h, 2000)
        viewer = await sign_in(h, "view_only")
        fraud = await page(viewer, "/dashboard/fraud")
        assert "/approve" not in fraud  # no decision forms for this role
        r = await viewer.post(
            f"/dashboard/fraud/reviews/{review_id}/approve",
            data={"csrf_token": csrf_of(fraud), "idempotency_key": "dash_x"},
        )
        assert r.status_code == 403
        admin = await sign_in(h, "admin")
        r = await admin.post(
            f"/dashboard/fraud/reviews/{review_id}/reject", data={"idempotency_key": "dash_y"}
        )
        assert r.status_code == 403
        assert h.gw.calls["capture"] == 0 and h.gw.calls.get("cancel", 0) == 0
        assert (await h.get(f"/v1/reviews/{review_id}"))["open"] is True

    run(db, tmp_path, test)


def test_a_bad_rule_is_refused_with_its_reason_and_a_dry_run_saves_nothing(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        admin = await sign_in(h, "admin")
        token = csrf_of(await page(admin, "/dashboard/fraud"))
        bad = await admin.post(
            "/dashboard/fraud/rules", data={"csrf_token": token, "rule": "block if :amount >"}
        )
        assert bad.status_code == 400
        assert 'id="rule-error"' in bad.text
        dry = await admin.post(
            "/dashboard/fraud/rules",
            data={"csrf_token": token, "rule": "block if :amount: > 5", "dry_run": "1"},
        )
        assert dry.status_code == 200 and 'id="dry-run"' in dry.text
        assert (await h.get("/v1/fraud/rules"))["data"] == []
        saved = await admin.post(
            "/dashboard/fraud/rules", data={"csrf_token": token, "rule": "block if :amount: > 5"}
        )
        assert saved.status_code == 303
        rules = (await h.get("/v1/fraud/rules"))["data"]
        assert [r["rule"] for r in rules] == ["block if :amount: > 5"]

    run(db, tmp_path, test)


def test_resending_a_webhook_from_the_page_delivers_the_same_event_again(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness) -> None:
        runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
        try:
            with Receiver(lambda n: (200, "thanks")) as rx:
                endpoint = await ok(
                    h,
                    "/v1/webhook_endpoints",
                    {
                        "url": rx.url,
                        "enabled_events": ["customer.created"],
                    },
                )
                await ok(h, "/v1/customers", {"email": "a@example.com"})
                await runner.drain()
                assert len(rx.requests()) == 1
                event_id = rx.requests()[0].event["id"]
                admin = await sign_in(h, "admin")
                path = f"/dashboard/webhooks/endpoints/{endpoint['id']}"
                shown = await page(admin, path)
                assert event_id in shown and "HTTP 200" in shown and "thanks" in shown
                r = await admin.post(
                    f"{path}/resend", data={"csrf_token": csrf_of(shown), "event": event_id}
                )
                assert r.status_code == 303
                await runner.drain()
                assert [q.event["id"] for q in rx.requests()] == [event_id, event_id]
                audit = await h.sql(
                    "select actor from audit_log where account_id = :a"
                    " and action = 'webhook_endpoint.resend'",
                    a=h.account,
                )
                assert [row[0] for row in audit] == ["dashboard:admin@example.com"]
        finally:
            await runner.client.aclose()

    run(db, tmp_path, test)
