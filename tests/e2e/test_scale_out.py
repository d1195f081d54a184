"""Scale-out on PostgreSQL: ``paymux serve --workers 4 --no-worker`` (four API processes on one
port) plus two ``paymux worker`` processes on one database, driven with concurrent requests.

What must hold across processes, each checked under load from 32 connections that the kernel
spreads over the four processes (each test also checks that its connections were accepted by
at least two of them, by which process holds each connection's socket):

- idempotency: one Idempotency-Key POSTed 32 times at once makes one payment intent and one
  charge at the sandbox; every answer is that intent (or 409 ``idempotency_key_in_use``);
- rate limits: a key limited to LIMIT requests in one (very long) window gets exactly LIMIT
  answers that are not 429, however its requests are spread;
- key revocation: once revoked through the admin API and PAYMUX_KEY_CACHE_SECONDS (1 s here)
  have passed, every process refuses the key, including those that had it cached;
- the job queue: 3-D Secure payments answered at the sandbox send one webhook each, stored by
  whichever API process gets it and applied by the two workers: every job done in one
  attempt, nothing dead, one ``payment_intent.succeeded`` event per payment.

PostgreSQL only: ``serve --workers N`` refuses SQLite (tests/unit/test_serve_runtime.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.keys import random_token
from support.pgcluster import PgCluster
from support.processes import (
    FAST_TEST_SETTINGS,
    PAYMUX,
    LoggedProcess,
    ServeProcess,
    child_pids,
    connection_owners,
    wait_until,
)

API_PROCESSES = 4
JOB_WORKERS = 2
CONNECTIONS = 32
CONNECTION_LIMITS = httpx.Limits(max_connections=CONNECTIONS,
                                 max_keepalive_connections=CONNECTIONS)
SPREAD_TRIES = 20
LIMIT = 40  # requests per key for the whole module (above what one test sends per key)
WINDOW_SECONDS = "1000000000"  # one window (until 2033) for every request of the module
KEY_CACHE_SECONDS = 1.0
ADMIN_KEY = random_token("admin_", 32)
PI = "/v1/payment_intents"


@dataclass
class Deployment:
    serve: ServeProcess
    workers: list[LoggedProcess]

    @property
    def url(self) -> str:
        return self.serve.url

    def api_processes(self) -> list[int]:
        """The API processes: the serve process's children that multiprocessing spawned (not
        its resource tracker)."""
        return [
            pid for pid in child_pids(self.serve.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    def connection_owners(self) -> dict[int, int]:
        """API process -> established connections to the port it holds now (every request on
        a connection is served by the process that accepted it)."""
        return connection_owners(self.serve.port, self.api_processes())

    def admin(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        r = httpx.request(method, self.url + path, json=json, timeout=30, trust_env=False,
                          headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def new_key(self) -> tuple[str, str]:
        """A secret key of a new account: (its id, the key)."""
        made = self.admin("POST", "/v1/admin/keys", {})
        return made["id"], made["secret"]


def _started_processes(serve: ServeProcess) -> int:
    return serve.output(1_000_000).count("Application startup complete.")


@pytest.fixture(scope="module")
def deployment(
    pg_cluster: PgCluster | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if pg_cluster is None:
        pytest.skip("PostgreSQL only (set PAYMUX_TEST_POSTGRES=required to fail instead)")
    tmp = tmp_path_factory.mktemp("scale-out")
    url = pg_cluster.create_database("scale_out")
    serve = ServeProcess(
        tmp,
        url,
        random_token("sk_test_scale", 24),
        command=[str(PAYMUX), "serve", "--workers", str(API_PROCESSES), "--no-worker"],
        settings={
            **FAST_TEST_SETTINGS,
            # INFO: each process logs "Application startup complete." (counted below).
            "PAYMUX_LOG_LEVEL": "INFO",
        },
        start=False,
        timeout=180,  # four interpreters importing at once, on a busy 2-core machine
        PAYMUX_ADMIN_KEY=ADMIN_KEY,
        PAYMUX_KEY_CACHE_SECONDS=str(KEY_CACHE_SECONDS),
        PAYMUX_RATE_LIMIT_REQUESTS=str(LIMIT),
        PAYMUX_RATE_LIMIT_WINDOW_SECONDS=WINDOW_SECONDS,
    )
    workers: list[LoggedProcess] = []
    try:
        serve.start()
        wait_until(
            f"all {API_PROCESSES} API processes to start",
            lambda: serve.check_alive() is None and _started_processes(serve) >= API_PROCESSES,
            timeout=180,
            interval=0.2,
        )
        env = dict(serve.env)
        for n in range(JOB_WORKERS):
            worker = LoggedProcess(
                f"paymux worker {n}", [str(PAYMUX), "worker"], env=env,
                log=tmp / f"worker-{n}.log", cwd=tmp,
            )
            workers.append(worker.spawn())
        running = Deployment(serve, workers)
        assert len(running.api_processes()) == API_PROCESSES
        yield running
        for worker in workers:
            worker.check_alive()
        assert "] died" not in serve.output(1_000_000), serve.tail()  # none restarted
    finally:
        for worker in workers:
            worker.stop()
        serve.stop()


async def _spread_client(d: Deployment, headers: dict[str, str]) -> httpx.AsyncClient:
    """A client whose pool holds CONNECTIONS open connections (one cheap request on each, all
    at once) that the kernel handed to at least two API processes.

    The four processes share one listening socket, and whichever wakes first may accept every
    waiting connection: on a busy machine one process can take all 32. Then the pool is closed
    and another opened, up to SPREAD_TRIES times, so that the requests under test, sent next
    over these kept-alive connections, reach several processes."""
    for _ in range(SPREAD_TRIES):
        http = httpx.AsyncClient(base_url=d.url, limits=CONNECTION_LIMITS, timeout=60,
                                 trust_env=False, headers=headers)
        await asyncio.gather(*(http.get("/health") for _ in range(CONNECTIONS)))
        if len(d.connection_owners()) >= 2:
            return http
        await http.aclose()
        await asyncio.sleep(0.2)
    return http  # not spread: fire() says so


async def _fire(
    d: Deployment, requests: list[tuple[str, str, dict[str, Any]]], headers: dict[str, str]
) -> tuple[list[httpx.Response], set[int]]:
    """Send ``requests`` (method, path, kwargs) at once over CONNECTIONS connections spread over
    the API processes; the answers, and the API processes seen holding connections meanwhile."""
    http = await _spread_client(d, headers)
    try:
        seen = set(d.connection_owners())
        sent = asyncio.gather(*(http.request(method, path, **kw) for method, path, kw in requests))
        while not sent.done():  # sampled, since uvicorn closes a connection idle for 5 s
            seen |= set(d.connection_owners())
            await asyncio.wait([sent], timeout=0.05)
        answers = await sent
    finally:
        await http.aclose()
    return list(answers), seen


def fire(
    d: Deployment, requests: list[tuple[str, str, dict[str, Any]]], key: str,
    **headers: str,
) -> list[httpx.Response]:
    answers, owners = asyncio.run(_fire(d, requests, {"authorization": f"Bearer {key}",
                                                      **headers}))
    assert len(owners) >= 2, f"every connection landed on one API process: {owners}"
    return answers


def test_one_idempotency_key_sent_to_every_process_at_once_pays_once(deployment: Deployment) -> None:
    d = deployment
    _, key = d.new_key()
    body = {"amount": 2000, "currency": "usd", "confirm": True, "payment_method": "pm_card_visa"}
    answers = fire(d, [("POST", PI, {"json": body})] * CONNECTIONS, key,
                   **{"idempotency-key": random_token("scale-")})
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 409}, [r.text for r in answers if r.status_code not in (200, 409)]
    ok = [r for r in answers if r.status_code == 200]
    assert ok, statuses
    assert len({r.json()["id"] for r in ok}) == 1
    assert len({r.content for r in ok}) == 1, "every success must be the one stored answer"
    assert sum(1 for r in ok if "idempotent-replayed" not in r.headers) == 1  # the one run
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_use"
    listed = httpx.get(d.url + PI, headers={"authorization": f"Bearer {key}"}, timeout=30,
                       trust_env=False).json()["data"]
    assert [pi["id"] for pi in listed] == [ok[0].json()["id"]]
    assert listed[0]["status"] == "succeeded" and listed[0]["amount_received"] == 2000
    charges = httpx.get(f"{d.url}/sandbox/_control/charges", params={"reference": listed[0]["id"]},
                        timeout=30, trust_env=False).json()["data"]
    assert len(charges) == 1


def test_a_rate_limit_holds_for_the_deployment_not_per_process(deployment: Deployment) -> None:
    d = deployment
    _, key = d.new_key()
    answers = fire(d, [("GET", PI, {})] * (3 * LIMIT), key)
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 429}, statuses
    # One shared count: exactly LIMIT requests get through, whichever process served them
    # (per process counts would let up to API_PROCESSES * LIMIT through).
    assert statuses.count(200) == LIMIT
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"


def test_a_revoked_key_is_refused_by_every_process_after_the_cache_time(deployment: Deployment) -> None:
    d = deployment
    key_id, key = d.new_key()
    # Every process that gets one of these checks the key and caches the answer.
    warm = fire(d, [("GET", PI, {})] * CONNECTIONS, key)
    assert [r.status_code for r in warm] == [200] * CONNECTIONS
    revoked = d.admin("POST", f"/v1/admin/keys/{key_id}/revoke", {})
    assert revoked["revoked"] is True
    time.sleep(KEY_CACHE_SECONDS + 0.5)  # the documented bound: then no process trusts it
    answers = fire(d, [("GET", PI, {})] * (2 * CONNECTIONS), key)
    assert [r.status_code for r in answers] == [401] * (2 * CONNECTIONS)
    assert {r.json()["error"]["code"] for r in answers} == {"api_key_invalid"}


def test_webhook_jobs_from_every_process_are_applied_once_by_the_workers(deployment: Deployment) -> None:
    d = deployment
    _, key = d.new_key()
    count = 16
    body = {"amount": 1500, "currency": "eur", "confirm": True,
            "payment_method": "pm_card_threeDSecure2Required"}
    created = fire(d, [("POST", PI, {"json": body})] * count, key)
    assert [r.status_code for r in created] == [200] * count, [r.text for r in created]
    intents = [r.json() for r in created]
    assert {pi["status"] for pi in intents} == {"requires_action"}

    # The payer approves each challenge at the sandbox's page (served by any process); the
    # sandbox then sends a signed charge.updated webhook to /webhooks/sandbox.
    async def approve_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            posts = []
            for pi in intents:
                url = urlsplit(pi["next_action"]["redirect_to_url"]["url"])
                token = parse_qs(url.query)["token"][0]
                posts.append(http.post(f"{d.url}{url.path}",
                                       data={"token": token, "outcome": "complete"}))
            return list(await asyncio.gather(*posts))

    approved = asyncio.run(approve_all())
    assert all(r.status_code in (200, 303) for r in approved), [r.text for r in approved]

    def jobs(status: str) -> list[dict[str, Any]]:
        return d.admin("GET", f"/v1/admin/jobs?kind=apply_webhook&status={status}&limit=1000")[
            "data"]

    wait_until(f"{count} apply_webhook jobs done", lambda: len(jobs("done")) >= count, 60, 0.2)
    done = jobs("done")
    assert len(done) == count  # one event per payment, one job per event
    assert [job["attempts"] for job in done] == [1] * count  # each run once, first time
    for status in ("queued", "running", "dead"):
        assert jobs(status) == []
    inbox = d.admin("GET", "/v1/admin/webhooks?limit=1000")["data"]
    assert sorted(row["status"] for row in inbox) == ["applied"] * count

    auth = {"authorization": f"Bearer {key}"}
    listed = httpx.get(d.url + PI, params={"limit": 100}, headers=auth, timeout=30,
                       trust_env=False).json()["data"]
    assert sorted(pi["id"] for pi in listed) == sorted(pi["id"] for pi in intents)
    assert {pi["status"] for pi in listed} == {"succeeded"}
    events = httpx.get(f"{d.url}/v1/events", params={"limit": 100,
                       "type": "payment_intent.succeeded"}, headers=auth, timeout=30,
                       trust_env=False).json()["data"]
    succeeded = sorted(e["data"]["object"]["id"] for e in events)
    assert succeeded == sorted(pi["id"] for pi in intents)  # one each: none twice
    for pi in intents:
        charges = httpx.get(f"{d.url}/sandbox/_control/charges", params={"reference": pi["id"]},
                            timeout=30, trust_env=False).json()["data"]
        assert len(charges) == 1
