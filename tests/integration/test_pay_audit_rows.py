"""Audit entries written on the database driver are stored as SQLAlchemy's Core INSERT stored
them (issue 10: services/audit.py's INSERT runs on storage/driver.py).

Three ways an entry is written, on SQLite and PostgreSQL, through the HTTP app with paymux's
real services and the scripted gateway at the connector seam:

- a confirmed payment's entry, in its settle's transaction (``audit_in`` from the confirm);
- a create without confirm, in the create's transaction (``audit_in`` from the create);
- a customer's create, in a transaction of its own after the answer (``AuditLog.write``).

Each entry's every column is stated here as stored (its text, ``<null>`` for SQL NULL):
``details`` as the JSON text paymux's JSON columns write (orjson's compact text:
storage/db.py ``_json_dumps``), ``livemode`` as each
database's boolean. The INSERT is a driver statement (``storage.driver.observe``), and
SQLAlchemy's execution layer runs no statement on ``audit_log``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from paymux.storage import driver
from support.databases import migrated_database_fixture
from support.driver_sql import parts
from support.harness import START_US, Harness

db = migrated_database_fixture("pay_audit_rows")

_COLUMNS = (
    "account_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "livemode",
    "request_id",
    "details",
    "created_us",
)


def _as_text(column: str) -> str:
    return f"coalesce(CAST({column} AS TEXT), '<null>')"


async def _stored(h: Harness, object_id: str) -> list[dict[str, Any]]:
    """The object's audit entries as stored, column by column (the id apart)."""
    columns = ", ".join(_as_text(c) for c in _COLUMNS)
    rows = await h.sql(
        f"select id, {columns} from audit_log where object_id = :o order by created_us, id",
        o=object_id,
    )
    return [{"id": row[0], **dict(zip(_COLUMNS, row[1:], strict=True))} for row in rows]


async def _post_watched(
    h: Harness, path: str, body: dict[str, Any], key: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """POST ``path``; the answer, and the statements on ``audit_log`` run on the driver and
    through SQLAlchemy's execution layer meanwhile."""
    on_driver: list[str] = []
    on_sqlalchemy: list[str] = []
    engines = {h.app.ctx.db.writer, h.app.ctx.db.reader}

    def orm(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if "audit_log" in sql:
            on_sqlalchemy.append(" ".join(sql.split()))

    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", orm)
    stop = driver.observe(
        lambda sql, _: on_driver.extend(
            part for part in parts(" ".join(sql.split())) if "audit_log" in part
        )
    )
    try:
        r = await h.post(path, body, key=key)
    finally:
        stop()
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", orm)
    assert r.status_code == 200, r.text
    return h.body(r), on_driver, on_sqlalchemy


_AUDIT_INSERT = (
    "INSERT INTO audit_log (id, account_id, actor, action, object_type, object_id, livemode, "
    "request_id, details, created_us) VALUES (:id, :account_id, :actor, :action, "
    ":object_type, :object_id, :livemode, :request_id, :details, :created_us)"
)


def test_audit_entries_are_stored_as_the_core_insert_stored_them(db: str, tmp_path: Path) -> None:
    sqlite = db.startswith("sqlite")
    no = "0" if sqlite else "false"

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            [(key_id,)] = await h.sql("select id from api_keys")
            account = h.account

            # A confirmed payment: its entry in the settle's transaction.
            pi, on_driver, on_sqlalchemy = await _post_watched(
                h,
                "/v1/payment_intents",
                {"amount": 4200, "currency": "usd", "payment_method": "tok_visa", "confirm": True},
                "audit-rows-1",
            )
            assert pi["status"] == "succeeded"
            assert (on_driver, on_sqlalchemy) == ([_AUDIT_INSERT], [])
            [(request_id,)] = await h.sql(
                "select distinct request_id from events where object_id = :o", o=pi["id"]
            )
            [confirmed] = await _stored(h, str(pi["id"]))
            assert str(confirmed.pop("id")).startswith("aud_")
            assert confirmed == {
                "account_id": account,
                "actor": key_id,
                "action": "payment_intent.create",
                "object_type": "payment_intent",
                "object_id": pi["id"],
                "livemode": no,
                "request_id": request_id,
                "details": '{"method":"POST","path":"/v1/payment_intents",'
                '"status":"succeeded","amount":4200,"currency":"usd",'
                '"amount_received":4200,"amount_refunded":0}',
                "created_us": str(START_US),
            }
            assert str(request_id).startswith("req_")

            # A create without confirm: its entry in the create's transaction.
            h.advance(1)
            made, on_driver, on_sqlalchemy = await _post_watched(
                h,
                "/v1/payment_intents",
                {"amount": 1500, "currency": "eur"},
                "audit-rows-2",
            )
            assert made["status"] == "requires_payment_method"
            assert (on_driver, on_sqlalchemy) == ([_AUDIT_INSERT], [])
            [created] = await _stored(h, str(made["id"]))
            created.pop("id")
            assert created.pop("request_id").startswith("req_")
            assert created == {
                "account_id": account,
                "actor": key_id,
                "action": "payment_intent.create",
                "object_type": "payment_intent",
                "object_id": made["id"],
                "livemode": no,
                "details": '{"method":"POST","path":"/v1/payment_intents",'
                '"status":"requires_payment_method","amount":1500,"currency":"eur",'
                '"amount_received":0,"amount_refunded":0}',
                "created_us": str(START_US + 1_000_000),
            }

            # A customer: the API layer's entry, in a transaction of its own.
            h.advance(1)
            customer, on_driver, on_sqlalchemy = await _post_watched(
                h, "/v1/customers", {"email": "a@example.test"}, "audit-rows-3"
            )
            assert (on_driver, on_sqlalchemy) == ([_AUDIT_INSERT], [])
            [entry] = await _stored(h, str(customer["id"]))
            entry.pop("id")
            assert entry.pop("request_id").startswith("req_")
            assert entry == {
                "account_id": account,
                "actor": key_id,
                "action": "customer.create",
                "object_type": "customer",
                "object_id": customer["id"],
                "livemode": no,
                "details": '{"method":"POST","path":"/v1/customers"}',
                "created_us": str(START_US + 2_000_000),
            }

    asyncio.run(main())
