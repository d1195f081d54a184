"""Gateway connections per account, on a real server (SQLite and PostgreSQL) with localstripe.

The server runs the defaults a multi-merchant deployment gets: the gateways configured by
environment variables (here Stripe, at localstripe) are the default account's alone, the
sandbox is every account's in test mode, and other accounts bring their own connections,
whose credentials are sealed with PAYMUX_ENCRYPTION_KEYS and never shown again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, free_port, make_settings, migrated_database_url
from paymux.gateways.signing import sign_header
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from support.errors import status_code_param
from support.keys import random_token
from support.pgcluster import PgCluster
from support.processes import wait_until
from support.sandboxes import LocalStripe

ENV_WEBHOOK_SECRET = "whsec_env_" + secrets.token_hex(12)
B_SECRET_KEY = "sk_test_bbbb" + secrets.token_hex(12) + "Q7wz"
B_WEBHOOK_SECRET = "whsec_b_" + secrets.token_hex(12) + "Zk3p"
ENCRYPTION_KEYS = generate_key_entry("k2026")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None, localstripe: LocalStripe,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"connections-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"connections_{request.param}")
    settings = make_settings(
        url, tmp, free_port(), stripe_secret_key="sk_test_paymux", stripe_api_base=localstripe.url,
        stripe_webhook_secrets=ENV_WEBHOOK_SECRET, encryption_keys=ENCRYPTION_KEYS,
        environment_connections="default",  # what a deployment gets unless it says otherwise
    )
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


class Client(Api):
    """An API client with a key of a chosen account and mode."""

    def __init__(self, server: RunningServer, account: str | None, livemode: bool = False):
        async def make() -> tuple[str, str]:
            app = Paymux(server.settings)
            try:
                new, _ = await app.keys.create(account, livemode=livemode)
                return new.account_id, new.key
            finally:
                await app.close()

        self.server = server
        self.account, self.key = asyncio.run(make())
        # Live keys over TLS only: through the test server's trusted proxy (127.0.0.1).
        tls = {"x-forwarded-proto": "https"} if livemode else {}
        self.http = httpx.Client(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.key}", **tls})


@pytest.fixture
def default(server: RunningServer) -> Iterator[Client]:
    client = Client(server, "acct_default")
    yield client
    client.close()


@pytest.fixture
def b(server: RunningServer) -> Iterator[Client]:
    client = Client(server, None)
    yield client
    client.close()


def stripe_connection(api: Api, base: str, **extra: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/connections", {
        "gateway": "stripe", "name": "brand B",
        "credentials": {"secret_key": B_SECRET_KEY, "webhook_secrets": [B_WEBHOOK_SECRET],
                        "api_base": base}, **extra})


def pay(api: Api, **params: Any) -> httpx.Response:
    return api.post("/v1/payment_intents", {
        "amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        **params})


# -- whose gateways ---------------------------------------------------------------------------
def test_environment_gateways_belong_to_the_default_account_and_the_sandbox_to_all(
    default: Client, b: Client
) -> None:
    assert {c["id"] for c in default.ok("GET", "/v1/connections")["data"]} == {
        "conn_env_sandbox", "conn_env_stripe"}
    assert {c["id"] for c in b.ok("GET", "/v1/connections")["data"]} == {"conn_env_sandbox"}
    paid = pay(default, gateway="stripe").json()
    assert paid["status"] == "succeeded" and paid["connection"] == "conn_env_stripe"
    assert status_code_param(pay(b, gateway="stripe")) == (400, "gateway_unknown", "gateway")
    assert status_code_param(pay(b, gateway="conn_env_stripe")) == (404, "resource_missing", "gateway")
    sandbox = pay(b).json()  # the default gateway, the sandbox, is everyone's
    assert sandbox["status"] == "succeeded" and sandbox["connection"] == "conn_env_sandbox"


# -- a connection of one's own ----------------------------------------------------------------
def test_credentials_are_write_only_and_sealed_at_rest(b: Client, localstripe: LocalStripe) -> None:
    made = stripe_connection(b, localstripe.url)
    assert made["id"].startswith("conn_") and made["source"] == "api"
    assert made["webhook_url"] == f"{b.server.url}/webhooks/{made['id']}"
    assert made["credentials"] == {"secret_key": "••••" + B_SECRET_KEY[-4:],
                                   "webhook_secrets": "••••" + B_WEBHOOK_SECRET[-4:],
                                   "api_base": "••••" + localstripe.url[-4:]}
    assert set(made["capabilities"]) >= {"refunds", "manual_capture", "three_d_secure"}
    for view in (made, b.ok("GET", f"/v1/connections/{made['id']}"),
                 b.ok("GET", "/v1/connections")):
        text = json.dumps(view)
        assert B_SECRET_KEY not in text and B_WEBHOOK_SECRET not in text
    [(stored,)] = b.server.sql("select credentials from connections where id = :id",
                               id=made["id"])
    assert stored.startswith("pmx1.k2026.")
    assert B_SECRET_KEY not in stored and B_SECRET_KEY[12:36] not in stored
    dumped = json.dumps([list(r) for r in b.server.sql("select * from connections")])
    assert B_SECRET_KEY not in dumped and B_WEBHOOK_SECRET not in dumped


def test_payments_run_through_the_account_s_own_credentials(
    b: Client, default: Client, localstripe: LocalStripe
) -> None:
    # B's connection points at a port where nothing listens: B's payment can't be made there,
    # while the default account's, on the environment's Stripe, goes through.
    dead = f"http://127.0.0.1:{free_port()}"
    conn = stripe_connection(b, dead)
    r = pay(b, gateway="stripe")
    assert r.status_code == 503 and r.json()["error"]["code"] == "gateway_unavailable"
    assert pay(default, gateway="stripe").json()["status"] == "succeeded"
    # Pointed at localstripe, B's payment goes through B's connection; so do its refunds.
    updated = b.ok("POST", f"/v1/connections/{conn['id']}",
                   {"credentials": {"api_base": localstripe.url}})
    assert updated["credentials"]["secret_key"] == "••••" + B_SECRET_KEY[-4:]  # kept
    paid = pay(b, gateway="stripe").json()
    assert paid["status"] == "succeeded" and paid["connection"] == conn["id"]
    assert paid["gateway"] == "stripe" and paid["gateway_reference"].startswith("pi_")
    refund = b.ok("POST", "/v1/refunds", {"payment_intent": paid["id"]})
    assert refund["status"] == "succeeded"
    pm = b.ok("GET", f"/v1/payment_methods/{paid['payment_method']}")
    assert pm["connection"] == conn["id"]


def test_routing_chooses_among_the_account_s_connections_by_currency_and_priority(
    b: Client, localstripe: LocalStripe
) -> None:
    euros = stripe_connection(b, localstripe.url, currencies=["eur"], priority=1)
    assert euros["currencies"] == ["EUR"]
    catch_all = b.ok("POST", "/v1/connections", {
        "gateway": "sandbox", "credentials": {}, "priority": 2})
    usd = pay(b).json()
    eur = pay(b, currency="eur").json()
    assert (usd["connection"], usd["gateway"]) == (catch_all["id"], "sandbox")
    assert (eur["connection"], eur["gateway"]) == (euros["id"], "stripe")
    # A lower priority wins when both take the currency.
    b.ok("POST", f"/v1/connections/{catch_all['id']}", {"priority": 0})
    b.ok("POST", f"/v1/connections/{euros['id']}", {"currencies": ["EUR", "USD"]})
    assert pay(b, currency="eur").json()["connection"] == catch_all["id"]
    # Naming a connection takes it.
    named = pay(b, currency="eur", gateway=euros["id"]).json()
    assert named["connection"] == euros["id"]


def test_a_disabled_connection_takes_no_new_payment_but_refunds_its_own(
    b: Client, localstripe: LocalStripe
) -> None:
    conn = stripe_connection(b, localstripe.url)
    paid = pay(b, gateway="stripe").json()
    disabled = b.ok("POST", f"/v1/connections/{conn['id']}", {"disabled": True})
    assert disabled["disabled"] is True
    assert status_code_param(pay(b, gateway="stripe")) == (400, "gateway_unknown", "gateway")
    assert status_code_param(pay(b, gateway=conn["id"])) == (400, "gateway_unknown", "gateway")
    assert b.ok("POST", "/v1/refunds", {"payment_intent": paid["id"]})["status"] == "succeeded"
    # It holds payments: it can't be deleted, only disabled.
    assert status_code_param(b.http.delete(f"/v1/connections/{conn['id']}")) == (
        409, "connection_in_use", "id")
    unused = stripe_connection(b, localstripe.url)
    gone = b.ok("DELETE", f"/v1/connections/{unused['id']}")
    assert gone == {"id": unused["id"], "object": "connection", "deleted": True}
    assert status_code_param(b.get(f"/v1/connections/{unused['id']}")) == (404, "resource_missing", "id")


def test_another_account_can_neither_see_nor_use_nor_change_a_connection(
    b: Client, server: RunningServer, localstripe: LocalStripe
) -> None:
    conn = stripe_connection(b, localstripe.url)
    c = Client(server, None)
    try:
        assert status_code_param(c.get(f"/v1/connections/{conn['id']}")) == (404, "resource_missing", "id")
        assert status_code_param(c.post(f"/v1/connections/{conn['id']}", {"disabled": True})) == (
            404, "resource_missing", "id")
        assert status_code_param(c.http.delete(f"/v1/connections/{conn['id']}")) == (
            404, "resource_missing", "id")
        assert status_code_param(pay(c, gateway=conn["id"])) == (404, "resource_missing", "gateway")
        assert conn["id"] not in json.dumps(c.ok("GET", "/v1/connections"))
    finally:
        c.close()
    assert b.ok("GET", f"/v1/connections/{conn['id']}")["disabled"] is False


def test_environment_connections_are_read_only(default: Client) -> None:
    env = default.ok("GET", "/v1/connections/conn_env_stripe")
    assert env["source"] == "environment" and env["credentials"] == {}
    assert env["webhook_url"].endswith("/webhooks/stripe")  # the URL registered at Stripe
    assert status_code_param(default.post("/v1/connections/conn_env_stripe", {"disabled": True})) == (
        400, "connection_read_only", "id")
    assert status_code_param(default.http.delete("/v1/connections/conn_env_stripe")) == (
        400, "connection_read_only", "id")


@pytest.mark.parametrize(("body", "param"), [
    ({"gateway": "nosuch", "credentials": {}}, "gateway"),
    ({"gateway": "stripe", "credentials": {}}, "credentials[secret_key]"),
    ({"gateway": "stripe", "credentials": {"secret_key": "sk_test_x", "colour": "red"}},
     "credentials[colour]"),
    # A test key can't make a live connection (a live key over https can: test_ops_tls.py).
    ({"gateway": "stripe", "livemode": True, "credentials": {"secret_key": "sk_live_x"}},
     "livemode"),
    ({"gateway": "stripe", "livemode": True,
      "credentials": {"secret_key": "sk_live_x", "api_base": "http://10.0.0.1"}},
     "livemode"),
    ({"gateway": "sandbox", "livemode": True, "credentials": {}}, "livemode"),
    ({"gateway": "stripe", "credentials": {"secret_key": "sk_test_x"}, "currencies": ["E1R"]},
     "currencies"),
])
def test_a_bad_connection_is_a_400_naming_the_parameter(
    b: Client, body: dict[str, Any], param: str
) -> None:
    before = b.server.sql("select count(*) from connections")[0][0]
    r = b.post("/v1/connections", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert "sk_test_x" not in r.text and "sk_live_x" not in r.text
    assert b.server.sql("select count(*) from connections")[0][0] == before


def test_the_gateways_a_connection_can_be_made_to_are_listed_with_their_fields(
    b: Client,
) -> None:
    gateways = {g["id"]: g for g in b.ok("GET", "/v1/connections/gateways")["data"]}
    assert set(gateways) >= {"sandbox", "stripe", "paypal", "square"}
    stripe_fields = {f["name"]: f for f in gateways["stripe"]["credentials"]}
    assert stripe_fields["secret_key"] == {"name": "secret_key", "secret": True, "required": True}
    assert stripe_fields["publishable_key"]["secret"] is False
    assert gateways["sandbox"]["livemode"] is False and gateways["stripe"]["livemode"] is True


# -- webhooks per connection ------------------------------------------------------------------
def _event(pi_reference: str) -> bytes:
    return json.dumps({
        "id": "evt_" + secrets.token_hex(12), "object": "event", "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": pi_reference, "object": "payment_intent", "amount": 2000,
                            "amount_received": 2000, "currency": "usd", "status": "succeeded",
                            "metadata": {}}}}).encode()


def _post_webhook(server: RunningServer, segment: str, body: bytes, secret: str) -> httpx.Response:
    return httpx.post(f"{server.url}/webhooks/{segment}", content=body, timeout=10,
                      headers={"stripe-signature": sign_header(body, secret),
                               "content-type": "application/json"})


def test_webhooks_arrive_at_the_connection_s_url_verified_with_its_secret(
    b: Client, default: Client, server: RunningServer, localstripe: LocalStripe
) -> None:
    conn = stripe_connection(b, localstripe.url)
    opened = b.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd",
                                                  "gateway": conn["id"]})
    body = _event(opened["gateway_reference"])
    # Only the connection's own secret opens its URL; the environment's opens only its own.
    assert _post_webhook(server, conn["id"], body, ENV_WEBHOOK_SECRET).status_code == 400
    assert _post_webhook(server, "stripe", body, B_WEBHOOK_SECRET).status_code == 400
    r = _post_webhook(server, conn["id"], body, B_WEBHOOK_SECRET)
    assert r.status_code == 200 and r.json()["duplicate"] is False
    event_id = json.loads(body)["id"]
    [(account, connection)] = server.sql(
        "select account_id, connection_id from webhook_inbox where event_id = :e", e=event_id)
    assert (account, connection) == (b.account, conn["id"])
    [(inbox_id,)] = server.sql("select id from webhook_inbox where event_id = :e", e=event_id)
    job_accounts = [account for account, payload in server.sql(
        "select account_id, payload from jobs where kind = 'apply_webhook'")
        if (json.loads(payload) if isinstance(payload, str) else payload)["inbox_id"] == inbox_id]
    assert job_accounts == [b.account]
    assert b.wait_for(f"/v1/payment_intents/{opened['id']}", "status", "succeeded")
    # An event about another account's payment, at B's connection, changes nothing of it.
    theirs = default.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd",
                                                        "gateway": "stripe"})
    foreign = _event(theirs["gateway_reference"])
    assert _post_webhook(server, conn["id"], foreign, B_WEBHOOK_SECRET).status_code == 200
    foreign_id = json.loads(foreign)["id"]

    def tried() -> bool:
        """The worker has tried to apply it (a failed attempt notes its error on the row)."""
        rows = server.sql("select error from webhook_inbox where event_id = :e", e=foreign_id)
        return bool(rows and rows[0][0])

    wait_until("the foreign event tried", tried, timeout=30, interval=0.05)
    after = default.ok("GET", f"/v1/payment_intents/{theirs['id']}")
    assert after["status"] == "requires_payment_method" and after["amount_received"] == 0
    [(status, error)] = server.sql(
        "select status, error from webhook_inbox where event_id = :e", e=foreign_id)
    assert status in ("received", "dead") and "not stored yet" in (error or "")


def test_an_unknown_connection_url_is_refused(server: RunningServer) -> None:
    body = _event("pi_nothing")
    r = _post_webhook(server, "conn_doesnotexist", body, B_WEBHOOK_SECRET)
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    assert server.sql("select count(*) from webhook_inbox where event_id = :e",
                      e=json.loads(body)["id"])[0][0] == 0


# -- modes -------------------------------------------------------------------------------------
def test_a_live_key_uses_only_live_connections_and_sees_only_live_objects(
    server: RunningServer, localstripe: LocalStripe
) -> None:
    test_key = Client(server, None)
    live_key = Client(server, test_key.account, livemode=True)
    try:
        test_conn = stripe_connection(test_key, localstripe.url)
        assert test_conn["livemode"] is False
        # A live key neither sees nor routes to the test connection, nor the sandbox.
        assert test_conn["id"] not in json.dumps(live_key.ok("GET", "/v1/connections"))
        assert status_code_param(pay(live_key, gateway="stripe")) == (400, "gateway_unknown", "gateway")
        assert status_code_param(pay(live_key)) == (400, "gateway_unknown", "gateway")
        live_conn = live_key.ok("POST", "/v1/connections", {
            "gateway": "stripe", "livemode": True,
            "credentials": {"secret_key": random_token("sk_live_")}})
        assert live_conn["livemode"] is True
        test_paid = pay(test_key, gateway="stripe").json()
        assert test_paid["livemode"] is False and test_paid["connection"] == test_conn["id"]
        # Each key's objects are invisible to the other mode's key.
        assert status_code_param(live_key.get(f"/v1/payment_intents/{test_paid['id']}"))[:2] == (
            404, "resource_missing")
        assert test_paid["id"] not in json.dumps(live_key.ok("GET", "/v1/payment_intents"))
        customer = live_key.ok("POST", "/v1/customers", {"email": "live@example.com"})
        assert customer["livemode"] is True
        assert status_code_param(test_key.get(f"/v1/customers/{customer['id']}"))[:2] == (
            404, "resource_missing")
        events = live_key.ok("GET", "/v1/events")["data"]
        assert events and all(e["livemode"] is True for e in events)
        assert all(e["livemode"] is False for e in test_key.ok("GET", "/v1/events")["data"])
    finally:
        test_key.close()
        live_key.close()
