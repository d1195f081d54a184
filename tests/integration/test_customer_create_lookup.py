"""``POST /v1/customers`` with ``payment_method`` looks the reference up once: by our id
(whatever its gateway) or as a token of the account's default gateway, in one query, where
it took two (by id, then by the default gateway's token). Counted on the real database's
statements (SQLite and PostgreSQL, in process against the scripted fake gateway); what the
customer ends up with, and the refusals, are those of attach.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from conftest import migrated_database_url
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"cus_lookup_{next(_names)}")


class Lookups:
    """The look-ups of a payment method by reference (``find_payment_method``'s statement: by
    our id or by gateway token) naming ``ref``, as the database received them."""

    def __init__(self, h: Harness) -> None:
        self.seen: list[set[str]] = []
        engines = {id(e): e for e in (h.app.ctx.db.reader, h.app.ctx.db.writer)}
        for engine in engines.values():
            event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        flat = " ".join(statement.split()).lower()
        # One statement: by id and by token, each a look-up by key, as one UNION ALL.
        if (
            flat.startswith("select payment_methods.id")
            and "from payment_methods" in flat
            and "payment_methods.id =" in flat
            and "payment_methods.token =" in flat
        ):
            values = params.values() if isinstance(params, dict) else params or ()
            self.seen.append({v for v in values if isinstance(v, str)})

    def of(self, ref: str) -> int:
        count = sum(1 for values in self.seen if ref in values)
        self.seen.clear()
        return count


def test_a_customer_created_with_a_token_looks_it_up_once(db: str, tmp_path: Path) -> None:
    async def main() -> None:
        gw = ScriptedGateway()  # describes any tok_... token as a card of its own
        gw.shared_tokens.add("tok_shared")
        async with Harness.open(db, tmp_path, gw=gw) as h:
            lookups = Lookups(h)

            r = await h.post("/v1/customers", {"payment_method": "tok_new"})
            assert r.status_code == 200, r.text
            assert lookups.of("tok_new") == 1
            rows = await h.sql(
                "select customer_id, token from payment_methods where token = 'tok_new'"
            )
            assert [tuple(row) for row in rows] == [(r.json()["id"], "tok_new")]

            # A shared test token: known as one before any look-up, a payment method of its own.
            r = await h.post(
                "/v1/customers",
                {
                    "payment_method": "tok_shared",
                    "invoice_settings": {"default_payment_method": "tok_shared"},
                },
            )
            assert r.status_code == 200, r.text
            assert lookups.of("tok_shared") == 0
            default = r.json()["invoice_settings"]["default_payment_method"]
            assert default.startswith("pm_") and default != "tok_shared"

            # Our id: found by id, attached to the new customer.
            pm = (await h.sql("select id from payment_methods where token = 'tok_new'"))[0][0]
            r = await h.post(f"/v1/payment_methods/{pm}/detach", {})
            assert r.status_code == 200, r.text
            lookups.of(pm)
            r = await h.post("/v1/customers", {"payment_method": pm})
            assert r.status_code == 200, r.text
            owner = await h.sql("select customer_id from payment_methods where id = :id", id=pm)
            assert owner[0][0] == r.json()["id"]

            # Another customer's payment method is refused, and no customer is left behind.
            before = (await h.sql("select count(*) from customers"))[0][0]
            r = await h.post("/v1/customers", {"payment_method": pm})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["code"], error["param"]) == (
                "payment_method_unexpected_state",
                "payment_method",
            )
            assert (await h.sql("select count(*) from customers"))[0][0] == before

            # An unknown reference: resource_missing, nothing written.
            r = await h.post("/v1/customers", {"payment_method": "card_nowhere"})
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "resource_missing"
            assert (await h.sql("select count(*) from customers"))[0][0] == before

    asyncio.run(main())
