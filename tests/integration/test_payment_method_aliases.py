"""A gateway token that names a card the account already saved under another token (a
provider's second name for a saved card, such as a vault id and the setup token it came
from) is held to the same checks as the saved payment method itself: a payment of another
customer, or of none, is refused and nothing is charged (SQLite and PostgreSQL, in process
against the scripted fake gateway).

Before, the payment method found by the token the gateway answered with was returned as it
was, without the customer check that naming it by its id gets: attaching the other name to
customer A moved customer B's saved card to A, and a payment intent of A took B's card.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from conftest import migrated_database_url
from paymux.gateways.base import CardDetails
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


def card(token: str) -> CardDetails:
    return CardDetails(token=token, brand="visa", last4="4242", exp_month=12, exp_year=2034,
                       fingerprint="fp_b", country="US", funding="credit")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"alias_{next(_names)}")


def test_another_name_of_a_customers_saved_card_pays_only_for_that_customer(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        gw = ScriptedGateway()
        gw.cards["card_b"] = card("card_b")
        gw.cards["alias_of_b"] = card("card_b")  # the provider's other name for B's card
        async with Harness.open(db, tmp_path, gw=gw) as h:
            cus_a = (await h.post("/v1/customers", {})).json()["id"]
            cus_b = (await h.post("/v1/customers", {})).json()["id"]
            r = await h.post("/v1/payment_methods/card_b/attach", {"customer": cus_b})
            assert r.status_code == 200, r.text
            pm_b = r.json()["id"]

            refused = [
                await h.post("/v1/payment_methods/alias_of_b/attach", {"customer": cus_a}),
                await h.post("/v1/setup_intents", {
                    "customer": cus_a, "payment_method": "alias_of_b", "confirm": True}),
                await h.post("/v1/payment_intents", {
                    "amount": 900, "currency": "usd", "customer": cus_a,
                    "payment_method": "alias_of_b"}),
                await h.post("/v1/payment_intents", {
                    "amount": 900, "currency": "usd", "payment_method": "alias_of_b",
                    "confirm": True, "off_session": True}),
            ]
            for r in refused:
                assert r.status_code == 400, r.text
                error = r.json()["error"]
                assert (error["code"], error["param"], error["message"]) == (
                    "payment_method_unexpected_state", "payment_method",
                    "The payment method is attached to another customer.")
            assert gw.calls["authorize"] == 0
            assert gw.total_charged() == 0
            # B's card is still B's: the attach to A did not move it.
            methods = await h.sql("select id, customer_id, token from payment_methods")
            assert [tuple(m) for m in methods] == [(pm_b, cus_b, "card_b")]
            attached = await h.sql("select object_id from events "
                                   "where type = 'payment_method.attached'")
            assert [a[0] for a in attached] == [pm_b]  # B's attach only

            # B's own payment by the other name pays with B's saved payment method.
            r = await h.post("/v1/payment_intents", {
                "amount": 900, "currency": "usd", "customer": cus_b,
                "payment_method": "alias_of_b", "confirm": True, "off_session": True})
            assert r.status_code == 200, r.text
            assert (r.json()["status"], r.json()["payment_method"]) == ("succeeded", pm_b)
            assert gw.total_charged() == 900

    asyncio.run(main())
