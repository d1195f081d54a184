"""Issue 15: "test the credentials" of a gateway connection, through the API
(``POST /v1/connections/{id}/test``), the CLI (``paymux connections test``) and the
dashboard's button (admins only), each audited.

Every connector brings its own read-only check, run here against a stand-in of the provider
on 127.0.0.1: Stripe's ``GET /v1/balance`` at localstripe, Square's ListLocations at Prism
(Square's own OpenAPI spec), PayPal's OAuth2 client-credentials token at the PayPal fake
(support/paypal_fake.py: it checks the client id and secret as PayPal does; the token
endpoint is in none of PayPal's published specs, so Prism can't serve it). The refusals come
from HTTP servers answering as the providers do: 401 for a wrong key (the Stripe-shaped one
below echoes the whole key in its message, so an answer that passed the provider's words on
would show it), 403 for a restricted key, and a closed port for an outage. The answer names
the connection and the reason with a stable code, and no credential is in the answer, the
audit log or any log line. In process (the services and the HTTP app through ASGI).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import sandboxes_required
from paymux.security.envelope import generate_key_entry
from paymux.security.redact import RedactingFilter
from support.cli import paymux_cli
from support.dashboard import csrf_of, harness_client
from support.databases import migrated_database_fixture
from support.fake_gateway import ScriptedGateway
from support.fake_square import FakeSquare
from support.harness import Harness
from support.paypal_fake import FakePayPal
from support.sandboxes import LocalStripe, Prism

db = migrated_database_fixture("conn_check")
sqlite_db = migrated_database_fixture("conn_check1", backends=["sqlite"])

KEYS = generate_key_entry("chk1")
GOOD_STRIPE = "sk_test_GOODgoodGOOD0123456789Ab9x"
WRONG_STRIPE = "sk_test_WRONGwrongWRONG987654321Zq7w"
RESTRICTED_STRIPE = "rk_test_LIMITEDlimited0123456789Pp4k"
PAYPAL_ID, PAYPAL_SECRET = "AYcheckclient", "EPcheckSECRETvalue12345Mn8v"
WRONG_PAYPAL_SECRET = "EPwrongSECRETvalue99999Hj2d"
SQUARE_TOKEN, WRONG_SQUARE_TOKEN = "EAAAcheckTOKEN0123456789Tt6y", "EAAAwrongTOKEN0123456789Ww3e"
SECRETS = (WRONG_STRIPE, RESTRICTED_STRIPE, GOOD_STRIPE, PAYPAL_SECRET, WRONG_PAYPAL_SECRET,
           SQUARE_TOKEN, WRONG_SQUARE_TOKEN)


class _StripeRefusal(BaseHTTPRequestHandler):
    """Stripe's answers to a key it refuses: 401 for an unknown key, 403 for a restricted
    key without the permission; the message carries the key given (the whole of it, where
    Stripe masks all but the last four)."""

    def do_GET(self) -> None:
        key = self.headers.get("authorization", "").removeprefix("Bearer ")
        status = 403 if key.startswith("rk_") else 401
        body = json.dumps({"error": {
            "message": f"Invalid API Key provided: {key}", "type": "invalid_request_error"}})
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", "req_refused123")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def refusing_stripe() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StripeRefusal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def paypal() -> Iterator[FakePayPal]:
    fake = FakePayPal(PAYPAL_ID, PAYPAL_SECRET, "WH-CHECK").start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def square() -> Iterator[FakeSquare]:
    fake = FakeSquare(access_token=SQUARE_TOKEN, signature_key="sig", webhook_url="https://x/w")
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def square_prism() -> Iterator[Prism]:
    reason = Prism.unavailable("square")
    if reason is not None:
        if sandboxes_required():
            pytest.fail(f"Prism is required here: {reason}")
        pytest.skip(reason)
    server = Prism("square", paths=["/v2/locations"]).start()
    try:
        yield server
    finally:
        server.stop()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def run(db: str, tmp: Path, test: Any) -> None:
    async def main() -> None:
        async with Harness.open(db, tmp, encryption_keys=KEYS,
                                allowed_gateway_hosts="127.0.0.1") as h:
            await test(h)

    asyncio.run(main())


async def connect(h: Harness, gateway: str, **credentials: str) -> str:
    r = await h.post("/v1/connections", {"gateway": gateway, "credentials": credentials})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def check(h: Harness, connection_id: str) -> dict[str, Any]:
    r = await h.post(f"/v1/connections/{connection_id}/test")
    assert r.status_code == 200, r.text
    for secret in SECRETS:
        assert secret not in r.text
    body: dict[str, Any] = r.json()
    assert body["object"] == "connection_test" and body["connection"] == connection_id
    return body


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture) -> None:
    """paymux's own records hold no credential at all; every other library's (the Stripe
    SDK logs response bodies at DEBUG, where a 401 echoes the key) holds none once the
    deployment's log handler filter (security/redact.py) has run over it."""
    assert caplog.records, "nothing was logged: the capture is not working"
    for record in caplog.records:
        raw = record.getMessage() + str(record.exc_info or "")
        if record.name.startswith("paymux"):
            for secret in SECRETS:
                assert secret not in raw, (record.name, raw)
        written = copy.copy(record)
        RedactingFilter().filter(written)
        line = written.getMessage() + str(written.exc_text or "")
        for secret in SECRETS:
            assert secret not in line, (record.name, line)


