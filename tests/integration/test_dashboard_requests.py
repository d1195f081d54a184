"""The request log (issue 15, Developers -> Requests) in process (services, the HTTP app through
ASGI, a clock the test moves) on SQLite and PostgreSQL: an API call's row with its status and
latency, bodies redacted as the logs are (in the table and on the page), another account's and
the other mode's calls invisible, support and view-only users refused, the page's filters and
cursors, the trim to the newest calls, and the buffer written in batches (many calls, one
batched INSERT statement).

The app's log is made with its lifespan (api/app.py); its flusher is told to wait an hour, so
what is written, and when, is the test's ``flush()`` alone."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event

from paymux.security.envelope import generate_key_entry
from paymux.services.context import current_livemode
from paymux.services.request_log import WITHHELD, ApiCall, RequestLog
from paymux.storage.driver import observe
from support.dashboard import harness_client, page
from support.databases import migrated_database_fixture
from support.harness import START_US, Harness

db = migrated_database_fixture("dash_requests")
SECRET_KEY_LOOKALIKE = "sk_test_" + "Zq7" * 10
PASSWORD_VALUE = "hunter2-but-longer"
VISA = "4242424242424242"
_OLDER = re.compile(r'href="(\?[^"]*)" rel="next"')
_ROW = re.compile(r'<tr id="request-(rql_\w+)">')


def run(db: str, tmp: Path, test: Callable[[Harness, RequestLog], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, encryption_keys=generate_key_entry("k1")) as h:
            log: RequestLog = h._asgi.state.request_log
            log.interval = 3600.0  # no flush but the test's own
            log.batch = 10_000
            await test(h, log)

    asyncio.run(main())


async def rows(h: Harness, account_id: str | None = None) -> list[Any]:
    return await h.sql(
        "select method, route, path, status, duration_us, request_id, key_id, body, livemode "
        "from request_log where account_id = :a order by created_us, id",
        a=account_id or h.account,
    )


def call(account_id: str, n: int, **values: Any) -> ApiCall:
    base: dict[str, Any] = {
        "account_id": account_id,
        "livemode": False,
        "key_id": "key_noted",
        "method": "GET",
        "route": "/v1/customers",
        "path": f"/v1/customers/n{n}",
        "status": 200,
        "duration_us": 1500 + n,
        "request_id": f"req_noted{n:03d}",
        "body": b"",
        "at_us": START_US + n * 1_000_000,
    }
    base.update(values)
    return ApiCall(**base)


def test_an_api_call_shows_with_its_status_latency_and_a_redacted_body(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness, log: RequestLog) -> None:
        body = {
            "email": "jo@example.com",
            "metadata": {"note": SECRET_KEY_LOOKALIKE, "password": PASSWORD_VALUE},
        }
        created = await h.post("/v1/customers", body)
        assert created.status_code == 200, created.text
        h.advance(1)  # the clock is frozen: a second later, so the rows' order is known
        missing = await h.http.get("/v1/customers/cus_nosuchcustomer")
        assert missing.status_code == 404
        refused = await h.http.get(
            "/v1/customers", headers={"authorization": "Bearer sk_test_notakeyatall"}
        )
        assert refused.status_code == 401  # no account to show it to: not kept
        assert await log.flush() == 2

        kept = await rows(h)
        assert [(r.method, r.path, r.status) for r in kept] == [
            ("POST", "/v1/customers", 200),
            ("GET", "/v1/customers/cus_nosuchcustomer", 404),
        ]
        post, get = kept
        assert post.request_id == created.headers["request-id"]
        assert get.request_id == missing.headers["request-id"]
        assert get.route != get.path and get.route.startswith("/v1/customers/{")
        key_id = (await h.app.keys.list(h.account))[0]["id"]
        assert post.key_id == key_id and h.key not in str(tuple(post))
        assert post.duration_us > 0 and get.duration_us > 0
        assert get.body is None
        assert "jo@example.com" in post.body  # the body is there, its secrets are not
        assert SECRET_KEY_LOOKALIKE not in post.body and PASSWORD_VALUE not in post.body
        assert "sk_test_***" in post.body and re.search(r'"password": ?"\*\*\*"', post.body)

        dev = await harness_client(h, "developer")
        html = await page(dev, "/dashboard/requests")
        assert 'href="/dashboard/requests"' in html  # in the nav
        assert "/v1/customers/cus_nosuchcustomer" in html and created.headers["request-id"] in html
        assert re.search(r'<td class="status">404</td>', html)
        assert re.search(r'<td class="latency">\d+\.\d ms</td>', html)
        assert SECRET_KEY_LOOKALIKE not in html and PASSWORD_VALUE not in html
        assert "sk_test_***" in html and h.key not in html
        await dev.aclose()

    run(db, tmp_path, test)


def test_a_card_number_and_cvc_in_a_noted_body_are_masked_in_the_table_and_on_the_page(
    db: str, tmp_path: Path
) -> None:
    """The guard refuses a card number in an API body before any key is looked at (so no
    call with one is noted); the log redacts on its own all the same, as the logs do."""

    async def test(h: Harness, log: RequestLog) -> None:
        raw = (
            '{"note": "card ' + VISA + '", "card": {"cvc": "737"}, '
            '"authorization": "Bearer abcdefghijklmnop"}'
        ).encode()
        log.note(call(h.account, 1, method="POST", body=raw))
        log.note(
            call(
                h.account,
                2,
                method="POST",
                body=b"card%5Bnumber%5D=" + VISA.encode() + b"&card%5Bcvc%5D=737",
            )
        )
        assert await log.flush() == 2
        stored = [r.body for r in await rows(h)]
        for body in stored:
            assert VISA not in body and "737" not in body and "abcdefghijklmnop" not in body
        assert "************4242" in stored[0] and '"cvc": "***"' in stored[0]
        assert "card%5Bcvc%5D=***" in stored[1] and "************4242" in stored[1]

        admin = await harness_client(h, "admin")
        html = await page(admin, "/dashboard/requests")
        assert html.count("************4242") == 2
        assert VISA not in html and "abcdefghijklmnop" not in html
        assert "&#34;737&#34;" not in html and "%5D=737" not in html  # the CVCs, as escaped
        assert "&#34;cvc&#34;: &#34;***&#34;" in html and "card%5Bcvc%5D=***" in html
        await admin.aclose()

    run(db, tmp_path, test)


def test_a_connections_body_is_not_kept_since_some_credentials_have_no_known_shape(
    db: str, tmp_path: Path
) -> None:
    """Square's webhook signature key is a plain random string under a name the log redaction
    does not know: the connections routes' bodies are not kept at all."""

    async def test(h: Harness, log: RequestLog) -> None:
        signature_key = "Sq9" * 8
        r = await h.post(
            "/v1/connections",
            {"gateway": "square", "credentials": {"webhook_signature_key": signature_key}},
        )
        assert r.status_code == 400, r.text  # no access token: refused, and still noted
        assert await log.flush() == 1
        (row,) = await rows(h)
        assert (row.route, row.status, row.body) == ("/v1/connections", 400, WITHHELD)
        admin = await harness_client(h, "admin")
        html = await page(admin, "/dashboard/requests")
        assert signature_key not in html and "not kept: gateway credentials" in html
        await admin.aclose()

    run(db, tmp_path, test)


