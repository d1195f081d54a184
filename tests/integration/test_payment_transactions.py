"""Which transactions a read's statements run in (issue 10, sixth step). SQLite and
PostgreSQL, in process.

- GET of one intent is one statement: no BEGIN before it (SQLite, in sqlite3's autocommit
  mode; PostgreSQL reads it in autocommit). Since issue 10's seventh step it runs on the
  database driver (storage/driver.py ``first_row``): the trace sees SQLAlchemy's statements
  and the driver's (``driver.observe``), so a BEGIN sent either way would show.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from conftest import migrated_database_url
from paymux.storage import driver
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"paytx_{next(_names)}")


class _Trace:
    """Each statement of the app's engines with the number of the transaction it ran in (a
    new number at each BEGIN, per connection), and the gateway calls in between."""

    def __init__(self, h: Harness) -> None:
        self.on = False
        self.log: list[tuple[str, int | None]] = []
        self._txn: dict[int, int] = {}
        self._numbers = itertools.count(1)
        db = h.app.ctx.db
        for engine in {id(e): e for e in (db.writer, db.reader)}.values():
            event.listen(engine.sync_engine, "begin", self._begin)
            event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        self.stop_observing = driver.observe(self._driver_statement)
        gw = h.gw
        original = gw.authorize

        async def authorize(*args: Any, **kwargs: Any) -> Any:
            if self.on:
                self.log.append(("CALL authorize", None))
            return await original(*args, **kwargs)

        gw.authorize = authorize  # type: ignore[method-assign]

    def _begin(self, conn: Any) -> None:
        self._txn[id(conn)] = next(self._numbers)

    def _statement(self, conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if self.on:
            self.log.append((" ".join(sql.split())[:40], self._txn.get(id(conn))))

    def _driver_statement(self, sql: str, seconds: float) -> None:
        if self.on:
            self.log.append((" ".join(sql.split())[:40], None))

    def where(self, prefix: str) -> tuple[int, int | None]:
        """(position, transaction) of the first statement starting with ``prefix``."""
        for i, (sql, txn) in enumerate(self.log):
            if sql.startswith(prefix):
                return i, txn
        raise AssertionError(f"no {prefix!r} in {self.log}")


def test_get_of_one_intent_is_one_statement_without_a_begin(db: str, tmp_path: Path) -> None:
    async def scenario() -> tuple[_Trace, str, dict[str, Any]]:
        async with Harness.open(db, tmp_path) as h:
            made = await h.post("/v1/payment_intents", {"amount": 1500, "currency": "usd"})
            assert made.status_code == 200, made.text
            pi_id = made.json()["id"]
            trace = _Trace(h)
            trace.on = True
            found = await h.app.payments.retrieve(h.account, pi_id)
            trace.on = False
            trace.stop_observing()
            return trace, pi_id, found

    trace, pi_id, found = asyncio.run(scenario())
    assert found["id"] == pi_id and found["amount"] == 1500
    # On SQLite a BEGIN is a statement of its own (db.py's "begin" listener): none is sent.
    # On PostgreSQL asyncpg sends none in autocommit (not a statement seen here either way).
    assert len(trace.log) == 1 and trace.log[0][0].startswith("SELECT"), trace.log
