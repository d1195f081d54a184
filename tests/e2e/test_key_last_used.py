"""A key's last use is shown through the admin API (issue 8: "last-used time per key"), on
SQLite and PostgreSQL: none before the key is used, then the time of its first use (noted at
most once a minute per process, so a later use within the minute does not move it, and one
after the minute does: pinned with a clock the test moves); a key that failed to authenticate
is not "used"; another key of the account is unaffected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningServer, free_port, make_settings, migrated_database_url
from support.harness import START_US, Harness
from support.pgcluster import PgCluster

ADMIN = "adm_" + "u" * 24


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"last-used-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"last_used_{request.param}")
    running = RunningServer(make_settings(url, tmp, free_port(), admin_key=ADMIN)).start()
    try:
        yield running
    finally:
        running.stop()


def admin(server: RunningServer, method: str, path: str, **kw: Any) -> dict[str, Any]:
    r = httpx.request(method, f"{server.url}/v1/admin/keys{path}", timeout=30,
                      headers={"authorization": f"Bearer {ADMIN}"}, **kw)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_a_keys_last_use_is_shown_by_the_admin_api(server: RunningServer) -> None:
    used = admin(server, "POST", "", json={"type": "secret", "name": "used"})
    idle = admin(server, "POST", "", json={"account": used["account"], "type": "secret",
                                          "name": "idle"})
    assert admin(server, "GET", f"/{used['id']}")["last_used"] is None
    before = int(time.time())
    r = httpx.get(f"{server.url}/v1/payment_intents", timeout=30,
                  headers={"authorization": f"Bearer {used['secret']}"})
    assert r.status_code == 200, r.text
    after = int(time.time())
    first = admin(server, "GET", f"/{used['id']}")["last_used"]
    assert isinstance(first, int) and before <= first <= after
    time.sleep(1.1)
    httpx.get(f"{server.url}/v1/payment_intents", timeout=30,
              headers={"authorization": f"Bearer {used['secret']}"})
    assert admin(server, "GET", f"/{used['id']}")["last_used"] == first  # once a minute
    # A wrong key that ends like the idle one uses nothing.
    wrong = idle["secret"][:-6] + "zzzzzz"
    assert httpx.get(f"{server.url}/v1/payment_intents", timeout=30,
                     headers={"authorization": f"Bearer {wrong}"}).status_code == 401
    listed = admin(server, "GET", "", params={"account": used["account"]})["data"]
    assert {k["id"]: k["last_used"] for k in listed} == {used["id"]: first, idle["id"]: None}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_keys_last_use_is_noted_at_most_once_a_minute(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"last_used_{uuid.uuid4().hex[:8]}")

    async def main() -> None:
        async with Harness.open(url, tmp_path) as h:  # its clock: START_US until moved
            async def use_then_last_used() -> int | None:
                r = await h.http.get("/v1/payment_intents")
                assert r.status_code == 200, r.text
                rows = await h.sql("select last_used_us from api_keys where account_id = :a",
                                   a=h.account)
                assert len(rows) == 1
                value: int | None = rows[0][0]
                return value

            assert await use_then_last_used() == START_US
            h.advance(57)  # past the key cache (2 s), within the minute: not noted again
            assert await use_then_last_used() == START_US
            h.advance(3)  # a minute after the noted use (the key read again): noted again
            assert await use_then_last_used() == START_US + 60_000_000
            h.advance(30)  # 30 s after that one: kept
            assert await use_then_last_used() == START_US + 60_000_000
            h.advance(45)  # 75 s after it: noted again
            assert await use_then_last_used() == START_US + 135_000_000

    asyncio.run(main())
