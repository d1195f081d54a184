"""A token a gateway hands back when it saves a card, already owned by another account, is
refused: the caller gets 400 ``payment_method_unexpected_state`` naming only its own payment
method, and the other account's token appears nowhere in the caller's answer, rows, events or
the log (SQLite and PostgreSQL, through the HTTP app in process).

The provider here keeps ONE saved card per card number, whoever saves it (as a gateway
account two paymux accounts share, or a provider that de-duplicates cards on file, does): A
saves the card first and owns the saved token; B then saves the same card with a token of its
own (which B owns) and the provider answers with A's saved token. Only the owner row
(``gateway_token_owners``, written by ``claim_token``) tells the two apart: B's own token passes
every earlier check.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import migrated_database_url
from paymux.gateways.base import (
    CardDetails,
    Decline,
    GatewayStatus,
    SetupRequest,
    SetupResult,
)
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
SAVED = "card_same_number"  # the provider's one saved card for the number both tokens carry


class OneCardPerNumber(ScriptedGateway):
    """The scripted provider, saving cards under one token per card number."""

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        result = await super().attach_payment_method(
            token, customer_token, idempotency_key=idempotency_key
        )
        if isinstance(result, Decline):
            return result
        saved = replace(result, token=SAVED)
        self.cards[SAVED] = saved
        return saved


def card(token: str) -> CardDetails:
    return CardDetails(token=token, brand="visa", last4="4242", exp_month=12, exp_year=2034,
                       fingerprint="fp_same_number", country="US", funding="credit")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"claim_{next(_names)}")


class Account:
    def __init__(self, h: Harness, key: str, account_id: str) -> None:
        self.h, self.key, self.id = h, key, account_id

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.h.http.post(path, json=body or {},
                                      headers={"authorization": f"Bearer {self.key}"})

    async def ok(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.post(path, body)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


def run(db: str, tmp: Path, test: Callable[[Account, Account, Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        gw = OneCardPerNumber()
        gw.cards["tok_from_a"] = card("tok_from_a")
        gw.cards["tok_from_b"] = card("tok_from_b")
        async with Harness.open(db, tmp, gw=gw) as h:
            other = await h.app.accounts.create_key()
            await test(Account(h, h.key, h.account), Account(h, other.key, other.account_id), h)

    asyncio.run(main())


async def rows(h: Harness, token: str) -> tuple[list[Any], list[Any]]:
    """(payment methods holding ``token``: account, customer; its owner rows)."""
    methods = await h.sql("select account_id, customer_id from payment_methods "
                          "where token = :t order by account_id", t=token)
    owners = await h.sql("select account_id from gateway_token_owners where token = :t", t=token)
    return [tuple(r) for r in methods], [r[0] for r in owners]


def assert_refused(r: httpx.Response, named: str | None) -> None:
    """400 ``payment_method_unexpected_state`` naming ``named`` (the caller's own payment
    method) and nothing the gateway answered with."""
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("payment_method_unexpected_state",
                                               "payment_method")
    which = f" {named}" if named else ""
    assert error["message"] == (
        f"The fake gateway saved the payment method{which} under a token this account "
        "cannot use, so it was not saved. Use another payment method.")


async def assert_nowhere_of(h: Harness, account: str, token: str, r: httpx.Response,
                            log: str) -> None:
    """``token`` (another account's) is in none of ``account``'s rows, events, the answer ``r``
    or the log."""
    assert token not in r.text
    assert token not in log
    read = 0
    for table in ("setup_intents", "payment_methods", "events", "customers"):
        found = await h.sql(f"select * from {table} where account_id = :a", a=account)
        read += len(found)
        assert token not in repr(found), table
    assert read >= 3  # the check read the account's rows (a customer, an intent, events)


def test_an_attach_the_gateway_answers_with_another_accounts_saved_token_is_refused(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(a: Account, b: Account, h: Harness) -> None:
        cus_a = (await a.ok("/v1/customers", {}))["id"]
        saved = await a.ok("/v1/payment_methods/tok_from_a/attach", {"customer": cus_a})
        assert (saved["gateway_token"], saved["customer"]) == (SAVED, cus_a)

        # Refused by A's owner row alone (B's own token passed every other check): checked
        # before that row is, so a missing claim fails here, on the refusal.
        cus_b = (await b.ok("/v1/customers", {}))["id"]
        r = await b.post("/v1/payment_methods/tok_from_b/attach", {"customer": cus_b})
        # tok_from_b was recorded as B's payment method before the gateway answered.
        pm_b = await h.sql("select id from payment_methods where token = 'tok_from_b'")
        assert_refused(r, pm_b[0][0])
        await assert_nowhere_of(h, b.id, SAVED, r, caplog.text)
        # B's payment method for its own token is as it was: its token, no customer; A's
        # saved token is on A's payment method only, and A's alone.
        assert await rows(h, SAVED) == ([(a.id, cus_a)], [a.id])
        assert await rows(h, "tok_from_b") == ([(b.id, None)], [b.id])
        assert await h.sql("select 1 from events where account_id = :b and type = "
                           "'payment_method.attached'", b=b.id) == []
        # A still pays with its saved card off-session; B can't name it.
        paid = await a.ok("/v1/payment_intents", {
            "amount": 700, "currency": "usd", "customer": cus_a, "payment_method": saved["id"],
            "confirm": True, "off_session": True})
        assert paid["status"] == "succeeded"
        r = await b.post("/v1/payment_intents", {
            "amount": 700, "currency": "usd", "customer": cus_b, "payment_method": SAVED,
            "confirm": True, "off_session": True})
        assert r.status_code == 404, r.text

    run(db, tmp_path, test)


def test_a_setup_intent_the_gateway_answers_with_another_accounts_saved_token_fails(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(a: Account, b: Account, h: Harness) -> None:
        cus_a = (await a.ok("/v1/customers", {}))["id"]
        seti_a = await a.ok("/v1/setup_intents", {
            "customer": cus_a, "payment_method": "tok_from_a", "confirm": True})
        assert seti_a["status"] == "succeeded"

        cus_b = (await b.ok("/v1/customers", {}))["id"]
        r = await b.post("/v1/setup_intents", {
            "customer": cus_b, "payment_method": "tok_from_b", "confirm": True})
        pm_b = await h.sql("select id from payment_methods where token = 'tok_from_b'")
        assert_refused(r, pm_b[0][0])
        seti_b = r.json()["error"]["setup_intent"]
        assert (seti_b["status"], seti_b["payment_method"]) == ("requires_payment_method", None)
        assert seti_b["last_setup_error"]["code"] == "payment_method_unexpected_state"
        stored = await h.sql("select status, payment_method_id from setup_intents "
                             "where id = :i", i=seti_b["id"])
        assert [tuple(x) for x in stored] == [("requires_payment_method", None)]
        assert await rows(h, SAVED) == ([(a.id, cus_a)], [a.id])
        assert await rows(h, "tok_from_b") == ([(b.id, None)], [b.id])
        types = await h.sql("select type from events where account_id = :b and type like "
                            "'setup_intent.%'", b=b.id)
        assert sorted(t[0] for t in types) == ["setup_intent.created",
                                               "setup_intent.setup_failed"]
        await assert_nowhere_of(h, b.id, SAVED, r, caplog.text)

    run(db, tmp_path, test)


WALLET = "wallet_same_payer"  # the provider's one saved wallet for the payer both accounts saw


class OneWalletPerPayer(ScriptedGateway):
    """A wallet provider (named paypal, so SetupIntents for ``paypal`` route here) that saves
    the payer's wallet under one token, whoever asks: the payer approved at the provider, and
    the provider made the payment method (no token of ours is set up)."""

    async def setup(self, request: SetupRequest, *, idempotency_key: str) -> SetupResult:
        saved = CardDetails(token=WALLET, type="paypal", fingerprint="fp_payer")
        return SetupResult(GatewayStatus.SUCCEEDED, WALLET, card=saved)


def test_a_wallet_the_gateway_saves_under_another_accounts_token_is_not_recorded(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=OneWalletPerPayer(name="paypal")) as h:
            other = await h.app.accounts.create_key()
            a, b = Account(h, h.key, h.account), Account(h, other.key, other.account_id)
            body = {"payment_method_types": ["paypal"], "confirm": True}
            cus_a = (await a.ok("/v1/customers", {}))["id"]
            seti_a = await a.ok("/v1/setup_intents", {"customer": cus_a, **body})
            assert seti_a["status"] == "succeeded" and seti_a["payment_method"]

            cus_b = (await b.ok("/v1/customers", {}))["id"]
            r = await b.post("/v1/setup_intents", {"customer": cus_b, **body})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["code"], error["param"]) == ("payment_method_unexpected_state",
                                                       "payment_method")
            assert error["message"] == (  # names no payment method: the gateway made it
                "The paypal gateway saved the payment method under a token this account "
                "cannot use, so it was not saved. Use another payment method.")
            seti_b = error["setup_intent"]
            assert (seti_b["status"], seti_b["payment_method"]) == ("requires_payment_method",
                                                                    None)
            assert await rows(h, WALLET) == ([(a.id, cus_a)], [a.id])
            assert await h.sql("select id from payment_methods where account_id = :b",
                               b=b.id) == []
            await assert_nowhere_of(h, b.id, WALLET, r, caplog.text)

    asyncio.run(main())