def test_another_accounts_and_the_other_modes_calls_are_invisible(db: str, tmp_path: Path) -> None:
    async def test(h: Harness, log: RequestLog) -> None:
        other = await h.app.accounts.create_key()
        live, _ = await h.app.keys.create(h.account, livemode=True, actor="test")
        theirs = await h.http.get(
            "/v1/customers/cus_theirsonly", headers={"authorization": f"Bearer {other.key}"}
        )
        in_live = await h.http.get(
            "/v1/customers/cus_liveonly", headers={"authorization": f"Bearer {live.key}"}
        )
        mine = await h.http.get("/v1/customers/cus_mineonly")
        assert {theirs.status_code, in_live.status_code, mine.status_code} == {404}
        assert await log.flush() == 3

        dev = await harness_client(h, "developer")
        html = await page(dev, "/dashboard/requests")
        assert "cus_mineonly" in html
        assert "cus_theirsonly" not in html and "cus_liveonly" not in html
        # Their call's id as a cursor is not a call of this account: an empty page, not theirs.
        their_id = (
            await h.sql("select id from request_log where account_id = :a", a=other.account_id)
        )[0][0]
        cursor = await page(dev, f"/dashboard/requests?ending_before={their_id}")
        assert "cus_theirsonly" not in cursor and "No requests." in cursor
        await dev.aclose()

        theirs_dev = await harness_client(h, "developer", account_id=other.account_id)
        html = await page(theirs_dev, "/dashboard/requests")
        assert "cus_theirsonly" in html and "cus_mineonly" not in html
        await theirs_dev.aclose()

        live_rows = [r for r in await rows(h) if r.livemode]
        assert [r.path for r in live_rows] == ["/v1/customers/cus_liveonly"]

    run(db, tmp_path, test)


