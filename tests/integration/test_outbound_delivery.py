"""Outbound webhook delivery, driven step by step: paymux in-process (support/harness.py) on
a real database with a clock the test moves, the delivery loop run by hand, and a real
receiver on 127.0.0.1 (support/webhook_receiver.py). Retries, giving up, the 5-day
automatic disable and 410 are shown on the default schedule without waiting: the test moves
the clock. Each delivery is checked with the official ``standardwebhooks`` verifier.

The schedule is stated here independently of paymux/outbound/schedule.py: Standard Webhooks'
example (5 s, 5 min, 30 min, 2 h, 5 h, then 10 h) with 11 retries, about 3 days.

Also: an answer holding a NUL (PostgreSQL's text refuses it) is stored replaced and costs no
other endpoint its outcome; a batch the database refuses is recorded one outcome at a time;
a hanging connect is reported as a connect timeout; signing secrets are never logged; an
answer past the size cap is cut, not waited for; a roll's grace period ends; events of one
object arriving out of order carry their order (``Paymux-Object-Sequence``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from paymux.outbound.delivery import DeliveryRunner, Outcome, Send
from paymux.outbound.dispatch import dispatch_once
from paymux.security.envelope import generate_key_entry
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

RETRIES = [5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000]
DAY = 24 * 3600


db = migrated_database_fixture("outbound")
pg = migrated_database_fixture("outbound_pg", ["postgres"])
sqlite = migrated_database_fixture("outbound_sqlite", ["sqlite"])

REPLACEMENT = "\ufffd"  # what a NUL in an answer is stored as


@asynccontextmanager
async def paymux(
    url: str, tmp: Path, **settings: Any
) -> AsyncIterator[tuple[Harness, DeliveryRunner]]:
    settings.setdefault("webhook_retry_jitter", 0.0)  # retries exactly on the schedule
    async with Harness.open(url, tmp, encryption_keys=generate_key_entry("k1"), **settings) as h:
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


def test_failures_at_once_come_back_spread_by_the_jitter(db: str, tmp_path: Path) -> None:
    """The worker applies PAYMUX_WEBHOOK_RETRY_JITTER (0.1, the default): ten deliveries
    failing at the same moment are each due again 5 s later give or take 10 % (4.5-5.5 s),
    and not all at the same moment."""

    async def main() -> None:
        with Receiver(always(500)) as rx:
            async with paymux(db, tmp_path, webhook_retry_jitter=0.1) as (h, runner):
                ep = await endpoint(h, rx.url)
                for n in range(10):
                    await customer(h, f"jitter{n}@example.com")
                await runner.drain()
                assert len(rx.requests()) == 10
                now = h.app.ctx.now_us()
                rows = await h.sql(
                    "select next_attempt_us from webhook_deliveries where endpoint_id = :e",
                    e=ep["id"],
                )
                delays = [(int(due) - now) / 1_000_000 for (due,) in rows]
                assert len(delays) == 10
                assert all(4.5 <= d <= 5.5 for d in delays), delays
                assert len(set(delays)) > 1, delays  # spread, not one wave

    run(main())


def test_a_receiver_that_recovers_gets_every_event_each_verified(db: str, tmp_path: Path) -> None:
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
                # A resend: the same event once more (exactly one request), under the same id.
                first = sorted(expected)[0]
                sent_before = [q.event["id"] for q in rx.requests()].count(first)
                assert sent_before >= 1
                r = await h.post(f"/v1/webhook_endpoints/{ep['id']}/resend", {"event": first})
                assert r.status_code == 200, r.text
                await runner.drain()
                sent = [q.event["id"] for q in rx.requests()].count(first)
                assert sent == sent_before + 1
                resent = rx.requests()[-1]
                assert (resent.event["id"], resent.headers["webhook-id"]) == (first, first)
                assert resent.status == 200
                verifier.verify(resent.body, resent.headers)

    run(main())


def test_once_a_rolls_grace_period_ends_only_the_new_secret_signs(db: str, tmp_path: Path) -> None:
    """Rolled with grace_period=60: 59 s later a delivery carries two signatures (either
    secret verifies); 61 s after the roll it carries one, the new secret's: the old secret
    no longer verifies with the official ``standardwebhooks`` verifier."""

    async def main() -> None:
        with Receiver() as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url, enabled_events=["customer.created"])
                old = str(ep["secret"])
                r = await h.post(
                    f"/v1/webhook_endpoints/{ep['id']}/roll_secret", {"grace_period": 60}
                )
                assert r.status_code == 200, r.text
                new = str(h.body(r)["secret"])
                h.advance(59)
                await customer(h, "in-grace@example.com")
                await runner.drain()
                h.advance(2)
                await customer(h, "after-grace@example.com")
                await runner.drain()
                within, after = rx.requests()
                assert within.event["data"]["object"]["email"] == "in-grace@example.com"
                assert len(within.headers["webhook-signature"].split(" ")) == 2
                for secret in (old, new):
                    standardwebhooks.Webhook(secret).verify(within.body, within.headers)
                assert after.event["data"]["object"]["email"] == "after-grace@example.com"
                assert len(after.headers["webhook-signature"].split(" ")) == 1
                standardwebhooks.Webhook(new).verify(after.body, after.headers)
                with pytest.raises(standardwebhooks.WebhookVerificationError):
                    standardwebhooks.Webhook(old).verify(after.body, after.headers)

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


def test_410_gone_disables_the_endpoint_at_once(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 410 disables the endpoint: no retry, a webhook_endpoint.disabled event, a log line
    naming the endpoint and why."""

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
                lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert f"webhook endpoint {ep['id']} disabled (gone)" in lines
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
                r = await h.http.post(
                    "/v1/customers", json={"email": "x@example.com"}, headers=live
                )
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


