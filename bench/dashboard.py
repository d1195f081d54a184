"""The dashboard with 1,000,000 payments on PostgreSQL: p50/p99 of the payments page (the
first page, and a page deep in the cursor chain), of filtered searches, and of the home
page's reports (30 and 90 days).

Seeds one account in a throwaway cluster (bench/common.py ``databases``) with
``INSERT ... SELECT generate_series`` (a few seconds): 5,000 customers and N payments spread
over 90 days, 5 % declined (four decline reasons), 2 % canceled, the rest succeeded; USD 70 %,
EUR 20 %, GBP 10 %; four gateways; a customer and an ``order`` metadata value on each. Then
VACUUM ANALYZE, and each page is requested ``--requests`` times in a row through the real app
(ASGI, in this process: the pages' own queries and rendering, no socket), signed in as a
dashboard admin. Latency is per request, wall clock; the 1-minute load average is printed
because other work on the machine skews every figure.

It also prints the plan PostgreSQL picks for the metadata search (EXPLAIN ANALYZE: with
migration 0030 a bitmap scan of the GIN index ``ix_payment_intents_metadata``, not a
sequential scan) and its execution time, which the machine's load skews much less.

Run: ``python bench/dashboard.py [--payments 1000000] [--requests 200]``. Figures go to
docs/benchmarks.md.

``--request-log N`` measures the request log instead (services/request_log.py, on
PostgreSQL): the cost on a request's path of noting N calls (a 300-byte JSON body each, no
I/O), and of the background flushes that write them in batches of 200 (redaction, one
batched INSERT per batch, the trim to the newest 10,000 of the account), per call.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pyotp
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import databases, loadavg, machine, percentile, scalar

from paymux.api.app import create_app
from paymux.config import Settings
from paymux.dashboard.auth import SESSION_COOKIE
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from paymux.services.dashboard_users import DashboardUsers
from paymux.services.request_log import ApiCall, RequestLog
from paymux.storage.migrate import upgrade

DAY_US = 86_400 * 1_000_000
SPAN_US = 90 * DAY_US
PASSWORD = "correct horse battery staple"
_NEXT = re.compile(r'href="(\?[^"]*)" rel="next"')

_CUSTOMERS = """
INSERT INTO customers (id, account_id, email, metadata, gateway_refs, deleted, livemode,
                       balance, created_us, updated_us)
SELECT 'cus_b' || i, :acct, 'c' || i || '@example.com', '{}', '{}', false, false, 0,
       :start, :start
FROM generate_series(0, 4999) AS i
"""

# i = 1..N, created from :start (90 days ago) to now, in order.
_PAYMENTS = """
INSERT INTO payment_intents (
  id, account_id, status, amount, currency, amount_capturable, amount_received,
  amount_refunded, amount_refund_pending, capture_method, customer_id, off_session, gateway,
  last_payment_error, metadata, confirm_count, livemode, created_us, updated_us)
SELECT
  'pi_b' || lpad(i::text, 24, '0'), :acct,
  CASE WHEN i % 20 = 0 THEN 'requires_payment_method'
       WHEN i % 50 = 1 THEN 'canceled' ELSE 'succeeded' END,
  100 + (i::bigint * 7919) % 100000,
  CASE WHEN i % 10 < 7 THEN 'usd' WHEN i % 10 < 9 THEN 'eur' ELSE 'gbp' END,
  0,
  CASE WHEN i % 20 = 0 OR i % 50 = 1 THEN 0 ELSE 100 + (i::bigint * 7919) % 100000 END,
  0, 0, 'automatic', 'cus_b' || (i % 5000), false,
  (ARRAY['sandbox', 'stripe', 'paypal', 'square'])[1 + i % 4],
  CASE WHEN i % 20 = 0 THEN json_build_object(
    'type', 'card_error', 'code', 'card_declined',
    'decline_code', (ARRAY['insufficient_funds', 'do_not_honor', 'lost_card',
                           'generic_decline'])[1 + (i / 20) % 4])
  END,
  jsonb_build_object('order', 'ord_' || i), 1, false,
  :start + (i::bigint * :step), :start + (i::bigint * :step)
FROM generate_series(1, :n) AS i
"""


async def seed(url: str, n: int) -> tuple[Paymux, str, str]:
    """The app, the account id and a signed-in session token."""
    now = time.time_ns() // 1000
    settings = Settings(
        database_url=url,
        encryption_keys=generate_key_entry("k1"),
        run_worker=False,
        sandbox_enabled=False,
        log_json=False,
    )
    app = Paymux(settings)
    new = await app.accounts.create_key()
    users = DashboardUsers(app.ctx, app.connections.keyring)
    made = await users.create(
        email="bench@example.com", password=PASSWORD, role="admin", account_id=new.account_id
    )
    code = pyotp.TOTP(pyotp.parse_uri(made.provisioning_uri).secret).now()
    token = await users.login("bench@example.com", PASSWORD, code, None)
    start = now - SPAN_US
    t0 = time.perf_counter()
    async with app.ctx.db.write() as s:
        await s.execute(text(_CUSTOMERS), {"acct": new.account_id, "start": start})
        await s.execute(
            text(_PAYMENTS),
            {"acct": new.account_id, "start": start, "step": SPAN_US // n, "n": n},
        )
    async with app.ctx.db.writer.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))  # as autovacuum leaves a settled table
    print(f"seeded {n:,} payments and 5,000 customers in {time.perf_counter() - t0:.1f} s")
    return app, new.account_id, token


async def timed(client: httpx.AsyncClient, path: str, requests: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``requests`` GETs of ``path``, after 3 warm-ups."""
    for _ in range(3):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    lat: list[float] = []
    for _ in range(requests):
        t0 = time.perf_counter()
        r = await client.get(path)
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return percentile(lat, 0.5), percentile(lat, 0.99)


