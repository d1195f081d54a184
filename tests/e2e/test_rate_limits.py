"""Requests per API key: past PAYMUX_RATE_LIMIT_REQUESTS in a window, 429 rate_limited with
Retry-After; other keys unaffected. On PostgreSQL two API processes share one count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, database_url, free_port, make_settings
from paymux.storage.migrate import upgrade
from support.pgcluster import PgCluster

LIMIT = 5
WINDOW = 3600.0  # one window for the whole test: it never straddles two


def start(url: str, tmp: Path) -> RunningServer:
    tmp.mkdir(exist_ok=True)
    settings = make_settings(
        url, tmp, free_port(), rate_limit_requests=LIMIT, rate_limit_window_seconds=WINDOW
    )
    return RunningServer(settings).start()


@pytest.fixture(params=["sqlite", "postgres"])
def servers(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[list[RunningServer]]:
    url = database_url(request.param, tmp_path, pg_cluster, f"rate_{request.param}")
    upgrade(url)
    running = [start(url, tmp_path)]
    if request.param == "postgres":  # a second API process on the same database
        running.append(start(url, tmp_path / "second"))
    try:
        yield running
    finally:
        for server in running:
            server.stop()


def get(server: RunningServer, key: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/payment_intents", timeout=10,
                     headers={"authorization": f"Bearer {key}"})


def test_a_key_past_its_limit_gets_429_with_retry_after(servers: list[RunningServer]) -> None:
    first = servers[0]
    _, key = first.new_key()
    _, other_key = first.new_key()
    for _ in range(LIMIT):
        assert get(first, key).status_code == 200
    refused = get(first, key)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["type"], error["retryable"]) == (
        "rate_limited", "rate_limit_error", True)
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW
    assert refused.headers["request-id"].startswith("req_")
    assert get(first, other_key).status_code == 200  # limits are per key
    if len(servers) > 1:
        # The other process counts the same key in the same window: refused there too.
        assert get(servers[1], key).status_code == 429
        _, fresh = servers[1].new_key()
        for _ in range(LIMIT - 1):
            assert get(servers[1], fresh).status_code == 200
        assert get(first, fresh).status_code == 200  # the LIMIT-th, counted across both
        assert get(first, fresh).status_code == 429
