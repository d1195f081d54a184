"""JSON columns are written and read with orjson (storage/db.py ``_json_dumps`` and
``_json_loads``, issue 10: about 25 values written and as many read per payment), with the
standard library for what orjson refuses, so a value the standard library stored is still
stored and read back the same. Both databases, through the ORM and through the driver.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
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


def test_integers_orjson_would_read_as_floats_are_read_exactly() -> None:
    # orjson reads -9999999999999999999 (19 digits, past the smallest 64-bit integer) as
    # -1e+19 and 10**20 as 1e+20: a run of 19 digits in the text sends it to the standard
    # library, so both are integers here, in str and in bytes, wherever they stand.
    assert repr(orjson.loads("-9999999999999999999")) == "-1e+19"
    for text in (
        '{"a": -9999999999999999999}',
        '[1, "x", 100000000000000000000]',
        '{"nested": {"k": [true, -12345678901234567890]}}',
    ):
        expected = json.loads(text)
        for given in (text, text.encode()):
            read = db_module._json_loads(given)
            assert read == expected and repr(read) == repr(expected)
    assert db_module._json_loads(b'{"n": -9999999999999999999}')["n"] == -9999999999999999999
    # 18 digits fit in 64 bits either way; non-ASCII text and a long run inside a string read
    # the same as the standard library reads them.
    for text in ('{"n": -999999999999999999}', '{"é": "ü 12345678901234567890123 ok"}'):
        assert db_module._json_loads(text) == json.loads(text)
        assert db_module._json_loads(text.encode()) == json.loads(text)
    # Text neither reads is an error, not a value; a number SQLite returned as a number is
    # the standard library's TypeError (SQLAlchemy's SQLite JSON type catches that one and
    # gives the number back).
    with pytest.raises(ValueError):
        db_module._json_loads('{"a": 1')
    for number in (0, 7, 1.5):
        with pytest.raises(TypeError):
            db_module._json_loads(number)  # type: ignore[arg-type]
    assert db_module._json_loads(bytearray(b'{"n": -9999999999999999999}')) == {
        "n": -9999999999999999999
    }


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
