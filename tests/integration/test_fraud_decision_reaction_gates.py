"""``react_to``'s gate (``when``), which the fraud decision's settling reaction uses
(fraud/decisions.py ``on_settled``, gated by ``_counted_unsettled``): a gate that says no
skips its reaction; a gate given no subject (the emitter passed no row) decides from the
object alone; a gate that raises is logged, its reaction still runs, and the emitting
transaction commits. SQLite and PostgreSQL."""

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
from paymux.fraud.decisions import _counted_unsettled
from paymux.services import context
from paymux.services.context import emit, react_to
from paymux.storage.db import Database
from paymux.storage.models import PaymentIntent
from support.pgcluster import PgCluster

_names = itertools.count()
TYPE = "customer.created"


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"gates_{next(_names)}")


def emitted(db: str, subjects: list[tuple[str, Any]]) -> tuple[int, str]:
    """Emit one event per (object id, subject) in one transaction; (events committed, the
    account's name as the transaction left it)."""

    async def scenario() -> tuple[int, str]:
        database = Database(db, pool_size=1)
        try:
            async with database.write() as s:
                await s.execute(
                    text("insert into accounts (id, name, created_us) values ('acct_g', 'Shop', 1)")
                )
                for object_id, subject in subjects:
                    obj = {"id": object_id, "object": "customer"}
                    await emit(s, "acct_g", TYPE, obj, 2, subject=subject)
            async with database.read() as s:
                events = (await s.execute(text("select count(*) from events"))).scalar_one()
                name = (
                    await s.execute(text("select name from accounts where id = 'acct_g'"))
                ).scalar_one()
            return int(events), str(name)
        finally:
            await database.dispose()

    return asyncio.run(scenario())


def test_a_false_gate_skips_its_reaction_and_a_gate_without_subject_decides_alone(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    gated: list[tuple[str, Any]] = []

    async def reaction(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
        ran.append(str(obj["id"]))

    def gate(obj: dict[str, Any], subject: Any) -> bool:
        gated.append((str(obj["id"]), subject))
        return subject is None or subject == "go"

    monkeypatch.setattr(context, "_REACTIONS", {})  # this test's reactions only
    react_to(TYPE, reaction, when=gate)
    got = emitted(db, [("cus_no", "stop"), ("cus_none", None), ("cus_go", "go")])
    assert got == (3, "Shop")
    assert gated == [("cus_no", "stop"), ("cus_none", None), ("cus_go", "go")]
    assert ran == ["cus_none", "cus_go"]


def test_a_gate_that_raises_is_logged_and_its_reaction_runs(
    db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def reaction(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
        await s.execute(
            text("update accounts set name = 'reacted' where id = :a"), {"a": account_id}
        )
        ran.append(str(obj["id"]))

    def broken(obj: dict[str, Any], subject: Any) -> bool:
        raise KeyError("fraud_outcome")

    monkeypatch.setattr(context, "_REACTIONS", {})
    react_to(TYPE, reaction, when=broken)
    # The emitting transaction commits (its event and the reaction's write).
    assert emitted(db, [("cus_r", object())]) == (1, "reacted")
    assert ran == ["cus_r"]
    assert "gate broken of a reaction to customer.created failed" in caplog.text


def test_the_settling_gate_runs_without_a_row_and_skips_a_settled_one() -> None:
    """``on_settled``'s gate, on the rows an emitter passes: no row (run: the reaction reads
    it), no decision, one counted and unsettled, one already settled."""
    obj = {"id": "pi_1", "object": "payment_intent"}
    counted = {"minute": 28_000_000, "counted": False}
    assert _counted_unsettled(obj, None) is True
    assert _counted_unsettled(obj, PaymentIntent(fraud_outcome=None)) is False
    assert _counted_unsettled(obj, PaymentIntent(fraud_outcome=counted)) is True
    settled = {**counted, "counted": True}
    assert _counted_unsettled(obj, PaymentIntent(fraud_outcome=settled)) is False
    assert _counted_unsettled(obj, PaymentIntent(fraud_outcome={"minute": None})) is False
