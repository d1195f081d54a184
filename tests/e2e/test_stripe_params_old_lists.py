"""The ``refunds`` list an old pinned version (before ``2022-11-15``) shows on a charge:
``total_count`` counts every refund, not only the 100 shown, and its ``url``
(``/v1/charges/{id}/refunds``) is a path paymux serves: the charge's refunds, paged, 404 for a
charge that is not the account's.

paymux's real services and HTTP app (in process, tests/support/harness.py) on SQLite and
PostgreSQL, against the scripted provider at the connector seam.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from conftest import migrated_database_url
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()
OLD = {"stripe-version": "2022-08-01"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"old_lists_{next(_names)}")


def run(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, rate_limit_requests=0) as h:  # 100+ refunds
            await test(h)

    asyncio.run(main())


def test_a_charge_s_refunds_count_all_and_their_url_is_served(db: str, tmp_path: Path) -> None:
    async def test(h: Harness) -> None:
        paid = await h.post("/v1/payment_intents", {
            "amount": 10_000, "currency": "usd", "confirm": True,
            "payment_method_data": {"type": "card", "card": {"token": "tok_single_use_r"}}})
        assert paid.status_code == 200, paid.text
        pi = h.body(paid)
        assert pi["status"] == "succeeded"
        refund_ids = []
        for _ in range(102):  # more than the 100 a list object of those versions carried
            r = await h.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 1})
            assert r.status_code == 200, r.text
            refund_ids.append(h.body(r)["id"])

        charge = (await h.http.get(f"/v1/charges/{pi['latest_charge']}", headers=OLD)).json()
        refunds = charge["refunds"]
        assert (len(refunds["data"]), refunds["has_more"], refunds["total_count"]) == (
            100, True, 102)
        assert refunds["url"] == f"/v1/charges/{pi['latest_charge']}/refunds"
        intent = (await h.http.get(f"/v1/payment_intents/{pi['id']}", headers=OLD)).json()
        assert intent["charges"]["data"][0]["refunds"]["total_count"] == 102

        # The url, followed as an old SDK's auto-paging does.
        seen: list[str] = []
        params: dict[str, str] = {"limit": "40"}
        while True:
            page = await h.http.get(refunds["url"], params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            assert (body["object"], body["url"]) == ("list", refunds["url"])
            assert {r["payment_intent"] for r in body["data"]} <= {pi["id"]}
            seen += [r["id"] for r in body["data"]]
            if not body["has_more"]:
                break
            params["starting_after"] = body["data"][-1]["id"]
        assert sorted(seen) == sorted(refund_ids) and len(seen) == 102

        missing = await h.http.get("/v1/charges/ch_nope/refunds")
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "resource_missing"
        other = await h.app.accounts.create_key()
        theirs = await h.http.get(refunds["url"],
                                  headers={"authorization": f"Bearer {other.key}"})
        assert theirs.status_code == 404, theirs.text

    run(db, tmp_path, test)
