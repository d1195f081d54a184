"""The Alembic migrations build exactly the schema the models describe, on both engines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import database_url
from paymux.storage.migrate import upgrade
from paymux.storage.models import Base
from support.pgcluster import PgCluster


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_models(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = database_url(backend, tmp_path, pg_cluster, f"migrations_{backend}")
    upgrade(url)
    upgrade(url)  # a second run is a no-op

    async def diff() -> list[object]:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            result = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
        await engine.dispose()
        return list(result)

    assert asyncio.run(diff()) == []
