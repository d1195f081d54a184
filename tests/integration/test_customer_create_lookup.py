"""``POST /v1/customers`` with ``payment_method`` looks the reference up once: by our id
(whatever its gateway) or as a token of the account's default gateway, in one query, where
it took two (by id, then by the default gateway's token). Counted on the real database's
statements (SQLite and PostgreSQL, in process against the scripted fake gateway); what the
customer ends up with, and the refusals, are those of attach.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from conftest import migrated_database_url
from paymux.services.customers import find_payment_method
from paymux.storage import driver
from paymux.storage.models import PaymentMethod
from support.fake_gateway import ScriptedGateway
from support.harness import Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None) -> str:
    return migrated_database_url(request.param, tmp_path, pg_cluster, f"cus_lookup_{next(_names)}")


class Lookups:
    """The look-ups of a payment method by reference (``find_payment_method``'s statement: by
    our id or by gateway token, on the database driver) naming ``ref``, as they were sent."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []
        self.stop = driver.observe_arguments(self._record)

    def _record(self, statement: str, seconds: float, arguments: Sequence[Any]) -> None:
        flat = " ".join(statement.split()).lower()
        # One statement: by id and by token, each a look-up by key, as one UNION ALL.
        if (
            flat.startswith("select payment_methods.id")
            and "from payment_methods" in flat
            and "payment_methods.id =" in flat
            and "payment_methods.token =" in flat
        ):
            self.seen.append({v for v in arguments if isinstance(v, str)})

    def of(self, ref: str) -> int:
        count = sum(1 for values in self.seen if ref in values)
        self.seen.clear()
        return count


@pytest.fixture(name="lookups")
def lookups_fixture() -> Iterator[Lookups]:
    """``Lookups`` for the test's time (the driver's observers are the process's)."""
    watching = Lookups()
    try:
        yield watching
    finally:
        watching.stop()


def test_a_customer_created_with_a_token_looks_it_up_once(
    db: str, tmp_path: Path, lookups: Lookups
) -> None:
    async def main() -> None:
        gw = ScriptedGateway()  # describes any tok_... token as a card of its own
        gw.shared_tokens.add("tok_shared")
        async with Harness.open(db, tmp_path, gw=gw) as h:
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


def test_a_payment_method_found_is_as_a_read_session_loads_it(db: str, tmp_path: Path) -> None:
    """``find_payment_method`` reads on the database driver and makes the model's object
    itself: it is what the ORM's read leaves (detached, no change pending, so a write that
    adds it back updates it and never inserts it again), each attribute of the Python type
    the ORM gives (JSON as dicts, SQLite's 0/1 as booleans), by id and by token alike, and
    another account's is none of ours."""

    async def main() -> None:
        async with Harness.open(db, tmp_path, gw=ScriptedGateway()) as h:
            made = h.body(
                await h.post(
                    "/v1/payment_methods",
                    {
                        "type": "card",
                        "card": {"token": "tok_loaded"},
                        "billing_details": {"name": "Ada Lovelace"},
                        "metadata": {"order": "42"},
                    },
                )
            )
            db_ = h.app.ctx.db
            async with db_.read() as s:
                by_id = await find_payment_method(s, h.account, "fake", made["id"])
                by_token = await find_payment_method(s, h.account, "fake", "tok_loaded")
                elsewhere = await find_payment_method(s, "acct_other", "fake", made["id"])
            async with db_.read() as s:
                orm = await s.get(PaymentMethod, made["id"])
            assert orm is not None and by_id is not None and by_token is not None
            assert elsewhere is None
            assert orm.metadata_ == {"order": "42"} and orm.livemode is False
            assert orm.billing_details is not None
            assert orm.billing_details["name"] == "Ada Lovelace"
            attributes = [a.key for a in inspect(PaymentMethod).column_attrs]
            for found in (by_id, by_token):
                state = inspect(found)
                assert state.detached and not state.modified
                for key in attributes:
                    value, expected = getattr(found, key), getattr(orm, key)
                    assert (value, type(value)) == (expected, type(expected)), key
            # Added back to a write and changed: one UPDATE of the row, nothing inserted.
            async with db_.write() as s:
                s.add(by_id)
                by_id.metadata_ = {"order": "43"}
            rows = await h.sql(
                "select id, metadata from payment_methods where token = 'tok_loaded'"
            )
            assert [(r[0], json.loads(r[1]) if isinstance(r[1], str) else r[1]) for r in rows] == [
                (made["id"], {"order": "43"})
            ]

    asyncio.run(main())
