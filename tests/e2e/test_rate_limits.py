"""Requests per API key: past PAYMUX_RATE_LIMIT_REQUESTS in a window, 429 rate_limited with
Retry-After; other keys unaffected. Requests with no key or a bad one, per client address:
past PAYMUX_RATE_LIMIT_UNAUTHENTICATED_REQUESTS, the same 429 instead of the 401, a valid key
from that address unaffected, X-Forwarded-For believed only from PAYMUX_TRUSTED_PROXIES. On
PostgreSQL two API processes share one count."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from conftest import RunningServer, database_url, free_port, make_settings
from paymux.api.app import create_app
from paymux.config import Settings
from paymux.services.ratelimit import address_hash
from paymux.storage.migrate import upgrade
from support.pgcluster import PgCluster

LIMIT = 5
BAD_LIMIT = 4  # requests without a valid key, per address
# One window for the whole test: windows start at multiples of their length since the
# epoch, so an hour-long one straddled two when a run crossed the hour (CI at 00:00 did).
WINDOW = 1_000_000_000.0  # until 2033
_DBS = itertools.count()  # a database per test (a cluster is shared by the session)
ADMIN_KEY = "adm_rate_limit_test_0123456789abcdef"


class ServedLikeCli(RunningServer):
    """A test server whose uvicorn believes X-Forwarded-* exactly as ``paymux serve``
    configures it (cli.py): only from PAYMUX_TRUSTED_PROXIES (uvicorn's own default would
    believe 127.0.0.1)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_config=None,
            lifespan="on", timeout_graceful_shutdown=5,
            proxy_headers=bool(settings.trusted_proxy_list()),
            forwarded_allow_ips=settings.trusted_proxy_list(),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)


def start(url: str, tmp: Path, trusted_proxies: str = "") -> RunningServer:
    tmp.mkdir(exist_ok=True)
    settings = make_settings(
        url, tmp, free_port(), rate_limit_requests=LIMIT, rate_limit_window_seconds=WINDOW,
        rate_limit_unauthenticated_requests=BAD_LIMIT,
        rate_limit_unauthenticated_window_seconds=WINDOW,
        trusted_proxies=trusted_proxies, admin_key=ADMIN_KEY,
    )
    return ServedLikeCli(settings).start()


@pytest.fixture(params=["sqlite", "postgres"])
def servers(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[list[RunningServer]]:
    url = database_url(request.param, tmp_path, pg_cluster, f"rate_{request.param}_{next(_DBS)}")
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


def bad(server: RunningServer, authorization: str | None = "Bearer sk_test_not_a_real_key",
        forwarded_for: str | None = None, path: str = "/v1/payment_intents") -> httpx.Response:
    headers = {"authorization": authorization} if authorization is not None else {}
    if forwarded_for is not None:
        headers["x-forwarded-for"] = forwarded_for
    return httpx.get(f"{server.url}{path}", timeout=10, headers=headers)


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"], error["retryable"]) == (
        "rate_limited", "rate_limit_error", True)
    assert 1 <= int(response.headers["retry-after"]) <= WINDOW
    assert response.headers["request-id"].startswith("req_")


def stored_count(server: RunningServer, address: str) -> int:
    rows = server.sql("select count from rate_limit_windows where key_hash = :h",
                      h=address_hash(address))
    return sum(int(r[0]) for r in rows)


