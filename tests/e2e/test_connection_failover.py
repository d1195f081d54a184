"""Failover between an account's connections (issue 8, optional): only what is safe to send
elsewhere, only where the connection allows it (``failover``, off by default). SQLite and
PostgreSQL, real server, Stripe connector against localstripe.

What is safe: a new payment nothing binds to a connection yet (no payment method, customer,
gateway or connection named) whose connection could not be reached at all, so its open
request was never sent (connection refused on every try). It is opened at the account's next
connection of its own, in its mode, that takes it, with the same idempotency key. A connection
that answered (a 5xx: the request may have done something) never fails over, nor one that does
not allow it, nor a payment that named its connection or customer, nor a retry of a request
(same Idempotency-Key) whose first run tried a connection: the retry goes back to it.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
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
from paymux.services.accounts import DEFAULT_ACCOUNT
from support.keys import random_token
from support.pgcluster import PgCluster
from support.sandboxes import LocalStripe

SECRET_KEY = "sk_test_fo" + secrets.token_hex(12)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp: Path = tmp_path_factory.mktemp(f"failover-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"failover_{request.param}")
    settings = make_settings(url, tmp, free_port(), encryption_keys=generate_key_entry("k1"),
                             environment_connections="default", gateway_retries=2)
    running = RunningServer(settings).start()
    try:
        yield running
    finally:
        running.stop()


class Failing:
    """A provider that answers every request with a 500 (it was reached), counting them."""

    def __init__(self) -> None:
        self.requests = 0
        failing = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _fail(self) -> None:
                failing.requests += 1
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                body = b'{"error": {"type": "api_error", "message": "boom"}}'
                self.send_response(500)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _fail

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def failing() -> Iterator[Failing]:
    running = Failing()
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


def connection(api: Api, base: str, priority: int, **extra: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/connections", {
        "gateway": "stripe", "priority": priority,
        "credentials": {"secret_key": SECRET_KEY, "api_base": base}, **extra})


def refused_base() -> str:
    """An address on loopback where nothing listens: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


def unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "gateway_unavailable"


def test_an_unreachable_connection_that_allows_it_fails_over_to_the_next(
    api: Api, localstripe: LocalStripe
) -> None:
    down = connection(api, refused_base(), 0, failover=True)
    up = connection(api, localstripe.url, 1)
    assert down["failover"] is True and up["failover"] is False
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"})
    assert (pi["connection"], pi["gateway"]) == (up["id"], "stripe")
    assert pi["gateway_reference"].startswith("pi_")  # opened at localstripe
    at_stripe = httpx.get(f"{localstripe.url}/v1/payment_intents/{pi['gateway_reference']}",
                          auth=(SECRET_KEY, ""), timeout=10)
    assert at_stripe.status_code == 200 and at_stripe.json()["amount"] == 2000
    # The payment stays with the connection that opened it.
    paid = api.ok("POST", f"/v1/payment_intents/{pi['id']}/confirm",
                  {"payment_method": "pm_card_visa"})
    assert (paid["status"], paid["connection"]) == ("succeeded", up["id"])


def test_without_the_setting_an_unreachable_connection_is_a_503_and_records_nothing(
    api: Api, localstripe: LocalStripe
) -> None:
    connection(api, refused_base(), 0)  # failover off: the default
    connection(api, localstripe.url, 1)
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"}))
    assert api.counts() == before


def test_a_payment_that_names_its_connection_never_fails_over(
    api: Api, localstripe: LocalStripe
) -> None:
    down = connection(api, refused_base(), 0, failover=True)
    connection(api, localstripe.url, 1)
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd",
                                                 "gateway": down["id"]}))
    assert api.counts() == before


def test_a_connection_that_answers_with_errors_never_fails_over(
    api: Api, localstripe: LocalStripe, failing: Failing
) -> None:
    connection(api, failing.url, 0, failover=True)
    connection(api, localstripe.url, 1)
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"}))
    assert failing.requests == 3  # reached on each try (1 + gateway_retries), same key
    assert api.counts() == before


def test_failover_goes_only_to_a_connection_that_takes_the_payment(
    api: Api, localstripe: LocalStripe
) -> None:
    connection(api, refused_base(), 0, failover=True)
    connection(api, localstripe.url, 1, currencies=["eur"])  # not for usd
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"}))
    assert api.counts() == before
    # A second unreachable connection that allows it too: tried, then the third takes it.
    connection(api, refused_base(), 2, failover=True)
    third = connection(api, localstripe.url, 3)
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"})
    assert pi["connection"] == third["id"]