def test_api_answers_ok_or_the_reason_per_gateway_and_audits_it(
    db: str, tmp_path: Path, localstripe: LocalStripe, refusing_stripe: str,
    paypal: FakePayPal, square: FakeSquare, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def test(h: Harness) -> None:
        good = await connect(h, "stripe", secret_key=GOOD_STRIPE, api_base=localstripe.url)
        wrong = await connect(h, "stripe", secret_key=WRONG_STRIPE, api_base=refusing_stripe)
        limited = await connect(h, "stripe", secret_key=RESTRICTED_STRIPE,
                                api_base=refusing_stripe)
        down = await connect(h, "stripe", secret_key=GOOD_STRIPE, api_base=_closed_port())
        pp_good = await connect(h, "paypal", client_id=PAYPAL_ID, client_secret=PAYPAL_SECRET,
                                api_base=paypal.url)
        pp_wrong = await connect(h, "paypal", client_id=PAYPAL_ID,
                                 client_secret=WRONG_PAYPAL_SECRET, api_base=paypal.url)
        sq_wrong = await connect(h, "square", access_token=WRONG_SQUARE_TOKEN,
                                 api_base=square.url)
        sandbox = await connect(h, "sandbox")

        ok = await check(h, good)
        assert (ok["ok"], ok["status"], ok["error"], ok["gateway"]) == (
            True, "succeeded", None, "stripe")

        refused = await check(h, wrong)
        assert (refused["ok"], refused["status"]) == (False, "failed")
        assert refused["error"]["code"] == "credentials_invalid"
        assert refused["error"]["http_status"] == 401
        assert refused["error"]["message"].startswith(f"Connection {wrong} (stripe): ")
        assert "refused its credentials (HTTP 401)" in refused["error"]["message"]
        assert "Invalid API Key" not in json.dumps(refused)  # not the provider's words

        forbidden = await check(h, limited)
        assert (forbidden["error"]["code"], forbidden["error"]["http_status"]) == (
            "credentials_forbidden", 403)

        unreachable = await check(h, down)
        assert unreachable["ok"] is False
        assert unreachable["error"]["code"] == "gateway_unavailable"
        assert unreachable["error"]["message"].startswith(f"Connection {down} (stripe): ")

        assert (await check(h, pp_good))["ok"] is True
        pp_refused = await check(h, pp_wrong)
        assert (pp_refused["error"]["code"], pp_refused["error"]["http_status"]) == (
            "credentials_invalid", 401)
        assert pp_refused["error"]["message"].startswith(f"Connection {pp_wrong} (paypal): ")

        sq_refused = await check(h, sq_wrong)
        assert (sq_refused["error"]["code"], sq_refused["error"]["http_status"]) == (
            "credentials_invalid", 401)
        assert sq_refused["error"]["message"].startswith(f"Connection {sq_wrong} (square): ")

        assert (await check(h, sandbox))["ok"] is True

        # Audited: who (the key), what, which connection, and how it went.
        rows = await h.sql(
            "select action, object_id, details from audit_log "
            "where action = 'connection_test.test' order by created_us, id")
        by_id = {r[1]: (json.loads(r[2]) if isinstance(r[2], str) else r[2]) for r in rows}
        assert {r[0] for r in rows} == {"connection_test.test"}
        assert by_id[good]["status"] == "succeeded"
        assert by_id[wrong]["status"] == "failed"
        assert by_id[wrong]["path"] == f"/v1/connections/{wrong}/test"
        assert len(rows) == 8
        dump = json.dumps([[str(c) for c in r] for r in rows])
        for secret in SECRETS:
            assert secret not in dump

    run(db, tmp_path, test)
    assert_no_secret_logged(caplog)


def test_square_s_check_is_listlocations_as_square_s_spec_defines_it(
    sqlite_db: str, tmp_path: Path, square_prism: Prism,
) -> None:
    async def test(h: Harness) -> None:
        conn = await connect(h, "square", access_token=SQUARE_TOKEN, api_base=square_prism.url)
        answer = await check(h, conn)
        assert (answer["ok"], answer["gateway"], answer["error"]) == (True, "square", None)

    run(sqlite_db, tmp_path, test)


def test_another_account_s_connection_is_a_404_and_nothing_is_called(
    sqlite_db: str, tmp_path: Path, square: FakeSquare,
) -> None:
    async def test(h: Harness) -> None:
        conn = await connect(h, "square", access_token=SQUARE_TOKEN, api_base=square.url)
        other, _ = await h.app.keys.create(None)
        before = len(square.calls_to("GET", "/v2/locations"))
        r = await h.http.post(f"/v1/connections/{conn}/test",
                              headers={"authorization": f"Bearer {other.key}"})
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "resource_missing"
        missing = await h.post("/v1/connections/conn_nosuchone/test")
        assert missing.status_code == 404
        assert len(square.calls_to("GET", "/v2/locations")) == before

    run(sqlite_db, tmp_path, test)


def test_the_cli_tests_a_connection_and_exits_1_with_the_reason(
    sqlite_db: str, tmp_path: Path, refusing_stripe: str, localstripe: LocalStripe,
) -> None:
    made: dict[str, str] = {}

    async def test(h: Harness) -> None:
        made["good"] = await connect(h, "stripe", secret_key=GOOD_STRIPE,
                                     api_base=localstripe.url)
        made["wrong"] = await connect(h, "stripe", secret_key=WRONG_STRIPE,
                                      api_base=refusing_stripe)
        made["account"] = h.account

    run(sqlite_db, tmp_path, test)
    env = {"PAYMUX_DATABASE_URL": sqlite_db, "PAYMUX_SANDBOX_DB": str(tmp_path / "s.db"),
           "PAYMUX_ENCRYPTION_KEYS": KEYS, "PAYMUX_ALLOWED_GATEWAY_HOSTS": "127.0.0.1"}
    ok = paymux_cli("connections", "test", made["good"], "--account", made["account"], env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{made['good']}: ok, the stripe gateway accepted its credentials"
    bad = paymux_cli("connections", "test", made["wrong"], "--account", made["account"], env=env)
    assert bad.returncode == 1
    assert f"error: Connection {made['wrong']} (stripe): the gateway refused its credentials " \
        "(HTTP 401)" in bad.stderr
    assert bad.stderr.rstrip().endswith("(credentials_invalid)")
    assert "Traceback" not in bad.stderr
    for secret in SECRETS:
        assert secret not in ok.stdout + ok.stderr + bad.stdout + bad.stderr

    async def audit(h: Harness) -> list[Any]:
        return await h.sql("select actor, action, object_id, details from audit_log "
                           "where actor = 'cli' and action = 'connection.test' "
                           "order by created_us, id")

    async def rows() -> list[Any]:
        async with Harness.open(sqlite_db, tmp_path, encryption_keys=KEYS) as h:
            return await audit(h)

    found = asyncio.run(rows())
    assert [(r[0], r[1], r[2]) for r in found] == [
        ("cli", "connection.test", made["good"]), ("cli", "connection.test", made["wrong"])]
    details = [json.loads(r[3]) if isinstance(r[3], str) else r[3] for r in found]
    assert details == [{"status": "succeeded"},
                       {"status": "failed", "code": "credentials_invalid"}]


def test_the_dashboard_button_is_for_admins_and_audited_with_the_user(
    sqlite_db: str, tmp_path: Path, refusing_stripe: str,
) -> None:
    async def test(h: Harness) -> None:
        conn = await connect(h, "stripe", secret_key=WRONG_STRIPE, api_base=refusing_stripe)
        admin = await harness_client(h, "admin")
        dev = await harness_client(h, "developer")
        page = (await admin.get("/dashboard/connections")).text
        assert f'action="/dashboard/connections/{conn}/test"' in page
        dev_page = (await dev.get("/dashboard/connections")).text
        assert f"/dashboard/connections/{conn}/test" not in dev_page  # no button
        refused = await dev.post(f"/dashboard/connections/{conn}/test",
                                 data={"csrf_token": csrf_of(dev_page)})
        assert refused.status_code == 403

        r = await admin.post(f"/dashboard/connections/{conn}/test",
                             data={"csrf_token": csrf_of(page)})
        assert r.status_code == 200, r.text[:500]
        assert 'data-code="credentials_invalid"' in r.text
        assert f"Connection {conn} (stripe): the gateway refused its credentials (HTTP 401)" \
            in r.text
        for secret in SECRETS:
            assert secret not in r.text

        rows = await h.sql("select actor, action, object_id, details from audit_log "
                           "where action = 'connection.test'")
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("dashboard:admin-" + h.account.lower() + "@example.com", "connection.test", conn)]
        details = rows[0][3]
        assert (json.loads(details) if isinstance(details, str) else details) == {
            "status": "failed", "code": "credentials_invalid"}
        await admin.aclose()
        await dev.aclose()

    run(sqlite_db, tmp_path, test)


def test_an_environment_connection_is_tested_and_a_connector_without_a_check_is_no_500(
    sqlite_db: str, tmp_path: Path
) -> None:
    """The harness's gateway (the scripted fake) is an environment connection; a gateway
    class without ``check_credentials`` stands for a plugin written before the check."""

    class OldPlugin(ScriptedGateway):
        check_credentials = None  # as if the class had no such method

    async def test(h: Harness) -> None:
        answer = await check(h, "conn_env_fake")
        assert (answer["ok"], answer["gateway"], answer["error"]) == (True, "fake", None)
        assert h.gw.calls["check_credentials"] == 1

    async def old(h: Harness) -> None:
        answer = await check(h, "conn_env_fake")
        assert (answer["ok"], answer["gateway"]) == (False, "fake")
        assert answer["error"]["code"] == "credentials_check_unsupported"
        assert answer["error"]["message"].startswith("Connection conn_env_fake (fake): ")

    run(sqlite_db, tmp_path, test)

    async def main() -> None:
        async with Harness.open(sqlite_db, tmp_path, gw=OldPlugin(), encryption_keys=KEYS) as h:
            await old(h)

    asyncio.run(main())
