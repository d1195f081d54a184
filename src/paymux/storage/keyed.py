"""Conditions that keep a statement finding its rows by key, whatever plan PostgreSQL uses.

asyncpg prepares each statement once per connection, and after five runs PostgreSQL may keep
a generic plan for it, made from the statistics of that moment: none on a new deployment's
tables until autovacuum's first ANALYZE. Plans made so walked whole indexes or tables where a
key was meant (tests/integration/test_key_lookup_plans.py, docs/operations.md):

- ``unindexed``: a condition on a row already found by its key (its status), written so that
  no index serves it: the plan cannot walk the (status, ...) index, which after a gateway
  outage holds thousands of rows in the one status;
- ``among``: a batch of keys as one array on PostgreSQL (``id = ANY($1)``), which it looks up
  in the primary key; an ``IN`` list of a batch's size was planned as a read of the whole
  table. SQLite keeps the ``IN`` list (it has no arrays, and plans each statement itself).

A third habit needs no helper: read by primary key alone and compare the account on the row,
never ``id = :id AND account_id = :a`` (a walk of the account's rows through an
``(account_id, ...)`` index).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY

__all__ = ["UNINDEXED_SQL", "among", "unindexed"]

UNINDEXED_SQL = "{column} || ''"
"""``unindexed`` in a statement written as text: ``UNINDEXED_SQL.format(column="status")``."""


def unindexed(column: Any) -> Any:
    """``column`` as an expression no index serves (``column || ''``), for a condition checked
    on a row its key found."""
    return column.concat("")


def among(column: Any, name: str, *, is_sqlite: bool) -> Any:
    """``column`` is one of the keys bound as ``name`` (a list of values of the column's type,
    given at execution): ``column = ANY(:name)`` on PostgreSQL, ``column IN (...)`` on SQLite."""
    if is_sqlite:
        return column.in_(bindparam(name, expanding=True))
    return column == any_(bindparam(name, type_=ARRAY(column.type)))
