"""``emit``'s one-statement INSERT and the reactions that take the emitter's row
(services/context.py ``react_to_row``; issue 10, fifth step). SQLite and PostgreSQL.

- An event that is not ``*.updated`` reads its object's sequence top inside its own INSERT:
  the numbers are 1, 2, 3... per object and per account, across transactions, and an
  ``*.updated`` event after them goes on from the same top (with its previous values).
- ``react_to_row`` hands the reaction the row the emitter passed (``react_to`` does not),
  in registration order.
- The fraud decision's settling reaction (``on_settled``) sets the settle's plain row's
  ``fraud_settle``, which the settle writes with its own changes: the stored settle is there
  after a payment, and the next event of the intent (the capture) settles nothing again.
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
from sqlalchemy.ext.asyncio import AsyncSession

from conftest import migrated_database_url
from paymux.services import context
from paymux.services.context import emit, react_to, react_to_row
from paymux.storage.db import Database
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"emitseq_{next(_names)}")


async def _accounts(database: Database) -> None:
    async with database.write() as s:
        for account in ("acct_a", "acct_b"):
            await s.execute(
                text("insert into accounts (id, name, created_us) values (:a, 'Shop', 1)"),
                {"a": account},
            )


def test_the_sequence_goes_on_per_object_and_account_across_transactions(db: str) -> None:
    async def scenario() -> list[tuple[str, str, str, int, Any]]:
        database = Database(db, pool_size=1)
        try:
            await _accounts(database)
            cus = {"id": "cus_1", "object": "customer", "name": "Ann"}
            async with database.write() as s:
                await emit(s, "acct_a", "customer.created", cus, 10)
                await emit(s, "acct_a", "customer.deleted", cus, 11)
                await emit(s, "acct_a", "customer.created", {"id": "cus_2"}, 12)
                # The same object id in another account: a sequence of its own.
                await emit(s, "acct_b", "customer.created", cus, 13)
            async with database.write() as s:
                await emit(s, "acct_a", "customer.deleted", cus, 14)
                await emit(s, "acct_a", "customer.updated", {**cus, "name": "Bo"}, 15)
            async with database.read() as s:
                rows = (
                    await s.execute(
                        text(
                            "select account_id, object_id, type, object_seq, "
                            "previous_attributes from events order by created_us"
                        )
                    )
                ).all()
            return [
                (a, o, t, n, json.loads(p) if isinstance(p, str) else p) for a, o, t, n, p in rows
            ]
        finally:
            await database.dispose()

    assert asyncio.run(scenario()) == [
        ("acct_a", "cus_1", "customer.created", 1, None),
        ("acct_a", "cus_1", "customer.deleted", 2, None),
        ("acct_a", "cus_2", "customer.created", 1, None),
        ("acct_b", "cus_1", "customer.created", 1, None),
        ("acct_a", "cus_1", "customer.deleted", 3, None),
        ("acct_a", "cus_1", "customer.updated", 4, {"name": "Ann"}),
    ]


def test_a_row_reaction_gets_the_emitters_row_in_registration_order(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, Any]] = []

    async def plain(s: AsyncSession, account_id: str, obj: dict[str, Any], now: int) -> None:
        ran.append(("plain", obj["id"]))

    async def with_row(
        s: AsyncSession, account_id: str, obj: dict[str, Any], now: int, subject: Any
    ) -> None:
        ran.append(("row", subject))

    monkeypatch.setattr(context, "_REACTIONS", {})  # this test's reactions only
    react_to_row("customer.created", with_row)
    react_to("customer.created", plain)
    react_to_row("customer.created", with_row)  # once per function

    async def scenario() -> None:
        database = Database(db, pool_size=1)
        try:
            await _accounts(database)
            async with database.write() as s:
                await emit(s, "acct_a", "customer.created", {"id": "cus_r"}, 2, subject="row-1")
                await emit(s, "acct_a", "customer.created", {"id": "cus_n"}, 3)
        finally:
            await database.dispose()

    asyncio.run(scenario())
    assert ran == [("row", "row-1"), ("plain", "cus_r"), ("row", None), ("plain", "cus_n")]


def test_the_settles_plain_row_carries_the_fraud_settle(db: str, tmp_path: Path) -> None:
    """A manual-capture payment: its authorization settles the counted attempt once (its
    ``fraud_settle`` stored, which the intent's UPDATE applies to the velocity buckets:
    migration 0038), and its capture's ``payment_intent.succeeded`` settles nothing again."""

    async def main() -> tuple[Any, Any, list[Any], list[Any]]:
        async with Harness.open(db, tmp_path) as h:
            r = await h.post(
                "/v1/payment_intents",
                {
                    "amount": 1500,
                    "currency": "usd",
                    "payment_method": "tok_visa",
                    "capture_method": "manual",
                    "confirm": True,
                },
            )
            assert r.status_code == 200, r.text
            pi_id = r.json()["id"]
            assert r.json()["status"] == "requires_capture"
            (after_auth,) = await h.sql(
                "select fraud_outcome, fraud_settle from payment_intents where id = :i", i=pi_id
            )
            buckets = "select attempts, settled, declines from fraud_velocity_buckets"
            auth_rows = [tuple(row) for row in await h.sql(buckets)]
            c = await h.post(f"/v1/payment_intents/{pi_id}/capture")
            assert c.status_code == 200, c.text
            assert c.json()["status"] == "succeeded"
            (after_capture,) = await h.sql(
                "select fraud_outcome, fraud_settle from payment_intents where id = :i", i=pi_id
            )
            return (
                tuple(after_auth),
                tuple(after_capture),
                auth_rows,
                [tuple(row) for row in await h.sql(buckets)],
            )

    auth, captured, auth_rows, capture_rows = asyncio.run(main())
    (record, settle), (record_after, settle_after) = (
        [json.loads(v) if isinstance(v, str) else v for v in row] for row in (auth, captured)
    )
    assert record["counted"] is False and record["minute"] is not None  # as decided
    # An authorization: no issuer decline; the fake gateway gives no risk level or score.
    assert {k: settle[k] for k in ("minute", "declined", "rank", "score")} == {
        "minute": record["minute"],
        "declined": 0,
        "rank": None,
        "score": None,
    }
    assert settle["keys"] == sorted(record["keys"].values())
    assert (record_after, settle_after) == (record, settle)  # the capture: nothing again
    # Each key's row (the card's and the address's, in one minute): the attempt, settled
    # once by the authorization and not again by the capture.
    assert auth_rows and set(auth_rows) == {(1, 1, 0)}, auth_rows
    assert capture_rows == auth_rows
