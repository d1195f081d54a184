"""Inbound webhooks of the real connectors (Stripe, PayPal, Square), at the environment's URLs
(/webhooks/<gateway>) and at a connection's own (/webhooks/{connection_id}), on a real server
(SQLite and PostgreSQL); PayPal's verification API is the fake on 127.0.0.1.

- A correctly signed body in UTF-16, with a byte-order mark, or an event nested 200 deep is
  a clear 400 (``invalid_payload``, ``body_too_deep``), never a 500, and nothing is stored
  (test_inbound_webhooks.py covers the sandbox).
- PayPal and Square deliveries at a connection's URL are verified with that connection's
  webhook id or signature key and stored for its account and connection; the same delivery
  at another URL is refused (test_connections.py covers Stripe).
- The credentials of a connection created or updated through the API are never in the
  server's log, at DEBUG, even when a request with them is refused.

Signatures are computed here from the providers' published schemes (Stripe: HMAC-SHA256 of
``{t}.{body}``; Square: base64 HMAC-SHA256 of the notification URL then the body), not with
paymux's own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.security.envelope import generate_key_entry
from support.keys import random_token
from support.paypal import CERT_URL, sign_headers
from support.paypal_fake import FakePayPal
from support.pgcluster import PgCluster
from support.server_logs import capture_server_logs

DEAD = "http://127.0.0.1:9"  # nothing listens: no webhook test needs a provider's API
# Secrets sent in a request are letters (``random_token``), never hex: 24 random hex digits
# hold a run of 13 or more decimal digits about once in a hundred draws, a tenth of those
# pass the Luhn check, and the card-number guard rightly refuses such a request.
ENV_STRIPE_SECRET = random_token("whsec_env_", 24)
ENV_SQUARE_KEY = random_token("sqkey_env_", 24)
PAYPAL_CLIENT, PAYPAL_SECRET = "paypal-client-" + secrets.token_hex(4), random_token(length=32)
CONN_PAYPAL_WEBHOOK = "WH-CONN-" + secrets.token_hex(6).upper()
ENV_PAYPAL_WEBHOOK = "WH-ENV-" + secrets.token_hex(6).upper()


@pytest.fixture(scope="module")
def paypal() -> Iterator[FakePayPal]:
    fake = FakePayPal(PAYPAL_CLIENT, PAYPAL_SECRET, CONN_PAYPAL_WEBHOOK).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def env_paypal() -> Iterator[FakePayPal]:
    """The environment's PayPal app: its webhook is another one than the connection's."""
    fake = FakePayPal(PAYPAL_CLIENT, PAYPAL_SECRET, ENV_PAYPAL_WEBHOOK).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None, env_paypal: FakePayPal,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"conn-webhooks-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"conn_webhooks_{request.param}")
    settings = make_settings(
        url, tmp, free_port(), encryption_keys=generate_key_entry("k1"),
        stripe_secret_key=random_token("sk_test_env_"), stripe_api_base=DEAD,
        stripe_webhook_secrets=ENV_STRIPE_SECRET,
        square_access_token=random_token("EAAA_env_"), square_api_base=DEAD,
        square_webhook_signature_key=ENV_SQUARE_KEY,
        paypal_client_id=PAYPAL_CLIENT, paypal_client_secret=PAYPAL_SECRET,
        paypal_webhook_id=ENV_PAYPAL_WEBHOOK, paypal_api_base=env_paypal.url,
    )
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def api(server: RunningServer) -> Iterator[Api]:
    client = Api(server)
    try:
        yield client
    finally:
        client.close()


# -- the providers' signing schemes ------------------------------------------------------------
def stripe_headers(body: bytes, secret: str) -> dict[str, str]:
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={t},v1={mac}"}


def square_headers(body: bytes, key: str, url: str) -> dict[str, str]:
    mac = hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()
    return {"x-square-hmacsha256-signature": base64.b64encode(mac).decode()}


def paypal_headers(fake: FakePayPal, body: bytes, webhook_id: str) -> dict[str, str]:
    """Signed by the fake's PayPal key, as PayPal would; the fake's verification API then
    answers SUCCESS for exactly this delivery (and only for its webhook id)."""
    headers = sign_headers(body, fake.signer.key, webhook_id, cert_url=CERT_URL)
    fake.sent[headers["paypal-transmission-id"]] = body
    return headers


def post(server: RunningServer, segment: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/webhooks/{segment}", content=body, timeout=30,
                      headers={**headers, "content-type": "application/json"})


def inbox_count(server: RunningServer) -> int:
    return int(server.sql("select count(*) from webhook_inbox")[0][0])


def connections(api: Api, paypal: FakePayPal) -> dict[str, dict[str, Any]]:
    """One connection of each gateway for the account, with its own webhook secrets."""
    stripe_secret = random_token("whsec_conn_", 24)
    square_key = random_token("sqkey_conn_", 24)
    made = {
        "stripe": api.ok("POST", "/v1/connections", {"gateway": "stripe", "credentials": {
            "secret_key": random_token("sk_test_conn_"), "api_base": DEAD,
            "webhook_secrets": stripe_secret}}),
        "square": api.ok("POST", "/v1/connections", {"gateway": "square", "credentials": {
            "access_token": random_token("EAAA_conn_"), "api_base": DEAD,
            "webhook_signature_key": square_key}}),
        "paypal": api.ok("POST", "/v1/connections", {"gateway": "paypal", "credentials": {
            "client_id": PAYPAL_CLIENT, "client_secret": PAYPAL_SECRET,
            "webhook_id": CONN_PAYPAL_WEBHOOK, "api_base": paypal.url}}),
    }
    made["stripe"]["secret"] = stripe_secret
    made["square"]["secret"] = square_key
    return made


def square_event() -> dict[str, Any]:
    return {"merchant_id": "MERCHANT1", "type": "payment.updated",
            "event_id": str(uuid.uuid4()), "created_at": "2026-01-01T00:00:00Z",
            "data": {"type": "payment", "id": "PAYMENT_" + secrets.token_hex(6),
                     "object": {"payment": {"id": "PAYMENT_X", "status": "COMPLETED"}}}}


def paypal_event() -> dict[str, Any]:
    return {"id": random_token("WH-").upper(), "event_version": "1.0",
            "create_time": "2026-01-01T00:00:00Z", "resource_type": "capture",
            "resource_version": "2.0", "event_type": "PAYMENT.CAPTURE.COMPLETED",
            "summary": "Payment completed",
            "resource": {"id": "CAP" + secrets.token_hex(6).upper(), "status": "COMPLETED"}}


def stripe_event() -> dict[str, Any]:
    return {"id": random_token("evt_"), "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": {"id": random_token("pi_"), "object": "payment_intent"}}}


def malformed(event: dict[str, Any]) -> dict[str, bytes]:
    text = json.dumps(event)
    return {
        "utf-16": text.encode("utf-16"),  # with its BOM
        "utf-16-le": text.encode("utf-16-le"),
        "utf-8 bom": b"\xef\xbb\xbf" + text.encode(),
        # (A body of 1,000 bare brackets is refused before any connector reads it:
        # test_request_hardening.py.)
        "nested in an event": text[:-1].encode()
        + b', "deep": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
    }


def test_signed_bodies_that_are_not_utf8_json_are_refused_for_every_connector(
    api: Api, server: RunningServer, paypal: FakePayPal, env_paypal: FakePayPal
) -> None:
    conns = connections(api, paypal)
    base = server.url
    targets = {
        "stripe (environment)": ("stripe", stripe_event(),
                                 lambda b: stripe_headers(b, ENV_STRIPE_SECRET)),
        "square (environment)": ("square", square_event(),
                                 lambda b: square_headers(b, ENV_SQUARE_KEY,
                                                          f"{base}/webhooks/square")),
        "paypal (environment)": ("paypal", paypal_event(),
                                 lambda b: paypal_headers(env_paypal, b, ENV_PAYPAL_WEBHOOK)),
        "stripe (connection)": (conns["stripe"]["id"], stripe_event(),
                                lambda b: stripe_headers(b, conns["stripe"]["secret"])),
        "square (connection)": (conns["square"]["id"], square_event(),
                                lambda b: square_headers(b, conns["square"]["secret"],
                                                         conns["square"]["webhook_url"])),
        "paypal (connection)": (conns["paypal"]["id"], paypal_event(),
                                lambda b: paypal_headers(paypal, b, CONN_PAYPAL_WEBHOOK)),
    }
    before = inbox_count(server)
    for target, (segment, event, sign) in targets.items():
        for name, body in malformed(event).items():
            r = post(server, segment, body, sign(body))
            assert r.status_code == 400, (target, name, r.status_code, r.text)
            error = r.json()["error"]
            refused = (error["code"], error.get("reason"))
            # Deep nesting is refused by the guard in front of every path (32 levels) before
            # the connector's own limit (64) is reached.
            assert refused in {("webhook_signature_invalid", "invalid_payload"),
                               ("body_too_deep", None)}, (target, name, error)
    assert inbox_count(server) == before
    # The same events as UTF-8 JSON, signed the same way, are taken: the signatures were right.
    for target, (segment, event, sign) in targets.items():
        body = json.dumps(event).encode()
        r = post(server, segment, body, sign(body))
        assert r.status_code == 200, (target, r.status_code, r.text)
    assert inbox_count(server) == before + len(targets)


def test_paypal_and_square_webhooks_arrive_at_the_connection_s_url_verified_with_its_keys(
    api: Api, server: RunningServer, paypal: FakePayPal
) -> None:
    conns = connections(api, paypal)
    other = Api(server)
    try:
        # Another account's Square connection, with a key of its own.
        theirs_key = random_token("sqkey_other_", 24)
        theirs = other.ok("POST", "/v1/connections", {"gateway": "square", "credentials": {
            "access_token": random_token("EAAA_other_"), "api_base": DEAD,
            "webhook_signature_key": theirs_key}})
        # ... and a PayPal connection whose webhook is another one.
        other_paypal = other.ok("POST", "/v1/connections", {"gateway": "paypal", "credentials": {
            "client_id": PAYPAL_CLIENT, "client_secret": PAYPAL_SECRET,
            "webhook_id": "WH-SOMEONE-ELSE", "api_base": paypal.url}})
    finally:
        other.close()
    square, pp = conns["square"], conns["paypal"]

    # Square: the body signed with the connection's key over the connection's URL.
    event = square_event()
    body = json.dumps(event).encode()
    good = square_headers(body, square["secret"], square["webhook_url"])
    refusals = [
        ("square", good),  # the environment's URL and key
        (theirs["id"], good),  # another connection's
        (square["id"], square_headers(body, square["secret"], f"{server.url}/webhooks/square")),
        (square["id"], square_headers(body, theirs_key, square["webhook_url"])),
        (square["id"], square_headers(body, ENV_SQUARE_KEY, square["webhook_url"])),
    ]
    for segment, headers in refusals:
        r = post(server, segment, body, headers)
        assert r.status_code == 400, (segment, r.status_code, r.text)
        assert r.json()["error"]["code"] == "webhook_signature_invalid", r.text
    assert server.sql("select count(*) from webhook_inbox where event_id = :e",
                      e=event["event_id"])[0][0] == 0
    r = post(server, square["id"], body, good)
    assert r.status_code == 200, r.text
    [(account, connection)] = server.sql(
        "select account_id, connection_id from webhook_inbox where event_id = :e",
        e=event["event_id"])
    assert (account, connection) == (api.account_id, square["id"])

    # PayPal: verified by PayPal's API against the connection's webhook id.
    event = paypal_event()
    body = json.dumps(event).encode()
    for segment in ("paypal", other_paypal["id"]):  # other webhook ids: PayPal says FAILURE
        r = post(server, segment, body, paypal_headers(paypal, body, CONN_PAYPAL_WEBHOOK))
        assert r.status_code == 400, (segment, r.status_code, r.text)
        assert r.json()["error"]["code"] == "webhook_signature_invalid", r.text
    forged = paypal_headers(paypal, body, CONN_PAYPAL_WEBHOOK)
    forged["paypal-transmission-sig"] = base64.b64encode(b"\x00" * 256).decode()
    r = post(server, pp["id"], body, forged)
    assert r.status_code == 400, r.text
    assert server.sql("select count(*) from webhook_inbox where event_id = :e",
                      e=event["id"])[0][0] == 0
    r = post(server, pp["id"], body, paypal_headers(paypal, body, CONN_PAYPAL_WEBHOOK))
    assert r.status_code == 200, r.text
    [(account, connection)] = server.sql(
        "select account_id, connection_id from webhook_inbox where event_id = :e",
        e=event["id"])
    assert (account, connection) == (api.account_id, pp["id"])


def test_a_connection_s_credentials_are_never_in_the_server_log(
    api: Api, server: RunningServer, paypal: FakePayPal
) -> None:
    def secret(prefix: str) -> str:
        return random_token(prefix, 24) + "Lq8x"

    values = {name: secret(prefix) for name, prefix in (
        ("stripe_key", "sk_test_logged_"), ("stripe_hook", "whsec_logged_"),
        ("square_token", "EAAA_logged_"), ("square_key", "sqkey_logged_"),
        ("paypal_secret", "ppsecret_logged_"), ("stripe_key_2", "sk_test_rolled_"),
        ("square_key_2", "sqkey_rolled_"), ("paypal_secret_2", "ppsecret_rolled_"),
        ("refused", "sk_test_refused_"), ("refused_2", "ppsecret_refused_"))}
    with capture_server_logs("DEBUG") as logs:
        stripe = api.ok("POST", "/v1/connections", {"gateway": "stripe", "credentials": {
            "secret_key": values["stripe_key"], "webhook_secrets": values["stripe_hook"],
            "api_base": DEAD}})
        square = api.ok("POST", "/v1/connections", {"gateway": "square", "credentials": {
            "access_token": values["square_token"], "webhook_signature_key": values["square_key"],
            "api_base": DEAD}})
        pp = api.ok("POST", "/v1/connections", {"gateway": "paypal", "credentials": {
            "client_id": PAYPAL_CLIENT, "client_secret": values["paypal_secret"],
            "webhook_id": CONN_PAYPAL_WEBHOOK, "api_base": paypal.url}})
        api.ok("POST", f"/v1/connections/{stripe['id']}",
               {"credentials": {"secret_key": values["stripe_key_2"]}})
        api.ok("POST", f"/v1/connections/{square['id']}",
               {"credentials": {"webhook_signature_key": values["square_key_2"]}})
        api.ok("POST", f"/v1/connections/{pp['id']}",
               {"credentials": {"client_secret": values["paypal_secret_2"]}})
        # Refused requests that carry a secret: a bad field beside it, an unknown gateway.
        bad = api.post(f"/v1/connections/{pp['id']}", {"credentials": {
            "client_secret": values["refused_2"], "webhook_verification": "sometimes"}})
        assert bad.status_code == 400, bad.text
        unknown = api.post("/v1/connections", {"gateway": "nosuchpay", "credentials": {
            "secret_key": values["refused"]}})
        assert unknown.status_code == 400, unknown.text
        for r in (bad, unknown):
            assert not any(v in r.text for v in values.values()), r.text
    text = logs.text
    assert "/v1/connections" in text  # the requests were logged: there was something to read
    for name, value in values.items():
        assert value not in text, name
        assert value[:-4] not in text, name  # nor most of it
