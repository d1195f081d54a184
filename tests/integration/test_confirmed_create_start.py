"""A create with ``confirm=true`` (issue 10): the confirmation's attempt starts in the
create's own write transaction, so a payment is two write transactions (the create with
its start, then the settle), one on each side of the gateway call, where it was three. A
payment method the create recorded but the confirmation may not use (a token the account
had already, attached to a customer) still leaves the created intent committed, and the
confirmation's error is raised, as before. The start's failures on this path: a fraud
block commits the created intent with its decision and calls no gateway; a decline settles
the attempt; a lost answer leaves one payment, which its late, duplicated webhooks settle.
(A crash during the call and the retry after the key's lease: test_money_regressions.py
``test_3_a_create_taken_over_after_a_crash``, which takes this path.) SQLite and
PostgreSQL, in process."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from conftest import migrated_database_url
from paymux.gateways.base import CardDetails
from paymux.storage import driver
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"ccs_{next(_names)}")


# A confirmed create paying with a shared test token (as the sandbox's pm_card_visa).
_SHARED: dict[str, Any] = {
    "amount": 2000,
    "currency": "usd",
    "payment_method": "tok_shared_visa",
    "confirm": True,
}


async def _post_logged(h: Harness, body: dict[str, Any]) -> tuple[Any, list[str]]:
    """A create posted, and in order each write transaction's BEGIN and the gateway's
    authorize CALL. A BEGIN as its database's layer reports it: SQLAlchemy's connection on
    SQLite; on PostgreSQL the lean transaction's (storage/db.py), one made an ORM session
    showing SQLAlchemy's as well, not listened to here."""
    log: list[str] = []
    original = h.gw.authorize

    async def authorize(*args: Any, **kwargs: Any) -> Any:
        log.append("CALL")
        return await original(*args, **kwargs)

    def boundary(name: str) -> None:  # PostgreSQL's lean transactions
        if name == "BEGIN":
            log.append("BEGIN")

    def begun(conn: Any) -> None:
        log.append("BEGIN")

    h.gw.authorize = authorize  # type: ignore[method-assign]
    writer = h.app.ctx.db.writer.sync_engine
    postgres = not h.app.ctx.db.is_sqlite
    if postgres:
        stop = driver.observe_transactions(boundary)
    else:
        event.listen(writer, "begin", begun)
    try:
        r = await h.post("/v1/payment_intents", body)
    finally:
        del h.gw.authorize  # the class's again
        if postgres:
            stop()
        else:
            event.remove(writer, "begin", begun)
    return r, log


def test_a_confirmed_create_is_two_write_transactions_around_the_gateway_call(
    db: str, tmp_path: Path
) -> None:
    async def scenario() -> tuple[list[str], dict[str, Any], list[Any]]:
        gw = ScriptedGateway()
        gw.shared_tokens.add("tok_shared_visa")  # as the sandbox's pm_card_visa
        async with Harness.open(db, tmp_path, gw=gw) as h:
            # The first request's once-only work (the key's last use, the rules' cache).
            assert (await h.post("/v1/payment_intents", _SHARED)).status_code == 200
            r, log = await _post_logged(h, _SHARED)
            assert r.status_code == 200, r.text
            pi = h.body(r)
            attempts = await h.sql(
                "select operation, status from gateway_attempts where object_id = :o",
                o=pi["id"],
            )
            return log, pi, attempts

    log, pi, attempts = asyncio.run(scenario())
    assert pi["status"] == "succeeded" and pi["amount_received"] == 2000
    assert log == ["BEGIN", "CALL", "BEGIN"]  # create + start, the call, the settle
    assert attempts == [("authorize", "settled")]


