"""Several workers claiming due deliveries at once (PostgreSQL, where writers run in parallel).

Each worker reads its claim window without locks, so two racing workers read the same head
rows; the one whose claim comes second loses them to SKIP LOCKED. It must claim past them
(not come back empty while deliveries are due), and a round that lost every row it chose is
still busy (the loop looks again at once instead of sleeping a poll interval).

Then the per-endpoint claims (paymux/outbound/claims.py): two workers make each delivery
exactly once; the per-endpoint limit holds between workers (racing claims, real requests to
an endpoint that answers nothing); an endpoint at its limit does not starve the others;
a lease taken over is delivered once, whatever the late outcome of the first worker."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from paymux.outbound.delivery import DeliveryRunner
from paymux.outbound.dispatch import dispatch_once
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from support.databases import migrated_database_fixture
from support.harness import Harness
from support.webhook_receiver import Receiver

db = migrated_database_fixture("outbound_claims", ["postgres"])

DELIVERIES = 40
SLOTS = 5


async def _pending_backlog(h: Harness) -> None:
    r = await h.post(
        "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/x", "enabled_events": ["*"]}
    )
    assert r.status_code == 200, r.text
    for i in range(DELIVERIES):
        r = await h.post("/v1/customers", {"email": f"a{i}@example.com"})
        assert r.status_code == 200, r.text
    while await dispatch_once(h.app.ctx):
        pass
    [[due]] = await h.sql("select count(*) from webhook_deliveries where status = 'pending'")
    assert due == DELIVERIES  # one customer.created per customer, one endpoint


def test_concurrent_claims_fill_both_workers(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
            await _pending_backlog(h)
            r1 = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            r2 = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            try:
                seen: set[str] = set()
                for _ in range(DELIVERIES // (2 * SLOTS)):  # 4 rounds: 40 rows, 10 a round
                    a, b = await asyncio.gather(r1._claim(SLOTS, 100), r2._claim(SLOTS, 100))
                    ids_a = {j.delivery_id for j in a}
                    ids_b = {j.delivery_id for j in b}
                    assert (len(a), len(b)) == (SLOTS, SLOTS)
                    assert ids_a & ids_b == set()
                    assert (ids_a | ids_b) & seen == set()  # a lease is not claimed again
                    seen |= ids_a | ids_b
                assert len(seen) == DELIVERIES
                [[leased]] = await h.sql(
                    "select count(*) from webhook_deliveries where lease_until_us is not null"
                )
                assert leased == DELIVERIES
            finally:
                await r1.client.aclose()
                await r2.client.aclose()

    asyncio.run(main())


def test_round_that_lost_every_due_row_is_busy(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, encryption_keys=generate_key_entry("k1")) as h:
            await _pending_backlog(h)
            runner = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
            runner._more_events = False  # nothing left to dispatch: this round only claims
            runner._looked_at = time.monotonic()
            try:
                # Another worker holds every due row (its claim not yet committed).
                async with h.app.ctx.db.write() as other:
                    await other.execute(text("select id from webhook_deliveries for update"))
                    assert await runner._claim(SLOTS, 100) == []
                    assert await runner.step() is True  # due work: look again, don't sleep
                    assert not runner.tasks
                # Released: the same runner claims them.
                assert len(await runner._claim(SLOTS, 100)) == SLOTS
            finally:
                await runner.client.aclose()

    asyncio.run(main())


# -- per-endpoint claims (migration 0027, paymux/outbound/claims.py) ----------------------
# Each test below has two workers: two paymux instances on the same database (each its own
# connection pool, as two ``paymux worker`` processes), sharing the test's clock.

both = migrated_database_fixture("outbound_claims_both")
PER = 3  # the per-endpoint limit in these tests


@asynccontextmanager
async def two_workers(
    url: str, tmp: Path, **settings: Any
) -> AsyncIterator[tuple[Harness, DeliveryRunner, DeliveryRunner]]:
    async with Harness.open(
        url,
        tmp,
        encryption_keys=generate_key_entry("k1"),
        webhook_retry_jitter=0.0,
        webhook_endpoint_concurrency=PER,
        **settings,
    ) as h:
        other = Paymux(h.app.settings, clock=h.clock)
        a = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
        b = DeliveryRunner(other.ctx, other.webhook_endpoints)
        try:
            yield h, a, b
        finally:
            await a.client.aclose()
            await b.client.aclose()
            await other.close()


async def _endpoint(h: Harness, url: str) -> str:
    r = await h.post("/v1/webhook_endpoints", {"url": url, "enabled_events": ["customer.created"]})
    assert r.status_code == 200, r.text
    return str(h.body(r)["id"])


async def _customers(h: Harness, n: int, tag: str) -> None:
    for i in range(n):
        r = await h.post("/v1/customers", {"email": f"{tag}{i}@example.com"})
        assert r.status_code == 200, r.text
    while await dispatch_once(h.app.ctx):
        pass


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 60.0) -> None:
    """A bound on waiting for something that must happen (not a speed claim)."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_two_workers_running_make_each_delivery_exactly_once(db: str, tmp_path: Path) -> None:
    """Two workers' delivery loops run side by side over 3 endpoints and 40 events (120
    deliveries; 8 requests in flight per worker, 3 per endpoint): every endpoint gets every
    event exactly once (no request twice), and each delivery has one attempt."""
    events = 40

    async def main() -> None:
        with Receiver() as r1, Receiver() as r2, Receiver() as r3:
            async with two_workers(db, tmp_path, webhook_max_in_flight=8) as (h, a, b):
                for rx in (r1, r2, r3):
                    await _endpoint(h, rx.url)
                await _customers(h, events, "x")
                stop = asyncio.Event()
                loops = [asyncio.create_task(w.run(stop)) for w in (a, b)]

                async def all_delivered() -> bool:
                    [[n]] = await h.sql(
                        "select count(*) from webhook_deliveries where status = 'delivered'"
                    )
                    return bool(n == 3 * events)

                try:
                    await _until("every delivery", all_delivered)
                finally:
                    stop.set()
                    await asyncio.gather(*loops)
                expected = {row[0] for row in await h.sql("select id from events")}
                assert len(expected) == events
                for rx in (r1, r2, r3):
                    ids = [q.headers["webhook-id"] for q in rx.requests()]
                    assert sorted(ids) == sorted(expected)  # each once: no duplicate
                rows = await h.sql("select attempts from webhook_deliveries")
                assert [r[0] for r in rows] == [1] * (3 * events)
                [[attempts]] = await h.sql("select count(*) from webhook_attempts")
                assert attempts == 3 * events

    asyncio.run(main())


