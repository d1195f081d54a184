"""A paymux server on a fresh database, for the test modules whose server needs settings of
its own (a gateway's fake at the HTTP seam, routes, no inline retries): the set-up those
modules wrote each time, and the per-test client of a fresh account on it.

A module fixture's body::

    paypal = FakePayPal(...).start()
    with served(tmp_path_factory, "invoice-paypal", also_stop=[paypal],
                paypal_api_base=paypal.url) as server:
        yield Env(paypal, server)

and a test fixture's: ``yield from account_api(env.server)``.

The migration tests' set-up (statements run as they are, on the URL, in one transaction)
is ``run_sql``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import Api, RunningServer, make_settings, migrated_database_url
from support.pgcluster import PgCluster
from support.processes import free_port

__all__ = ["account_api", "run_sql", "served"]


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@contextmanager
def served(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    backend: str = "sqlite",
    pg_cluster: PgCluster | None = None,
    port: int | None = None,
    also_stop: Sequence[_Stoppable] = (),
    **settings: Any,
) -> Iterator[RunningServer]:
    """A server (test settings, then ``settings``) on a new migrated database of ``backend``
    in a temporary directory called ``name``, on ``port`` (a free one if not given: a module
    whose fakes must know the server's address before it starts picks it first). At the
    end, or if it cannot start, the server is stopped, then each of ``also_stop`` (the
    fakes the caller started for it), in order."""
    try:
        tmp = tmp_path_factory.mktemp(name)
        url = migrated_database_url(backend, tmp, pg_cluster, name.replace("-", "_"))
        server = RunningServer(
            make_settings(url, tmp, free_port() if port is None else port, **settings)
        ).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        for fake in also_stop:
            fake.stop()


def account_api(server: RunningServer) -> Iterator[Api]:
    """A fixture's body: an ``Api`` client for a fresh account on ``server``, closed after."""
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


def run_sql(url: str, *statements: str) -> list[list[Any]]:
    """Run ``statements`` on the database at ``url`` in one transaction, on an engine of
    their own (not paymux's); the rows each answered (empty for a statement without)."""

    async def main() -> list[list[Any]]:
        engine = create_async_engine(url)
        try:
            results = []
            async with engine.begin() as conn:
                for sql in statements:
                    result = await conn.execute(text(sql))
                    results.append(list(result.all()) if result.returns_rows else [])
            return results
        finally:
            await engine.dispose()

    return asyncio.run(main())
