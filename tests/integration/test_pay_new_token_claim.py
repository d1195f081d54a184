"""A payment with a gateway token new to the account (a card the payer's browser just
tokenized: the common one-off checkout) records its payment method and the account's claim on
the token in the create's own transaction, with the intent (issue 10: one write transaction
less per payment; services/customers.py ``claim_deferred``), and the claim still decides who
owns the token (the tenancy rule of tests/integration/test_token_owner_race.py).

paymux's real services on SQLite and PostgreSQL, over the HTTP app (ASGI), against the
scripted provider at the connector seam.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from conftest import migrated_database_url
from paymux.storage import driver
from support.driver_sql import all_parts
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"paynew_{next(_names)}")


def _pay(token: str) -> dict[str, Any]:
    return {"amount": 2000, "currency": "usd", "confirm": True, "payment_method": token}


def _sent(h: Harness) -> tuple[list[str], Any]:
    """Every statement sent from now on (SQLAlchemy's and the driver's, each part of a
    statement of held writes on its own) and ``COMMIT`` at each commit (a lean transaction's
    too: storage/db.py), in order; and the function that stops watching the driver."""
    log: list[str] = []
    for engine in {id(e): e for e in (h.app.ctx.db.writer, h.app.ctx.db.reader)}.values():

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _orm(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            log.append(" ".join(sql.split()))

        @event.listens_for(engine.sync_engine, "commit")
        def _commit(conn: Any) -> None:
            log.append("COMMIT")

    unwatch = [
        driver.observe(lambda sql, seconds: log.extend(all_parts([" ".join(sql.split())]))),
        driver.observe_transactions(lambda name: log.append(name) if name == "COMMIT" else None),
    ]
    return log, lambda: [stop() for stop in unwatch]


# How a new token's statements start: the look-up of the reference, the ownership check,
# the claim, the payment method's INSERT.
_RESOLVED = (
    "SELECT payment_methods.id",
    "SELECT gateway_token_owners.account_id",
    "INSERT INTO gateway_token_owners ",
    "INSERT INTO payment_methods ",
)


async def _owners(h: Harness, token: str) -> list[tuple[str, ...]]:
    """The accounts that own ``token`` (``gateway_token_owners``), as rows."""
    rows = await h.sql("select account_id from gateway_token_owners where token = :t", t=token)
    return [tuple(row) for row in rows]


def _resolved_then(log: list[str], write: str) -> None:
    """In ``log``, each once and in this order: one read (the look-up of the reference among
    the account's payment methods, then the ownership check, no COMMIT between them), then
    one transaction (no COMMIT from the claim to ``write``, the write the payment method is
    recorded with: the intent's, or the attempt's)."""
    places = []
    for start in (*_RESOLVED, write):
        [place] = [i for i, sql in enumerate(log) if sql.startswith(start)]
        places.append(place)
    looked_up, checked, claim, made, written = places
    assert looked_up < checked < claim < made < written, log
    assert "COMMIT" not in log[looked_up:checked], log
    assert "COMMIT" not in log[claim:written], log


def test_a_new_token_is_recorded_and_claimed_with_the_intent(db: str, tmp_path: Path) -> None:
    """The claim's INSERT, the payment method's and the intent's in one transaction (no
    COMMIT between them), each once; the look-ups before them in one read; the rows they
    wrote."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            log, stop = _sent(h)
            try:
                r = await h.post("/v1/payment_intents", _pay("tok_new_card"))
            finally:
                stop()
            assert r.status_code == 200, r.text
            pi = h.body(r)
            assert pi["status"] == "succeeded"

            _resolved_then(log, "INSERT INTO payment_intents ")

            owners = await _owners(h, "tok_new_card")
            pms = await h.sql(
                "select id, account_id from payment_methods where token = 'tok_new_card'"
            )
            account = h.account
        assert owners == [(account,)]
        assert [tuple(row) for row in pms] == [(pi["payment_method"], account)]

    asyncio.run(main())