def test_a_payment_method_the_confirmation_may_not_use_leaves_the_intent_created(
    db: str, tmp_path: Path
) -> None:
    """A gateway that answers a shared test token with the same token every time: the
    account's earlier payment method of that token, now attached to a customer, is what
    the create records. The confirmation may not use it for a payment without that
    customer: the intent stays created (``requires_confirmation``), no attempt, and the
    answer is the confirmation's error."""

    async def scenario() -> tuple[int, dict[str, Any], list[Any], list[Any]]:
        gw = ScriptedGateway()
        gw.shared_tokens.add("tok_shared_visa")
        async with Harness.open(db, tmp_path, gw=gw) as h:
            customer = h.body(await h.post("/v1/customers", {"email": "a@example.com"}))
            first = h.body(
                await h.post(
                    "/v1/payment_intents",
                    {"amount": 1000, "currency": "usd", "payment_method": "tok_shared_visa"},
                )
            )
            pm_id = first["payment_method"]
            async with h.app.ctx.db.write() as s:
                await s.execute(
                    text("update payment_methods set customer_id = :c where id = :p"),
                    {"c": customer["id"], "p": pm_id},
                )
            r = await h.post(
                "/v1/payment_intents",
                {
                    "amount": 2500,
                    "currency": "usd",
                    "payment_method": "tok_shared_visa",
                    "confirm": True,
                },
            )
            intents = await h.sql(
                "select status, payment_method_id from payment_intents "
                "where amount = 2500 and account_id = :a",
                a=h.account,
            )
            attempts = await h.sql(
                "select a.id from gateway_attempts a join payment_intents p "
                "on p.id = a.object_id where p.amount = 2500"
            )
            return r.status_code, h.body(r), intents, attempts

    status, body, intents, attempts = asyncio.run(scenario())
    assert status == 400, body
    assert body["error"]["code"] == "payment_method_unexpected_state"
    assert intents == [("requires_confirmation", intents[0][1])] and intents[0][1]
    assert attempts == []


# -- its failures: a block, a decline, a lost answer (the start is the create's) --------------
_PAY = {"amount": 5000, "currency": "usd", "payment_method": "tok_visa", "confirm": True}


async def _attempts(h: Harness, pi_id: str) -> list[Any]:
    return await h.sql(
        "select operation, status from gateway_attempts where object_id = :o", o=pi_id
    )


@pytest.fixture(params=["own_token", "shared_token"])
def paying(request: pytest.FixtureRequest) -> tuple[ScriptedGateway, str]:
    """The failure tests' gateway, and the token the payment's payment method records:
    ``tok_visa`` a token of the account's own (claimed, recorded by its own statement), or a
    shared test token that its gateway answers with a fresh token at each use (on
    PostgreSQL its payment method's INSERT rides on the decision's statement)."""
    if request.param == "own_token":
        return ScriptedGateway(), "tok_visa"
    gw = _MintingGateway()
    gw.shared_tokens.add("tok_visa")
    return gw, "tok_minted_1"


async def _tokens_recorded(h: Harness) -> list[Any]:
    """The tokens of the account's payment methods (a failed payment's intent names none:
    Stripe's shape, ``last_payment_error.payment_method``)."""
    return await h.sql("select token from payment_methods where account_id = :a", a=h.account)


def test_a_block_commits_the_created_intent_and_its_decision_and_calls_nothing(
    db: str, tmp_path: Path, paying: tuple[ScriptedGateway, str]
) -> None:
    gw, token = paying

    async def scenario() -> None:
        async with Harness.open(db, tmp_path, gw=gw) as h:
            ruled = await h.post("/v1/fraud/rules", {"rule": "block if :amount: >= 5000"})
            assert ruled.status_code == 200, ruled.text
            r = await h.post("/v1/payment_intents", _PAY)
            assert r.status_code == 402, r.text
            error = h.body(r)["error"]
            assert (error["code"], error["decline_code"]) == ("card_declined", "fraudulent")
            [intent] = await h.intents()
            assert intent["status"] == "requires_payment_method"
            assert h.gw.calls["authorize"] == 0
            assert await _attempts(h, intent["id"]) == []
            assert sorted(await h.events(intent["id"])) == [
                "payment_intent.created",
                "payment_intent.payment_failed",
            ]
            [(stored,)] = await h.sql(
                "select fraud_outcome from payment_intents where id = :o", o=intent["id"]
            )
            decision = json.loads(stored) if isinstance(stored, str) else stored
            assert decision["outcome"]["type"] == "blocked"  # committed with the intent
            assert await _tokens_recorded(h) == [(token,)]

    asyncio.run(scenario())