def test_any_2xx_is_delivered_and_a_redirect_is_a_failure_not_followed(
    db: str, tmp_path: Path
) -> None:
    """202, 204 and 299 each count as delivered (no retry, a day later); a 302 is a failed
    attempt, its Location never requested (the target receiver sees nothing), retried."""

    async def redirecting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 302 Found\r\nlocation: " + target.url.encode() + b"\r\n"
            b"content-length: 0\r\nconnection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(redirecting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        codes = [202, 204, 299]
        try:
            with Receiver(lambda n: (codes[n % 3], "")) as rx:
                async with paymux(db, tmp_path) as (h, runner):
                    ok = await endpoint(h, rx.url)
                    moved = await endpoint(h, f"http://127.0.0.1:{port}/hooks")
                    for i in range(3):
                        await customer(h, f"r{i}@example.com")
                    await runner.drain()
                    h.advance(DAY)
                    await runner.drain()
                    assert sorted(q.status for q in rx.requests()) == codes  # none again
                    assert target.requests() == []
                    ok_rows = await h.sql(
                        "select status from webhook_deliveries where endpoint_id = :e",
                        e=ok["id"],
                    )
                    assert [r[0] for r in ok_rows] == ["delivered"] * 3
                    moved_rows = await h.sql(
                        "select status, http_status from webhook_attempts where endpoint_id = :e",
                        e=moved["id"],
                    )
                    # 3 events, each tried at once and retried over the day (5 s ... 2 h, 5 h...)
                    assert len(moved_rows) > 3
                    assert {tuple(r) for r in moved_rows} == {("failed", 302)}
        finally:
            server.close()
            await server.wait_closed()

    with Receiver() as target:
        run(main())


def test_a_request_past_the_total_timeout_is_a_failed_attempt_retried_on_schedule(
    db: str, tmp_path: Path
) -> None:
    """The endpoint answers after 2 s, the total timeout is 0.5 s: the attempt is failed
    with a timeout error and no status, and the delivery is due again 5 s later (the first
    retry), not delivered."""

    async def main() -> None:
        with Receiver(delay=2.0) as rx:
            async with paymux(db, tmp_path, webhook_timeout=0.5) as (h, runner):
                ep = await endpoint(h, rx.url)
                await customer(h)
                sent_at = h.clock.now_us()
                await runner.drain()
                assert len(rx.requests()) == 1
                rows = await h.sql(
                    "select status, http_status, error from webhook_attempts where endpoint_id = :e",
                    e=ep["id"],
                )
                assert len(rows) == 1
                status, http_status, error = rows[0]
                assert (status, http_status) == ("failed", None)
                assert error.startswith("timeout")
                due = await h.sql(
                    "select status, next_attempt_us from webhook_deliveries where endpoint_id = :e",
                    e=ep["id"],
                )
                assert [tuple(r) for r in due] == [("pending", sent_at + RETRIES[0] * 1_000_000)]

    run(main())


