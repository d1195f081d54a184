"""Outbound webhooks end to end: a real paymux server (uvicorn on 127.0.0.1, its worker
delivering) and a real receiver on 127.0.0.1 that verifies each delivery with the official
libraries: ``standardwebhooks`` (Standard Webhooks) and stripe-python's
``Webhook.construct_event`` (the Stripe scheme). Endpoints are managed with stripe-python
too (form-encoded, as a merchant's existing code would). Retry delays are 0.2 s here
(PAYMUX_WEBHOOK_RETRY_SCHEDULE), so recovering takes a second, not hours; the schedule
itself is shown in tests/integration/test_outbound_delivery.py with a moved clock.

Last, kill -9 of the delivering server in the middle of a burst (its requests held by the
receiver, so the kill cannot come too late): after a restart every event arrives (at least
once; duplicates carry their id).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
import stripe
from sqlalchemy import text

from conftest import RunningServer, database_url, free_port, make_settings
from paymux.security.envelope import generate_key_entry
from paymux.services import Paymux
from paymux.storage.db import Database
from paymux.storage.migrate import upgrade
from support.pgcluster import PgCluster
from support.processes import ServeProcess, wait_until
from support.webhook_receiver import Received, Receiver

FAST = {
    "encryption_keys": generate_key_entry("k1"),
    "webhook_retry_schedule": ",".join(["0.2"] * 8),
    "webhook_retry_jitter": 0.0,
    "webhook_poll_interval": 0.05,
    "webhook_timeout": 30.0,  # long: the held endpoint below must not time out
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(f"outbound-{request.param}")
    url = database_url(request.param, tmp, pg_cluster, f"outbound_e2e_{uuid.uuid4().hex[:12]}")
    upgrade(url)
    running = RunningServer(make_settings(url, tmp, free_port(), **FAST)).start()
    try:
        yield running
    finally:
        running.stop()


class Merchant:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.account_id, self.key = server.new_key()
        self.http = httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {self.key}"}, timeout=30
        )
        self.sdk = stripe.StripeClient(
            api_key=self.key, base_addresses={"api": server.url}, max_network_retries=0
        )

    def ok(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        r = self.http.request(method, path, json=json)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def customer(self, email: str = "a@example.com") -> str:
        return str(self.ok("POST", "/v1/customers", {"email": email})["id"])

    def event_ids(self, type_: str) -> set[str]:
        rows = self.server.sql(
            "select id from events where account_id = :a and type = :t",
            a=self.account_id,
            t=type_,
        )
        return {row[0] for row in rows}


@pytest.fixture
def merchant(server: RunningServer) -> Iterator[Merchant]:
    m = Merchant(server)
    try:
        yield m
    finally:
        m.http.close()


def test_endpoints_have_stripes_shape_and_show_the_secret_only_when_made_or_rolled(
    merchant: Merchant,
) -> None:
    sdk = merchant.sdk
    made = sdk.v1.webhook_endpoints.create(
        params={
            "url": "https://example.com/hooks",
            "enabled_events": ["payment_intent.succeeded", "customer.created"],
            "description": "orders",
            "metadata": {"team": "shop"},
        }
    )
    assert made.object == "webhook_endpoint"
    assert made.id.startswith("we_")
    assert made.status == "enabled"
    assert made.url == "https://example.com/hooks"
    assert made.enabled_events == ["payment_intent.succeeded", "customer.created"]
    assert made.metadata.to_dict() == {"team": "shop"}
    assert made.livemode is False
    assert made.secret is not None and made.secret.startswith("whsec_")
    got = sdk.v1.webhook_endpoints.retrieve(made.id)
    assert "secret" not in got
    listed = sdk.v1.webhook_endpoints.list()
    assert [e.id for e in listed.data] == [made.id]
    assert all("secret" not in e for e in listed.data)
    # Sealed at rest: the column holds an envelope token, not the secret.
    stored = merchant.server.sql("select secret from webhook_endpoints where id = :i", i=made.id)
    assert stored[0][0].startswith("pmx1.") and made.secret not in stored[0][0]

    updated = sdk.v1.webhook_endpoints.update(
        made.id, params={"disabled": True, "enabled_events": ["*"], "description": ""}
    )
    assert (updated.status, updated.enabled_events, updated.description) == (
        "disabled",
        ["*"],
        None,
    )
    assert sdk.v1.webhook_endpoints.update(made.id, params={"disabled": False}).status == "enabled"
    rolled = merchant.ok("POST", f"/v1/webhook_endpoints/{made.id}/roll_secret", {})
    assert rolled["secret"].startswith("whsec_") and rolled["secret"] != made.secret

    # Not kept in clear anywhere: an Idempotency-Key's stored answer would hold it.
    r = merchant.http.post(
        "/v1/webhook_endpoints",
        json={"url": "https://example.com/other", "enabled_events": ["*"]},
        headers={"Idempotency-Key": f"we-{uuid.uuid4().hex}"},
    )
    secret = r.json()["secret"]
    for table, column in (("idempotency_keys", "response_body"), ("events", "data")):
        found = merchant.server.sql(
            f"select count(*) from {table} where cast({column} as text) like :p", p=f"%{secret}%"
        )
        assert found[0][0] == 0, table
    sdk.v1.webhook_endpoints.delete(r.json()["id"])

    deleted = sdk.v1.webhook_endpoints.delete(made.id)
    assert deleted.deleted is True
    r = merchant.http.get(f"/v1/webhook_endpoints/{made.id}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "resource_missing"


def test_bad_endpoint_parameters_are_clear_400s(merchant: Merchant) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"enabled_events": ["*"]}, "url"),
        ({"url": "https://example.com/h"}, "enabled_events"),
        ({"url": "https://example.com/h", "enabled_events": []}, "enabled_events"),
        ({"url": "https://example.com/h", "enabled_events": ["not an event"]}, "enabled_events"),
        ({"url": "gopher://example.com/h", "enabled_events": ["*"]}, "url"),
        (
            {"url": "https://example.com/h", "enabled_events": ["*"], "signature_scheme": "md5"},
            "signature_scheme",
        ),
    ]
    for body, param in cases:
        r = merchant.http.post("/v1/webhook_endpoints", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.text)
    assert merchant.ok("GET", "/v1/webhook_endpoints")["data"] == []


def test_standard_webhooks_deliveries_verify_and_recover_after_failures(
    merchant: Merchant,
) -> None:
    """The receiver fails its first 5 requests (500), then recovers: every event arrives,
    each request verifies with the official Standard Webhooks verifier, and the failed
    attempts are listed."""
    with Receiver(lambda n: (500, "broken") if n < 5 else (200, "thanks")) as rx:
        ep = merchant.ok(
            "POST", "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["customer.created"]}
        )
        customers = {merchant.customer(f"c{i}@example.com") for i in range(4)}
        expected = merchant.event_ids("customer.created")
        assert len(expected) == 4
        wait_until("every event to be delivered", lambda: rx.delivered_ids() == expected)
        verifier = standardwebhooks.Webhook(ep["secret"])
        for request in rx.requests():
            event = verifier.verify(request.body, request.headers)
            assert event["type"] == "customer.created"
            assert request.headers["webhook-id"] == event["id"]
        assert {r.event["data"]["object"]["id"] for r in rx.requests()} == customers
        attempts = merchant.ok("GET", f"/v1/webhook_endpoints/{ep['id']}/attempts?limit=100")
        failed = [a for a in attempts["data"] if a["status"] == "failed"]
        assert len(failed) == 5
        assert {(a["http_status"], a["response_body"]) for a in failed} == {(500, "broken")}
        assert all(isinstance(a["latency_ms"], int) for a in attempts["data"])


def test_stripe_scheme_verifies_with_stripe_python_and_a_roll_signs_with_both_secrets(
    merchant: Merchant,
) -> None:
    with Receiver() as rx:
        ep = merchant.ok(
            "POST",
            "/v1/webhook_endpoints",
            {"url": rx.url, "enabled_events": ["*"], "signature_scheme": "stripe"},
        )
        merchant.customer()
        wait_until("the first delivery", lambda: len(rx.delivered_ids()) == 1)
        first = rx.requests()[0]
        event = stripe.Webhook.construct_event(
            first.body.decode(), first.headers["stripe-signature"], ep["secret"]
        )
        assert event.type == "customer.created" and event.object == "event"
        assert "webhook-signature" not in first.headers

        old = ep["secret"]
        rolled = merchant.ok(
            "POST", f"/v1/webhook_endpoints/{ep['id']}/roll_secret", {"grace_period": 3600}
        )
        new = rolled["secret"]
        merchant.customer("b@example.com")
        wait_until("the second delivery", lambda: len(rx.delivered_ids()) == 2)
        second = rx.requests()[-1]
        for secret in (old, new):  # either secret verifies during the grace period
            stripe.Webhook.construct_event(
                second.body.decode(), second.headers["stripe-signature"], secret
            )

        merchant.ok("POST", f"/v1/webhook_endpoints/{ep['id']}/roll_secret", {})
        merchant.ok("POST", f"/v1/webhook_endpoints/{ep['id']}/test", {})
        wait_until("the test event", lambda: len(rx.delivered_ids()) == 3)
        third = rx.requests()[-1]
        assert third.event["type"] == "webhook_endpoint.test"
        for secret in (old, new):  # rolled without a grace period: both are refused
            with pytest.raises(stripe.SignatureVerificationError):
                stripe.Webhook.construct_event(
                    third.body.decode(), third.headers["stripe-signature"], secret
                )


def test_standard_scheme_roll_signs_with_both_secrets(merchant: Merchant) -> None:
    with Receiver() as rx:
        ep = merchant.ok("POST", "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["*"]})
        rolled = merchant.ok(
            "POST", f"/v1/webhook_endpoints/{ep['id']}/roll_secret", {"grace_period": 60}
        )
        merchant.customer()
        wait_until("a delivery", lambda: len(rx.delivered_ids()) == 1)
        request = rx.requests()[0]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (ep["secret"], rolled["secret"]):
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook("whsec_" + "A" * 43 + "=").verify(
                request.body, request.headers
            )


def test_one_slow_endpoint_does_not_delay_another(merchant: Merchant) -> None:
    """An endpoint that does not answer (held; its requests time out and are retried) never
    has more than its concurrency limit (4) of requests open, and the other endpoint gets
    every event meanwhile; released, it gets them all too."""
    with Receiver(hold=True) as stuck, Receiver() as fast:
        for url in (stuck.url, fast.url):
            merchant.ok("POST", "/v1/webhook_endpoints", {"url": url, "enabled_events": ["*"]})
        for i in range(8):
            merchant.customer(f"s{i}@example.com")
        expected = merchant.event_ids("customer.created")
        wait_until("the fast endpoint to get every event", lambda: fast.delivered_ids() == expected)
        assert stuck.delivered_ids() == set()  # it has answered nothing yet
        wait_until("the stuck endpoint's 4 requests", lambda: stuck.most_open == 4)
        stuck.release()
        wait_until("the stuck endpoint to catch up", lambda: stuck.delivered_ids() == expected)
        assert stuck.most_open == 4  # its limit: never a fifth request while 4 were open


def select_rows(url: str, statement: str, **params: Any) -> list[Any]:
    """A read of the server's database from the test (a connection of its own)."""

    async def run() -> list[Any]:
        db = Database(url, pool_size=1)
        try:
            async with db.read() as s:
                return list((await s.execute(text(statement), params)).all())
        finally:
            await db.dispose()

    return asyncio.run(run())


