"""Reactions to an event run in the transaction that emits it, each in a savepoint (review
r6, Low): a reaction that raises is undone alone and logged; the change that emitted the
event, the event itself and the other reactions' writes commit. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.services import context
from paymux.services.context import emit, react_to
from paymux.storage.db import Database
from support.pgcluster import PgCluster

_names = itertools.count()
TYPE = "customer.created"


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"react_{next(_names)}")


def test_a_failing_reaction_never_undoes_the_change_that_emitted_the_event(
    db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def breaks(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
        await s.execute(text("update accounts set name = 'half-written' where id = :a"),
                        {"a": account_id})
        raise RuntimeError("reaction broke")

    async def notes(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
        await s.execute(text("update accounts set created_us = 3 where id = :a"),
                        {"a": account_id})
        seen.append(str(obj["id"]))

    seen: list[str] = []
    monkeypatch.setattr(context, "_REACTIONS", {})  # this test's reactions only
    react_to(TYPE, breaks)
    react_to(TYPE, notes)

    async def scenario() -> tuple[int, str, int]:
        database = Database(db, pool_size=1)
        try:
            async with database.write() as s:
                await s.execute(text(
                    "insert into accounts (id, name, created_us) values ('acct_r', 'Shop', 1)"))
                await emit(s, "acct_r", TYPE, {"id": "cus_r", "object": "customer"}, 2)
            async with database.read() as s:
                events = (await s.execute(text(
                    "select count(*) from events where object_id = 'cus_r'"))).scalar_one()
                name, created = (await s.execute(text(
                    "select name, created_us from accounts where id = 'acct_r'"))).one()
            return int(events), str(name), int(created)
        finally:
            await database.dispose()

    # The event and the change stand; the failing reaction's write is undone; the next
    # reaction's write (created_us 3) commits.
    assert asyncio.run(scenario()) == (1, "Shop", 3)
    assert seen == ["cus_r"]
    assert "reaction breaks to customer.created failed" in caplog.text


class _Plain:
    """The emitter's plain row (as services/attempts.py's settle row): no session holds it."""

    def __init__(self, id: str) -> None:
        self.id = id
        self.note: str | None = None


def test_a_reaction_without_statements_runs_outside_a_savepoint_and_its_error_is_logged(
    db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``react_to_row``'s ``without_statements``: when it holds, the reaction runs without a
    savepoint (on PostgreSQL the transaction is not made an ORM session: storage/db.py
    ``_LeanSession``); an error is logged and the emitter's change stands. When it does not
    hold, or raises, the reaction runs in its savepoint as any other."""
    calls: list[tuple[str, bool]] = []

    async def marks(
        s: AsyncSession, account_id: str, obj: dict[str, Any], now: int, row: Any
    ) -> None:
        in_savepoint = s.in_nested_transaction()
        calls.append((str(obj["id"]), in_savepoint))
        if isinstance(row, _Plain):
            row.note = "set"
        if obj.get("breaks"):
            raise RuntimeError("plain reaction broke")

    def plain(obj: dict[str, Any], row: Any) -> bool:
        if obj.get("gate_breaks"):
            raise ValueError("gate broke")
        return isinstance(row, _Plain)

    monkeypatch.setattr(context, "_REACTIONS", {})  # this test's reactions only
    context.react_to_row(TYPE, marks, without_statements=plain)

    async def scenario() -> tuple[int, list[bool]]:
        database = Database(db, pool_size=1)
        rows = [_Plain("cus_a"), _Plain("cus_b")]
        try:
            async with database.write() as s:
                await s.execute(text(
                    "insert into accounts (id, name, created_us) values ('acct_p', 'Shop', 1)"))
                await emit(s, "acct_p", TYPE, {"id": "cus_a"}, 2, subject=rows[0])
                await emit(s, "acct_p", TYPE, {"id": "cus_b", "breaks": True}, 2, subject=rows[1])
                await emit(s, "acct_p", TYPE, {"id": "cus_c"}, 2, subject=None)
                await emit(s, "acct_p", TYPE, {"id": "cus_d", "gate_breaks": True}, 2)
            async with database.read() as s:
                events = (await s.execute(text(
                    "select count(*) from events where account_id = 'acct_p'"))).scalar_one()
            return int(events), [r.note == "set" for r in rows]
        finally:
            await database.dispose()

    assert asyncio.run(scenario()) == (4, [True, True])
    # Plain rows: no savepoint; no row, or a gate that broke: in a savepoint.
    assert calls == [("cus_a", False), ("cus_b", False), ("cus_c", True), ("cus_d", True)]
    assert "reaction marks to customer.created failed" in caplog.text
    assert "gate plain of a reaction to customer.created failed" in caplog.text
