"""The gateway's risk level on a payment intent is its latest confirmation's: a confirm whose
gateway answer carries no risk level leaves none, not the level an earlier card got (SQLite
and PostgreSQL, in process against the scripted fake gateway, which gives a risk level only
where this test says so)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import migrated_database_url
from paymux.gateways.base import AuthorizeRequest, GatewayResult
from support.fake_gateway import Outcome, ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


class RiskyCard(ScriptedGateway):
    """Answers ``tok_risky``'s payments with the risk level ``elevated``; others with none."""

    async def authorize(self, request: AuthorizeRequest, *, idempotency_key: str) -> GatewayResult:
        result = await super().authorize(request, idempotency_key=idempotency_key)
        if request.payment_method_token == "tok_risky":
            return replace(result, risk_level="elevated")
        return result


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"risk_{next(_names)}")


def test_a_second_confirm_with_a_card_the_gateway_rates_no_risk_for_clears_the_first_cards_level(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=RiskyCard()) as h:
            pi = (await h.post("/v1/payment_intents", {"amount": 1500, "currency": "usd"})).json()
            h.gw.script("authorize", Outcome.decline("card_declined"))
            r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm",
                             {"payment_method": "tok_risky"})
            assert r.status_code == 402, r.text
            first = await h.get(f"/v1/payment_intents/{pi['id']}")
            assert (first["status"], first["risk_level"]) == (
                "requires_payment_method", "elevated")

            r = await h.post(f"/v1/payment_intents/{pi['id']}/confirm",
                             {"payment_method": "tok_plain"})
            assert r.status_code == 200, r.text
            assert (r.json()["status"], r.json()["risk_level"]) == ("succeeded", None)
            stored = await h.sql("select risk_level from payment_intents where id = :i",
                                 i=pi["id"])
            assert [s[0] for s in stored] == [None]

    asyncio.run(main())
