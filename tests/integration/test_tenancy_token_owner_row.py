"""A token stays its account's after the account's payment method stops carrying it: the
owner row (``gateway_token_owners``) alone refuses another account naming it, with a 404
(SQLite and PostgreSQL, through the HTTP app in process).

The provider here (as Square's card on file replacing a single-use browser token does) saves
an attached card under a new token, so A's payment method carries the saved token from then
on, and the token A first used is on no payment method at all. The provider still knows that
first token (a gateway's test tokens and reusable references do), so every other check lets
it through: no payment method of another account holds it, and the gateway describes it.
Only A's owner row, written with A's payment method, makes it A's: without it, B would
record it as a payment method of its own and charge A's card.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import migrated_database_url
from paymux.gateways.base import CardDetails, Decline
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
FIRST = "tok_first_use"  # the token A makes its payment method from
ON_FILE = "card_on_file_a"  # the token the provider saves A's card under when A attaches it


class SavesUnderANewToken(ScriptedGateway):
    """The scripted provider, answering an attach with the card saved under ``ON_FILE``."""

    async def attach_payment_method(
        self, token: str, customer_token: str, *, idempotency_key: str
    ) -> CardDetails | Decline:
        result = await super().attach_payment_method(
            token, customer_token, idempotency_key=idempotency_key
        )
        if isinstance(result, Decline):
            return result
        saved = replace(result, token=ON_FILE)
        self.cards[ON_FILE] = saved
        return saved


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"owner_row_{next(_names)}")


async def post(h: Harness, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return await h.http.post(path, json=body, headers={"authorization": f"Bearer {key}"})


async def ok(h: Harness, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await post(h, key, path, body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_a_token_on_no_payment_method_any_more_is_refused_to_another_account_by_its_owner_row(
    db: str, tmp_path: Path
) -> None:
    async def main() -> None:
        gw = SavesUnderANewToken()
        gw.cards[FIRST] = CardDetails(
            token=FIRST,
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2034,
            fingerprint="fp_first_use",
            country="US",
            funding="credit",
        )
        async with Harness.open(db, tmp_path, gw=gw) as h:
            other = await h.app.accounts.create_key()
            a, b, b_id = h.key, other.key, other.account_id
            cus_a = (await ok(h, a, "/v1/customers", {}))["id"]
            saved = await ok(h, a, f"/v1/payment_methods/{FIRST}/attach", {"customer": cus_a})
            assert (saved["gateway_token"], saved["customer"]) == (ON_FILE, cus_a)
            # FIRST is on no payment method now; A's owner row is all that names it A's.
            assert await h.sql("select id from payment_methods where token = :t", t=FIRST) == []
            owners = await h.sql(
                "select account_id from gateway_token_owners where token = :t", t=FIRST
            )
            assert [r[0] for r in owners] == [h.account]

            cus_b = (await ok(h, b, "/v1/customers", {}))["id"]
            authorized = gw.calls["authorize"]
            answers = {
                "pay": await post(
                    h,
                    b,
                    "/v1/payment_intents",
                    {
                        "amount": 900,
                        "currency": "usd",
                        "customer": cus_b,
                        "payment_method": FIRST,
                        "confirm": True,
                        "off_session": True,
                    },
                ),
                "attach": await post(
                    h, b, f"/v1/payment_methods/{FIRST}/attach", {"customer": cus_b}
                ),
                "setup": await post(
                    h,
                    b,
                    "/v1/setup_intents",
                    {"customer": cus_b, "payment_method": FIRST, "confirm": True},
                ),
            }
            for name, r in answers.items():
                assert r.status_code == 404, (name, r.text)
                error = r.json()["error"]
                assert (error["code"], error["param"]) == ("resource_missing", "payment_method"), (
                    name
                )
            # Nothing of B's holds the token, no card was charged, and the token is A's alone.
            assert await h.sql("select id from payment_methods where account_id = :b", b=b_id) == []
            assert gw.calls["authorize"] == authorized
            owners = await h.sql(
                "select account_id from gateway_token_owners where token = :t", t=FIRST
            )
            assert [r[0] for r in owners] == [h.account]
            # A still pays with its saved card.
            paid = await ok(
                h,
                a,
                "/v1/payment_intents",
                {
                    "amount": 700,
                    "currency": "usd",
                    "customer": cus_a,
                    "payment_method": saved["id"],
                    "confirm": True,
                    "off_session": True,
                },
            )
            assert paid["status"] == "succeeded"
            assert gw.calls["authorize"] == authorized + 1

    asyncio.run(main())