def test_racing_claims_keep_each_endpoint_to_its_limit_and_fill_it(db: str, tmp_path: Path) -> None:
    """Two workers claim at the same moment, 5 endpoints with 10 due deliveries each, limit
    3: between them they lease exactly 3 per endpoint (they read the same heads; the rows one
    loses to the other count against the endpoint's room), none twice."""

    async def main() -> None:
        async with two_workers(db, tmp_path) as (h, a, b):
            endpoints = [await _endpoint(h, f"http://127.0.0.1:9/e{i}") for i in range(5)]
            await _customers(h, 10, "r")
            got_a, got_b = await asyncio.gather(a._claim(100, PER), b._claim(100, PER))
            ids_a = {j.delivery_id for j in got_a}
            ids_b = {j.delivery_id for j in got_b}
            assert ids_a & ids_b == set()
            per_endpoint = Counter(j.endpoint_id for j in [*got_a, *got_b])
            assert per_endpoint == {ep: PER for ep in endpoints}
            leased = await h.sql(
                "select endpoint_id, count(*) from webhook_deliveries"
                " where lease_until_us is not null group by endpoint_id"
            )
            assert dict((r[0], r[1]) for r in leased) == {ep: PER for ep in endpoints}

    asyncio.run(main())


def test_an_endpoint_at_its_limit_in_another_worker_gets_no_more_and_others_are_claimed(
    both: str, tmp_path: Path
) -> None:
    """A slow endpoint has 3 requests in flight in worker A (its limit) and 40 more
    deliveries due, older than a fast endpoint's 4: worker B's claim takes the fast
    endpoint's deliveries (3, its limit), none of the slow one's, whatever the backlog
    ahead of them."""

    async def main() -> None:
        async with two_workers(both, tmp_path) as (h, a, b):
            slow = await _endpoint(h, "http://127.0.0.1:9/slow")
            await _customers(h, 40 + PER, "s")
            h.advance(1)
            fast = await _endpoint(h, "http://127.0.0.1:9/fast")
            await _customers(h, 4, "f")  # due after every one of the slow endpoint's
            held = await a._claim(PER, PER)
            assert {j.endpoint_id for j in held} == {slow} and len(held) == PER
            got = await b._claim(10, PER)
            assert [j.endpoint_id for j in got] == [fast] * PER

    asyncio.run(main())


