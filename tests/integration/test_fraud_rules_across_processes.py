"""A fraud rule changed through one API process decides the next payment another process
confirms, on one database (SQLite and PostgreSQL): each process keeps its compiled rule set
cached, and a decision checks the rules' version in the statement that reads its velocity
counts (fraud/velocity.py ``counts_and_version``), inside the transaction that starts the
attempt. Two Paymux instances here: their own engines, pools and caches, one database."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import migrated_database_url
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"fraudx_{next(_names)}")


async def _pay(h: Harness, amount: int) -> tuple[int, dict[str, Any]]:
    """Create and confirm a payment through ``h``; the confirm's status and body."""
    r = await h.http.post("/v1/payment_intents", json={"amount": amount, "currency": "usd"})
    assert r.status_code == 200, r.text
    r = await h.http.post(
        f"/v1/payment_intents/{r.json()['id']}/confirm", json={"payment_method": "tok_visa"}
    )
    body: dict[str, Any] = r.json()
    return r.status_code, body


def test_a_rule_changed_in_one_process_decides_the_next_payment_in_another(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with (
            Harness.open(db, tmp_path / "a") as a,
            Harness.open(db, tmp_path / "b") as b,
        ):
            b.http.headers["authorization"] = f"Bearer {a.key}"  # one account, two processes
            status, body = await _pay(b, 3000)
            assert (status, body["status"]) == (200, "succeeded")  # b's rules now cached

            r = await a.post("/v1/fraud/rules", {"rule": "block if :amount: >= 2000"})
            assert r.status_code == 200, r.text
            rule_id = r.json()["id"]
            status, body = await _pay(b, 3000)
            assert status == 402
            assert body["error"]["decline_code"] == "fraudulent"
            assert b.gw.calls["authorize"] == 1  # the blocked one reached no gateway

            a.advance(1)
            r = await a.post(f"/v1/fraud/rules/{rule_id}", {"rule": "block if :amount: >= 5000"})
            assert r.status_code == 200, r.text
            status, body = await _pay(b, 3000)
            assert (status, body["status"]) == (200, "succeeded")

            a.advance(1)
            r = await a.post(f"/v1/fraud/rules/{rule_id}", {"rule": "block if :amount: >= 10"})
            assert r.status_code == 200, r.text
            status, _ = await _pay(b, 3000)
            assert status == 402

            r = await a.post(f"/v1/fraud/rules/{rule_id}/disable")
            assert r.status_code == 200, r.text
            status, body = await _pay(b, 3000)
            assert (status, body["status"]) == (200, "succeeded")
            assert b.gw.calls["authorize"] == 3

    asyncio.run(main())
