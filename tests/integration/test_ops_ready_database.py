"""``/health/ready`` while the database is down (issue 16), on a real PostgreSQL: paymux
in-process (support/harness.py) reaches the throwaway cluster through a TCP relay on
127.0.0.1 that the test takes down (its listening socket closed: new connections refused;
the pooled ones cut) and brings back on the same port. Down: 503, the database check failing
by name, no URL or password in the answer; back: ready again, with no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from support.databases import migrated_database_fixture
from support.harness import Harness

pg = migrated_database_fixture("ops_ready", ["postgres"])


class Relay:
    """Forwards TCP connections from a port on 127.0.0.1 to the database's."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """New connections refused, the open ones cut."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()
        await self.server.wait_closed()
        self.server = None

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}


def test_ready_is_503_while_the_database_is_down_and_ready_again_after(
    pg: str, tmp_path: Path
) -> None:
    url = make_url(pg)
    assert url.host is not None and url.port is not None

    async def ready(h: Harness) -> tuple[int, dict[str, Any]]:
        r = await h.http.get("/health/ready")
        return r.status_code, r.json()

    async def main() -> None:
        relay = Relay(url.host or "", url.port or 0)
        await relay.up()
        relayed = url.set(port=relay.port).render_as_string(hide_password=False)
        try:
            async with Harness.open(relayed, tmp_path, ready_cache_seconds=0) as h:
                status, body = await ready(h)
                assert status == 200, body
                await relay.down()
                for _ in range(2):  # the pooled connections cut, then none to be had
                    status, body = await ready(h)
                    assert status == 503, body
                    assert body["status"] == "unavailable"
                    checks = body["checks"]
                    assert checks["database"]["ok"] is False and checks["database"]["detail"]
                    assert set(checks) == {"database"}  # the others ask the same database
                    text = str(body)
                    assert str(relay.port) not in text and "postgresql" not in text
                    if url.password:
                        assert url.password not in text
                await relay.up()  # the same port again
                status, body = await ready(h)
                assert status == 200, body
                assert body["checks"]["database"] == {"ok": True}
        finally:
            if relay.server is not None:
                await relay.down()

    asyncio.run(main())
