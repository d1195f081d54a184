"""A connection's ``credentials[api_base]`` cannot point paymux's outbound calls at the
operator's network (SQLite and PostgreSQL, on a real server).

The hole: a merchant's key could create a test connection whose API base was loopback, a
private address or the cloud metadata address, and paymux then sent its gateway calls there
(a server-side request forgery). Now only each gateway's published hosts (https) are taken,
plus the hosts the operator allows in PAYMUX_ALLOWED_GATEWAY_HOSTS: this server allows
127.0.0.1 only (tests/conftest.py ``make_settings``), as a test deployment with stripe-mock
would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from paymux.services.connections import ConnectionParams
from support.pgcluster import PgCluster

ENCRYPTION_KEYS = generate_key_entry("k-hosts")
SECRET = "sk_test_hosts_0123456789"


class Listener:
    """An HTTP server on 127.0.0.1 that counts the requests it gets (and answers 500)."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(500)
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"hosts-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"gateway_hosts_{request.param}")
    settings = make_settings(url, tmp, free_port(), encryption_keys=ENCRYPTION_KEYS)
    assert settings.allowed_gateway_hosts == "127.0.0.1"
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def listener() -> Iterator[Listener]:
    served = Listener()
    yield served
    served.close()


def connection(gateway: str, base: str) -> dict[str, Any]:
    credentials: dict[str, Any] = {
        "stripe": {"secret_key": SECRET},
        "paypal": {"client_id": "id", "client_secret": "secret"},
        "square": {"access_token": "EAAAtoken"},
    }[gateway]
    return {"gateway": gateway, "credentials": {**credentials, "api_base": base}}


def pay(api: Api, via: str) -> httpx.Response:
    return api.post("/v1/payment_intents", {
        "amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        "gateway": via})


@pytest.mark.parametrize(("gateway", "base"), [
    ("stripe", "http://169.254.169.254/latest/meta-data"),
    ("stripe", "http://10.0.0.1"),
    ("stripe", "http://localhost:{port}"),  # loopback, but not as the operator allowed it
    ("stripe", "http://127.1:{port}"),
    ("stripe", "https://api.stripe.com@127.0.0.1:{port}"),
    ("stripe", "http://api.stripe.com"),
    ("paypal", "http://192.168.0.1"),
    ("paypal", "https://api-m.paypal.com.attacker.example"),
    ("square", "http://[::1]:{port}"),
    ("square", "https://metadata.google.internal"),
])
def test_an_api_base_outside_the_allowed_hosts_is_a_400_and_nothing_is_stored(
    server: RunningServer, listener: Listener, gateway: str, base: str
) -> None:
    api = Api(server)
    try:
        r = api.post("/v1/connections", connection(gateway, base.format(port=listener.port)))
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("parameter_invalid", "credentials[api_base]")
        assert error["message"].startswith("credentials[api_base]: ")
        assert server.sql("select count(*) from connections where account_id = :a",
                          a=api.account_id)[0][0] == 0
        assert listener.hits == []
    finally:
        api.close()


@pytest.mark.parametrize(("gateway", "base"), [
    ("stripe", "https://api.stripe.com"),
    ("paypal", "https://api-m.sandbox.paypal.com"),
    ("square", "https://connect.squareupsandbox.com"),
])
def test_the_gateway_s_published_host_is_taken(
    server: RunningServer, gateway: str, base: str
) -> None:
    api = Api(server)
    try:
        r = api.post("/v1/connections", connection(gateway, base))
        assert r.status_code == 200, r.text
    finally:
        api.close()


def test_an_update_to_a_forbidden_host_is_refused_and_the_old_base_kept(
    server: RunningServer, listener: Listener
) -> None:
    api = Api(server)
    try:
        allowed = f"http://127.0.0.1:{listener.port}"
        conn = api.ok("POST", "/v1/connections", connection("stripe", allowed))
        r = api.post(f"/v1/connections/{conn['id']}",
                     {"credentials": {"api_base": "http://169.254.169.254"}})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "credentials[api_base]"
        # Still the allowed base: a payment through the connection reaches it (and fails
        # there, as this listener answers 500).
        assert pay(api, conn["id"]).status_code >= 400
        assert listener.hits, "the allowed base was not called"
    finally:
        api.close()


def test_a_connection_stored_with_a_host_no_longer_allowed_is_never_called(
    server: RunningServer, listener: Listener
) -> None:
    """A connection stored before this rule (or before the operator narrowed the list):
    made here through the library with a deployment that allowed ``localhost``; the running
    server, which does not, refuses to call it."""
    api = Api(server)
    try:
        async def store() -> str:
            permissive = server.settings.model_copy(update={"allowed_gateway_hosts": "localhost"})
            app = Paymux(permissive)
            try:
                view = await app.connections.create(api.account_id, ConnectionParams(
                    gateway="stripe",
                    credentials={"secret_key": SECRET,
                                 "api_base": f"http://localhost:{listener.port}"}))
                return str(view["id"])
            finally:
                await app.close()

        conn_id = asyncio.run(store())
        r = pay(api, conn_id)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("parameter_invalid", "credentials[api_base]")
        assert conn_id in error["message"]
        assert listener.hits == []
    finally:
        api.close()
