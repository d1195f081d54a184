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
