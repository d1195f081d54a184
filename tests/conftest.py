"""Shared fixtures: a real paymux server (uvicorn on 127.0.0.1) per database backend.

``server`` is parametrized over SQLite and PostgreSQL. PostgreSQL is a throwaway cluster
started as the ``postgres`` user (support/pgcluster.py): skipped when its binaries are
missing, unless PAYMUX_TEST_POSTGRES=required or CI is set, where it must start.

Each test gets its own account and API key (``api``), so tests share a server without
sharing data, which is also how account isolation is exercised everywhere.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from httpx._transports import default as httpx_transports
from sqlalchemy import text

from paymux.api.app import create_app
from paymux.config import Settings
from paymux.services import Paymux
from paymux.storage.db import Database
from support.dbtemplate import migrated_pg_database, migrated_sqlite_file
from support.ordering import order_files
from support.pgcluster import PgCluster, postgres_available, require_mode
from support.processes import START_TIMEOUT, free_port  # free_port: imported from here too
from support.sandboxes import LocalStripe

# Each test makes its own account (above), and most of them pay through the gateways the
# server's environment configures (localstripe, Prism, the scripted fake): as one merchant
# with several accounts would, they share them. tests/e2e/test_connections.py runs the
# default, where environment gateways are the default account's alone.
os.environ.setdefault("PAYMUX_ENVIRONMENT_CONNECTIONS", "all")

BACKENDS = ["sqlite", "postgres"]
T = TypeVar("T")

# Every httpx client (``httpx.get`` makes one per call, each ``Api`` one, stripe-python its
# own) built its own default SSL context, loading certifi's CA bundle: 10-60 ms of CPU each,
# 2-3 per test, over 7,000 tests, for requests that all go to http://127.0.0.1. In this
# process the default context (verify=True, no client certificate) is made once and shared,
# as one client shares it between its connections; any other ``verify`` is built as asked.
_create_ssl_context = httpx_transports.create_ssl_context


@functools.cache
def _default_ssl_context(
    trust_env: bool, cert_file: str | None, cert_dir: str | None
) -> ssl.SSLContext:
    return _create_ssl_context(verify=True, cert=None, trust_env=trust_env)


def _shared_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
    if verify is True and cert is None:
        return _default_ssl_context(
            trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
        )
    return _create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


httpx_transports.create_ssl_context = _shared_ssl_context


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order_files(items)  # the long files first: support/ordering.py


def make_settings(database_url: str, tmp: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "sandbox_db": str(tmp / "sandbox.db"),
        "host": "127.0.0.1",
        "port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "attempt_settle_after_seconds": 0.3,
        "maintenance_interval": 0.2,
        "worker_poll_interval": 0.05,
        "gateway_retry_base_delay": 0.01,
        "gateway_retry_max_delay": 0.05,
        "log_json": False,
        "sandbox_controls": True,  # the tests inject faults and latency
        # Connections may point at the test doubles on loopback (localstripe, Prism, fakes);
        # a deployment allows only each gateway's published hosts (security/gateway_hosts.py).
        "allowed_gateway_hosts": "127.0.0.1",
        # A key's request rate: the default 100 a second is within reach of a test's
        # sequential SDK calls on a fast machine (a 429 the test did not ask for). The limiter
        # still runs on every request; the rate-limit tests set their own limits.
        "rate_limit_requests": 1000,
    }
    values.update(overrides)
    return Settings(**values)


class _LoopThread:
    """An event loop running in a daemon thread, for a test's synchronous calls into async code.

    One per server: the ``Paymux`` that makes the test accounts and keys and the ``Database``
    ``sql()`` reads through are made once and kept (their pools open), instead of built and
    closed for every key (about 20 ms of CPU and a pool each time, 1,200+ tests). Calls are
    thread-safe (``run_coroutine_threadsafe``) and work from any thread, one with a running
    loop included."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