def test_support_and_view_only_users_are_refused_and_not_shown_the_page(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness, log: RequestLog) -> None:
        log.note(call(h.account, 1, path="/v1/customers/cus_secretive"))
        await log.flush()
        for role in ("support", "view_only"):
            client = await harness_client(h, role)
            r = await client.get("/dashboard/requests")
            assert r.status_code == 403, (role, r.status_code)
            assert "cus_secretive" not in r.text
            assert 'href="/dashboard/requests"' not in await page(client, "/dashboard/payments")
            await client.aclose()
        # (Admins and developers see it: the other tests here read the page as them.)

    run(db, tmp_path, test)


def test_the_page_filters_by_status_class_method_and_path_and_pages_with_cursors(
    db: str, tmp_path: Path
) -> None:
    async def test(h: Harness, log: RequestLog) -> None:
        for n in range(1, 56):  # 55 calls, one second apart: n55 newest
            log.note(call(h.account, n))
        log.note(call(h.account, 60, method="POST", path="/v1/refunds", status=402))
        log.note(call(h.account, 61, method="DELETE", path="/v1/customers/cus_x", status=500))
        await log.flush()
        dev = await harness_client(h, "developer")

        first = await page(dev, "/dashboard/requests?status=2xx")
        shown = _ROW.findall(first)
        assert len(shown) == 50
        assert "/v1/customers/n55" in first and "/v1/customers/n6<" in first
        assert "/v1/customers/n5<" not in first and "POST /v1/refunds" not in first
        older = _OLDER.search(first)
        assert older
        second = await page(dev, "/dashboard/requests" + older.group(1).replace("&amp;", "&"))
        assert len(_ROW.findall(second)) == 5 and "/v1/customers/n1<" in second
        assert not set(_ROW.findall(second)) & set(shown)

        refunds = await page(dev, "/dashboard/requests?status=4xx")
        assert _ROW.findall(refunds) and "POST /v1/refunds" in refunds and "n55" not in refunds
        deletes = await page(dev, "/dashboard/requests?method=delete")
        assert len(_ROW.findall(deletes)) == 1 and "cus_x" in deletes
        by_path = await page(dev, "/dashboard/requests?path=/v1/refunds")
        assert len(_ROW.findall(by_path)) == 1
        bad = await page(dev, "/dashboard/requests?status=6xx&method=PUT&path=nope")
        assert 'id="filter-errors"' in bad
        assert len(_ROW.findall(bad)) == 50  # the bad filters named and left out
        await dev.aclose()

    run(db, tmp_path, test)


def test_the_log_keeps_the_newest_calls_of_each_account_and_mode(db: str, tmp_path: Path) -> None:
    async def test(h: Harness, _: RequestLog) -> None:
        log = RequestLog(h.app.ctx, keep=3, interval=3600.0)
        for n in range(1, 6):
            log.note(call("acct_a", n))
        for n in range(1, 3):
            log.note(call("acct_b", n))
            log.note(call("acct_a", 10 + n, livemode=True))
        await log.flush()
        log.note(call("acct_a", 6))
        await log.close()  # what is left is written on the way out

        def paths(found: list[Any], live: bool) -> list[str]:
            return [r.path for r in found if bool(r.livemode) is live]

        a = await rows(h, "acct_a")
        assert paths(a, False) == ["/v1/customers/n4", "/v1/customers/n5", "/v1/customers/n6"]
        assert paths(a, True) == ["/v1/customers/n11", "/v1/customers/n12"]
        assert [r.path for r in await rows(h, "acct_b")] == [
            "/v1/customers/n1",
            "/v1/customers/n2",
        ]
        log.note(call("acct_a", 7))  # closed: noted no more
        assert log.pending == 0

    run(db, tmp_path, test)