async def deep_cursor(client: httpx.AsyncClient, pages: int) -> str:
    """The payments page's path ``pages`` pages down the cursor chain (its "Older" links)."""
    path = "/dashboard/payments"
    for _ in range(pages):
        found = _NEXT.search((await client.get(path)).text)
        assert found, "no next-page link on the payments page"
        path = "/dashboard/payments" + html.unescape(found.group(1))
    return path


_METADATA_SEARCH = """
EXPLAIN (ANALYZE, BUFFERS)
SELECT id FROM payment_intents
WHERE account_id = :acct AND livemode = false AND metadata @> CAST(:doc AS JSONB)
ORDER BY created_us DESC, id DESC LIMIT 26
"""


async def explain_metadata_search(app: Paymux, account: str) -> None:
    """The metadata search's plan and execution time (as the payments page asks it)."""
    async with app.ctx.db.read() as s:
        plan = [
            str(row[0])
            for row in await s.execute(
                text(_METADATA_SEARCH), {"acct": account, "doc": '{"order": "ord_123457"}'}
            )
        ]
    print("metadata search plan:")
    for line in plan:
        print("   ", line)


async def bench_request_log(url: str, calls: int) -> None:
    app = Paymux(Settings(database_url=url, sandbox_enabled=False))
    try:
        account = (await app.accounts.create_key()).account_id
        log = RequestLog(app.ctx, keep=10_000, interval=3600.0, batch=200)
        body = (
            b'{"amount":2000,"currency":"usd","metadata":{"order":"ord_123456",'
            b'"note":"' + b"x" * 200 + b'"},"payment_method":"pm_card_visa"}'
        )
        noting = flushing = 0.0
        for n in range(0, calls, 200):
            started = time.perf_counter()
            for i in range(n, min(n + 200, calls)):
                log.note(
                    ApiCall(
                        account,
                        False,
                        "key_bench",
                        "POST",
                        "/v1/payment_intents",
                        "/v1/payment_intents",
                        200,
                        1500,
                        f"req_{i}",
                        body,
                        app.ctx.now_us(),
                    )
                )
            noting += time.perf_counter() - started
            started = time.perf_counter()
            await log.flush()
            flushing += time.perf_counter() - started
        await log.close()
        kept = await scalar(url, f"select count(*) from request_log where account_id = '{account}'")
        print(
            f"request log: {calls} calls; note {noting / calls * 1e6:.1f} us/call on the "
            f"request path; flush {flushing / calls * 1e6:.1f} us/call in the background "
            f"(batches of 200); {kept} rows kept; load {loadavg():.1f}"
        )
    finally:
        await app.close()


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--request-log", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    print(machine())
    if args.request_log:
        with databases(["postgres"], prefix="paymux-bench-request-log-") as dbs:
            url = dbs.url("postgres", "request_log")
            await asyncio.to_thread(upgrade, url)
            await bench_request_log(url, args.request_log)
        return
    with databases(["postgres"], prefix="paymux-bench-dashboard-") as dbs:
        url = dbs.url("postgres", "dashboard")
        await asyncio.to_thread(upgrade, url)
        print("PostgreSQL", await scalar(url, "show server_version"))
        app, account, token = await seed(url, args.payments)
        await explain_metadata_search(app, account)
        asgi = create_app(app.settings, paymux=app)
        try:
            async with (
                asgi.router.lifespan_context(asgi),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=asgi),
                    base_url="https://paymux.test",
                    cookies={SESSION_COOKIE: token},
                    timeout=120,
                ) as client,
            ):
                today = time.strftime("%Y-%m-%d", time.gmtime())
                cases = [
                    ("payments page, first", "/dashboard/payments"),
                    ("payments page, 20 pages down", await deep_cursor(client, 20)),
                    ("search: failed", "/dashboard/payments?status=failed"),
                    (
                        "search: EUR 500.00-600.00",
                        "/dashboard/payments?currency=eur&amount_min=500.00&amount_max=600.00",
                    ),
                    (
                        "search: gateway square, succeeded",
                        "/dashboard/payments?gateway=square&status=succeeded",
                    ),
                    ("search: one customer", "/dashboard/payments?customer=cus_b4242"),
                    ("search: today", f"/dashboard/payments?created_from={today}"),
                    ("search: metadata order", "/dashboard/payments?metadata=order%3Dord_123457"),
                    ("home, 30 days", "/dashboard?days=30"),
                    ("home, 90 days", "/dashboard?days=90"),
                ]
                print(f"{'page':40} {'p50 ms':>9} {'p99 ms':>9}  load")
                for name, path in cases:
                    p50, p99 = await timed(client, path, args.requests)
                    print(f"{name:40} {p50:9.1f} {p99:9.1f}  {loadavg():.1f}")
        finally:
            await app.close()


if __name__ == "__main__":
    asyncio.run(main())