def complete(request: Received) -> bool:
    """Whether the receiver read the whole body (a request cut by the kill is not)."""
    return len(request.body) == int(request.headers.get("content-length", "-1"))


def test_kill9_of_the_delivering_server_mid_burst_loses_nothing(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """``paymux serve`` (API and worker) is killed with SIGKILL while deliveries are in
    flight: the receiver holds every request (it answers none until released), and the kill
    comes once requests are held and deliveries leased (read by SQL). So at the kill no
    delivery has been answered or recorded delivered: a state the test forces, not a race
    against the clock. After a restart every event arrives and is recorded delivered; the
    ones received before the kill come again under the same id, with the same object.
    Runs on PostgreSQL (the SQLite path is the same code, one writer)."""
    url = database_url("postgres", tmp_path, pg_cluster, f"outbound_kill_{uuid.uuid4().hex[:12]}")
    key = "sk_test_" + uuid.uuid4().hex
    env = {
        "PAYMUX_ENCRYPTION_KEYS": generate_key_entry("k1"),
        # Many short retries: the held requests time out (0.5 s) and are retried until the
        # kill, however late a loaded machine makes it, and are never given up on.
        "PAYMUX_WEBHOOK_RETRY_SCHEDULE": ",".join(["0.2"] * 200),
        "PAYMUX_WEBHOOK_RETRY_JITTER": "0",
        "PAYMUX_WEBHOOK_POLL_INTERVAL": "0.05",
        "PAYMUX_WEBHOOK_TIMEOUT": "0.5",  # the lease of a claimed delivery: 2 x 0.5 + 5 s
        "PAYMUX_WEBHOOK_ENDPOINT_CONCURRENCY": "2",
    }
    with Receiver(hold=True) as rx:
        server = ServeProcess(tmp_path, url, key, **env)
        try:
            ep = server.ok(
                "POST", "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["*"]}
            )
            for i in range(40):
                server.ok("POST", "/v1/customers", {"email": f"k{i}@example.com"})
            leased = (
                "select count(*) from webhook_deliveries"
                " where status = 'pending' and lease_until_us is not null"
            )
            wait_until(
                "deliveries in flight (leased, their requests held)",
                lambda: len(rx.requests()) >= 2 and select_rows(url, leased)[0][0] >= 1,
                timeout=30,
            )
            server.kill9()
            # Held: nothing was answered, so nothing can have been recorded delivered.
            assert rx.delivered_ids() == set()
            delivered = "select count(*) from webhook_deliveries where status = 'delivered'"
            assert select_rows(url, delivered)[0][0] == 0
            before = len(rx.requests())
            held = {r.event["id"] for r in rx.requests() if complete(r)}
            rx.release()  # the held requests are answered to a dead socket
            server.start()
            rows = server.http.get("/v1/events?limit=100&type=customer.created").json()["data"]
            expected = {e["id"] for e in rows}
            assert len(expected) == 40
            assert held and held <= expected

            def after_restart() -> set[str]:
                later = rx.requests()[before:]
                return {r.event["id"] for r in later if complete(r) and r.status == 200}

            wait_until(
                "every event after the restart", lambda: after_restart() == expected, timeout=60
            )
            wait_until(
                "every delivery recorded delivered",
                lambda: select_rows(url, delivered)[0][0] == 40,
            )
            # Those in flight at the kill came again (their outcome was never recorded),
            # each time under the same id and with the same object: a duplicate is
            # recognisable by its id.
            verifier = standardwebhooks.Webhook(ep["secret"])
            seen: dict[str, list[Received]] = {}
            for request in rx.requests():
                if complete(request):
                    event = verifier.verify(request.body, request.headers)
                    assert request.headers["webhook-id"] == event["id"]
                    assert event["data"]["object"]["object"] == "customer"
                    seen.setdefault(event["id"], []).append(request)
            for event_id in held:
                assert len(seen[event_id]) >= 2, event_id
            for copies in seen.values():
                assert len({json.dumps(c.event["data"]) for c in copies}) == 1
        finally:
            server.stop()


def test_cli_deliver_sends_an_event_again(merchant: Merchant) -> None:
    """``paymux webhooks deliver we_... --event evt_... --now``: the receiver gets the event a
    second time, with the same id."""
    if merchant.server.settings.database_url.startswith("postgresql"):
        pytest.skip("the CLI path is the same on both databases; one process start is enough")
    with Receiver() as rx:
        ep = merchant.ok("POST", "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["*"]})
        merchant.customer()
        wait_until("the first delivery", lambda: len(rx.delivered_ids()) == 1)
        (event_id,) = rx.delivered_ids()
        env = dict(
            os.environ,
            PAYMUX_DATABASE_URL=merchant.server.settings.database_url,
            PAYMUX_ENCRYPTION_KEYS=str(FAST["encryption_keys"]),
        )
        done = subprocess.run(
            [sys.executable, "-m", "paymux.cli", "webhooks", "deliver", ep["id"],
             "--event", event_id, "--now"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "1 event(s)" in done.stdout
        wait_until("the event again", lambda: len(rx.requests()) == 2)
        assert [r.event["id"] for r in rx.requests()] == [event_id, event_id]
        missing = subprocess.run(
            [sys.executable, "-m", "paymux.cli", "webhooks", "deliver", "we_nope", "--event",
             event_id],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert missing.returncode == 1
        assert "No such webhook_endpoint" in missing.stderr


def test_another_accounts_endpoints_are_invisible_and_get_none_of_its_events(
    server: RunningServer, merchant: Merchant
) -> None:
    other = Merchant(server)
    try:
        with Receiver() as rx:
            ep = merchant.ok(
                "POST", "/v1/webhook_endpoints", {"url": rx.url, "enabled_events": ["*"]}
            )
            base = f"/v1/webhook_endpoints/{ep['id']}"
            for method, path, body in [
                ("GET", base, None),
                ("POST", base, {"description": "mine now"}),
                ("DELETE", base, None),
                ("GET", f"{base}/attempts", None),
                ("POST", f"{base}/roll_secret", {}),
                ("POST", f"{base}/test", {}),
                ("POST", f"{base}/replay", {}),
            ]:
                r = other.http.request(method, path, json=body)
                assert r.status_code == 404, (method, path, r.text)
            assert other.ok("GET", "/v1/webhook_endpoints")["data"] == []
            theirs = other.customer("theirs@example.com")
            mine = merchant.customer("mine@example.com")
            wait_until("my event", lambda: len(rx.delivered_ids()) == 1)
            # B's event was dispatched (its row of the outbox is gone) and went nowhere.
            wait_until(
                "B's event to be dispatched",
                lambda: server.sql(
                    "select count(*) from event_outbox o join events e on e.id = o.event_id"
                    " where e.object_id = :o",
                    o=theirs,
                )[0][0]
                == 0,
            )
            assert [r.event["data"]["object"]["id"] for r in rx.requests()] == [mine]
            assert merchant.ok("GET", base)["description"] is None
    finally:
        other.http.close()


def test_a_restricted_key_needs_the_webhook_endpoints_permission(
    server: RunningServer, merchant: Merchant
) -> None:
    async def make(permissions: dict[str, str]) -> str:
        app = Paymux(server.settings)
        try:
            new, _ = await app.keys.create(
                merchant.account_id, kind="restricted", permissions=permissions
            )
            return new.key
        finally:
            await app.close()

    reader = asyncio.run(make({"webhook_endpoints": "read"}))
    nobody = asyncio.run(make({"customers": "write"}))
    body = {"url": "https://example.com/h", "enabled_events": ["*"]}
    auth = {"authorization": f"Bearer {reader}"}
    assert merchant.http.get("/v1/webhook_endpoints", headers=auth).status_code == 200
    r = merchant.http.post("/v1/webhook_endpoints", json=body, headers=auth)
    assert r.status_code == 403 and "webhook_endpoints: write" in r.text
    r = merchant.http.get("/v1/webhook_endpoints", headers={"authorization": f"Bearer {nobody}"})
    assert r.status_code == 403 and "webhook_endpoints: read" in r.text
