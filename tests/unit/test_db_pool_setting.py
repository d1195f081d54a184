"""PAYMUX_DB_POOL_SIZE sizes each process's database pool (issue 10, memory): on PostgreSQL
that many connections kept plus as many in overflow, on SQLite the readers beside the one
writer. Each PostgreSQL connection keeps its prepared statements, so 10 + 10 made a process
~2.6 MiB larger than 5 + 5 (docs/benchmarks.md); the default is 5."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from paymux.config import Settings
from paymux.root import Paymux


def test_the_default_pool_is_five() -> None:
    assert Settings().db_pool_size == 5


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMUX_DB_POOL_SIZE", "3")
    assert Settings().db_pool_size == 3


def test_a_pool_of_none_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(db_pool_size=0)


def test_postgres_keeps_the_size_and_as_many_in_overflow() -> None:
    # The engine is built without connecting: no server is needed to read its pool.
    settings = Settings(
        database_url="postgresql+asyncpg://paymux@127.0.0.1:1/paymux", db_pool_size=3
    )
    db = Paymux(settings).ctx.db
    assert db.reader is db.writer
    assert db.writer.pool.size() == 3  # type: ignore[attr-defined]
    assert db.writer.pool._max_overflow == 3  # type: ignore[attr-defined]


def test_sqlite_sizes_the_readers_and_keeps_one_writer(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", db_pool_size=4)
    db = Paymux(settings).ctx.db
    assert db.reader.pool.size() == 4  # type: ignore[attr-defined]
    assert db.writer.pool.size() == 1  # type: ignore[attr-defined]