def test_requests_without_a_valid_key_are_limited_per_address(
    servers: list[RunningServer],
) -> None:
    first = servers[0]
    _, key = first.new_key()
    # Every way of not authenticating counts: no header, a wrong key, a malformed header.
    answers = [
        bad(first, None),
        bad(first),
        bad(first, "Bearer"),
        bad(first, "Basic c2tfdGVzdDo="),
    ]
    assert [r.status_code for r in answers] == [401] * BAD_LIMIT
    assert [r.json()["error"]["code"] for r in answers] == [
        "api_key_missing", "api_key_invalid", "api_key_invalid", "api_key_invalid"]
    for _ in range(3):  # a flood past the limit: refused, not looked at
        assert_rate_limited(bad(first))
    assert_rate_limited(bad(first, None))
    # A bad admin key from the same address is refused the same way.
    assert_rate_limited(bad(first, "Bearer adm_guess", path="/v1/admin/jobs"))
    # The address's valid key still works: only failures count, and it has its own limit.
    assert get(first, key).status_code == 200
    admin = bad(first, f"Bearer {ADMIN_KEY}", path="/v1/admin/jobs")
    assert admin.status_code == 200, admin.text
    if len(servers) > 1:
        # Counted once past the limit, then refused in the process without writing again.
        assert stored_count(first, "127.0.0.1") == BAD_LIMIT + 1
        # The other process shares the count: its first bad request is already past it.
        assert_rate_limited(bad(servers[1]))
        assert stored_count(first, "127.0.0.1") == BAD_LIMIT + 2
        assert get(servers[1], key).status_code == 200


@pytest.fixture(params=["sqlite", "postgres"])
def proxied(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """A server behind a trusted proxy (127.0.0.1) and one that trusts no proxy."""
    url = database_url(
        request.param, tmp_path, pg_cluster, f"rate_xff_{request.param}_{next(_DBS)}")
    upgrade(url)
    behind = start(url, tmp_path / "behind", trusted_proxies="127.0.0.1")
    try:
        direct = start(url, tmp_path / "direct")
        try:
            yield behind, direct
        finally:
            direct.stop()
    finally:
        behind.stop()


def test_the_address_is_the_forwarded_client_only_behind_a_trusted_proxy(
    proxied: tuple[RunningServer, RunningServer],
) -> None:
    behind, direct = proxied
    # Behind the proxy each client is counted by the address the proxy reports.
    for _ in range(BAD_LIMIT):
        assert bad(behind, forwarded_for="203.0.113.7").status_code == 401
    assert_rate_limited(bad(behind, forwarded_for="203.0.113.7"))
    assert bad(behind, forwarded_for="203.0.113.8").status_code == 401  # another client
    # Without a trusted proxy a client cannot escape its count by naming other addresses.
    for n in range(BAD_LIMIT):
        assert bad(direct, forwarded_for=f"198.51.100.{n + 1}").status_code == 401
    assert_rate_limited(bad(direct, forwarded_for="198.51.100.99"))


def test_behind_a_trusted_proxy_the_address_it_appended_is_counted_not_the_clients_entries(
    proxied: tuple[RunningServer, RunningServer],
) -> None:
    """A proxy appends the address it saw to the X-Forwarded-For its client sent: in
    ``spoofed, real`` only the right-hand entry is the proxy's word. A client naming a new
    left-hand address on every request still uses up its own (right-hand) count, and one
    naming a victim there puts nothing on the victim's count."""
    behind, _ = proxied
    shared = behind.settings.database_url.startswith("postgresql")  # counts in the database
    client, victim, steering = "203.0.113.50", "203.0.113.60", "203.0.113.70"
    for n in range(BAD_LIMIT):  # a fresh made-up address in front each time
        assert bad(behind, forwarded_for=f"198.51.100.{n + 1}, {client}").status_code == 401
    assert_rate_limited(bad(behind, forwarded_for=f"198.51.100.77, {client}"))
    assert_rate_limited(bad(behind, forwarded_for=client))  # the same client, plainly
    if shared:
        assert stored_count(behind, client) == BAD_LIMIT + 1
        assert stored_count(behind, "198.51.100.1") == 0

    # Another client naming the victim in front: counted as itself, the victim untouched.
    for _ in range(BAD_LIMIT):
        assert bad(behind, forwarded_for=f"{victim}, {steering}").status_code == 401
    assert_rate_limited(bad(behind, forwarded_for=f"{victim}, {steering}"))
    assert_rate_limited(bad(behind, forwarded_for=f"{client}, {steering}"))
    if shared:
        assert stored_count(behind, victim) == 0
    # The victim has its whole allowance: BAD_LIMIT answers, then the 429.
    for _ in range(BAD_LIMIT):
        assert bad(behind, forwarded_for=victim).status_code == 401
    assert_rate_limited(bad(behind, forwarded_for=victim))