def test_many_calls_are_written_with_one_batched_insert_per_batch(db: str, tmp_path: Path) -> None:
    async def test(h: Harness, log: RequestLog) -> None:
        inserts: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO REQUEST_LOG"):
                inserts.append(statement)

        def driven(sql: str, _: float) -> None:  # PostgreSQL's: a driver statement
            count(None, None, sql)

        engine = h.app.ctx.db.writer.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        stop_driven = observe(driven)
        try:
            for n in range(30):
                r = await h.http.get(f"/v1/customers?limit={n % 5 + 1}")
                assert r.status_code == 200
            assert log.pending == 30 and inserts == []  # nothing written by the requests
            assert await log.flush() == 30
            assert len(inserts) == 1  # 30 calls, one statement
            if not h.app.ctx.db.is_sqlite:  # one execution of column arrays, not one per row
                assert "unnest(" in inserts[0]
            assert len(await rows(h)) == 30

            # A batch of 10: 25 waiting calls are three statements, in one flush.
            small = RequestLog(h.app.ctx, batch=10, interval=3600.0)
            for n in range(25):
                small.note(call("acct_batch", n))
            inserts.clear()
            assert await small.flush() == 25
            assert len(inserts) == 3
            await small.close()
        finally:
            event.remove(engine, "before_cursor_execute", count)
            stop_driven()
        assert len(await rows(h, "acct_batch")) == 25

    run(db, tmp_path, test)


def test_a_batch_keeps_each_calls_values_nulls_and_modes_included(db: str, tmp_path: Path) -> None:
    """The batch's columns (arrays on PostgreSQL) land in their own rows: no value of one call
    in another's row, None kept as NULL, both modes, quotes and non-ASCII text as sent."""

    async def test(h: Harness, _: RequestLog) -> None:
        log = RequestLog(h.app.ctx, interval=3600.0)
        log.note(call("acct_vals", 1, key_id=None, request_id=None, status=402))
        log.note(
            call(
                "acct_vals", 2, livemode=True, method="POST", body=b'{"name": "O\'Brien \xc3\xa9"}'
            )
        )
        log.note(call("acct_vals", 3, route="/v1/refunds", path="/v1/refunds/re_1", duration_us=-5))
        assert await log.flush() == 3
        found = await rows(h, "acct_vals")
        assert [tuple(r) for r in found] == [
            ("GET", "/v1/customers", "/v1/customers/n1", 402, 1501, None, None, None, False),
            (
                "POST",
                "/v1/customers",
                "/v1/customers/n2",
                200,
                1502,
                "req_noted002",
                "key_noted",
                '{"name": "O\'Brien \u00e9"}',
                True,
            ),
            (
                "GET",
                "/v1/refunds",
                "/v1/refunds/re_1",
                200,
                0,
                "req_noted003",
                "key_noted",
                None,
                False,
            ),
        ]
        await log.close()

    run(db, tmp_path, test)


def test_the_page_reads_the_sessions_mode_only(db: str, tmp_path: Path) -> None:
    """The list is scoped by the mode the services are told (``current_livemode``)."""

    async def test(h: Harness, log: RequestLog) -> None:
        log.note(call(h.account, 1, path="/v1/customers/cus_test"))
        log.note(call(h.account, 2, path="/v1/customers/cus_live", livemode=True))
        await log.flush()
        token = current_livemode.set(True)
        try:
            live, _ = await log.list(h.account, limit=10)
        finally:
            current_livemode.reset(token)
        assert [r["path"] for r in live] == ["/v1/customers/cus_live"]
        assert live[0]["latency_ms"] == 1.5 and live[0]["key_id"] == "key_noted"

    run(db, tmp_path, test)
