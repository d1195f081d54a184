"""JSON columns are written and read with orjson (storage/db.py ``_json_dumps`` and
``_json_loads``, issue 10: about 25 values written and as many read per payment), with the
standard library for what orjson refuses, so a value the standard library stored is still
stored and read back the same. Both databases, through the ORM and through the driver.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from paymux.storage import db as db_module
from paymux.storage import driver
from paymux.storage.db import Database
from paymux.storage.models import Account, FraudRule
from support.databases import migrated_database_fixture

db = migrated_database_fixture("json_columns")

# What the standard library writes and orjson refuses or reads otherwise alone: integers past
# 64 bits (orjson reads one as a float: 2**70 + 1 is not one), and keys that are not strings
# (written as their text, as json does).
WIDE = {"big": 2**70 + 1, "negative": -(2**64) - 1, 7: "seven", "é": ["ü", 1.5, None, True]}
WIDE_READ = {"big": 2**70 + 1, "negative": -(2**64) - 1, "7": "seven", "é": ["ü", 1.5, None, True]}


def test_the_codec_writes_what_json_writes_and_reads_it_back() -> None:
    for value in (WIDE, {"a": [1, 2, {"b": "c"}], "n": None}, [], "text", 12):
        text = db_module._json_dumps(value)
        assert json.loads(text) == json.loads(json.dumps(value))
        read = db_module._json_loads(text)
        assert read == json.loads(json.dumps(value))
        assert repr(read) == repr(json.loads(json.dumps(value)))  # ints stay ints
    # Text the standard library wrote (ASCII escapes, a 70-bit integer) reads the same.
    assert repr(db_module._json_loads(json.dumps(WIDE))) == repr(WIDE_READ)


_READ = driver.Statement(
    "SELECT metadata FROM fraud_rules WHERE id = :id", results=(FraudRule.metadata_.type,)
)


def test_a_json_column_round_trips_through_both_databases(db: str) -> None:
    async def main() -> Any:
        database = Database(db)
        try:
            async with database.write() as s:
                s.add(Account(id="acct_json", name="json", created_us=1))
                await s.flush()
                s.add(
                    FraudRule(
                        id="frr_json",
                        account_id="acct_json",
                        livemode=False,
                        action="review",
                        predicate="review if :amount: > 1",
                        priority=0,
                        status="active",
                        metadata_=WIDE,
                        created_us=1,
                        updated_us=1,
                    )
                )
            async with database.read() as s:
                orm = (await s.execute(select(FraudRule.metadata_))).scalar_one()
                raw = await driver.fetch(s, _READ, {"id": "frr_json"})
            return orm, raw[0][0]
        finally:
            await database.dispose()

    orm, raw = asyncio.run(main())
    assert repr(orm) == repr(WIDE_READ)
    assert repr(raw) == repr(WIDE_READ)


def test_a_driver_statement_serializes_with_each_engine_s_own_codec() -> None:
    """``storage/driver.py`` keeps a statement's processors per dialect name AND JSON codec:
    one engine's (the standard library's, e.g. a migration's) never serializes for
    another's (paymux's, orjson), whichever ran the statement first."""
    from sqlalchemy.dialects import sqlite

    statement = driver.Statement(
        "UPDATE fraud_rules SET metadata = :v WHERE id = :id", binds={"v": FraudRule.metadata_.type}
    )
    plain = sqlite.dialect()  # no codec given: the standard library's json.dumps
    ours = sqlite.dialect(
        json_serializer=db_module._json_dumps, json_deserializer=db_module._json_loads
    )
    value = {"a": [1, 2]}
    assert statement.args({"v": value, "id": "x"}, statement.on(plain)) == ['{"a": [1, 2]}', "x"]
    assert statement.args({"v": value, "id": "x"}, statement.on(ours)) == ['{"a":[1,2]}', "x"]
    assert statement.args({"v": value, "id": "x"}, statement.on(plain)) == ['{"a": [1, 2]}', "x"]