def test_a_time_range_replayed_to_one_endpoint_sends_those_events_again(
    db: str, tmp_path: Path
) -> None:
    """Three events 100 s apart, delivered to two endpoints; a replay of the middle 100 s to
    the first endpoint sends it the middle event again (same id) and nothing else; the other
    endpoint gets nothing more."""

    async def main() -> None:
        with Receiver() as rx1, Receiver() as rx2:
            async with paymux(db, tmp_path) as (h, runner):
                ep1 = await endpoint(h, rx1.url, enabled_events=["customer.created"])
                await endpoint(h, rx2.url, enabled_events=["customer.created"])
                start = h.clock.now_us() // 1_000_000
                ids = []
                for i in range(3):
                    ids.append(await customer(h, f"t{i}@example.com"))
                    h.advance(100)
                await runner.drain()
                assert len(rx1.requests()) == len(rx2.requests()) == 3
                r = await h.post(
                    f"/v1/webhook_endpoints/{ep1['id']}/replay",
                    {"created_gte": start + 50, "created_lte": start + 150},
                )
                assert r.status_code == 200, r.text
                assert h.body(r)["queued"] == 1
                await runner.drain()
                again = rx1.requests()[3:]
                assert [q.event["data"]["object"]["id"] for q in again] == [ids[1]]
                first = [q for q in rx1.requests()[:3] if q.event["data"]["object"]["id"] == ids[1]]
                assert again[0].headers["webhook-id"] == first[0].headers["webhook-id"]
                assert len(rx2.requests()) == 3

    run(main())


def test_events_of_one_object_carry_their_order_when_they_arrive_out_of_order(
    db: str, tmp_path: Path
) -> None:
    """customer.created fails once (500), customer.updated then arrives first, the retried
    created after it. Each request carries ``Paymux-Object-Sequence``: created 1 (on both
    of its requests), updated 2, so a receiver can tell the later-arriving one is older."""

    async def main() -> None:
        with Receiver(lambda n: (500, "down") if n == 0 else (200, "ok")) as rx:
            async with paymux(db, tmp_path) as (h, runner):
                await endpoint(h, rx.url, enabled_events=["customer.created", "customer.updated"])
                cus = await customer(h, "order@example.com")
                await runner.drain()  # created: answered 500, retried 5 s later
                r = await h.post(f"/v1/customers/{cus}", {"description": "changed"})
                assert r.status_code == 200, r.text
                await runner.drain()  # updated: delivered now
                h.advance(5)
                await runner.drain()  # created's retry: delivered after updated
                arrived = [
                    (q.event["type"], q.status, q.headers.get("paymux-object-sequence"))
                    for q in rx.requests()
                ]
                assert arrived == [
                    ("customer.created", 500, "1"),
                    ("customer.updated", 200, "2"),
                    ("customer.created", 200, "1"),
                ]
                assert {q.event["data"]["object"]["id"] for q in rx.requests()} == {cus}

    run(main())


