"""/metrics, /health/live and /health/ready (issue 16) on a real server, SQLite and PostgreSQL.

The server runs without a job worker, so the rows a test writes into the queue, the inbox
and the delivery queue stay as written and the figures read from the database at scrape
time can be stated exactly.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BACKENDS, RunningServer, make_settings, migrated_database_url
from paymux.observability import metrics as observability_metrics
from paymux.observability import routes as observability_routes
from support.pgcluster import PgCluster
from support.processes import (
    PAYMUX,
    ServeProcess,
    child_pids,
    connection_owners,
    free_port,
    wait_until,
)

TOKEN = "metrics-token-for-tests"
_names = itertools.count()


@pytest.fixture(scope="module", params=BACKENDS)
def ops(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_cluster: PgCluster | None,
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp(f"ops-{request.param}")
    url = migrated_database_url(request.param, tmp, pg_cluster, f"ops_{next(_names)}")
    settings = make_settings(
        url,
        tmp,
        free_port(),
        run_worker=False,
        metrics_token=TOKEN,
        metrics_cache_seconds=0,
        ready_cache_seconds=0,
    )
    server = RunningServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


def scrape(server: RunningServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def key_of(server: RunningServer) -> tuple[str, httpx.Client]:
    account, key = server.new_key()
    return account, httpx.Client(
        base_url=server.url, timeout=30, headers={"authorization": f"Bearer {key}"}
    )


def test_metrics_need_their_own_token(ops: RunningServer) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
        r = httpx.get(f"{ops.url}/metrics", headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "api_key_invalid"
        assert TOKEN not in r.text
    # An API key is not the metrics token either.
    _, client = key_of(ops)
    with client:
        assert client.get("/metrics").status_code == 401


def test_requests_are_counted_by_route_template_and_status(ops: RunningServer) -> None:
    _, client = key_of(ops)
    before = scrape(ops)
    with client:
        ids = [
            client.post("/v1/customers", json={"email": f"m{i}@example.com"}).json()["id"]
            for i in range(3)
        ]
        for cus in ids:
            assert client.get(f"/v1/customers/{cus}").status_code == 200
        assert client.get("/v1/customers/cus_missing").status_code == 404
        assert client.get("/v1/no-such-thing").status_code == 404
    after = scrape(ops)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    post = {"method": "POST", "route": "/v1/customers", "status": "200"}
    assert delta("paymux_http_requests_total", **post) == 3
    one = {"method": "GET", "route": "/v1/customers/{customer_id}"}
    assert delta("paymux_http_requests_total", **one, status="200") == 3
    assert delta("paymux_http_requests_total", **one, status="404") == 1
    assert delta("paymux_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert (
        delta("paymux_http_request_duration_seconds_count", method="POST", route="/v1/customers")
        == 3
    )
    # Bounded labels: no object id, key, request id or email anywhere in the labels.
    text = httpx.get(f"{ops.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
    labels = " ".join(re.findall(r"\{[^}]*\}", text))
    for cus in ids:
        assert cus not in labels
    assert not re.search(r"(cus|pi|req|sk|evt)_[A-Za-z0-9]{6,}|@example\.com", labels)


def test_payments_and_gateway_calls_are_counted_with_outcome_and_decline_code(
    ops: RunningServer,
) -> None:
    _, client = key_of(ops)
    before = scrape(ops)
    with client:
        for pm in ("pm_card_visa", "pm_card_visa", "pm_card_chargeDeclinedInsufficientFunds"):
            r = client.post(
                "/v1/payment_intents",
                json={"amount": 1000, "currency": "usd", "confirm": True, "payment_method": pm},
            )
            assert r.status_code in (200, 402), r.text
    after = scrape(ops)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    paid = {"gateway": "sandbox", "operation": "authorize"}
    assert delta("paymux_payments_total", **paid, outcome="succeeded", decline_code="none") == 2
    assert (
        delta(
            "paymux_payments_total", **paid, outcome="declined", decline_code="insufficient_funds"
        )
        == 1
    )
    assert delta("paymux_gateway_call_duration_seconds_count", **paid) == 3


def test_gateway_call_errors_are_counted_by_gateway_operation_and_kind(
    ops: RunningServer,
) -> None:
    """Each authorize below fails once at the gateway (a 500, then a 429 with no wait), is
    retried with the same key and succeeds: one error of each kind, two payments."""
    _, client = key_of(ops)
    faults = f"{ops.url}/sandbox/_control/faults"
    before = scrape(ops)
    try:
        with client:
            for fault in (
                {"mode": "server_error", "operation": "authorize", "count": 1},
                {"mode": "rate_limit", "operation": "authorize", "count": 1, "retry_after": 0},
            ):
                assert httpx.post(faults, json=fault, timeout=10).status_code == 200
                r = client.post(
                    "/v1/payment_intents",
                    json={
                        "amount": 1000,
                        "currency": "usd",
                        "confirm": True,
                        "payment_method": "pm_card_visa",
                    },
                )
                assert (r.status_code, r.json()["status"]) == (200, "succeeded"), r.text
    finally:
        httpx.delete(faults, timeout=10)
    after = scrape(ops)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    call = {"gateway": "sandbox", "operation": "authorize"}
    errors = "paymux_gateway_call_errors_total"
    assert delta(errors, **call, error="unavailable") == 1
    assert delta(errors, **call, error="rate_limited") == 1
    assert delta(errors, **call, error="other") == 0
    # Every call is timed, the failed ones too; the payments are counted once each.
    assert delta("paymux_gateway_call_duration_seconds_count", **call) == 4
    assert delta("paymux_payments_total", **call, outcome="succeeded", decline_code="none") == 2


def test_fraud_decisions_are_counted_by_outcome(ops: RunningServer) -> None:
    _, client = key_of(ops)
    with client:
        rule = {"rule": "block if :amount: >= 777700"}
        assert client.post("/v1/fraud/rules", json=rule).status_code == 200
        before = scrape(ops)
        for amount in (777700, 1000, 777701):
            r = client.post(
                "/v1/payment_intents",
                json={
                    "amount": amount,
                    "currency": "usd",
                    "confirm": True,
                    "payment_method": "pm_card_visa",
                },
            )
            assert r.status_code == (402 if amount >= 777700 else 200), r.text
    after = scrape(ops)

    def delta(outcome: str) -> float:
        name = "paymux_fraud_decisions_total"
        return value(after, name, outcome=outcome) - value(before, name, outcome=outcome)

    assert (delta("block"), delta("allow")) == (2, 1)


def test_queue_inbox_and_delivery_figures_are_read_from_the_database(ops: RunningServer) -> None:
    account, client = key_of(ops)
    client.close()
    now = int(time.time() * 1_000_000)
    minute = 60_000_000
    for age, status in ((3, "queued"), (1, "queued"), (2, "running"), (9, "dead")):
        ops.sql(
            "insert into jobs (kind, payload, status, run_at_us, attempts, max_attempts, "
            "created_us, updated_us, locked_until_us) values ('ops_probe', '{}', "
            ":s, :t, 0, 10, :t, :t, :lock)",
            s=status,
            t=now - age * minute,
            lock=now + minute if status == "running" else None,
        )
    for n, (age, status) in enumerate(
        ((7, "received"), (2, "received"), (1, "applied"), (1, "dead"))
    ):
        ops.sql(
            "insert into webhook_inbox (id, gateway, event_id, type, payload, status, "
            "received_us, applied_us) values (:i, 'opsprobe', :e, 'x', '{}', :s, :t, null)",
            i=f"wh_ops{n}{account[-6:]}",
            e=f"evt_{n}{account}",
            s=status,
            t=now - age * minute,
        )
    ops.sql(
        "insert into webhook_endpoints (id, account_id, livemode, url, metadata, "
        "enabled_events, signature_scheme, status, secret, deleted, created_us) values "
        "(:i, :a, false, 'http://127.0.0.1:9/x', '{}', '[\"*\"]', 'standard', 'enabled', 'x', "
        "false, :t)",
        i=f"we_{account[-12:]}",
        a=account,
        t=now,
    )
    # What other tests of this server left (the gauges are deployment-wide): the two rows
    # below must move them by exactly their own counts.
    before = scrape(ops)
    for n, (age, attempts) in enumerate(((5, 2), (1, 0))):
        ops.sql(
            "insert into webhook_deliveries (id, account_id, endpoint_id, event_id, status, "
            "attempts, next_attempt_us, created_us) values (:i, :a, :ep, 'evt_x', 'pending', "
            ":n, :t, :t)",
            i=f"whd_{n}{account[-12:]}",
            a=account,
            ep=f"we_{account[-12:]}",
            n=attempts,
            t=now - age * minute,
        )
    for n in range(3):  # events whose deliveries the (absent) worker has not made
        ops.sql("insert into event_outbox (event_id) values (:e)", e=f"evt_ops{n}{account}")
    try:
        samples = scrape(ops)
        assert value(samples, "paymux_jobs", kind="ops_probe", status="queued") == 2
        assert value(samples, "paymux_jobs", kind="ops_probe", status="running") == 1
        assert value(samples, "paymux_jobs_dead", kind="ops_probe") == 1
        queued_age = value(
            samples, "paymux_jobs_oldest_age_seconds", kind="ops_probe", status="queued"
        )
        assert 180 <= queued_age < 240
        assert (
            value(samples, "paymux_webhook_inbox_events", gateway="opsprobe", status="received")
            == 2
        )
        assert value(samples, "paymux_webhook_inbox_events", gateway="opsprobe", status="dead") == 1
        # Applied events are not read at scrape time (that count only grows).
        assert (
            "paymux_webhook_inbox_events",
            frozenset({("gateway", "opsprobe"), ("status", "applied")}),
        ) not in samples
        lag = value(samples, "paymux_webhook_inbox_lag_seconds", gateway="opsprobe")
        assert 420 <= lag < 480
        for status, added in (("pending", 2), ("failing", 1)):
            now_value = value(samples, "paymux_webhook_deliveries", status=status)
            was = value(before, "paymux_webhook_deliveries", status=status)
            assert now_value - was == added, (status, was, now_value)
        assert value(samples, "paymux_webhook_deliveries_oldest_pending_age_seconds") >= 300
        undispatched = "paymux_webhook_events_undispatched"
        assert value(samples, undispatched) - value(before, undispatched) == 3
    finally:
        ops.sql("delete from event_outbox where event_id like :e", e=f"evt_ops%{account}")
        ops.sql("delete from webhook_deliveries where account_id = :a", a=account)
        ops.sql("delete from webhook_endpoints where account_id = :a", a=account)
        ops.sql("delete from webhook_inbox where gateway = 'opsprobe'")
        ops.sql("delete from jobs where kind = 'ops_probe'")


def test_health_live_and_ready(ops: RunningServer) -> None:
    assert httpx.get(f"{ops.url}/health/live").json() == {"status": "live"}
    assert httpx.get(f"{ops.url}/health").status_code == 200  # as before
    ready = httpx.get(f"{ops.url}/health/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["migrations"]["ok"]
    assert checks["migrations"]["current"] == checks["migrations"]["head"]
    now = int(time.time() * 1_000_000)
    # Another process's worker that beat ten minutes ago and none since: reported, but the
    # API stays ready (its jobs wait in the queue; the metric and its alert say it).
    ops.sql(
        "insert into worker_heartbeats (worker_id, started_us, beat_us) values "
        "('ops-stale', :t, :t)",
        t=now - 600_000_000,
    )
    try:
        stale = httpx.get(f"{ops.url}/health/ready")
        assert stale.status_code == 200, stale.text
        assert stale.json()["checks"]["workers"] == {"ok": True, "alive": 0, "known": 1}
        assert value(scrape(ops), "paymux_workers_alive") == 0
        ops.sql(
            "insert into worker_heartbeats (worker_id, started_us, beat_us) values "
            "('ops-fresh', :t, :t)",
            t=now,
        )
        fresh = httpx.get(f"{ops.url}/health/ready")
        assert fresh.json()["checks"]["workers"] == {"ok": True, "alive": 1, "known": 2}
        assert value(scrape(ops), "paymux_workers_alive") == 1
    finally:
        ops.sql("delete from worker_heartbeats where worker_id like 'ops-%'")
    # A schema behind the code: not ready, and it says what to run.
    [(current,)] = ops.sql("select version_num from alembic_version")
    ops.sql("update alembic_version set version_num = '0015'")
    try:
        behind = httpx.get(f"{ops.url}/health/ready")
        assert behind.status_code == 503
        found = behind.json()["checks"]["migrations"]
        assert (found["ok"], found["current"]) == (False, "0015")
        assert "paymux migrate" in found["detail"]
        # A schema ahead of the code (a newer release migrated first in a rolling upgrade):
        # still ready, with a warning; no row at all: unready.
        ops.sql("update alembic_version set version_num = '0099_next_release'")
        ahead = httpx.get(f"{ops.url}/health/ready")
        assert ahead.status_code == 200, ahead.text
        found = ahead.json()["checks"]["migrations"]
        assert (found["ok"], found["current"]) == (True, "0099_next_release")
        assert "newer than this code" in found["warning"]
        ops.sql("delete from alembic_version")
        assert httpx.get(f"{ops.url}/health/ready").status_code == 503
    finally:
        ops.sql("delete from alembic_version")
        ops.sql("insert into alembic_version (version_num) values (:v)", v=current)
    assert httpx.get(f"{ops.url}/health/ready").status_code == 200


def test_no_metrics_token_means_no_metrics_endpoint(tmp_path: Path) -> None:
    url = migrated_database_url("sqlite", tmp_path, None, "nometrics")
    server = RunningServer(make_settings(url, tmp_path, free_port(), run_worker=False)).start()
    try:
        r = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "url_invalid")
    finally:
        server.stop()


def test_several_api_processes_report_one_total(
    tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    """``serve --workers 2``: whichever process answers the scrape, the counters are the sum
    over both (prometheus-client's multiprocess mode, its directory made by paymux)."""
    url = migrated_database_url("postgres", tmp_path, pg_cluster, f"ops_mp_{next(_names)}")
    server = ServeProcess(
        tmp_path,
        url,
        "sk_test_" + "m" * 32,
        command=[str(PAYMUX), "serve", "--workers", "2", "--no-worker"],
        PAYMUX_METRICS_TOKEN=TOKEN,
        # Up to 60 clients' two requests each within a second or so: past the key's default
        # 100 a second when the kernel is slow to hand both processes connections (a CI run
        # got a 429). What is counted here is not the rate limit's (tests/e2e/test_rate_limits.py).
        PAYMUX_RATE_LIMIT_REQUESTS="0",
    )
    try:
        # Kept-alive connections, opened five at a time until both processes hold some (the
        # kernel hands them out: usually at once, not always), then two requests on each.
        clients: list[httpx.Client] = []
        owners: dict[int, int] = {}
        try:
            while len(owners) < 2 and len(clients) < 60:
                for _ in range(5):
                    client = httpx.Client(
                        base_url=server.url,
                        timeout=30,
                        trust_env=False,
                        headers={"authorization": f"Bearer {server.api_key}"},
                    )
                    clients.append(client)
                    assert client.get("/v1/customers").status_code == 200
                owners = connection_owners(server.port, child_pids(server.pid))
            assert len(owners) == 2 and sum(owners.values()) == len(clients), owners
            for client in clients:
                assert client.get("/v1/customers").status_code == 200
        finally:
            for client in clients:
                client.close()
        route = {"method": "GET", "route": "/v1/customers", "status": "200"}
        for _ in range(6):  # several scrapes: each process answers some
            samples = scrape_url(server.url)
            assert value(samples, "paymux_http_requests_total", **route) == 2 * len(clients)
    finally:
        server.stop()


def scrape_url(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_a_process_whose_own_worker_stopped_beating_is_not_ready(tmp_path: Path) -> None:
    """The worker beats once at start, then (interval: an hour) not again: once that beat is
    older than the 20 s timeout the process goes unready, saying why. Ready first (its own
    beat is fresh); then the beat is made 25 s old in its row, as 25 s without a beat would
    leave it, instead of waiting them out (the row is the process's own, keyed by it)."""
    url = migrated_database_url("sqlite", tmp_path, None, "ownworker")
    settings = make_settings(
        url,
        tmp_path,
        free_port(),
        run_worker=True,
        worker_heartbeat_interval=3600,
        worker_heartbeat_timeout=20,
    )
    server = RunningServer(settings).start()
    try:
        wait_until(
            "ready", lambda: httpx.get(f"{server.url}/health/ready").status_code == 200, timeout=60
        )
        [(beats,)] = server.sql("select count(*) from worker_heartbeats")
        assert beats == 1
        server.sql("update worker_heartbeats set beat_us = beat_us - 25000000")
        wait_until(
            "unready",
            lambda: httpx.get(f"{server.url}/health/ready").status_code == 503,
            timeout=60,
        )
        workers = httpx.get(f"{server.url}/health/ready").json()["checks"]["workers"]
        assert workers["ok"] is False and "this process's job worker" in workers["detail"]
    finally:
        server.stop()


class _Monotonic:
    """A ``time`` stand-in for the caching modules alone: ``monotonic()`` moves only when the
    test moves it (the event loop and everything else keep the real clock)."""

    perf_counter = staticmethod(time.perf_counter)

    def __init__(self) -> None:
        self.now = time.monotonic()

    def monotonic(self) -> float:
        return self.now


def test_metrics_refusals_are_limited_and_figures_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong tokens are rate limited; PAYMUX_METRICS_CACHE_SECONDS: scrapes within it answer
    the figures read first; PAYMUX_READY_CACHE_SECONDS: the same for /health/ready. The
    caches' clock is the test's (``_Monotonic``): 11.9 s on is within the 12 s period, 12.1 s
    on is past it, however slow the machine."""
    clock = _Monotonic()
    monkeypatch.setattr(observability_routes, "time", clock)
    monkeypatch.setattr(observability_metrics, "time", clock)
    url = migrated_database_url("sqlite", tmp_path, None, "metricscache")
    settings = make_settings(
        url,
        tmp_path,
        free_port(),
        run_worker=False,
        metrics_token=TOKEN,
        metrics_cache_seconds=12,
        ready_cache_seconds=12,
        rate_limit_unauthenticated_requests=3,
    )
    server = RunningServer(settings).start()
    try:
        # Wrong tokens count against the address's unauthenticated limit, as bad keys do.
        wrong = {"authorization": "Bearer not-the-token"}
        codes = [httpx.get(f"{server.url}/metrics", headers=wrong).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429], codes

        def dead() -> float:
            return value(scrape(server), "paymux_jobs_dead", kind="ops_cache")

        assert dead() == 0
        now = int(time.time() * 1_000_000)
        server.sql(
            "insert into jobs (kind, payload, status, run_at_us, attempts, max_attempts, "
            "created_us, updated_us) values ('ops_cache', '{}', 'dead', :t, 5, 5, :t, :t)",
            t=now,
        )
        clock.now += 11.9
        assert dead() == 0  # within the period: the first reading
        clock.now += 0.2
        assert dead() == 1  # past it: read again

        # /health/ready likewise (PAYMUX_READY_CACHE_SECONDS).
        def ready() -> int:
            return httpx.get(f"{server.url}/health/ready").status_code

        assert ready() == 200
        [(current,)] = server.sql("select version_num from alembic_version")
        server.sql("update alembic_version set version_num = '0015'")
        try:
            clock.now += 11.9
            assert ready() == 200  # the answer of 11.9 s ago
            clock.now += 0.2
            assert ready() == 503  # past the period: checked again
        finally:
            server.sql("update alembic_version set version_num = :v", v=current)
    finally:
        server.stop()
