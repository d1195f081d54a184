"""HTTPS in production (issue 16): ``paymux serve --ssl-certfile/--ssl-keyfile`` on 127.0.0.1
with a certificate made here (cryptography), live-mode keys refused over plain HTTP before
they are looked up, test keys keeping plain HTTP, X-Forwarded-Proto believed only from
PAYMUX_TRUSTED_PROXIES, HSTS on what came over TLS, and live outbound calls over https only.

Three real ``paymux serve`` processes share one SQLite database: one speaking TLS, one plain
(no proxy trusted), one plain behind a "proxy" on 127.0.0.1 (PAYMUX_TRUSTED_PROXIES).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import sqlite3
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paymux.config import Settings
from paymux.services import Paymux
from support.keys import random_token
from support.processes import PAYMUX, ServeProcess, paymux_env, wait_until
from support.tls_certificates import make_certificate

HSTS = "max-age=31536000; includeSubDomains"  # stated here, not read from the code
ADMIN_KEY = "adm_" + secrets.token_hex(20)


class Deployment:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = f"sqlite+aiosqlite:///{tmp / 'paymux.db'}"
        self.certfile, self.keyfile = make_certificate(tmp)
        self.trust = ssl.create_default_context(cafile=str(self.certfile))
        # Webhook endpoints' secrets are sealed with it.
        sealing = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.sealing = sealing
        self.tls = ServeProcess(
            tmp,
            self.db,
            command=[
                str(PAYMUX),
                "serve",
                "--ssl-certfile",
                str(self.certfile),
                "--ssl-keyfile",
                str(self.keyfile),
            ],
            start=False,
            name="paymux serve (TLS)",
            PAYMUX_ENCRYPTION_KEYS=sealing,
        )
        self.tls.url = f"https://127.0.0.1:{self.tls.port}"
        self.tls.spawn()
        wait_until("the TLS server", self._tls_up, timeout=120)
        # The two plain servers: the schema exists now; no second worker on SQLite.
        self.plain = ServeProcess(
            tmp,
            self.db,
            name="paymux serve (plain)",
            PAYMUX_RUN_WORKER="false",
            PAYMUX_RATE_LIMIT_UNAUTHENTICATED_REQUESTS="3",
            PAYMUX_ENCRYPTION_KEYS=sealing,
            PAYMUX_LOG_LEVEL="INFO",  # uvicorn's access log on: what it prints is checked
            PAYMUX_ADMIN_KEY=ADMIN_KEY,
        )
        self.proxied = ServeProcess(
            tmp,
            self.db,
            name="paymux serve (behind a proxy)",
            PAYMUX_RUN_WORKER="false",
            PAYMUX_TRUSTED_PROXIES="127.0.0.1",
            PAYMUX_ENCRYPTION_KEYS=sealing,
            PAYMUX_ADMIN_KEY=ADMIN_KEY,
        )
        self.account, self.test_key, self.live_keys = asyncio.run(self._keys())

    def _tls_up(self) -> bool:
        self.tls.check_alive()
        try:
            r = httpx.get(f"{self.tls.url}/health/live", verify=self.trust, timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def _keys(self) -> tuple[str, str, dict[str, str]]:
        app = Paymux(Settings(database_url=self.db, sandbox_db=str(self.tmp / "sandbox.db")))
        try:
            test = await app.keys.create(None)
            account = test[0].account_id
            live = {
                kind: (await app.keys.create(account, kind=kind, livemode=True))[0].key
                for kind in ("secret", "publishable")
            }
            return account, test[0].key, live
        finally:
            await app.close()

    def stop(self) -> None:
        for server in (self.plain, self.proxied, self.tls):
            server.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    made = Deployment(tmp_path_factory.mktemp("tls"))
    try:
        yield made
    finally:
        made.stop()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def error(r: httpx.Response) -> tuple[int, str, str]:
    body = r.json()["error"]
    return r.status_code, body["type"], body["code"]


def test_a_live_key_over_tls_is_served_and_every_answer_carries_hsts(
    deployment: Deployment,
) -> None:
    live = deployment.live_keys["secret"]
    with httpx.Client(base_url=deployment.tls.url, verify=deployment.trust, timeout=30) as c:
        made = c.post("/v1/customers", json={"email": "tls@example.com"}, headers=bearer(live))
        assert made.status_code == 200, made.text
        assert made.json()["livemode"] is True
        assert made.headers["strict-transport-security"] == HSTS
        for path in ("/health/live", "/health", "/docs", "/v1/nothing-here"):
            assert c.get(path).headers["strict-transport-security"] == HSTS, path
        # An unverified client can't get in: the certificate is checked (ours is self-signed).
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{deployment.tls.url}/health/live", timeout=5)


def test_a_live_key_over_plain_http_is_refused_before_it_is_looked_up(
    deployment: Deployment,
) -> None:
    plain = deployment.plain
    before = plain.http.get("/v1/customers", headers=bearer(deployment.test_key)).json()
    real = deployment.live_keys["secret"]
    made_up = "sk_live_" + secrets.token_hex(16)  # no such key: a lookup would say 401
    basic = base64.b64encode(f"{real}:".encode()).decode()
    sent = [
        bearer(real),
        bearer(made_up),
        bearer(deployment.live_keys["publishable"]),
        bearer("rk_live_" + secrets.token_hex(16)),
        {"authorization": f"Basic {basic}"},
    ]
    # More than the unauthenticated limit (3): none is counted, so none becomes a 429.
    for headers in sent * 2:
        r = plain.http.post("/v1/customers", json={"email": "x@example.com"}, headers=headers)
        assert error(r) == (403, "invalid_request_error", "tls_required"), r.text
        assert "HTTPS" in r.json()["error"]["message"]
        assert r.headers["request-id"].startswith("req_")
        assert "strict-transport-security" not in r.headers
    # Nothing was made, and no key reached the log.
    after = plain.http.get("/v1/customers", headers=bearer(deployment.test_key)).json()
    assert after["data"] == before["data"]
    log = plain.log.read_text()
    for headers in sent:
        assert headers["authorization"].split(" ", 1)[1] not in log


def test_a_test_key_keeps_plain_http_without_hsts(deployment: Deployment) -> None:
    r = deployment.plain.http.post(
        "/v1/customers", json={"email": "t@example.com"}, headers=bearer(deployment.test_key)
    )
    assert r.status_code == 200, r.text
    assert r.json()["livemode"] is False
    assert "strict-transport-security" not in r.headers


def test_x_forwarded_proto_is_believed_only_from_a_trusted_proxy(deployment: Deployment) -> None:
    live = deployment.live_keys["secret"]
    forwarded = {**bearer(live), "x-forwarded-proto": "https"}
    r = deployment.proxied.http.post(
        "/v1/customers", json={"email": "p@example.com"}, headers=forwarded
    )
    assert r.status_code == 200, r.text
    assert r.headers["strict-transport-security"] == HSTS
    # The same proxy forwarding plain HTTP: refused.
    r = deployment.proxied.http.post(
        "/v1/customers", json={}, headers={**bearer(live), "x-forwarded-proto": "http"}
    )
    assert error(r)[2] == "tls_required"
    # A client claiming https to a server that trusts no proxy: refused, no HSTS.
    r = deployment.plain.http.post("/v1/customers", json={}, headers=forwarded)
    assert error(r)[2] == "tls_required"
    assert "strict-transport-security" not in r.headers


def test_live_outbound_calls_go_over_https_only(deployment: Deployment) -> None:
    """A live connection's gateway API base and a live webhook endpoint must be https."""
    live = deployment.live_keys["secret"]
    with httpx.Client(base_url=deployment.tls.url, verify=deployment.trust, timeout=30) as c:
        r = c.post(
            "/v1/connections",
            headers=bearer(live),
            json={
                "gateway": "stripe",
                "livemode": True,
                "credentials": {
                    "secret_key": random_token("sk_live_"),
                    "api_base": "http://api.stripe.com",
                },
            },
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "credentials[api_base]"
        r = c.post(
            "/v1/webhook_endpoints",
            headers=bearer(live),
            json={"url": "http://example.com/hooks", "enabled_events": ["*"]},
        )
        assert (r.status_code, r.json()["error"]["param"]) == (400, "url"), r.text
        assert "https" in r.json()["error"]["message"]
        r = c.post(
            "/v1/webhook_endpoints",
            headers=bearer(live),
            json={"url": "https://example.com/hooks", "enabled_events": ["*"]},
        )
        assert r.status_code == 200, r.text
    # Test mode keeps plain http endpoints (a developer's machine).
    r = deployment.plain.http.post(
        "/v1/webhook_endpoints",
        headers=bearer(deployment.test_key),
        json={"url": "http://127.0.0.1:9/hooks", "enabled_events": ["*"]},
    )
    assert r.status_code == 200, r.text


def test_serve_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    certfile, _ = make_certificate(tmp_path)
    for args, said in (
        (["--ssl-certfile", str(certfile)], "go together"),
        (
            ["--ssl-certfile", str(certfile), "--ssl-keyfile", str(tmp_path / "nope.pem")],
            "no file at",
        ),
    ):
        done = subprocess.run(
            [str(PAYMUX), "serve", *args],
            env=paymux_env(db, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert said in done.stderr


def test_the_admin_api_needs_tls_unless_called_from_this_host(deployment: Deployment) -> None:
    """/v1/admin creates and rolls live keys: over plain HTTP only from loopback."""
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    account = deployment.account
    listed = f"/v1/admin/keys?account={account}"
    proxied = deployment.proxied.http
    before = proxied.get(listed, headers=admin)
    assert before.status_code == 200, before.text  # loopback, no X-Forwarded-For
    create = {"account": account, "type": "secret", "livemode": True}
    # A client elsewhere, through the trusted proxy over plain HTTP: refused, nothing made.
    for proto in ({}, {"x-forwarded-proto": "http"}):
        far = {**admin, "x-forwarded-for": "203.0.113.9", **proto}
        r = proxied.post("/v1/admin/keys", json=create, headers=far)
        assert error(r) == (403, "invalid_request_error", "tls_required"), r.text
        assert "sk_live_" not in r.text and "HTTPS" in r.json()["error"]["message"]
        r = proxied.get(listed, headers=far)
        assert error(r)[2] == "tls_required"
    after = proxied.get(listed, headers=admin).json()["data"]
    assert [k["id"] for k in after] == [k["id"] for k in before.json()["data"]]
    # The same client over https (the proxy says so): served.
    far_tls = {**admin, "x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
    r = proxied.post("/v1/admin/keys", json=create, headers=far_tls)
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("sk_live_")
    # From this host over plain HTTP (make run, the CLI's machine): served.
    r = deployment.plain.http.post("/v1/admin/keys", json=create, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("sk_live_")
    assert ADMIN_KEY not in deployment.proxied.log.read_text()


def test_a_connections_mode_is_the_keys(deployment: Deployment) -> None:
    """A test key can't make a live connection (over plain HTTP, with live credentials)."""
    live_credentials = {"gateway": "stripe", "credentials": {"secret_key": "sk_live_" + "a" * 24}}
    plain = deployment.plain.http
    before = plain.get("/v1/connections", headers=bearer(deployment.test_key)).json()["data"]
    r = plain.post(
        "/v1/connections", json={**live_credentials, "livemode": True},
        headers=bearer(deployment.test_key),
    )
    assert error(r) == (400, "invalid_request_error", "parameter_invalid"), r.text
    assert r.json()["error"]["param"] == "livemode"
    assert "sk_live_" not in r.text
    after = plain.get("/v1/connections", headers=bearer(deployment.test_key)).json()["data"]
    assert after == before
    live = deployment.live_keys["secret"]
    with httpx.Client(base_url=deployment.tls.url, verify=deployment.trust, timeout=30) as c:
        r = c.post("/v1/connections", json={**live_credentials, "livemode": False},
                   headers=bearer(live))
        assert (r.status_code, r.json()["error"]["param"]) == (400, "livemode"), r.text
        made = c.post("/v1/connections", json=live_credentials, headers=bearer(live))
        assert made.status_code == 200, made.text
        assert made.json()["livemode"] is True  # the key's mode, not asked for
    made = plain.post("/v1/connections", json={"gateway": "sandbox", "credentials": {}},
                      headers=bearer(deployment.test_key))
    assert made.status_code == 200, made.text
    assert made.json()["livemode"] is False
    # The operator's CLI (no key: its flag decides) still makes live connections.
    cli = subprocess.run(
        [str(PAYMUX), "connections", "create", "--gateway", "stripe", "--live",
         "--account", deployment.account, "--credential", "secret_key=sk_live_" + "c" * 24],
        env=paymux_env(deployment.db, deployment.tmp,
                       PAYMUX_ENCRYPTION_KEYS=deployment.sealing),
        capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "live" in cli.stdout


def test_a_refused_live_request_line_is_masked_in_the_access_log(
    deployment: Deployment,
) -> None:
    secret = "sk_live_" + secrets.token_hex(12)
    encoded = "%73k_live_" + secret.removeprefix("sk_live_")  # percent-encoded "s"
    plain = deployment.plain
    r = plain.http.get(f"/v1/customers?n={encoded}", headers=bearer(deployment.live_keys["secret"]))
    assert error(r)[2] == "tls_required"

    def logged() -> bool:
        return "GET /v1/customers?n=" in plain.log.read_text()

    wait_until("the access-log line", logged, timeout=10)
    log = plain.log.read_text()
    assert secret.removeprefix("sk_live_") not in log
    assert "/v1/customers?n=%2A%2A%2A" in log or "/v1/customers?n=***" in log


def test_a_live_checkout_session_is_paid_over_https_only(deployment: Deployment) -> None:
    """The hosted checkout page's confirm refuses a live session over plain HTTP. (The session
    is made in test mode and marked live in the database: a live one needs a live gateway
    reachable over verified TLS, which nothing on loopback is.)"""
    made = deployment.plain.http.post(
        "/v1/checkout/sessions",
        headers=bearer(deployment.test_key),
        json={
            "mode": "payment",
            "success_url": "https://shop.example/thanks",
            "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1500,
                                           "product_data": {"name": "T-shirt"}}, "quantity": 1}],
        },
    )
    assert made.status_code == 200, made.text
    confirm = httpx.URL(made.json()["url"]).path + "/confirm"
    with sqlite3.connect(deployment.db.split("///", 1)[1]) as db:
        db.execute("update checkout_sessions set livemode = 1 where id = ?", (made.json()["id"],))
    body = {"payment_method": "tok_visa"}
    for server, headers in (
        (deployment.plain, {}),
        (deployment.plain, {"x-forwarded-proto": "https"}),  # not a trusted proxy
        (deployment.proxied, {"x-forwarded-proto": "http"}),
    ):
        r = server.http.post(confirm, json=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (403, "tls_required"), r.text
    # Over https (through the trusted proxy) the TLS rule passes; the built-in sandbox then
    # can't take a live payment.
    r = deployment.proxied.http.post(confirm, json=body, headers={"x-forwarded-proto": "https"})
    assert (r.status_code, r.json()["code"]) == (400, "checkout_session_unexpected_state"), r.text