def test_an_answer_longer_than_the_cap_is_cut_not_waited_for(db: str, tmp_path: Path) -> None:
    """The endpoint answers 200 with ``content-length: 10 MiB``, sends 64 KiB of it and
    then nothing more (the connection held open). The total timeout is 5 s: the attempt is
    succeeded with status 200 (paymux read its 64 KiB cap and stopped), not a timeout; the
    delivery is delivered and the stored body is the first 2000 characters."""
    stop = asyncio.Event()
    chunk = b"y" * (64 * 1024)

    async def hanging(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
            + f"content-length: {10 * 1024 * 1024}\r\n\r\n".encode()
            + chunk
        )
        await writer.drain()
        await stop.wait()  # the rest never comes
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(hanging, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with paymux(db, tmp_path, webhook_timeout=5.0) as (h, runner):
                ep = await endpoint(
                    h, f"http://127.0.0.1:{port}/hooks", enabled_events=["customer.created"]
                )
                await customer(h, "big@example.com")
                await runner.drain()
                assert await attempts(h, ep["id"]) == [("succeeded", 200, "y" * 2000, None)]
                assert await deliveries(h, ep["id"]) == [("delivered", 1)]
        finally:
            stop.set()
            server.close()
            await server.wait_closed()

    run(main())


# -- what is recorded when an answer or the database misbehaves; what is never logged ----


async def deliveries(h: Harness, endpoint_id: str) -> list[tuple[str, int]]:
    rows = await h.sql(
        "select status, attempts from webhook_deliveries where endpoint_id = :e", e=endpoint_id
    )
    return [(r[0], r[1]) for r in rows]


async def attempts(h: Harness, endpoint_id: str) -> list[tuple[Any, ...]]:
    rows = await h.sql(
        "select status, http_status, response_body, error from webhook_attempts"
        " where endpoint_id = :e order by created_us",
        e=endpoint_id,
    )
    return [tuple(r) for r in rows]


def test_a_nul_in_one_endpoints_answer_is_stored_replaced_and_loses_no_outcome(
    db: str, tmp_path: Path
) -> None:
    """X answers 200 with a NUL in its body, Y answers 200 'ok', for one event. Both are
    delivered once, both outcomes recorded; X's body is stored with U+FFFD for the NUL.
    Nothing is sent again once the leases have run out."""

    async def main() -> None:
        with Receiver(lambda n: (200, "bad\x00body")) as rx_x, Receiver() as rx_y:
            async with paymux(db, tmp_path) as (h, runner):
                x = await endpoint(h, rx_x.url, enabled_events=["customer.created"])
                y = await endpoint(h, rx_y.url, enabled_events=["customer.created"])
                await customer(h, "nul@example.com")
                await runner.drain()
                h.advance(runner.lease_us / 1e6 + 1)
                await runner.drain()
                assert len(rx_x.requests()) == 1
                assert len(rx_y.requests()) == 1
                assert await deliveries(h, x["id"]) == [("delivered", 1)]
                assert await deliveries(h, y["id"]) == [("delivered", 1)]
                assert await attempts(h, x["id"]) == [
                    ("succeeded", 200, f"bad{REPLACEMENT}body", None)
                ]
                assert await attempts(h, y["id"]) == [("succeeded", 200, "ok", None)]

    asyncio.run(main())


def test_a_nul_in_an_error_is_stored_replaced_and_the_retry_scheduled(
    db: str, tmp_path: Path
) -> None:
    """A failed outcome whose error text holds a NUL: the attempt is recorded (NUL
    replaced) and the delivery's retry scheduled, 5 s later (the schedule's first step)."""

    async def main() -> None:
        with Receiver() as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url, enabled_events=["customer.created"])
                await customer(h, "err@example.com")
                assert await dispatch_once(h.app.ctx) >= 1
                [job] = await runner._claim(10, 4)
                runner.finished.append((job, Outcome(False, None, 3, None, "reset\x00by peer")))
                sent_at = h.clock.now_us()
                assert await runner.flush() == 1
                assert await attempts(h, ep["id"]) == [
                    ("failed", None, None, f"reset{REPLACEMENT}by peer")
                ]
                rows = await h.sql(
                    "select status, attempts, next_attempt_us from webhook_deliveries"
                    " where endpoint_id = :e",
                    e=ep["id"],
                )
                assert [tuple(r) for r in rows] == [("pending", 1, sent_at + 5_000_000)]

    asyncio.run(main())


