"""A batch of rows inserted, or updated by primary key, in ONE statement whose text does not
depend on the batch's size (PostgreSQL): the rows travel as one array per column, read back
with ``unnest``. SQLAlchemy compiles the statement once, asyncpg prepares it once per
connection, PostgreSQL plans it once. (A multi-row ``VALUES`` list is new text for each
batch size: compiled by SQLAlchemy each time, about a fifth of the delivery worker's CPU at
50 endpoints, and parsed and planned again by the server; an executemany is one execution
per row.) On SQLite (in-process, no round trips) an executemany.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, null, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert, Update

__all__ = ["insert_rows", "update_rows"]


def _unnest(table: Table, columns: tuple[str, ...]) -> Any:
    """``unnest(:a0, :a1, ...) AS batch(c0, c1, ...)``: one array parameter per column."""
    arrays = [bindparam(f"a{i}", type_=ARRAY(table.c[c].type)) for i, c in enumerate(columns)]
    return func.unnest(*arrays).table_valued(*columns).render_derived(name="batch")


@cache
def _insert(table: Table, columns: tuple[str, ...]) -> Insert:
    batch = _unnest(table, columns)
    return insert(table).from_select(list(columns), select(*(batch.c[c] for c in columns)))


@cache
def _update(table: Table, key: str, columns: tuple[str, ...], nulls: tuple[str, ...]) -> Update:
    batch = _unnest(table, (key, *columns))
    values: dict[str, Any] = {c: batch.c[c] for c in columns} | {c: null() for c in nulls}
    return update(table).where(table.c[key] == batch.c[key]).values(values)


def _arrays(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {f"a{i}": [row[c] for row in rows] for i, c in enumerate(columns)}


def _postgres(s: AsyncSession) -> bool:
    return s.get_bind().dialect.name == "postgresql"


async def insert_rows(s: AsyncSession, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys: the columns given) into ``table``."""
    if not rows:
        return
    if not _postgres(s):
        await s.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    await s.execute(_insert(table, columns), _arrays(columns, rows))


async def update_rows(
    s: AsyncSession,
    table: Table,
    key: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    nulls: Sequence[str] = (),
) -> None:
    """In each row of ``table`` whose ``key`` column equals a given row's ``key``, set the
    other columns that row gives, and the ``nulls`` columns to NULL. Every row gives the
    same columns."""
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key)
    if not _postgres(s):
        by_key = (
            update(table)
            .where(table.c[key] == bindparam("b_" + key))
            .values({c: bindparam("b_" + c) for c in columns} | {c: null() for c in nulls})
        )
        await s.execute(by_key, [{f"b_{c}": v for c, v in row.items()} for row in rows])
        return
    await s.execute(_update(table, key, columns, tuple(nulls)), _arrays((key, *columns), rows))
