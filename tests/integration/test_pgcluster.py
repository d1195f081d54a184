"""Self-test of the throwaway PostgreSQL cluster helper (tests/support/pgcluster.py)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import asyncpg
import pytest

# tests/ is not a package; make tests/support importable as `support` however pytest
# was started (a tests/conftest.py would put tests/ on sys.path too).
_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.pgcluster import PgCluster, postgres_available, require_mode  # noqa: E402


def _port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _query(dsn: str) -> tuple[int, str, str]:
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        one = await conn.fetchval("select 1")
        version = await conn.fetchval("select version()")
        dbname = await conn.fetchval("select current_database()")
    finally:
        await conn.close()
    return one, version, dbname


@pytest.mark.postgres
def test_cluster_start_create_database_query_stop() -> None:
    mode = require_mode()
    if mode == "skip":
        pytest.skip("PAYMUX_TEST_POSTGRES=skip")
    reason = postgres_available()
    if reason is not None:
        if mode == "required":
            pytest.fail(f"PostgreSQL is required here but unavailable: {reason}")
        pytest.skip(reason)

    cluster = PgCluster()
    began = time.monotonic()
    try:
        url = cluster.start()
        startup = time.monotonic() - began
        port = cluster.port
        assert port is not None
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        assert _port_is_open(port)

        db_url = cluster.create_database("paymux_selftest")
        assert db_url == f"postgresql+asyncpg://postgres@127.0.0.1:{port}/paymux_selftest"

        one, version, dbname = asyncio.run(_query(cluster.dsn("paymux_selftest")))
        assert one == 1
        assert version.startswith("PostgreSQL ")
        assert dbname == "paymux_selftest"
        tmpdir = cluster.tmpdir
        assert tmpdir is not None
    finally:
        cluster.stop()

    assert not _port_is_open(port)
    assert not tmpdir.exists()
    cluster.stop()  # idempotent
    # Generous bound: catches a cluster that waits on fsync or a pg_ctl timeout.
    assert startup < 30, f"cluster start took {startup:.1f}s"
