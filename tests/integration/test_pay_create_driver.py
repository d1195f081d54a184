"""A payment's create on the database driver (issue 10, services/payments.py ``create``):
the intent's INSERT, the payment method's INSERT and the confirm's locked read of the intent
run on storage/driver.py, not through SQLAlchemy's session, and write what the ORM's Core
INSERTs wrote, column by column (SQL NULL where nothing was given, JSON ``null`` where
``None`` was given, the payment method's Python defaults).

paymux's real services on SQLite and PostgreSQL, over the HTTP app (ASGI), against the
scripted provider at the connector seam. Expected rows are written out here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from conftest import migrated_database_url
from paymux.storage import driver
from support.driver_sql import all_parts, parts
from support.fake_gateway import ScriptedGateway
from support.harness import START_US, Harness
from support.pgcluster import PgCluster

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[str]:
    yield migrated_database_url(request.param, tmp_path, pg_cluster, f"paycd_{next(_names)}")


def _as_text(column: str) -> str:
    """A column as stored: its text, or ``<null>`` where it is SQL NULL."""
    return f"coalesce(CAST({column} AS TEXT), '<null>')"


_INTENT_COLUMNS = (
    "status",
    "amount",
    "currency",
    "amount_capturable",
    "amount_received",
    "capture_method",
    "customer_id",
    "payment_method_id",
    "off_session",
    "gateway",
    "gateway_reference",
    "gateway_client",
    "last_payment_error",
    "next_action",
    "return_url",
    "risk_level",
    "gateway_risk_score",
    "description",
    "statement_descriptor_suffix",
    "receipt_email",
    "payment_method_types",
    "automatic_payment_methods",
    "metadata",
    "confirm_count",
    "livemode",
    "invoice_id",
    "shipping",
    "fraud_outcome",
    "payment_method_options",
    "three_d_secure",
    "created_us",
    "updated_us",
)


def test_a_created_intent_is_stored_as_the_orm_stored_it(db: str, tmp_path: Path) -> None:
    """Every column of a new intent (no confirm), as stored."""
    sqlite = db.startswith("sqlite")

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            r = await h.post(
                "/v1/payment_intents",
                {
                    "amount": 1500,
                    "currency": "eur",
                    "description": "Order 7",
                    "metadata": {"order": "7"},
                    "receipt_email": "a@example.test",
                    "statement_descriptor_suffix": "ORDER7",
                    "payment_method_types": ["card"],
                    "automatic_payment_methods": {"enabled": True},
                    "shipping": {"name": "Ada", "address": {"city": "Paris"}},
                },
            )
            assert r.status_code == 200, r.text
            pi = h.body(r)
            columns = ", ".join(_as_text(c) for c in _INTENT_COLUMNS)
            [row] = await h.sql(f"select {columns} from payment_intents where id = :i", i=pi["id"])
            stored = dict(zip(_INTENT_COLUMNS, row, strict=True))
            secret = await h.sql("select client_secret from payment_intents")
            assert secret[0][0] == pi["client_secret"]
            assert secret[0][0].startswith(pi["id"] + "_secret_")

        no, yes = ("0", "1") if sqlite else ("false", "true")
        # As paymux's JSON columns write it (storage/db.py: compact); PostgreSQL's metadata is
        # jsonb, which prints its own text.
        metadata = '{"order":"7"}' if sqlite else '{"order": "7"}'
        assert stored == {
            "status": "requires_payment_method",
            "amount": "1500",
            "currency": "EUR",
            "amount_capturable": "0",
            "amount_received": "0",
            "capture_method": "automatic",
            "customer_id": "<null>",
            "payment_method_id": "<null>",
            "off_session": no,
            "gateway": "fake",
            "gateway_reference": "<null>",
            "gateway_client": "null",  # None given: JSON null, as the Core INSERT wrote it
            "last_payment_error": "<null>",  # not given: SQL NULL (the failed-payments index)
            "next_action": "<null>",
            "return_url": "<null>",
            "risk_level": "<null>",
            "gateway_risk_score": "<null>",
            "description": "Order 7",
            "statement_descriptor_suffix": "ORDER7",
            "receipt_email": "a@example.test",
            "payment_method_types": '["card"]',
            "automatic_payment_methods": yes,
            "metadata": metadata,
            "confirm_count": "0",
            "livemode": no,
            "invoice_id": "<null>",
            "shipping": '{"name":"Ada","address":{"city":"Paris"}}',
            "fraud_outcome": "<null>",
            "payment_method_options": "null",
            "three_d_secure": "<null>",
            "created_us": str(START_US),
            "updated_us": str(START_US),
        }

    asyncio.run(main())


_PM_COLUMNS = (
    "account_id",
    "customer_id",
    "gateway",
    "token",
    "type",
    "card_brand",
    "card_last4",
    "card_exp_month",
    "card_exp_year",
    "card_country",
    "card_funding",
    "card_bin",
    "card_cvc_check",
    "livemode",
    "metadata",
    "billing_details",
    "network_transaction_id",
    "created_us",
)


def _observed(h: Harness) -> tuple[list[str], list[str], Callable[[], None]]:
    """(statements SQLAlchemy runs, statements the driver runs) from now on, their SQL, and
    the function that stops watching the driver (its observers are the process's)."""
    orm: list[str] = []
    on_driver: list[str] = []
    for engine in {id(e): e for e in (h.app.ctx.db.writer, h.app.ctx.db.reader)}.values():

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _orm(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            orm.append(" ".join(sql.split()))

    stop = driver.observe(lambda sql, seconds: on_driver.append(" ".join(sql.split())))
    return orm, on_driver, stop


def test_a_confirmed_create_writes_its_rows_on_the_driver(db: str, tmp_path: Path) -> None:
    """create with confirm=true and a shared test token: the payment method's and the
    intent's INSERTs once each on the driver, never through SQLAlchemy, and no read of the
    intent (the confirmation decides on it as made, in the create's transaction; on
    PostgreSQL the intent's and event's INSERTs ride on the fraud decision's call); the
    payment method stored as the ORM's INSERT stored it."""
    sqlite = db.startswith("sqlite")

    async def main() -> None:
        gw = ScriptedGateway()
        gw.shared_tokens.add("tok_shared_visa")
        async with Harness.open(db, tmp_path, gw=gw) as h:
            orm, on_driver, stop = _observed(h)
            try:
                r = await h.post(
                    "/v1/payment_intents",
                    {
                        "amount": 2000,
                        "currency": "usd",
                        "confirm": True,
                        "payment_method": "tok_shared_visa",
                    },
                )
            finally:
                stop()
            assert r.status_code == 200, r.text
            pi = h.body(r)
            assert pi["status"] == "succeeded"

            def count(statements: list[str], start: str, *having: str) -> int:
                return sum(s.startswith(start) and all(x in s for x in having) for s in statements)

            locked = ("SELECT payment_intents.id AS id", "payment_intents.id = :pi_id", "FOR UPDATE")
            # The create's intent, event and the event's row of the outbox (driver.later) ride
            # on the fraud decision's call on PostgreSQL: one statement (driver.fetch_with_held).
            carried = (
                "INSERT INTO payment_intents ",
                "INSERT INTO events ",
                "INSERT INTO event_outbox ",
                "SELECT * FROM paymux_fraud_decision_start(",
            )
            assert any(
                len(parts(sql)) == 4
                and all(p.startswith(x) for p, x in zip(parts(sql), carried, strict=True))
                for sql in on_driver
            ) == (not sqlite), on_driver
            on_driver = all_parts(on_driver)  # the writes held and sent together, each
            for start in ("INSERT INTO payment_methods ", "INSERT INTO payment_intents "):
                assert count(on_driver, start) == 1, (start, on_driver)
            assert count(on_driver, carried[3]) == (0 if sqlite else 1), on_driver
            # Decided on the intent as made: never read again, nor locked (no one else can
            # see it), on either database.
            assert count(on_driver, *locked) == 0, on_driver
            assert count(on_driver, "SELECT * FROM paymux_fraud_confirm_start(") == 0, on_driver
            assert count(orm, "INSERT INTO payment_methods ") == 0, orm
            assert count(orm, "INSERT INTO payment_intents ") == 0, orm

            columns = ", ".join(_as_text(c) for c in _PM_COLUMNS)
            [row] = await h.sql(
                f"select {columns} from payment_methods where id = :p", p=pi["payment_method"]
            )
            stored = dict(zip(_PM_COLUMNS, row, strict=True))
            account = h.account

        assert stored == {
            "account_id": account,
            "customer_id": "<null>",
            "gateway": "fake",
            "token": "tok_shared_visa",
            "type": "card",
            "card_brand": "visa",
            "card_last4": "4242",
            "card_exp_month": "12",
            "card_exp_year": "2034",
            "card_country": "US",
            "card_funding": "credit",
            "card_bin": "<null>",
            "card_cvc_check": "<null>",
            "livemode": "0" if sqlite else "false",
            "metadata": "{}",
            "billing_details": "null",  # None given: JSON null, as the Core INSERT wrote it
            "network_transaction_id": "<null>",  # not given: SQL NULL
            "created_us": str(START_US),
        }

    asyncio.run(main())


def test_a_create_names_only_a_customer_of_its_own(db: str, tmp_path: Path) -> None:
    """The customer check before anything is made (``require_customer``, get_owned's rule
    on the driver): unknown, another account's and a deleted customer are each a 404 on
    ``customer``, and nothing is written; the account's own customer is taken."""

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            other = await h.app.accounts.create_key()
            theirs = await h.http.post(
                "/v1/customers", json={}, headers={"authorization": f"Bearer {other.key}"}
            )
            assert theirs.status_code == 200, theirs.text
            gone = h.body(await h.post("/v1/customers", {}))["id"]
            deleted = await h.http.delete(f"/v1/customers/{gone}")
            assert deleted.status_code == 200, deleted.text
            mine = h.body(await h.post("/v1/customers", {}))["id"]

            for customer in ("cus_nobody", h.body(theirs)["id"], gone):
                r = await h.post(
                    "/v1/payment_intents",
                    {"amount": 1000, "currency": "usd", "customer": customer},
                )
                assert r.status_code == 404, r.text
                error = r.json()["error"]
                assert (error["code"], error["param"], error["message"]) == (
                    "resource_missing",
                    "customer",
                    f"No such customer: '{customer}'",
                )
            assert await h.intents() == []

            r = await h.post(
                "/v1/payment_intents", {"amount": 1000, "currency": "usd", "customer": mine}
            )
            assert r.status_code == 200, r.text
            assert h.body(r)["customer"] == mine

    asyncio.run(main())
