"""Meter event ingest and aggregation in process (billing/meter_ingest.py, billing/meters.py),
on SQLite and PostgreSQL, through the services the API and the invoices call.

1. ``MetersService.usage`` (what an invoice bills): sum, count and last over
   ``[start, end)`` with literal expected values, an event at ``start`` counted and one at
   ``end`` not; other accounts, other customers and the other mode never counted.
2. The same batch recorded by concurrent requests: stored once.
3. All or nothing, the first bad event by index named, whichever check finds it (a shape or
   value check in Python, or the one customer query of the batch).
4. ``usage`` is one query over ``ix_meter_events_usage`` (the query plan names the index).
5. The request guard's fast path (``body_plainly_clear``) never clears a body the full
   card-number check would refuse or mask: an exponent float (``4.2e15`` is a Visa number),
   escapes, a number split by separators.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from conftest import migrated_database_url
from paymux.billing.meter_ingest import RawEvent, parse_stream
from paymux.billing.meters import MeterParams, usage_query
from paymux.config import Settings
from paymux.domain.errors import PaymuxError
from paymux.security import looks_like_pan
from paymux.security.pan import body_plainly_clear, find_pan_param
from paymux.services import Paymux
from paymux.services.context import current_livemode
from paymux.services.customers import CustomerParams
from support.pgcluster import PgCluster

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
HOUR = 3600
US = 1_000_000
T = TypeVar("T")


@pytest.fixture(scope="module", params=BACKENDS)
def url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> str:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"meters-{backend}")
    db_url = migrated_database_url(backend, tmp, pg_cluster, f"meter_ingest_{backend}")
    return db_url


def run(url: str, tmp: Path, body: Callable[[Paymux], Awaitable[T]]) -> T:
    async def main() -> T:
        app = Paymux(Settings(database_url=url, sandbox_db=str(tmp / "sandbox.db")))
        try:
            return await body(app)
        finally:
            await app.close()

    return asyncio.run(main())


async def setup(app: Paymux, formula: str, customers: int = 1) -> tuple[str, str, list[str]]:
    """(account id, meter id, customer ids) of a fresh account with one meter."""
    account_id = (await app.accounts.create_key()).account_id
    event_name = f"ev_{uuid.uuid4().hex[:8]}"
    meter = await app.meters.create(account_id, MeterParams("m", event_name, formula))  # type: ignore[arg-type]
    ids = [
        (await app.customers.create(account_id, CustomerParams(name=f"c{i}")))["id"]
        for i in range(customers)
    ]
    return account_id, str(meter["id"]), [str(i) for i in ids]


def ev(meter_event: str, cus: str, value: str, ts: int, ident: str | None = None) -> RawEvent:
    return RawEvent(meter_event, {"stripe_customer_id": cus, "value": value}, ident, ts)


async def event_name_of(app: Paymux, account_id: str, meter_id: str) -> str:
    return str((await app.meters.retrieve(account_id, meter_id))["event_name"])


async def usage_of(
    app: Paymux, account_id: str, meter_id: str, cus: str, start: int, end: int, live: bool = False
) -> int:
    async with app.ctx.db.read() as s:
        return await app.meters.usage(s, account_id, live, meter_id, cus, start * US, end * US)


def window() -> tuple[int, int]:
    start = (int(time.time()) // HOUR - 3) * HOUR
    return start, start + HOUR


# -- 1. aggregation ---------------------------------------------------------------------------
@pytest.mark.parametrize(("formula", "expected"), [("sum", 17), ("count", 3), ("last", 2)])
def test_usage_over_a_period_counts_its_start_not_its_end_and_only_this_customer(
    url: str, tmp_path: Path, formula: str, expected: int
) -> None:
    start, end = window()

    async def body(app: Paymux) -> None:
        account_id, meter_id, (cus, other) = await setup(app, formula, customers=2)
        name = await event_name_of(app, account_id, meter_id)
        events = [
            ev(name, cus, "1000", start - 1),  # before
            ev(name, cus, "5", start),  # at the start: counted
            ev(name, cus, "2", end - 1),  # the latest inside
            ev(name, cus, "10", start + 60),
            ev(name, cus, "3000", end),  # at the end: not counted
            ev(name, other, "500", start + 60),  # another customer
        ]
        await app.meters.record_events(account_id, events)
        # Another account's meter with the same event name, its customer's events.
        acct2, meter2, (cus2,) = await setup(app, formula)
        await app.meters.record_events(
            acct2, [ev(await event_name_of(app, acct2, meter2), cus2, "77", start + 60)]
        )
        # The same account in live mode: another meter, never counted in test mode.
        token = current_livemode.set(True)
        try:
            live = await app.meters.create(account_id, MeterParams("live", name, formula))  # type: ignore[arg-type]
            live_cus = (await app.customers.create(account_id, CustomerParams(name="l")))["id"]
            await app.meters.record_events(account_id, [ev(name, live_cus, "900", start + 60)])
        finally:
            current_livemode.reset(token)

        assert await usage_of(app, account_id, meter_id, cus, start, end) == expected
        assert (
            await usage_of(app, account_id, meter_id, other, start, end)
            == ({"sum": 500, "count": 1, "last": 500}[formula])
        )
        assert await usage_of(app, account_id, meter_id, cus2, start, end) == 0
        assert (
            await usage_of(app, acct2, meter2, cus2, start, end)
            == ({"sum": 77, "count": 1, "last": 77}[formula])
        )
        assert await usage_of(app, acct2, meter2, cus, start, end) == 0
        # The live meter is invisible in test mode and counts its own event in live mode.
        with pytest.raises(PaymuxError):
            await usage_of(app, account_id, str(live["id"]), live_cus, start, end)
        assert (
            await usage_of(app, account_id, str(live["id"]), live_cus, start, end, True)
            == ({"sum": 900, "count": 1, "last": 900}[formula])
        )
        # Another account's meter id is unknown here.
        with pytest.raises(PaymuxError):
            await usage_of(app, account_id, meter2, cus2, start, end)

    run(url, tmp_path, body)


# -- 2. concurrency ---------------------------------------------------------------------------
def test_the_same_batch_recorded_concurrently_is_stored_once(url: str, tmp_path: Path) -> None:
    start, end = window()

    async def body(app: Paymux) -> None:
        account_id, meter_id, customers = await setup(app, "sum", customers=3)
        name = await event_name_of(app, account_id, meter_id)
        run_id = uuid.uuid4().hex[:6]
        batch = [
            ev(name, customers[i % 3], str(i + 1), start + i, f"{run_id}-{i}") for i in range(50)
        ]
        await asyncio.gather(*(app.meters.record_events(account_id, batch) for _ in range(6)))
        total = sum([await usage_of(app, account_id, meter_id, c, start, end) for c in customers])
        assert total == 50 * 51 // 2  # 1 + 2 + ... + 50, once
        async with app.ctx.db.read() as s:
            rows = (
                await s.execute(
                    text("select count(*) from meter_events where account_id = :a"),
                    {"a": account_id},
                )
            ).scalar_one()
        assert rows == 50

    run(url, tmp_path, body)


# -- 3. all or nothing ------------------------------------------------------------------------
def test_a_bad_batch_stores_nothing_and_names_its_first_bad_event(url: str, tmp_path: Path) -> None:
    start, end = window()

    async def body(app: Paymux) -> None:
        account_id, meter_id, (cus,) = await setup(app, "sum")
        name = await event_name_of(app, account_id, meter_id)

        def batch(bad_customer_at: int, bad_value_at: int) -> list[RawEvent]:
            events = parse_stream(
                {
                    "events": [
                        {
                            "event_name": name,
                            "payload": {"stripe_customer_id": cus, "value": "1"},
                            "timestamp": start + 60,
                        }
                        for _ in range(5)
                    ]
                }
            )
            events[bad_customer_at] = RawEvent(
                name,
                {"stripe_customer_id": "cus_unknown", "value": "1"},
                None,
                start + 60,
                events[bad_customer_at].where,
            )
            events[bad_value_at] = RawEvent(
                name,
                {"stripe_customer_id": cus, "value": "1.5"},
                None,
                start + 60,
                events[bad_value_at].where,
            )
            return events

        for customer_at, value_at, param in [
            (1, 3, "events[1][payload][stripe_customer_id]"),
            (3, 1, "events[1][payload][value]"),
        ]:
            with pytest.raises(PaymuxError) as error:
                await app.meters.record_events(account_id, batch(customer_at, value_at))
            assert error.value.param == param
        assert await usage_of(app, account_id, meter_id, cus, start, end) == 0

    run(url, tmp_path, body)


# -- 4. the query plan -----------------------------------------------------------------------------
def test_usage_is_one_query_over_the_usage_index(url: str, tmp_path: Path) -> None:
    async def body(app: Paymux) -> str:
        account_id, meter_id, (cus,) = await setup(app, "last")
        query = usage_query(account_id, False, meter_id, cus, 0, 10 * US)
        if not app.ctx.db.is_sqlite:
            # PostgreSQL plans by statistics: on a near-empty table any index is as good as
            # another (CI once saw it range-scan the primary key). Give the account the
            # shape the index is for, 4,000 events over 40 customers and 10 event names,
            # and fresh statistics; then only the usage index narrows to one customer.
            async with app.ctx.db.write() as s:
                await s.execute(
                    text(
                        "INSERT INTO meter_events (account_id, livemode, identifier, event_name,"
                        " customer_id, value, timestamp_us, created_us)"
                        " SELECT :a, false, 'bulk_' || g, 'other_' || (g % 10),"
                        " 'cus_bulk_' || (g % 40), 1, g, g FROM generate_series(1, 4000) g"
                    ),
                    {"a": account_id},
                )
            async with app.ctx.db.write() as s:
                await s.execute(text("ANALYZE meter_events"))
        async with app.ctx.db.read() as s:
            dialect = s.bind.dialect
            sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            if app.ctx.db.is_sqlite:
                rows = (await s.execute(text("EXPLAIN QUERY PLAN " + sql))).all()
                return " ".join(str(r[-1]) for r in rows)
            await s.execute(text("SET LOCAL enable_seqscan = off"))
            rows = (await s.execute(text("EXPLAIN " + sql))).all()
            return " ".join(str(r[0]) for r in rows)

    plan = run(url, tmp_path, body)
    assert "ix_meter_events_usage" in plan, plan


# -- 5. the guard's fast path ------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"events":[{"payload":{"value":4.2e15}}]}',  # 4200000000000000: Luhn-valid Visa
        b'{"n":4.2E15}',
        b'{"note":"4242424242424242"}',
        b'{"note":"4242 4242 4242 4242"}',
        b'{"note":"4242-4242-4242-4242"}',
        b'{"note":"\\u0034242424242424242"}',  # an escaped digit
        b"note=%34242424242424242",  # a percent-escaped digit
        ('{"note":"' + "\uff14\uff12" * 8 + '"}').encode(),  # full-width digits
        b'{"n":4242424242424242}',
        # JSON in the other encodings json.loads reads: NUL bytes between the digits.
        '{"note":"4242424242424242"}'.encode("utf-16-le"),
        '{"note":"4242424242424242"}'.encode("utf-16-be"),
        '{"note":"4242424242424242"}'.encode("utf-16"),  # with its byte order mark
        '{"note":"4242424242424242"}'.encode("utf-32-le"),
        '{"note":"4242424242424242"}'.encode("utf-32"),
    ],
)
def test_the_guards_fast_path_never_clears_a_body_with_a_card_number(body: bytes) -> None:
    import json
    from urllib.parse import unquote

    try:  # each holds a card number, by the full check
        assert find_pan_param(json.loads(body)) is not None
    except ValueError:
        assert looks_like_pan(unquote(body.decode()))
    assert not body_plainly_clear(body)


def test_the_guards_fast_path_clears_a_plain_batch_the_full_check_finds_nothing_in() -> None:
    import json

    events = [
        {
            "event_name": "api_calls",
            "payload": {"stripe_customer_id": "cus_A1b2C3d4E5f6G7h8I9j0K1l2", "value": "42"},
            "identifier": f"run-{i}",
            "timestamp": 1_767_225_600 + i,
        }
        for i in range(100)
    ]
    data: dict[str, Any] = {"events": events}
    body = json.dumps(data).encode()
    assert find_pan_param(data) is None
    assert not looks_like_pan(body.decode())
    assert body_plainly_clear(body)
