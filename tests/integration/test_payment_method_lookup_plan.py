"""The look-up of a payment method reference (services/customers.py ``find_payment_method``,
made by every payment that names a saved card or a new gateway token) touches the rows it
finds, not every payment method of the account (PostgreSQL, real server).

asyncpg prepares each statement once per connection, and after five runs PostgreSQL keeps a
generic plan for it (no values known). On a table without statistics (a new deployment's,
until autovacuum's first ANALYZE), the plan kept for ``id = :ref AND account_id = :a`` used
the (account, gateway, token) unique index on the account alone, the id as a filter: a walk
of every payment method of the account (574 pages for 600 of them, in issue 10's bench with
distinct cards). The look-up by id is now by the primary key alone, the account checked on
the row it finds. The measure is the pages the statement touches (``EXPLAIN (ANALYZE,
BUFFERS)``): a count, not a time.
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
from paymux.services import customers
from paymux.storage.db import Database
from support.pgcluster import PgCluster

_names = itertools.count()
ACCOUNT = "acct_pm_lookup"
OTHER = "acct_pm_other"
ROWS = 3000  # the account's payment methods
# Two look-ups by key: an index and a heap page or two each. A walk of the account's rows
# touches a page per row.
MOST_PAGES = 12


@pytest.fixture
def db(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"pmlookup_{next(_names)}")


def _pages(plan: Any) -> int:
    top = json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def test_a_reference_is_looked_up_by_key_not_among_the_account_s_rows(db: str) -> None:
    # The statement as asyncpg prepares it: ``$n`` parameters typed as the ORM binds them.
    compiled = customers._FIND_IN_MODE[False].compile(
        dialect=postgresql.dialect(paramstyle="numeric_dollar")
    )
    order = compiled.positiontup or []
    prepare = f"PREPARE find_pm({', '.join('varchar' for _ in order)}) AS {compiled}"

    def execute(ref: str) -> str:
        """EXECUTE of the prepared look-up (EXECUTE takes no parameters of its own: the
        values as literals, the test's own plain texts)."""
        values = {"ref": ref, "account_id": ACCOUNT, "gateway": "sandbox"}
        return f"EXECUTE find_pm({', '.join(repr(values[name]) for name in order)})"

    async def main() -> tuple[list[int], list[list[str]], list[str | None]]:
        database = Database(db)
        try:
            async with database.write() as s:
                await s.execute(
                    text(
                        "INSERT INTO accounts (id, name, created_us) VALUES (:a, 'l', 1), (:o, 'o', 1)"
                    ),
                    {"a": ACCOUNT, "o": OTHER},
                )
                insert = text(
                    "INSERT INTO payment_methods (id, account_id, gateway, token, type,"
                    " card_brand, card_last4, livemode, metadata, created_us)"
                    " SELECT :prefix || 'pm_' || g, :a, 'sandbox', :prefix || 'tok_' || g,"
                    " 'card', 'visa', '4242', false, '{}', g"
                    " FROM generate_series(1, CAST(:n AS INTEGER)) AS g"
                )
                await s.execute(insert, {"prefix": "own_", "a": ACCOUNT, "n": ROWS})
                await s.execute(insert, {"prefix": "theirs_", "a": OTHER, "n": 1})
            pages: list[int] = []
            found: list[list[str]] = []
            # One connection (a prepared statement is its connection's), no ANALYZE since the
            # rows came: five runs with their values, then the plan PostgreSQL keeps.
            async with database.writer.connect() as conn:
                await conn.execute(text(prepare))
                for i in range(6):
                    await conn.execute(text(execute(f"own_tok_{i + 1}")))
                for ref in ("own_pm_2000", "own_tok_2500", "tok_nobody", "theirs_pm_1"):
                    explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + execute(ref)
                    pages.append(_pages((await conn.execute(text(explain))).scalar_one()))
                    found.append([row.id for row in await conn.execute(text(execute(ref)))])
                await conn.execute(text("DEALLOCATE find_pm"))
                await conn.commit()
            # The account's own only, through the service's function.
            ours: list[str | None] = []
            async with database.read() as s:
                for ref in ("own_pm_7", "own_tok_8", "theirs_pm_1", "theirs_tok_1"):
                    pm = await customers.find_payment_method(s, ACCOUNT, "sandbox", ref)
                    ours.append(pm.id if pm is not None else None)
            return pages, found, ours
        finally:
            await database.dispose()

    pages, found, ours = asyncio.run(main())
    assert max(pages) <= MOST_PAGES, pages
    # By our id, by the gateway's token, a token no one has; another account's payment method
    # by its id comes back from the statement, and is none of the account's.
    assert found == [["own_pm_2000"], ["own_pm_2500"], [], ["theirs_pm_1"]]
    assert ours == ["own_pm_7", "own_pm_8", None, None]
