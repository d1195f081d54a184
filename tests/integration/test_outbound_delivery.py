"""Outbound webhook delivery, driven step by step: paymux in-process (support/harness.py) on
a real database with a clock the test moves, the delivery loop run by hand, and a real
receiver on 127.0.0.1 (support/webhook_receiver.py). Retries, giving up, the 5-day
automatic disable and 410 are shown on the default schedule without waiting: the test moves
the clock. Each delivery is checked with the official ``standardwebhooks`` verifier.

The schedule is stated here independently of paymux/outbound/schedule.py: Standard Webhooks'
example (5 s, 5 min, 30 min, 2 h, 5 h, then 10 h) with 11 retries, about 3 days.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import standardwebhooks

from paymux.outbound.delivery import DeliveryRunner
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

RETRIES = [5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000]
DAY = 24 * 3600


db = migrated_database_fixture("outbound")


@asynccontextmanager
async def paymux(url: str, tmp: Path) -> AsyncIterator[tuple[Harness, DeliveryRunner]]:
    async with Harness.open(
        url, tmp, encryption_keys=generate_key_entry("k1"), webhook_retry_jitter=0.0
    ) as h:
        runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
        try:
            yield h, runner
        finally:
            await runner.client.aclose()


async def endpoint(h: Harness, url: str, **extra: Any) -> dict[str, Any]:
    r = await h.post("/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"], **extra})
    assert r.status_code == 200, r.text
    return h.body(r)


async def customer(h: Harness, email: str = "a@example.com") -> str:
    r = await h.post("/v1/customers", {"email": email})
    assert r.status_code == 200, r.text
    return str(h.body(r)["id"])


async def event_ids(h: Harness, type_: str) -> set[str]:
    rows = await h.sql(
        "select id from events where account_id = :a and type = :t", a=h.account, t=type_
    )
    return {row[0] for row in rows}


def always(status: int, body: str = "") -> Callable[[int], tuple[int, str]]:
    return lambda n: (status, body)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_failing_endpoint_is_retried_on_the_schedule_then_given_up(
    db: str, tmp_path: Path
) -> None:
    """Every retry comes exactly when the schedule says (not a second earlier); after the
    11th retry the delivery is failed; every attempt is listed with its status code and
    the start of the body; the endpoint stays enabled (it has failed for < 5 days)."""

    async def main() -> None:
        with Receiver(always(500, "x" * 10_000)) as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url)
                await customer(h)
                await runner.drain()
                assert len(rx.requests()) == 1
                for n, delay in enumerate(RETRIES, start=2):
                    h.advance(delay - 1)
                    await runner.drain()
                    assert len(rx.requests()) == n - 1, f"retry {n - 1} came early"
                    h.advance(1)
                    await runner.drain()
                    assert len(rx.requests()) == n, f"retry {n - 1} did not come"
                h.advance(7 * DAY)
                await runner.drain()
                assert len(rx.requests()) == 12  # given up: no 13th attempt
                status = await h.sql(
                    "select status, attempts from webhook_deliveries where endpoint_id = :e",
                    e=ep["id"],
                )
                assert [tuple(s) for s in status] == [("failed", 12)]
                page = await h.get(f"/v1/webhook_endpoints/{ep['id']}/attempts?limit=100")
                attempts = page["data"]
                assert len(attempts) == 12
                assert {a["http_status"] for a in attempts} == {500}
                assert {a["status"] for a in attempts} == {"failed"}
                assert all(a["response_body"] == "x" * 2000 for a in attempts)
                assert (await h.get(f"/v1/webhook_endpoints/{ep['id']}"))["status"] == "enabled"
                # One event, the same id on every attempt (how a receiver spots duplicates).
                assert {r.headers["webhook-id"] for r in rx.requests()} == await event_ids(
                    h, "customer.created"
                )

    run(main())


def test_a_receiver_that_recovers_gets_every_event_each_verified(
    db: str, tmp_path: Path
) -> None:
    """The receiver fails its first 4 requests, then recovers: every event arrives, each
    request verifies with the official Standard Webhooks verifier, the payload is Stripe's
    event object, and an event that arrived twice carries the same id both times."""

    async def main() -> None:
        with Receiver(lambda n: (503, "down") if n < 4 else (200, "ok")) as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url, enabled_events=["customer.created"])
                ids = [await customer(h, f"c{i}@example.com") for i in range(3)]
                await h.post(f"/v1/customers/{ids[0]}", {"description": "not delivered"})
                await runner.drain()
                for _ in range(3):
                    h.advance(300)
                    await runner.drain()
                expected = await event_ids(h, "customer.created")
                assert len(expected) == 3
                assert rx.delivered_ids() == expected
                verifier = standardwebhooks.Webhook(ep["secret"])
                for request in rx.requests():
                    event = verifier.verify(request.body, request.headers)
                    assert event["object"] == "event"
                    assert event["type"] == "customer.created"
                    assert event["livemode"] is False
                    assert event["data"]["object"]["object"] == "customer"
                    assert set(event) >= {"id", "created", "api_version", "request", "data"}
                    assert request.headers["webhook-id"] == event["id"]
                assert {r.event["data"]["object"]["id"] for r in rx.requests()} == set(ids)
                # A resend: the same event again, under the same id.
                first = sorted(expected)[0]
                r = await h.post(f"/v1/webhook_endpoints/{ep['id']}/resend", {"event": first})
                assert r.status_code == 200, r.text
                await runner.drain()
                assert [q.event["id"] for q in rx.requests()].count(first) >= 2

    run(main())


def test_an_endpoint_failing_for_five_days_without_a_break_is_disabled(
    db: str, tmp_path: Path
) -> None:
    """Failing since day 0, a success on day 3 resets the count; failing again from day 4,
    it is still enabled on day 8.9 and disabled on day 9 (5 days after day 4), with a
    webhook_endpoint.disabled event; nothing is sent to it afterwards."""
    ok = {"on": False}

    async def main() -> None:
        with Receiver(lambda n: (200, "") if ok["on"] else (500, "")) as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url, enabled_events=["customer.created"])

                async def event_on(day: float, succeeds: bool) -> None:
                    ok["on"] = succeeds
                    await customer(h)
                    await runner.drain()
                    assert rx.requests()[-1].status == (200 if succeeds else 500), day

                await event_on(0, False)
                h.advance(3 * DAY)
                await event_on(3, True)
                h.advance(1 * DAY)
                await event_on(4, False)
                h.advance(4.9 * DAY)
                await event_on(8.9, False)
                view = await h.get(f"/v1/webhook_endpoints/{ep['id']}")
                assert view["status"] == "enabled"
                h.advance(0.1 * DAY)
                await event_on(9, False)
                view = await h.get(f"/v1/webhook_endpoints/{ep['id']}")
                assert (view["status"], view["disabled_reason"]) == ("disabled", "failing")
                disabled = await h.get("/v1/events?type=webhook_endpoint.disabled")
                assert [e["data"]["object"]["id"] for e in disabled["data"]] == [ep["id"]]
                assert "secret" not in disabled["data"][0]["data"]["object"]
                sent = len(rx.requests())
                await customer(h)
                h.advance(DAY)
                await runner.drain()
                assert len(rx.requests()) == sent

    run(main())


def test_410_gone_disables_the_endpoint_at_once(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        with Receiver(always(410, "gone")) as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url)
                await customer(h)
                await runner.drain()
                h.advance(DAY)
                await customer(h)
                await runner.drain()
                assert len(rx.requests()) == 1  # no retry, nothing more
                view = await h.get(f"/v1/webhook_endpoints/{ep['id']}")
                assert (view["status"], view["disabled_reason"]) == ("disabled", "gone")
                disabled = await event_ids(h, "webhook_endpoint.disabled")
                assert len(disabled) == 1
                # Enabled again by the merchant, it receives new events.
                rx.respond = always(200, "")
                r = await h.post(f"/v1/webhook_endpoints/{ep['id']}", {"disabled": False})
                assert h.body(r)["status"] == "enabled"
                await customer(h)
                await runner.drain()
                assert rx.requests()[-1].status == 200

    run(main())


def test_live_endpoints_cannot_reach_private_addresses_even_through_dns(
    db: str, tmp_path: Path
) -> None:
    """A live endpoint naming a private address is refused at registration; one naming a
    host that RESOLVES to loopback (``localhost``) passes registration but every delivery is
    refused at connect time, so the receiver never sees a request."""

    async def main() -> None:
        with Receiver() as rx:
            async with paymux(db, tmp_path) as (h, runner):
                new, _ = await h.app.keys.create(h.account, livemode=True)
                live = {"authorization": f"Bearer {new.key}"}
                for url in (
                    f"https://127.0.0.1:{rx.port}/hooks",
                    "https://10.1.2.3/hooks",
                    "https://169.254.169.254/latest/meta-data",
                    f"https://[::ffff:127.0.0.1]:{rx.port}/hooks",
                    f"https://[::1]:{rx.port}/hooks",
                    "https://192.168.0.10/hooks",
                ):
                    r = await h.http.post(
                        "/v1/webhook_endpoints",
                        json={"url": url, "enabled_events": ["*"]},
                        headers=live,
                    )
                    assert r.status_code == 400, (url, r.text)
                    error = r.json()["error"]
                    assert (error["code"], error["param"]) == ("parameter_invalid", "url"), url
                for url in ("ftp://example.com/x", "http://user:pw@example.com/x"):
                    r = await h.post("/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]})
                    assert r.json()["error"]["code"] == "parameter_invalid", url
                r = await h.http.post(
                    "/v1/webhook_endpoints",
                    json={"url": f"https://localhost:{rx.port}/hooks", "enabled_events": ["*"]},
                    headers=live,
                )
                assert r.status_code == 200, r.text
                ep = r.json()
                assert ep["livemode"] is True
                r = await h.http.post("/v1/customers", json={"email": "x@example.com"}, headers=live)
                assert r.status_code == 200, r.text
                await runner.drain()
                assert rx.requests() == []
                rows = await h.sql(
                    "select status, error from webhook_attempts where endpoint_id = :e",
                    e=ep["id"],
                )
                assert len(rows) == 1 and rows[0][0] == "failed"
                assert rows[0][1].startswith("blocked:")

    run(main())
