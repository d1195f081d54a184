"""``POST /v1/payment_methods/{ref}/attach`` looks the reference up once: by our id (whatever
its gateway), or as a token of the gateway named (else the account's default), in one query,
where a reference not found by id took two (by id, then by the default gateway's token).
Counted on the real database's statements (SQLite and PostgreSQL, in process against the
scripted fake gateway), with what each attach ends up with: the payment method found (never a
second one for a token already recorded), a new one for a new token, none for an unknown
reference.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_customer_create_lookup import Lookups, lookups_fixture  # noqa: F401 (the fixture)

from support.databases import migrated_database_fixture
from support.fake_gateway import ScriptedGateway
from support.harness import Harness

db = migrated_database_fixture("cus_attach_lookup")


def test_an_attach_looks_its_reference_up_once(db: str, tmp_path: Path, lookups: Lookups) -> None:
    gw = ScriptedGateway()  # describes any tok_... token as a card of its own
    gw.shared_tokens.add("tok_shared")

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=gw) as h:
            cus = h.body(await h.post("/v1/customers", {"email": "a@example.com"}))["id"]

            async def attach(ref: str, **more: str) -> tuple[int, dict[str, str]]:
                r = await h.post(f"/v1/payment_methods/{ref}/attach", {"customer": cus, **more})
                return r.status_code, r.json()

            async def owners(token: str) -> list[tuple[str, str]]:
                rows = await h.sql(
                    "select id, customer_id from payment_methods where token = :t", t=token
                )
                return [(str(r[0]), str(r[1])) for r in rows]

            # A new token of the default gateway: one look-up, a payment method made for it.
            status, made = await attach("tok_first")
            assert status == 200, made
            assert lookups.of("tok_first") == 1
            assert await owners("tok_first") == [(made["id"], cus)]

            # Our id, detached meanwhile: found by id, attached again, nothing new made.
            r = await h.post(f"/v1/payment_methods/{made['id']}/detach", {})
            assert r.status_code == 200, r.text
            lookups.of(made["id"])
            status, again = await attach(made["id"])
            assert (status, again["id"], again["customer"]) == (200, made["id"], cus)
            assert lookups.of(made["id"]) == 1

            # The token of a card already recorded: found by token, the same payment method.
            status, by_token = await attach("tok_first")
            assert (status, by_token["id"]) == (200, made["id"])
            assert lookups.of("tok_first") == 1
            assert await owners("tok_first") == [(made["id"], cus)]

            # The gateway named: its token looked up once too.
            status, named = await attach("tok_named", gateway="fake")
            assert status == 200, named
            assert lookups.of("tok_named") == 1
            assert await owners("tok_named") == [(named["id"], cus)]

            # A shared test token: known as one before any look-up, a payment method of its own.
            status, shared = await attach("tok_shared")
            assert status == 200, shared
            assert lookups.of("tok_shared") == 0
            assert shared["id"].startswith("pm_") and shared["id"] != "tok_shared"

            # An unknown reference: looked up once, resource_missing, nothing written.
            before = await h.sql("select count(*) from payment_methods")
            r = await h.post("/v1/payment_methods/card_nowhere/attach", {"customer": cus})
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "resource_missing"
            assert lookups.of("card_nowhere") == 1
            assert await h.sql("select count(*) from payment_methods") == before

    asyncio.run(main())
