"""On PostgreSQL a request's rate-limit count is one statement on the database driver
(``services/ratelimit.py``), in its own transaction: no SQLAlchemy execution for it (the
ORM's upsert cost a GET ~600 Python calls, issue 10). The count stays exact: every request of the
key is counted once in the shared row, the one past the limit is refused 429, and a refused
key is then refused from memory without writing.

paymux's real app in process over ASGI, on a real PostgreSQL database (the session's
throwaway cluster); no gateway is called (GETs of an intent that does not exist, which are
counted like any other request of the key).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, text

from conftest import migrated_database_url
from paymux.api.app import create_app
from paymux.config import Settings
from paymux.root import Paymux
from paymux.services.keys import hash_key
from paymux.storage import driver
from support.pgcluster import PgCluster

LIMIT = 5
KEY = "sk_test_get_rate_limit_0123456789ab"


def test_the_count_is_one_driver_statement_and_stays_exact(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url("postgres", tmp_path, pg_cluster, "get_rate_limit_count")

    async def scenario() -> tuple[list[int], list[str], list[str], int]:
        settings = Settings(
            database_url=url, api_key=KEY, run_worker=False, log_level="WARNING",
            sandbox_db=str(tmp_path / "sandbox.db"),
            rate_limit_requests=LIMIT, rate_limit_window_seconds=1_000_000_000,  # until 2033
        )
        core = Paymux(settings)
        app = create_app(settings, core)
        orm: list[str] = []
        on_driver: list[str] = []

        def orm_statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if "rate_limit_windows" in sql:
                orm.append(sql)

        def driver_statement(sql: str, seconds: float) -> None:
            if "rate_limit_windows" in sql:
                on_driver.append(sql)

        event.listen(core.ctx.db.writer.sync_engine, "before_cursor_execute", orm_statement)
        stop = driver.observe(driver_statement)
        try:
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://paymux",
                headers={"authorization": f"Bearer {KEY}"},
            ) as client:
                statuses = [
                    (await client.get("/v1/payment_intents/pi_missing")).status_code
                    for _ in range(LIMIT + 2)
                ]
            event.remove(core.ctx.db.writer.sync_engine, "before_cursor_execute", orm_statement)
            stop()
            async with core.ctx.db.read() as s:
                stored = (
                    await s.execute(
                        text("SELECT sum(count) FROM rate_limit_windows WHERE key_hash = :h"),
                        {"h": hash_key(KEY)},
                    )
                ).scalar_one()
        finally:
            await core.ctx.db.dispose()
        return statuses, orm, on_driver, int(stored)

    statuses, orm, on_driver, stored = asyncio.run(scenario())
    assert statuses == [404] * LIMIT + [429, 429]
    assert orm == []  # no SQLAlchemy execution for the count
    # One statement per counted request: the LIMIT + 1 that reached the database (the last
    # one was refused from memory, the key being known to be over its limit).
    assert len(on_driver) == LIMIT + 1
    assert stored == LIMIT + 1