class AnswersOnceThenGone:
    """A provider that takes the first request and drops it unanswered (it may have acted
    on it), then is gone: every later connection is refused."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.took = threading.Event()
        threading.Thread(target=self._serve_once, daemon=True).start()

    def _serve_once(self) -> None:
        conn, _ = self.listener.accept()
        conn.recv(65536)
        self.took.set()
        conn.close()
        self.listener.close()


def test_a_connection_reached_once_then_unreachable_never_fails_over(
    api: Api, localstripe: LocalStripe
) -> None:
    gone = AnswersOnceThenGone()
    connection(api, gone.url, 0, failover=True)
    connection(api, localstripe.url, 1)
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"}))
    assert gone.took.is_set()  # the first try reached it; the last ones were refused
    assert api.counts() == before


class FailsOnceThenGone(AnswersOnceThenGone):
    """A provider that answers the first request with a 500 (it was reached: the request may
    have done something), then is gone: every later connection is refused."""

    def _serve_once(self) -> None:
        conn, _ = self.listener.accept()
        conn.recv(65536)
        body = b'{"error": {"type": "api_error", "message": "boom"}}'
        conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        self.took.set()
        conn.close()
        self.listener.close()


def test_a_connection_that_answered_a_5xx_then_went_away_never_fails_over(
    api: Api, localstripe: LocalStripe
) -> None:
    # The last try is refused (GatewayUnreachable), but the first reached the provider.
    gone = FailsOnceThenGone()
    connection(api, gone.url, 0, failover=True)
    connection(api, localstripe.url, 1)
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"}))
    assert gone.took.is_set()
    assert api.counts() == before


class Provider:
    """A provider on loopback that records each request's path and Idempotency-Key and, as the
    test sets ``mode``: ``"fail"`` answers 500 (it was reached), ``"drop"`` takes the request and
    closes the connection unanswered (it may have acted on it), ``"forward"`` passes it to
    ``target`` (localstripe) and answers with its answer. ``port``: listen there (0: any)."""

    def __init__(self, mode: str, target: str = "", port: int = 0) -> None:
        self.mode, self.target = mode, target
        self.seen: list[tuple[str, str | None]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                provider.seen.append((self.path, self.headers.get("idempotency-key")))
                if provider.mode == "drop":
                    self.close_connection = True
                    return
                status, answer = 500, b'{"error": {"type": "api_error", "message": "boom"}}'
                if provider.mode == "forward":
                    names = ("authorization", "idempotency-key", "content-type", "stripe-version")
                    sent = httpx.request(
                        self.command, provider.target + self.path, content=body, timeout=10,
                        headers={k: v for k, v in self.headers.items() if k.lower() in names})
                    status, answer = sent.status_code, sent.content
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def providers() -> Iterator[list[Provider]]:
    """Providers a test starts (appended here), stopped at its end."""
    started: list[Provider] = []
    try:
        yield started
    finally:
        for provider in started:
            provider.stop()


def opened_at(localstripe: LocalStripe, reference: str) -> dict[str, Any]:
    at_stripe = httpx.get(f"{localstripe.url}/v1/payment_intents/{reference}",
                          auth=(SECRET_KEY, ""), timeout=10)
    assert at_stripe.status_code == 200, at_stripe.text
    data: dict[str, Any] = at_stripe.json()
    return data


def test_every_connection_gets_the_same_idempotency_key(
    api: Api, localstripe: LocalStripe, providers: list[Provider]
) -> None:
    # Two connections to one provider account de-duplicate a payment sent to both.
    nxt = Provider("forward", localstripe.url)
    providers.append(nxt)
    connection(api, refused_base(), 0, failover=True)
    up = connection(api, nxt.url, 1)
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"})
    assert pi["connection"] == up["id"]
    assert nxt.seen == [("/v1/payment_intents", f"{pi['id']}:open")]


def test_a_retry_whose_first_run_reached_a_connection_never_fails_over(
    api: Api, localstripe: LocalStripe, providers: list[Provider]
) -> None:
    # The first run reaches A (a 500 on each try: the payment may exist there); its key is
    # released (no final answer). A then can't be reached: the retry, same key, goes back to A
    # and is a 503, never opened at B.
    a = Provider("fail")
    providers.append(a)
    connection(api, a.url, 0, failover=True)
    connection(api, localstripe.url, 1)
    before = api.counts()
    key = {"Idempotency-Key": "fo-retry-" + secrets.token_hex(6)}
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"},
                         headers=key))
    assert len(a.seen) == 3  # reached on each try (1 + gateway_retries)
    a.stop()
    providers.remove(a)
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"},
                         headers=key))
    assert api.counts() == before


def test_a_retry_after_failing_over_goes_back_to_the_connection_it_failed_over_to(
    api: Api, localstripe: LocalStripe, providers: list[Provider]
) -> None:
    # The first run can't reach A and fails over to B, which takes the request and never
    # answers (the payment may exist at B). A is back for the retry (same key): the retry goes
    # to B again, never to A, and opens the payment there once.
    a_port = free_port()
    b = Provider("drop", localstripe.url)
    providers.append(b)
    connection(api, f"http://127.0.0.1:{a_port}", 0, failover=True)
    at_b = connection(api, b.url, 1, failover=True)
    key = {"Idempotency-Key": "fo-back-" + secrets.token_hex(6)}
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"},
                         headers=key))
    assert len(b.seen) >= 1
    first_keys = {sent for _, sent in b.seen}
    a = Provider("fail", port=a_port)  # A answers now
    providers.append(a)
    b.mode = "forward"
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd"}, headers=key)
    assert pi["connection"] == at_b["id"]
    assert a.seen == []
    assert first_keys == {f"{pi['id']}:open"} and b.seen[-1][1] == f"{pi['id']}:open"
    assert opened_at(localstripe, pi["gateway_reference"])["amount"] == 2000


def test_a_payment_for_a_customer_never_fails_over(
    api: Api, localstripe: LocalStripe
) -> None:
    # Its customer's saved cards are at the connection that saved them.
    connection(api, refused_base(), 0, failover=True)
    connection(api, localstripe.url, 1)
    customer = api.ok("POST", "/v1/customers", {"email": "fo@example.com"})
    before = api.counts()
    unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd",
                                                 "customer": customer["id"]}))
    assert api.counts() == before


def test_a_fallback_that_cant_take_the_currency_is_passed_over(
    api: Api, localstripe: LocalStripe, providers: list[Provider]
) -> None:
    # Square takes no CHF: the next connection after it does.
    square = Provider("fail")
    providers.append(square)
    connection(api, refused_base(), 0, failover=True)
    api.ok("POST", "/v1/connections", {"gateway": "square", "priority": 1, "credentials": {
        "access_token": random_token("EAAA_fo_"), "api_base": square.url}})
    third = connection(api, localstripe.url, 2)
    pi = api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "chf"})
    assert pi["connection"] == third["id"]
    assert square.seen == []
    assert opened_at(localstripe, pi["gateway_reference"])["currency"] == "chf"


def test_failover_never_goes_to_another_accounts_or_the_other_modes_connection(
    server: RunningServer, api: Api, providers: list[Provider]
) -> None:
    theirs, live = Provider("fail"), socket.create_server(("127.0.0.1", 0))
    providers.append(theirs)
    live.settimeout(0.2)
    try:
        other = Api(server)
        try:
            connection(other, theirs.url, 0)  # another account's, up
        finally:
            other.close()
        # This account's live connection (live needs https: nothing on loopback speaks it,
        # so any attempt shows as an accepted socket).
        async def live_key() -> str:  # a live connection is made with a live key
            app = Paymux(server.settings)
            try:
                return (await app.keys.create(api.account_id, livemode=True))[0].key
            finally:
                await app.close()

        api.ok("POST", "/v1/connections", {
            "gateway": "stripe", "priority": 1, "livemode": True, "credentials": {
                "secret_key": "sk_live_fo" + secrets.token_hex(12),
                "api_base": f"https://127.0.0.1:{live.getsockname()[1]}"}},
            headers={"authorization": f"Bearer {asyncio.run(live_key())}",
                     "x-forwarded-proto": "https"})
        connection(api, refused_base(), 0, failover=True)
        before = api.counts()
        unavailable(api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd"}))
        assert api.counts() == before
        assert theirs.seen == []
        with pytest.raises(TimeoutError):
            live.accept()
    finally:
        live.close()


def test_failover_never_goes_to_the_deployments_gateway_for_the_default_account(
    server: RunningServer,
) -> None:
    # The default account may use the deployment's gateways (here the sandbox, the default
    # gateway, which would take the payment): a failover still stays on its own connections.
    async def default_key() -> str:
        app = Paymux(server.settings)
        try:
            await app.accounts.ensure_account(DEFAULT_ACCOUNT, name="default")
            return (await app.accounts.create_key(DEFAULT_ACCOUNT)).key
        finally:
            await app.close()

    key = asyncio.run(default_key())
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as http:
        assert http.post("/v1/payment_intents", json={  # the deployment's gateway takes it
            "amount": 500, "currency": "usd", "gateway": "sandbox"}).status_code == 200
        made = http.post("/v1/connections", json={
            "gateway": "stripe", "failover": True,
            "credentials": {"secret_key": SECRET_KEY, "api_base": refused_base()}})
        assert made.status_code == 200, made.text
        count = "select count(*) from payment_intents where account_id = :a"
        before = server.sql(count, a=DEFAULT_ACCOUNT)[0][0]
        unavailable(http.post("/v1/payment_intents", json={"amount": 2000, "currency": "usd"}))
        assert server.sql(count, a=DEFAULT_ACCOUNT)[0][0] == before
        # Not left routing the default account's later tests to a dead connection.
        assert http.delete(f"/v1/connections/{made.json()['id']}").status_code == 200