def test_a_decline_settles_the_attempt_the_create_started(
    db: str, tmp_path: Path, paying: tuple[ScriptedGateway, str]
) -> None:
    gw, token = paying

    async def scenario() -> None:
        async with Harness.open(db, tmp_path, gw=gw) as h:
            h.gw.script("authorize", Outcome.decline("insufficient_funds"))
            r = await h.post("/v1/payment_intents", _PAY)
            assert r.status_code == 402, r.text
            assert h.body(r)["error"]["code"] == "card_declined"
            [intent] = await h.intents()
            assert (intent["status"], intent["received"]) == ("requires_payment_method", 0)
            assert await _attempts(h, intent["id"]) == [("authorize", "settled")]
            assert h.gw.calls["authorize"] == 1
            assert await _tokens_recorded(h) == [(token,)]

    asyncio.run(scenario())


def test_a_lost_answer_leaves_one_payment_that_its_webhooks_settle(
    db: str, tmp_path: Path, paying: tuple[ScriptedGateway, str]
) -> None:
    gw, token = paying

    async def scenario() -> None:
        async with Harness.open(db, tmp_path, gw=gw) as h:
            h.gw.script("authorize", Outcome.lose_response())
            r = await h.post("/v1/payment_intents", _PAY)
            assert r.status_code == 200, r.text  # never a 500: the payment is in flight
            pi_id = h.body(r)["id"]
            h.advance(120)
            await h.drain()
            await h.deliver_all(twice=True)  # late and duplicated
            await h.drain()
            got = await h.get(f"/v1/payment_intents/{pi_id}")
            assert (got["status"], got["amount_received"]) == ("succeeded", 5000)
            assert len(h.gw.payments_for(pi_id)) == 1 and h.gw.charged_twice() == []
            assert await _attempts(h, pi_id) == [("authorize", "settled")]
            assert await _tokens_recorded(h) == [(token,)]

    asyncio.run(scenario())