def test_a_batch_the_database_refuses_is_recorded_one_outcome_at_a_time(
    pg: str, tmp_path: Path
) -> None:
    """Two sends finish together; one outcome holds a value PostgreSQL refuses (a latency
    past its integer range). The batch's transaction fails; the other outcome is still
    recorded (its delivery delivered), and only the refused one's delivery stays leased,
    to be sent again when its lease runs out."""

    async def main() -> None:
        with Receiver() as rx_bad, Receiver() as rx_good:
            async with paymux(pg, tmp_path) as (h, runner):
                bad = await endpoint(h, rx_bad.url, enabled_events=["customer.created"])
                good = await endpoint(h, rx_good.url, enabled_events=["customer.created"])
                await customer(h, "batch@example.com")
                assert await dispatch_once(h.app.ctx) >= 1
                jobs: dict[str, Send] = {j.endpoint_id: j for j in await runner._claim(10, 4)}
                assert set(jobs) == {bad["id"], good["id"]}
                runner.finished += [
                    (jobs[bad["id"]], Outcome(True, 200, 2**40, "ok", None)),
                    (jobs[good["id"]], Outcome(True, 200, 7, "ok", None)),
                ]
                assert await runner.flush() == 2
                assert await deliveries(h, good["id"]) == [("delivered", 1)]
                assert await attempts(h, good["id"]) == [("succeeded", 200, "ok", None)]
                assert await deliveries(h, bad["id"]) == [("pending", 0)]
                assert await attempts(h, bad["id"]) == []

    asyncio.run(main())


@contextmanager
def listener_with_full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full: the kernel drops new SYNs, so a connect
    to it hangs (no sleeping server needed). Its port."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = int(lsock.getsockname()[1])
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(f)
        yield port
    finally:
        for f in fillers:
            f.close()
        lsock.close()


def test_a_hanging_connect_is_reported_as_a_connect_timeout(sqlite: str, tmp_path: Path) -> None:
    """Connect timeout 0.3 s, total 20 s, an endpoint whose connect hangs: the attempt is a
    failure saying 'connect timeout after 0.3 s' (not 'no answer within 20 s'), and the
    retry is scheduled."""

    async def main() -> None:
        with listener_with_full_backlog() as port:
            async with paymux(
                sqlite, tmp_path, webhook_connect_timeout=0.3, webhook_timeout=20
            ) as (h, runner):
                ep = await endpoint(
                    h, f"http://127.0.0.1:{port}/hooks", enabled_events=["customer.created"]
                )
                await customer(h, "slow@example.com")
                await runner.drain()
                assert await attempts(h, ep["id"]) == [
                    ("failed", None, None, "connect timeout after 0.3 s")
                ]
                assert await deliveries(h, ep["id"]) == [("pending", 1)]

    asyncio.run(main())


def test_endpoint_secrets_never_appear_in_logs(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything logged at DEBUG and up while an endpoint is created, its secret rolled
    with a grace period, two deliveries answered 500 and a retry answered 410 (the endpoint
    disabled): no whsec_ secret, nor its base64 body, in any record or traceback."""
    caplog.set_level(logging.DEBUG)

    async def main() -> list[str]:
        with Receiver(lambda n: (500, "no") if n < 2 else (410, "gone")) as rx:
            async with paymux(db, tmp_path) as (h, runner):
                ep = await endpoint(h, rx.url)
                secrets = [str(ep["secret"])]
                r = await h.post(
                    f"/v1/webhook_endpoints/{ep['id']}/roll_secret", {"grace_period": 600}
                )
                assert r.status_code == 200, r.text
                secrets.append(str(h.body(r)["secret"]))
                await customer(h, "s1@example.com")
                await customer(h, "s2@example.com")
                await runner.drain()
                h.advance(60)
                await runner.drain()
                assert [q.status for q in rx.requests()][:3] == [500, 500, 410]
                rows = await h.sql("select status from webhook_endpoints where id = :e", e=ep["id"])
                assert [r[0] for r in rows] == ["disabled"]
                return secrets

    secrets = asyncio.run(main())
    assert all(s.startswith("whsec_") for s in secrets) and secrets[0] != secrets[1]
    # The capture works: the disable's warning is among the records.
    assert any("disabled (gone)" in rec.getMessage() for rec in caplog.records)
    text = caplog.text + "\n".join(
        rec.getMessage() + repr(rec.args) + str(rec.exc_text or "") for rec in caplog.records
    )
    for secret in secrets:
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
