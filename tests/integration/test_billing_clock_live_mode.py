"""Live objects never use a test clock (SQLite; paymux in process over ASGI, as a deployment
serves it over TLS, so a live key is accepted). A live key can neither make, read, list,
advance nor delete a test clock, and a live customer can't be put on one, even the account's
own test clock: 400 ``parameter_invalid`` naming ``test_clock``, nothing written. The test
key of the same account still sees its clock, unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from conftest import migrated_database_url
from support.billing_harness import ok
from support.harness import Harness

T0 = 1_900_000_000


def refused(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid", "test_clock"), error


def test_a_live_key_can_neither_use_a_test_clock_nor_put_a_customer_on_one(
    tmp_path: Path,
) -> None:
    url = migrated_database_url("sqlite", tmp_path, None, "clock_live")

    async def main() -> None:
        async with Harness.open(url, tmp_path) as h:
            clk = await ok(h, "/v1/test_helpers/test_clocks", {"frozen_time": T0, "name": "t"})
            live, _ = await h.app.keys.create(h.account, livemode=True, actor="cli")
            auth = {"authorization": f"Bearer {live.key}"}

            async def post(path: str, body: dict[str, Any]) -> httpx.Response:
                return await h.http.post(path, json=body, headers=auth)

            base = "/v1/test_helpers/test_clocks"
            refused(await post(base, {"frozen_time": T0}))
            refused(await h.http.get(base, headers=auth))
            refused(await h.http.get(f"{base}/{clk['id']}", headers=auth))
            refused(await post(f"{base}/{clk['id']}/advance", {"frozen_time": T0 + 60}))
            refused(await h.http.delete(f"{base}/{clk['id']}", headers=auth))
            refused(
                await post("/v1/customers", {"email": "l@example.com", "test_clock": clk["id"]})
            )

            # Nothing was written: one clock, as the test key made it; no live customer.
            rows = await h.sql("select status, frozen_time_us, deleted from test_clocks")
            assert [(r[0], r[1], bool(r[2])) for r in rows] == [("ready", T0 * 1_000_000, False)]
            assert await h.sql("select id from customers where livemode") == []
            again = await h.get(f"{base}/{clk['id']}")
            assert (again["status"], again["frozen_time"]) == ("ready", T0)
            # A live customer made without a clock lives on the wall clock.
            cus = (await post("/v1/customers", {"email": "l@example.com"})).json()
            assert (cus["livemode"], cus["test_clock"]) == (True, None)

    asyncio.run(main())
