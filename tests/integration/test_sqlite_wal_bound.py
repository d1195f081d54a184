"""The SQLite WAL stays bounded (issue 10, memory): the inline driver's background checkpoint
(``sqlite_inline._checkpoint``) is PASSIVE, and under steady load SQLite never found the WAL
copied whole with no reader in it, so it never rewound it: ``paymux serve``'s WAL grew by
0.24 MiB a payment (1.7 GiB after 11,000 payments) and the WAL index mapped into the process
with it. Past ``WAL_TRUNCATE_FRAMES`` the checkpoint now empties the WAL, once no reader is
in it; a reader in it makes it give up (after ``TRUNCATE_WAIT``) until the next checkpoint.

Plain sqlite3 connections on one file, the checkpoint called directly: no threads, no timing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from paymux.storage import sqlite_inline

BLOB = bytes(range(256)) * 64  # 16 KiB: several WAL frames per commit


def _database(path: Path) -> sqlite3.Connection:
    writer = sqlite3.connect(path, isolation_level=None)
    assert writer.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as the driver's connections run
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    return writer


def _write(writer: sqlite3.Connection, commits: int) -> None:
    for _ in range(commits):
        writer.execute("INSERT INTO t (v) VALUES (?)", (BLOB,))


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _frames(path: Path) -> int:
    with sqlite3.connect(path, isolation_level=None) as probe:
        row = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[1])


def test_a_wal_past_the_bound_is_emptied_once_no_reader_is_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "WAL_TRUNCATE_FRAMES", 40)
    monkeypatch.setattr(sqlite_inline, "TRUNCATE_WAIT", 0.0)
    path = tmp_path / "bound.db"
    writer = _database(path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        _write(writer, 10)  # 10 commits of 16 KiB: over 40 frames
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (10,)  # in the WAL
        _write(writer, 2)
        sqlite_inline._checkpoint(str(path), False)
        # A reader still in the WAL: not emptied (and no error, no wait past TRUNCATE_WAIT).
        assert _wal(path).stat().st_size > 0
        reader.execute("COMMIT")
        sqlite_inline._checkpoint(str(path), False)
        assert _wal(path).stat().st_size == 0
        _write(writer, 1)  # the next write starts the WAL again from its first frame
        assert 0 < _frames(path) < 40
    finally:
        reader.close()
        writer.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*), sum(length(v)) FROM t").fetchone() == (
            13,
            13 * 16384,
        )


def test_a_wal_under_the_bound_is_only_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "WAL_TRUNCATE_FRAMES", 10_000)
    path = tmp_path / "small.db"
    writer = _database(path)
    try:
        _write(writer, 10)
        size = _wal(path).stat().st_size
        sqlite_inline._checkpoint(str(path), False)
        assert _wal(path).stat().st_size == size  # copied (PASSIVE), the file left as it was
        assert path.stat().st_size >= 10 * 16384  # the rows are in the database file
    finally:
        writer.close()
