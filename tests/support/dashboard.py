"""Dashboard test helpers: users made through the dashboard's own service (as ``paymux users
create`` does), their current TOTP code, and a signed-in httpx client (``signed_in``: of a
RunningServer; ``harness_client``: of an in-process Harness, through ASGI).

``DashboardServer``: a RunningServer with PAYMUX_ENCRYPTION_KEYS set (the TOTP secret is
stored sealed), able to make users on its control loop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp

from conftest import RunningServer, make_settings, migrated_database_url
from paymux.dashboard.auth import SESSION_COOKIE
from paymux.security.envelope import Keyring, generate_key_entry
from paymux.services import Paymux
from paymux.services.dashboard_users import DashboardUsers
from support.harness import Harness
from support.pgcluster import PgCluster
from support.processes import free_port

__all__ = [
    "PASSWORD",
    "DashboardUser",
    "csrf_of",
    "dashboard_server",
    "encryption_keys",
    "harness_browser",
    "harness_client",
    "harness_user",
    "make_user",
    "page",
    "run_in_harness",
    "signed_in",
]

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def encryption_keys() -> str:
    return generate_key_entry("k1")


def dashboard_server(
    backend: str, tmp: Path, pg: PgCluster | None, name: str
) -> Iterator[RunningServer]:
    """A server on a new migrated database of ``backend``, with encryption keys (for the
    users' TOTP secrets); stopped when the generator ends."""
    url = migrated_database_url(backend, tmp, pg, name)
    running = RunningServer(make_settings(url, tmp, free_port(), encryption_keys=encryption_keys()))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass(frozen=True)
class DashboardUser:
    email: str
    password: str
    role: str
    secret: str  # the TOTP secret, from the provisioning URI shown once at creation
    account_id: str

    def code(self, at: float | None = None) -> str:
        return pyotp.TOTP(self.secret).at(at) if at is not None else pyotp.TOTP(self.secret).now()


def make_user(server: RunningServer, account_id: str, role: str, email: str) -> DashboardUser:
    settings = server.settings
    keys = settings.encryption_keys
    assert keys is not None, "the dashboard server needs encryption_keys"

    async def create() -> Any:
        app = Paymux(settings)
        try:
            users = DashboardUsers(app.ctx, Keyring.parse(keys.get_secret_value()))
            return await users.create(
                email=email, password=PASSWORD, role=role, account_id=account_id
            )
        finally:
            await app.close()

    new = server._loop().run(create())
    secret = pyotp.parse_uri(new.provisioning_uri).secret
    return DashboardUser(new.email, PASSWORD, role, secret, account_id)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def signed_in(server: RunningServer, user: DashboardUser, at: float | None = None) -> httpx.Client:
    """An httpx client with a dashboard session of ``user`` (signed in through the form)."""
    client = httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)
    page = client.get("/dashboard/login")
    assert page.status_code == 200, page.text
    response = client.post(
        "/dashboard/login",
        data={
            "csrf_token": csrf_of(page.text),
            "email": user.email,
            "password": user.password,
            "code": user.code(at),
            "next": "/dashboard",
        },
    )
    assert response.status_code == 303, response.text
    return client


async def harness_user(
    h: Harness, role: str, *, account_id: str | None = None, email: str | None = None
) -> tuple[str, str]:
    """A new dashboard user of ``role`` on ``account_id`` (default: the harness's account),
    made through the users service: its e-mail (default: ``<role>-<account>@example.com``)
    and its TOTP code at the harness clock's now (its password is ``PASSWORD``). The harness
    needs ``encryption_keys``."""
    users = DashboardUsers(h.app.ctx, h.app.connections.keyring)
    address = email or f"{role}-{account_id or h.account}@example.com".lower()
    new = await users.create(
        email=address, password=PASSWORD, role=role, account_id=account_id or h.account
    )
    secret = pyotp.parse_uri(new.provisioning_uri).secret
    return address, pyotp.TOTP(secret).at(h.clock.now_us() // 1_000_000)


def harness_browser(
    h: Harness, *, scheme: str = "https", cookies: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A client of ``h``'s app through ASGI at ``<scheme>://paymux.test``: signed out unless
    ``cookies`` hold a session."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=h._asgi),
        base_url=f"{scheme}://paymux.test",
        cookies=cookies,
        timeout=30,
    )


async def harness_client(
    h: Harness, role: str, *, account_id: str | None = None, email: str | None = None
) -> httpx.AsyncClient:
    """A client of ``h``'s app (ASGI, over https) with a dashboard session of a new user of
    ``role`` on ``account_id`` (default: the harness's account). The harness needs
    ``encryption_keys``."""
    address, code = await harness_user(h, role, account_id=account_id, email=email)
    users = DashboardUsers(h.app.ctx, h.app.connections.keyring)
    token = await users.login(address, PASSWORD, code, None)
    return harness_browser(h, cookies={SESSION_COOKIE: token})


def run_in_harness(db: str, tmp: Path, test: Callable[[Harness], Awaitable[None]]) -> None:
    """Run ``test`` against an in-process Harness on ``db`` whose keyring seals TOTP secrets."""

    async def main() -> None:
        async with Harness.open(db, tmp, encryption_keys=generate_key_entry("k1")) as h:
            await test(h)

    asyncio.run(main())


async def page(client: httpx.AsyncClient, path: str) -> str:
    """The HTML of a dashboard page that must answer 200."""
    r = await client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.text
