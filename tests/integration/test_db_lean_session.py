"""PostgreSQL's lean transactions (storage/db.py ``_LeanSession``): ``Database.write()`` starts
as the pooled connection and its BEGIN, runs the driver's statements on it, and becomes an ORM
session only when code uses it as one, on the SAME connection and transaction. Shown on a real
PostgreSQL:

- driver statements, held writes and ORM statements of one block are one transaction (one
  ``txid_current()``), committed together at the block's end;
- a block that touches the ORM without a statement of its own still commits the driver's
  writes (its session's COMMIT is the connection's);
- an error after the ORM took over keeps nothing; a savepoint undoes its own writes only;
- a cancelled block keeps nothing and gives its connection back (test_db_transaction_block.py,
  with and without the ORM);
- a COMMIT that fails (a deferred constraint) raises SQLAlchemy's IntegrityError, keeps
  nothing, and the connection is not reused (the pool holds none checked out; the next block
  works);
- the payment path's transactions (a create with ``confirm=true``, settled: with a gateway's
  shared test token, bench/payments.py's payment; with a saved card; with a token new to
  the account, whose look-up is a read of its own) are never made ORM sessions: what the
  lean path saves is not lost to a stray use.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import exc, text

from conftest import migrated_database_url
from paymux.storage import db as db_module
from paymux.storage import driver
from paymux.storage.db import Database, orm_untouched
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
_INSERT = driver.Statement("INSERT INTO lean_t (id) VALUES (:id)")
_TXID = driver.Statement("SELECT txid_current()")
_PID = driver.Statement("SELECT pg_backend_pid()")


@pytest.fixture
def pg_url(tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL not available")
    yield migrated_database_url("postgres", tmp_path, pg_cluster, f"lean_{next(_names)}")


async def _table(db: Database, deferred: bool = False) -> None:
    async with db.write() as s:
        await s.execute(text("DROP TABLE IF EXISTS lean_t"))
        unique = " DEFERRABLE INITIALLY DEFERRED" if deferred else ""
        await s.execute(text(f"CREATE TABLE lean_t (id TEXT, UNIQUE (id){unique})"))


async def _rows(db: Database) -> list[str]:
    async with db.read() as s:
        return [r[0] for r in await s.execute(text("SELECT id FROM lean_t ORDER BY id"))]


def _out(db: Database) -> int:
    return int(db.writer.pool.checkedout())  # type: ignore[attr-defined]


def _run(
    url: str, block: Callable[[Database], Awaitable[Any]], *, deferred: bool = False
) -> tuple[Any, list[str], int]:
    """``block(db)`` on a fresh ``Database`` with an empty ``lean_t``; then (its result, the
    rows committed, the connections still checked out)."""

    async def main() -> tuple[Any, list[str], int]:
        db = Database(url, pool_size=1)
        try:
            await _table(db, deferred=deferred)
            found = await block(db)
            return found, await _rows(db), _out(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


def test_driver_held_and_orm_statements_are_one_transaction(pg_url: str) -> None:
    async def block(db: Database) -> tuple[list[Any], bool, bool]:
        async with db.write() as s:
            await driver.execute(s, _INSERT, {"id": "a"})
            [(before,)] = await driver.fetch(s, _TXID, {})
            untouched = orm_untouched(s)
            await driver.later(s, _INSERT, {"id": "b"})  # held: sent before the ORM's
            orm = (await s.execute(text("SELECT txid_current()"))).scalar_one()
            await s.execute(text("INSERT INTO lean_t (id) VALUES ('c')"))
            [(after,)] = await driver.fetch(s, _TXID, {})
            return [before, orm, after], untouched, not orm_untouched(s)

    (txids, untouched, touched), rows, out = _run(pg_url, block)
    assert txids[0] == txids[1] == txids[2]
    assert untouched and touched
    assert rows == ["a", "b", "c"]
    assert out == 0


def test_a_touch_of_the_orm_without_a_statement_still_commits_the_driver_writes(
    pg_url: str,
) -> None:
    async def block(db: Database) -> bool:
        async with db.write() as s:
            await driver.execute(s, _INSERT, {"id": "a"})
            await driver.later(s, _INSERT, {"id": "b"})
            s.info["touched"] = True  # the ORM session is made here; no statement of its own
            return orm_untouched(s)

    assert _run(pg_url, block) == (False, ["a", "b"], 0)


def test_an_error_after_the_orm_took_over_keeps_nothing(pg_url: str) -> None:
    async def block(db: Database) -> None:
        with pytest.raises(ValueError, match="the block's own"):
            async with db.write() as s:
                await driver.execute(s, _INSERT, {"id": "a"})
                await s.execute(text("INSERT INTO lean_t (id) VALUES ('b')"))
                await driver.later(s, _INSERT, {"id": "c"})
                raise ValueError("the block's own")

    assert _run(pg_url, block) == (None, [], 0)


def test_a_savepoint_undoes_its_own_writes_only(pg_url: str) -> None:
    async def block(db: Database) -> None:
        async with db.write() as s:
            await driver.execute(s, _INSERT, {"id": "a"})
            await driver.later(s, _INSERT, {"id": "b"})  # before the savepoint: kept
            with pytest.raises(RuntimeError):
                async with s.begin_nested():
                    await driver.execute(s, _INSERT, {"id": "x"})
                    await driver.later(s, _INSERT, {"id": "y"})
                    raise RuntimeError("undo the savepoint")
            await driver.execute(s, _INSERT, {"id": "c"})

    assert _run(pg_url, block) == (None, ["a", "b", "c"], 0)


def test_a_failed_commit_raises_sqlalchemys_error_and_the_connection_is_not_reused(
    pg_url: str,
) -> None:
    async def block(db: Database) -> tuple[bool, int]:
        async with db.write() as s:
            [(first_pid,)] = await driver.fetch(s, _PID, {})
        with pytest.raises(exc.IntegrityError, match=r"(?i)duplicate|unique"):
            async with db.write() as s:
                await driver.execute(s, _INSERT, {"id": "d"})
                await driver.execute(s, _INSERT, {"id": "d"})  # checked at the COMMIT
        out = _out(db)
        async with db.write() as s:
            [(next_pid,)] = await driver.fetch(s, _PID, {})
            await driver.execute(s, _INSERT, {"id": "e"})
        # A new connection (pool of one): the failed one was invalidated, not reused.
        return next_pid != first_pid, out

    assert _run(pg_url, block, deferred=True) == ((True, 0), ["e"], 0)


@pytest.mark.parametrize("held", [False, True], ids=["at-commit", "at-held-writes"])
def test_a_connection_lost_before_the_commit_keeps_nothing_and_is_not_reused(
    pg_url: str, held: bool
) -> None:
    """The server ends the connection mid-transaction (a restart, a failover): the block's
    end fails with SQLAlchemy's error (at the held writes sent before the COMMIT, or at the
    COMMIT), nothing of the block is kept, no connection stays checked out, and the next
    block runs on a new one."""

    async def block(db: Database) -> tuple[bool, int]:
        other = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            with pytest.raises(exc.DBAPIError):
                async with db.write() as s:
                    [(pid,)] = await driver.fetch(s, _PID, {})
                    await driver.execute(s, _INSERT, {"id": "a"})
                    if held:
                        await driver.later(s, _INSERT, {"id": "b"})
                    await other.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await other.close()
        out = _out(db)
        async with db.write() as s:
            [(next_pid,)] = await driver.fetch(s, _PID, {})
            await driver.execute(s, _INSERT, {"id": "z"})
        return next_pid != pid, out

    assert _run(pg_url, block) == ((True, 0), ["z"], 0)


# Each card's payments: how many lean transactions each makes at least (the create's and the
# settle's; a token new to the account also its look-up's read).
_CARDS = {"shared": 2, "saved": 2, "new": 3}


@pytest.mark.parametrize("card", sorted(_CARDS))
def test_a_payments_transactions_are_never_made_orm_sessions(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, card: str
) -> None:
    made: list[str] = []
    real = db_module._LeanSession._orm

    def orm(self: Any) -> Any:
        if self.__dict__[driver.LEAN_ORM] is None:
            made.append("made")
        return real(self)

    prop = property(orm, db_module._LeanSession._set_orm)
    monkeypatch.setattr(db_module._LeanSession, "sync_session", prop)
    monkeypatch.setattr(db_module._LeanSession, "_proxied", prop)

    async def main() -> list[str]:
        async with Harness.open(pg_url, tmp_path) as h:
            # The gateway's published test token (as the sandbox's ``pm_card_visa``, the
            # bench's): each use a payment method of its own, no look-up of it.
            h.gw.shared_tokens.add("tok_visa")
            minted = itertools.count()
            card_of = h.gw._card

            def fresh(token: str) -> Any:  # a fresh token for each use (the sandbox's mint)
                found = card_of(token)
                if token != "tok_visa" or found is None:
                    return found
                return dataclasses.replace(found, token=f"tok_minted_{next(minted)}")

            h.gw._card = fresh  # type: ignore[method-assign]
            # A saved card: one the account recorded from a token of its own, paid by its id.
            saved = h.body(
                await h.post(
                    "/v1/payment_methods", {"type": "card", "card": {"token": "tok_saved"}}
                )
            )["id"]
            new_tokens = (f"tok_new_{i}" for i in itertools.count())  # each new to the account

            def pay_with() -> str:
                return {"shared": "tok_visa", "saved": saved}.get(card) or next(new_tokens)

            async def pay() -> None:
                body = {"amount": 2000, "currency": "usd", "confirm": True}
                r = await h.post("/v1/payment_intents", {**body, "payment_method": pay_with()})
                assert h.body(r)["status"] == "succeeded"

            await pay()  # caches warmed (key, rules)
            made.clear()
            begun: list[str] = []
            stop = driver.observe_transactions(
                lambda name: begun.append(name) if name == "BEGIN" else None
            )
            try:
                for _ in range(3):
                    await pay()
            finally:
                stop()
            return list(made), len(begun)

    made_sessions, lean_begun = asyncio.run(main())
    assert made_sessions == []
    # ... and they were lean ones.
    assert lean_begun >= 3 * _CARDS[card]