# -- a shared test token's payment method, held on PostgreSQL ---------------------------------
class _MintingGateway(ScriptedGateway):
    """Answers a shared test token with a fresh token at each use, as the sandbox's
    ``pm_card_visa`` (its processor mints one): each use is a payment method of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.minted = itertools.count(1)

    async def describe_payment_method(self, token: str) -> Any:
        if token in self.shared_tokens:
            token = f"tok_minted_{next(self.minted)}"
        return await super().describe_payment_method(token)


def test_a_shared_tokens_new_payment_method_rides_on_the_decision_statement(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """PostgreSQL: the payment method a create records for a shared test token's use is not a
    statement of its own: its INSERT goes with the intent's, in the fraud decision's call."""
    if pg_cluster is None:
        pytest.skip("PostgreSQL is not available")
    url = migrated_database_url("postgres", tmp_path, pg_cluster, f"ccs_{next(_names)}")

    async def scenario() -> tuple[list[str], dict[str, Any], list[Any]]:
        gw = _MintingGateway()
        gw.shared_tokens.add("tok_shared_visa")
        async with Harness.open(url, tmp_path, gw=gw) as h:
            assert (await h.post("/v1/payment_intents", _SHARED)).status_code == 200
            sent: list[str] = []
            stop = driver.observe(lambda sql, seconds: sent.append(sql))
            try:
                r = await h.post("/v1/payment_intents", _SHARED)
            finally:
                stop()
            assert r.status_code == 200, r.text
            pi = h.body(r)
            rows = await h.sql(
                "select token from payment_methods where id = :p", p=pi["payment_method"]
            )
            return sent, pi, rows

    sent, pi, rows = asyncio.run(scenario())
    assert pi["status"] == "succeeded"
    assert rows == [("tok_minted_2",)]
    inserting = [sql for sql in sent if "INSERT INTO payment_methods" in sql]
    assert len(inserting) == 1, inserting
    assert "paymux_fraud_decision_start" in inserting[0]  # one round trip with the decision


def _fixed_token_gateway() -> ScriptedGateway:
    """A gateway that answers the shared test token ``tok_shared_visa`` with one token of its
    own (``card_fixed_1``), the same at every use: a second use is a token the account has."""
    gw = ScriptedGateway()
    gw.shared_tokens.add("tok_shared_visa")
    gw.cards["tok_shared_visa"] = gw.cards["card_fixed_1"] = CardDetails(
        token="card_fixed_1",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2034,
        fingerprint="fp_fixed_1",
        country="US",
        funding="credit",
    )
    return gw


def test_a_held_payment_method_whose_token_the_account_had_is_its_row(
    db: str, tmp_path: Path
) -> None:
    """A gateway that answers a shared test token with one token of its own, the same each
    time: the second use finds the account's row of that token. On PostgreSQL the held
    INSERT inserts nothing, the intent's foreign key fails the statement, and the create's
    transaction is made again with the row (two BEGINs before the call); the process then
    knows the token and the third create is one transaction before the call again. Every
    payment succeeds, with the one payment method."""

    async def scenario() -> tuple[list[list[str]], list[dict[str, Any]], list[Any]]:
        async with Harness.open(db, tmp_path, gw=_fixed_token_gateway()) as h:
            logs: list[list[str]] = []
            answers: list[dict[str, Any]] = []
            for _ in range(3):
                r, log = await _post_logged(h, _SHARED)
                assert r.status_code == 200, r.text
                logs.append(log)
                answers.append(h.body(r))
            rows = await h.sql(
                "select id from payment_methods where token = 'card_fixed_1' and account_id = :a",
                a=h.account,
            )
            return logs, answers, rows

    logs, answers, rows = asyncio.run(scenario())
    assert [a["status"] for a in answers] == ["succeeded"] * 3
    assert [a["amount_received"] for a in answers] == [2000] * 3
    [(pm_id,)] = rows
    assert [a["payment_method"] for a in answers] == [pm_id] * 3
    once = ["BEGIN", "CALL", "BEGIN"]
    again = ["BEGIN", "BEGIN", "CALL", "BEGIN"] if "postgres" in db else once
    assert logs[1:] == [again, once], logs


def test_a_held_payment_method_of_a_create_without_confirm_whose_token_the_account_had(
    db: str, tmp_path: Path
) -> None:
    """The same without ``confirm``: the held INSERT goes with the intent's at the COMMIT,
    whose statement fails on the foreign key; the create is made again with the account's
    row. Every create answers 200 with that one payment method, nothing half-written."""

    async def scenario() -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
        async with Harness.open(db, tmp_path, gw=_fixed_token_gateway()) as h:
            answers = []
            for _ in range(3):
                r = await h.post("/v1/payment_intents", {**_SHARED, "confirm": False})
                assert r.status_code == 200, r.text
                answers.append(h.body(r))
            methods = await h.sql(
                "select id from payment_methods where account_id = :a", a=h.account
            )
            intents = await h.sql(
                "select status, payment_method_id from payment_intents where account_id = :a",
                a=h.account,
            )
            return answers, methods, intents

    answers, methods, intents = asyncio.run(scenario())
    [(pm_id,)] = methods
    assert [(a["status"], a["payment_method"]) for a in answers] == [
        ("requires_confirmation", pm_id)
    ] * 3
    assert sorted(intents) == [("requires_confirmation", pm_id)] * 3