def test_two_workers_sending_never_open_more_than_the_limit_to_one_endpoint(
    both: str, tmp_path: Path
) -> None:
    """An endpoint that answers nothing until released, 12 events, two workers each with
    room for 10 requests: at most 3 (the limit) are ever open at the endpoint, between both
    workers; released, every event arrives."""

    async def main() -> None:
        with Receiver(hold=True) as rx:
            async with two_workers(both, tmp_path, webhook_max_in_flight=10) as (h, a, b):
                await _endpoint(h, rx.url)
                await _customers(h, 12, "h")

                async def limit_reached() -> bool:
                    await asyncio.gather(a.step(look=True), b.step(look=True))
                    return rx.open_now == PER

                await _until("the endpoint's 3 requests", limit_reached)
                for _ in range(5):  # more rounds of both: nothing more is sent
                    await asyncio.gather(a.step(look=True), b.step(look=True))
                    await asyncio.sleep(0.02)
                assert len(rx.requests()) == PER
                rx.release()
                await asyncio.gather(a.drain(), b.drain())
                expected = {row[0] for row in await h.sql("select id from events")}
                assert rx.delivered_ids() == expected
                assert rx.most_open == PER

    asyncio.run(main())


def test_a_lease_taken_over_is_delivered_once_and_the_late_outcome_changes_nothing(
    both: str, tmp_path: Path
) -> None:
    """Worker A claims a delivery and stalls; its lease runs out and worker B takes the
    delivery over. A's request then fails (500) and is recorded late: it is listed as an
    attempt, but schedules no retry over B's lease (a third worker finds nothing due after
    the retry delay, B's lease still running). B's request succeeds: delivered, and never sent again."""

    async def main() -> None:
        with Receiver(lambda n: (500, "no") if n == 0 else (200, "ok")) as rx:
            async with two_workers(both, tmp_path) as (h, a, b):
                ep = await _endpoint(h, rx.url)
                await _customers(h, 1, "l")
                [job_a] = await a._claim(10, PER)
                h.advance(a.lease_us / 1e6 + 1)  # A's lease has run out
                [job_b] = await b._claim(10, PER)
                assert job_b.delivery_id == job_a.delivery_id  # taken over
                await a._deliver(job_a)  # A's late request: 500
                await a.flush()
                # Past the first retry (5 s) A's failure would schedule, within B's lease.
                h.advance(10)
                assert b.lease_us > 10 * 1_000_000
                third = DeliveryRunner(h.app.ctx, h.app.webhook_endpoints)
                try:
                    assert await third._claim(10, PER) == []  # still B's
                    await b._deliver(job_b)  # B's request: 200
                    await b.flush()
                    h.advance(7 * 24 * 3600)
                    await third.drain()
                finally:
                    await third.client.aclose()
                assert [q.status for q in rx.requests()] == [500, 200]  # nothing after
                rows = await h.sql(
                    "select status, lease_until_us from webhook_deliveries where endpoint_id = :e",
                    e=ep,
                )
                assert [tuple(r) for r in rows] == [("delivered", None)]
                attempts = await h.sql(
                    "select http_status from webhook_attempts where endpoint_id = :e"
                    " order by created_us",
                    e=ep,
                )
                assert [r[0] for r in attempts] == [500, 200]

    asyncio.run(main())


def test_a_late_success_after_a_takeover_marks_the_event_delivered(
    both: str, tmp_path: Path
) -> None:
    """A's lease runs out and B takes the delivery over; A's request then succeeds and is
    recorded late: the delivery is delivered (the receiver has the event), and B's failing
    request afterwards does not put it back to be retried."""

    async def main() -> None:
        with Receiver(lambda n: (200, "ok") if n == 0 else (500, "no")) as rx:
            async with two_workers(both, tmp_path) as (h, a, b):
                ep = await _endpoint(h, rx.url)
                await _customers(h, 1, "m")
                [job_a] = await a._claim(10, PER)
                h.advance(a.lease_us / 1e6 + 1)
                [job_b] = await b._claim(10, PER)
                await a._deliver(job_a)
                await a.flush()
                await b._deliver(job_b)
                await b.flush()
                h.advance(7 * 24 * 3600)
                await a.drain()
                assert [q.status for q in rx.requests()] == [200, 500]
                rows = await h.sql(
                    "select status from webhook_deliveries where endpoint_id = :e", e=ep
                )
                assert [r[0] for r in rows] == ["delivered"]

    asyncio.run(main())