def test_a_token_claimed_meanwhile_by_another_account_records_nothing(
    db: str, tmp_path: Path
) -> None:
    """Account B's payment passes the ownership check while A has not used the token yet; B's
    gateway call (describing the token) is held while A pays with it. B's claim then finds
    A's: B gets 404 ``resource_missing`` naming what it sent, and B's create transaction
    records nothing (no intent, no payment method, no event, the owner still A); A's payment
    and a later one of A's with the same token succeed with A's one payment method."""

    async def main() -> None:
        gw = ScriptedGateway()
        async with Harness.open(db, tmp_path, gw=gw) as h:
            b = await h.app.accounts.create_key()
            gate = gw.hold("describe_payment_method")

            async def b_pays() -> httpx.Response:
                return await h.http.post(
                    "/v1/payment_intents",
                    json=_pay("tok_contested"),
                    headers={"authorization": f"Bearer {b.key}"},
                )

            b_payment = asyncio.create_task(b_pays())
            await gate.wait_reached()  # B is past the ownership check, at the gateway
            a_first = await h.post("/v1/payment_intents", _pay("tok_contested"))
            gate.release()
            refused = await b_payment
            a_again = await h.post("/v1/payment_intents", _pay("tok_contested"))

            b_rows = {
                table: await h.sql(
                    f"select count(*) from {table} where account_id = :b", b=b.account_id
                )
                for table in ("payment_intents", "payment_methods", "events")
            }
            owners = await _owners(h, "tok_contested")
            a_pms = await h.sql(
                "select id from payment_methods where token = 'tok_contested' and account_id = :a",
                a=h.account,
            )
            account = h.account

        assert a_first.status_code == 200, a_first.text
        assert a_first.json()["status"] == "succeeded"
        assert refused.status_code == 404, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("resource_missing", "payment_method")
        assert error["message"] == "No such payment_method: 'tok_contested'"
        assert {t: rows[0][0] for t, rows in b_rows.items()} == {
            "payment_intents": 0,
            "payment_methods": 0,
            "events": 0,
        }
        assert owners == [(account,)]
        assert a_again.status_code == 200, a_again.text
        assert a_again.json()["status"] == "succeeded"
        assert [row[0] for row in a_pms] == [a_first.json()["payment_method"]]
        assert a_again.json()["payment_method"] == a_first.json()["payment_method"]

    asyncio.run(main())


def test_two_payments_of_one_account_racing_with_a_new_token_share_one_payment_method(
    db: str, tmp_path: Path
) -> None:
    """Two payments of one account with one new token, both past the look-up before either
    records it (the first's gateway call held until the second is at its own): both
    succeed, with ONE payment method and one claim (the second's INSERT finds the first's
    row and uses it, as a look-up would have)."""

    async def main() -> None:
        gw = ScriptedGateway()
        async with Harness.open(db, tmp_path, gw=gw) as h:
            first_gate = gw.hold("describe_payment_method")
            first = asyncio.create_task(h.post("/v1/payment_intents", _pay("tok_twice")))
            await first_gate.wait_reached()
            second_gate = gw.hold("describe_payment_method")
            second = asyncio.create_task(h.post("/v1/payment_intents", _pay("tok_twice")))
            await second_gate.wait_reached()
            first_gate.release()
            one = await first
            second_gate.release()
            two = await second
            pms = await h.sql("select id from payment_methods where token = 'tok_twice'")
            owners = await _owners(h, "tok_twice")
            account = h.account

        assert (one.status_code, two.status_code) == (200, 200), (one.text, two.text)
        assert one.json()["status"] == two.json()["status"] == "succeeded"
        assert [row[0] for row in pms] == [one.json()["payment_method"]]
        assert two.json()["payment_method"] == one.json()["payment_method"]
        assert owners == [(account,)]

    asyncio.run(main())


def test_a_confirm_with_a_new_token_records_it_with_the_attempt(db: str, tmp_path: Path) -> None:
    """A confirm of an intent created without a payment method (the hosted page's way): the
    look-up of the reference and the ownership check in one read; the claim, the payment
    method and the attempt in the start's transaction (no COMMIT between them)."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            pi = h.body(await h.post("/v1/payment_intents", {"amount": 700, "currency": "eur"}))
            log, stop = _sent(h)
            try:
                r = await h.post(
                    f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "tok_page"}
                )
            finally:
                stop()
            assert r.status_code == 200, r.text
            done = h.body(r)
            assert done["status"] == "succeeded"

            _resolved_then(log, "INSERT INTO gateway_attempts ")
            owners = await _owners(h, "tok_page")
            account = h.account
        assert owners == [(account,)]
        assert done["payment_method"].startswith("pm_")

    asyncio.run(main())
