"""An in-memory SQLite database URL is refused with what to give instead.

Each of paymux's SQLite connections (the one writer, the readers, the migrations' own) would
open an empty in-memory database of its own, so nothing written would be seen. Before, the
URL reached SQLAlchemy, whose pool for an in-memory database takes no pool size: `paymux
serve` died with "TypeError: Invalid argument(s) 'pool_size','max_overflow','pool_timeout'
sent to create_engine()", which says nothing of the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymux.config import Settings
from paymux.root import Paymux
from paymux.storage.db import Database


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite://",
        "sqlite:///:memory:",
        "sqlite+aiosqlite:///file:paymux?mode=memory&cache=shared&uri=true",
    ],
)
def test_an_in_memory_database_is_refused_with_what_to_give(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        Paymux(Settings(database_url=url))
    message = str(refused.value)
    assert repr(url) in message
    assert "in-memory SQLite database is not supported" in message
    assert "sqlite+aiosqlite:///./paymux.db" in message


def test_a_file_is_taken(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'paymux.db'}")
    assert db.is_sqlite
    assert db.writer is not db.reader