class RunningServer:
    """uvicorn serving create_app(settings) in a thread.

    The port (``settings.port``, usually ``free_port()``'s) is bound here, at once, and the
    bound socket handed to uvicorn: uvicorn would bind it only after the app's start-up, and
    meanwhile another process (or an outgoing connection's local port) could take it.
    Subclasses may replace ``_server`` (their own uvicorn config); it serves on that socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.base_url()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(("127.0.0.1", settings.port))
        except OSError:
            self._socket.close()
            raise
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_config=None,
            lifespan="on", timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._control: _LoopThread | None = None
        self._control_lock = threading.Lock()
        self._app: Paymux | None = None
        self._db: Database | None = None

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> RunningServer:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT  # generous: two busy cores
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("paymux test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(timeout=30)
        self._socket.close()
        with self._control_lock:
            control, self._control = self._control, None
            app, self._app = self._app, None
            db, self._db = self._db, None
        if control is not None:
            try:
                if app is not None:
                    control.run(app.close(), timeout=30)
                if db is not None:
                    control.run(db.dispose(), timeout=30)
            finally:
                control.close()

    def _loop(self) -> _LoopThread:
        with self._control_lock:
            if self._control is None:
                self._control = _LoopThread()
            return self._control

    def new_key(self) -> tuple[str, str]:
        """A new account and its secret key, made through paymux's own services (as
        ``paymux keys create --new-account`` would), not through the server under test."""
        control = self._loop()

        async def make() -> tuple[str, str]:
            if self._app is None:  # made on the control loop, used only there
                self._app = Paymux(self.settings)
            new = await self._app.accounts.create_key()
            return new.account_id, new.key

        return control.run(make())

    def sql(self, statement: str, **params: Any) -> list[Any]:
        control = self._loop()

        async def run() -> list[Any]:
            if self._db is None:
                self._db = Database(self.settings.database_url, pool_size=1)
            writes = not statement.lstrip().lower().startswith("select")
            async with self._db.write() if writes else self._db.read() as s:
                result = await s.execute(text(statement), params)
                return list(result.all()) if result.returns_rows else []

        return control.run(run())


def sandboxes_required() -> bool:
    """Whether the gateway sandboxes (localstripe, Prism) must run: in CI, or when
    PAYMUX_TEST_SANDBOXES=required; otherwise a test that needs a missing one is skipped."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1") or (
        os.environ.get("PAYMUX_TEST_SANDBOXES", "").strip().lower() == "required"
    )


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    """One localstripe per test module (its webhooks go to that module's servers only)."""
    reason = LocalStripe.unavailable()
    if reason is not None:
        if sandboxes_required():
            pytest.fail(f"localstripe is required here (CI or PAYMUX_TEST_SANDBOXES): {reason}")
        pytest.skip(reason)
    server = LocalStripe().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster | None]:
    mode = require_mode()
    reason = postgres_available()
    if mode == "skip" or (reason and mode == "auto"):
        yield None
        return
    if reason:
        pytest.fail(f"PostgreSQL is required here but cannot start: {reason}")
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def database_url(backend: str, tmp: Path, pg: PgCluster | None, name: str) -> str:
    """A new, EMPTY database of ``backend`` (no schema): for tests of the migrations."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
    if pg is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    return pg.create_database(name)


def migrated_database_url(backend: str, tmp: Path, pg: PgCluster | None, name: str) -> str:
    """A new database of ``backend`` at the head revision: what ``database_url`` then
    ``upgrade`` give, copied from a template migrated once per process (support/dbtemplate.py)."""
    if backend == "sqlite":
        return migrated_sqlite_file(tmp / (name + ".db"))
    if pg is None:
        pytest.skip("PostgreSQL binaries not found (set PAYMUX_TEST_POSTGRES=required to fail)")
    return migrated_pg_database(pg, name)


_SERVER_SETUPS = itertools.count()


def fresh_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster | None
) -> Iterator[RunningServer]:
    """A server on a new migrated database of ``backend`` (no data yet), stopped when the
    generator ends."""
    tmp = tmp_path_factory.mktemp(f"server-{backend}")
    # Set up again for each module (and backend): each set-up gets a database of its own.
    url = migrated_database_url(
        backend, tmp, pg_cluster, f"paymux_{backend}_{next(_SERVER_SETUPS)}"
    )
    running = RunningServer(make_settings(url, tmp, free_port())).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    """The server most tests share (one per backend), each test with an account of its own.

    Module scope, not session: under ``pytest -n 2 --dist loadfile`` (make test) each file
    started both anyway (a session fixture's parameter switching back tears it down), and a
    session-scoped one outlived its file, idle but its worker polling (about a tenth of a
    core each) through every later file that did not use it."""
    yield from fresh_server(request.param, tmp_path_factory, pg_cluster)


class Api:
    """An httpx client for one fresh account on a running server."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.account_id, self.key = server.new_key()
        self.http = httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {self.key}"}, timeout=30
        )

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=json, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def ok(self, method: str, path: str, json: Any = None, **kw: Any) -> dict[str, Any]:
        response = self.http.request(method, path, json=json, **kw)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def wait_for(self, path: str, field: str, value: Any, timeout: float = 30.0) -> dict[str, Any]:
        # 30 s: a background job on two busy cores (CI) can take far longer than on a quiet
        # machine; a passing wait returns as soon as the value is there.
        deadline = time.monotonic() + timeout
        while True:
            data = self.ok("GET", path)
            if data.get(field) == value:
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}.{field} is {data.get(field)!r}, wanted {value!r}")
            time.sleep(0.05)

    def sandbox(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = httpx.request(method, f"{self.server.url}/sandbox{path}", json=json, timeout=10)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def charges(self, pi_id: str) -> list[dict[str, Any]]:
        return list(self.sandbox("GET", f"/_control/charges?reference={pi_id}")["data"])

    def counts(self) -> dict[str, int]:
        """Rows this account owns, per table: to show a refused request changed nothing."""
        tables = ["payment_intents", "refunds", "customers", "payment_methods", "events",
                  "gateway_attempts"]
        return {
            t: self.server.sql(f"select count(*) from {t} where account_id = :a",
                               a=self.account_id)[0][0]
            for t in tables
        }

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        httpx.delete(f"{server.url}/sandbox/_control/faults", timeout=10)
        client.close()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("PAYMUX_LOG_JSON", "false")
