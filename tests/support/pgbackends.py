"""Ending a PostgreSQL server process as a restart or an administrator's
``pg_terminate_backend`` does, for the tests of what a pool does with the connection it
leaves behind (tests/integration/test_db_checkout.py, test_get_one_row.py)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from paymux.storage.db import Database

__all__ = ["terminate_backend"]


async def terminate_backend(db: Database, pid: int) -> bool:
    """End server process ``pid`` from a connection of ``db`` (another one than the
    process's); wait until it is gone and the client's loop has read the closed socket.
    Returns whether PostgreSQL said it ended it."""
    async with db.write() as s:
        ended = bool(
            (await s.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
        )
    for _ in range(200):  # its FATAL and the closed socket reach the client asynchronously
        async with db.read() as s:
            alive = (
                await s.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                )
            ).scalar_one()
        if not alive:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and let the loop read the closed socket
    return ended
