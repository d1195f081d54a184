"""The PostgreSQL functions a migrated database holds, by name, for the tests of migrations
that create and drop them (test_fraud_decision_lock_read.py, test_fraud_confirm_intent_lock.py)."""

from __future__ import annotations

from sqlalchemy import text

from paymux.storage.db import Database

__all__ = ["function_names"]


async def function_names(url: str, prefix: str) -> list[str]:
    """The names of the functions of the database at ``url`` that start with ``prefix``,
    sorted."""
    database = Database(url)
    try:
        async with database.read() as s:
            rows = await s.execute(
                text("SELECT proname FROM pg_proc WHERE starts_with(proname, :p) ORDER BY 1"),
                {"p": prefix},
            )
            return [str(name) for (name,) in rows]
    finally:
        await database.dispose()
