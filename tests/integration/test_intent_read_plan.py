"""The read of one payment intent by id (services/payments.py ``_INTENT_ROW``: GET of an
intent, a confirm's read, its locked read) touches the intent's row, not every intent of the
account (PostgreSQL, real server).

asyncpg prepares each statement once per connection, and after five runs PostgreSQL keeps a
generic plan for it (no values known). On a table without statistics (a new deployment's,
until autovacuum's first ANALYZE), the plan kept for ``id = :pi_id AND account_id = :a`` used
the (account, created) index on the account alone, the id as a filter: a walk of every intent
of the account (885 pages a GET after 4,000 payments in issue 10's bench). The read is now by
the primary key alone, the account checked on the row. The measure is the pages the statement
touches (``EXPLAIN (ANALYZE, BUFFERS)``): a count, not a time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from conftest import migrated_database_url
from paymux.services import payments
from paymux.storage.db import Database
from support.pgcluster import PgCluster

_names = itertools.count()
ACCOUNT = "acct_pi_read"
OTHER = "acct_pi_other"
ROWS = 3000  # the account's intents
# A look-up by key: an index page or three and a heap page. A walk of the account's rows
# touches a page per row.
MOST_PAGES = 12


@pytest.fixture
def db(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"piread_{next(_names)}")


def _pages(plan: Any) -> int:
    top = json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def test_an_intent_is_read_by_its_key_not_among_the_account_s(db: str) -> None:
    # The statement as asyncpg prepares it: ``$n`` parameters typed as the ORM binds them.
    compiled = payments._OWNED_INTENT[False].compile(
        dialect=postgresql.dialect(paramstyle="numeric_dollar")
    )
    order = compiled.positiontup or []
    prepare = f"PREPARE read_pi({', '.join('varchar' for _ in order)}) AS {compiled}"

    def execute(pi_id: str) -> str:
        """EXECUTE of the prepared read (EXECUTE takes no parameters of its own: the values
        as literals, the test's own plain texts)."""
        values = {"pi_id": pi_id, "account_id": ACCOUNT}
        return f"EXECUTE read_pi({', '.join(repr(values[name]) for name in order)})"

    async def main() -> tuple[list[int], list[list[tuple[str, str]]]]:
        database = Database(db)
        try:
            async with database.write() as s:
                await s.execute(
                    text(
                        "INSERT INTO accounts (id, name, created_us)"
                        " VALUES (:a, 'l', 1), (:o, 'o', 1)"
                    ),
                    {"a": ACCOUNT, "o": OTHER},
                )
                insert = text(
                    "INSERT INTO payment_intents (id, account_id, status, amount, currency,"
                    " amount_capturable, amount_received, amount_refunded,"
                    " amount_refund_pending, capture_method, off_session, gateway, metadata,"
                    " confirm_count, livemode, created_us, updated_us)"
                    " SELECT :prefix || g, :a, 'succeeded', 2000, 'usd', 0, 2000, 0, 0,"
                    " 'automatic', false, 'sandbox', '{}', 1, false, g, g"
                    " FROM generate_series(1, CAST(:n AS INTEGER)) AS g"
                )
                await s.execute(insert, {"prefix": "pi_own_", "a": ACCOUNT, "n": ROWS})
                await s.execute(insert, {"prefix": "pi_theirs_", "a": OTHER, "n": 1})
            pages: list[int] = []
            found: list[list[tuple[str, str]]] = []
            # One connection (a prepared statement is its connection's), no ANALYZE since the
            # rows came: five runs with their values, then the plan PostgreSQL keeps.
            async with database.writer.connect() as conn:
                await conn.execute(text(prepare))
                for i in range(6):
                    await conn.execute(text(execute(f"pi_own_{i + 1}")))
                for pi_id in ("pi_own_2000", "pi_own_1", "pi_nobody", "pi_theirs_1"):
                    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + execute(pi_id)
                    pages.append(_pages((await conn.execute(text(explain))).scalar_one()))
                    rows = await conn.execute(text(execute(pi_id)))
                    found.append([(row.id, row.account_id) for row in rows])
                await conn.execute(text("DEALLOCATE read_pi"))
                await conn.commit()
            return pages, found
        finally:
            await database.dispose()

    pages, found = asyncio.run(main())
    assert max(pages) <= MOST_PAGES, pages
    # By id, whoever's: the account is the caller's check (``_of_account``, 404 otherwise:
    # tests/e2e/test_tenancy_mode_walk.py and the tenancy walks).
    assert found == [
        [("pi_own_2000", ACCOUNT)],
        [("pi_own_1", ACCOUNT)],
        [],
        [("pi_theirs_1", OTHER)],
    ]
