"""kill -9 during a burst of confirms, then a retry of every request with its own
Idempotency-Key: every answer is 200 with the true state, no 4xx for a request that
succeeded, one charge per intent at the sandbox and no duplicate intent (SQLite and
PostgreSQL).

``paymux serve`` runs as a real subprocess (support/processes.py). Intents are created up
front, each under its own key, while the sandbox is fast; then the sandbox turns slow (every
call waits ``LATENCY`` s) and a staggered burst of confirms (plus some create+confirm=true
requests) goes out, each under its own key. Once a part of the burst has been answered the
server is killed with SIGKILL: some requests were answered (their keys ``done``), some were in
the middle of a gateway call (keys ``in_flight`` at ``authorize_started``), some had not got
that far, some never reached the server. After a restart and once the idempotency lease
(``LEASE`` s) has expired, every request (creates and confirms) is sent again with its key and
body:

* every answer ends 200; the only other answer allowed is 409 ``idempotency_key_in_use``,
  retried (it can only come while a lease still runs), and a 200 ``processing`` is retried
  until it says ``succeeded``; anything else (a 4xx or 5xx) fails the test;
* an answer given before the kill is replayed as it was (``Idempotent-Replayed``);
* each confirm answers ``succeeded``, each create answers its original intent;
* the sandbox holds exactly one charge per intent, the database one authorize attempt per
  intent and as many intents as there are create keys; a second retry round only replays.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_crash_recovery import query, sandbox_charges

from conftest import migrated_database_url
from support.pgcluster import PgCluster
from support.processes import HOST, PAYMUX, ServeProcess, wait_until

N_INTENTS = 40  # created up front, then confirmed in the burst
N_CREATE_CONFIRM = 12  # create + confirm=true in one request, in the burst
LATENCY = 0.4  # seconds each sandbox call waits during the burst
LEASE = 2  # PAYMUX_IDEMPOTENCY_LEASE_SECONDS
STAGGER = 0.025  # seconds between two burst requests being sent
RETRY_DEADLINE = 20.0  # seconds one request may take to end 200 succeeded after the restart
MAX_IN_USE = 3  # 409 idempotency_key_in_use answers one retried request may get
AMOUNT = 2000
PM = "pm_card_visa"


@dataclass
class Call:
    """One request of the test, sent before the kill and retried after the restart."""

    kind: str  # "create" | "confirm" | "create_confirm"
    path: str
    body: dict[str, Any]
    key: str = field(default_factory=lambda: f"burst-{uuid.uuid4().hex}")
    pi_id: str | None = None
    # before the kill
    sent: bool = False
    first_status: int | None = None
    first_body: dict[str, Any] | None = None
    first_error: str | None = None
    # after the restart
    answers: list[tuple[int, str]] = field(default_factory=list)  # (status, code or status)
    replayed: bool | None = None
    final: dict[str, Any] | None = None
    problem: str | None = None

    def name(self) -> str:
        return f"{self.kind} {self.pi_id or '?'} key={self.key}"


@pytest.fixture(params=["sqlite", "postgres"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, pg_cluster: PgCluster | None
) -> Iterator[tuple[str, Path, str, str]]:
    if not PAYMUX.exists():
        pytest.fail(f"the paymux console script is missing at {PAYMUX}")
    url = migrated_database_url(request.param, tmp_path, pg_cluster, f"burst_{uuid.uuid4().hex[:12]}")
    yield request.param, tmp_path, url, "sk_test_" + secrets.token_hex(16)


def client(server: ServeProcess, timeout: float = 15.0) -> httpx.Client:
    assert server.url.startswith(f"http://{HOST}:"), server.url  # loopback only
    return httpx.Client(
        base_url=server.url,
        headers=dict(server.http.headers),
        timeout=timeout,
        trust_env=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=0),
    )


def post(http: httpx.Client, call: Call) -> httpx.Response:
    return http.post(call.path, json=call.body, headers={"Idempotency-Key": call.key})


def code_of(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("code"))
    return str(data.get("status")) if isinstance(data, dict) else "?"


# -- before the kill -------------------------------------------------------------------------
def fire(http: httpx.Client, call: Call, delay: float, lock: threading.Lock) -> None:
    """Send ``call`` after ``delay`` seconds; a dead server shows as a transport error."""
    time.sleep(delay)
    with lock:
        call.sent = True
    try:
        r = post(http, call)
    except httpx.TransportError as exc:
        call.first_error = type(exc).__name__
        return
    call.first_status = r.status_code
    try:
        call.first_body = r.json()
    except ValueError:
        call.first_body = {"text": r.text[:500]}
    if r.status_code == 200 and call.first_body is not None:
        call.pi_id = call.pi_id or call.first_body.get("id")


def answered(calls: list[Call]) -> int:
    return sum(c.first_status is not None for c in calls)


def burst_then_kill(server: ServeProcess, burst: list[Call]) -> dict[str, int]:
    """Send the burst (staggered), kill -9 once about a third has been answered; numbers."""
    lock = threading.Lock()
    http = client(server)
    pool = ThreadPoolExecutor(max_workers=len(burst))
    try:
        futures = [pool.submit(fire, http, call, i * STAGGER, lock) for i, call in enumerate(burst)]
        wait_until(
            "a third of the burst to be answered",
            lambda: answered(burst) >= len(burst) // 3,
            timeout=20,
        )
        with lock:
            sent = sum(c.sent for c in burst)
            done = answered(burst)
            server.kill9()
        for f in futures:
            f.result(timeout=20)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        http.close()
    return {"sent": sent, "answered": done, "in_flight": sent - done}


# -- after the restart -----------------------------------------------------------------------
def retry(http: httpx.Client, call: Call) -> None:
    """Send ``call`` again until it ends 200 with a final state, within RETRY_DEADLINE;
    records every answer, and the first thing that is not allowed in ``problem``."""
    deadline = time.monotonic() + RETRY_DEADLINE
    while True:
        try:
            r = post(http, call)
        except httpx.TransportError as exc:
            call.problem = f"transport error {type(exc).__name__}: {exc}"
            return
        code = code_of(r)
        call.answers.append((r.status_code, code))
        if call.replayed is None:
            call.replayed = r.headers.get("idempotent-replayed") == "true"
        if r.status_code == 409 and code == "idempotency_key_in_use":
            # A lease still running: allowed, a few times, and tried again.
            if sum(status == 409 for status, _ in call.answers) > MAX_IN_USE:
                call.problem = f"still 409 idempotency_key_in_use: {call.answers}"
                return
        elif r.status_code == 429 and code == "rate_limited":
            # The key's request rate (PAYMUX_RATE_LIMIT_REQUESTS a second): 16 clients polling
            # a processing payment can pass it. A client waits Retry-After, as Stripe's do.
            time.sleep(float(r.headers.get("retry-after") or 1))
        elif r.status_code != 200:
            call.problem = f"{r.status_code} {r.text[:600]}"
            return
        else:
            body: dict[str, Any] = r.json()
            if body.get("status") != "processing" or call.kind == "create":
                call.final = body
                return
        if time.monotonic() > deadline:
            call.problem = f"no final 200 within {RETRY_DEADLINE}s: {call.answers}"
            return
        time.sleep(0.1)


def retry_all(server: ServeProcess, calls: list[Call]) -> None:
    http = client(server, timeout=RETRY_DEADLINE)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            for f in [pool.submit(retry, http, c) for c in calls]:
                f.result(timeout=RETRY_DEADLINE + 30)
    finally:
        http.close()


def key_rows(url: str) -> dict[str, tuple[str, str | None, str | None]]:
    rows = query(url, "select key, status, recovery_point, object_id from idempotency_keys")
    return {str(k): (str(s), rp, obj) for k, s, rp, obj in rows}


# -- the test --------------------------------------------------------------------------------
def test_kill_9_during_a_burst_of_confirms_then_every_retry_answers_200_with_the_truth(
    setup: tuple[str, Path, str, str],
) -> None:
    backend, tmp, url, api_key = setup
    began = time.monotonic()
    marks: dict[str, float] = {}
    server = ServeProcess(
        tmp,
        url,
        api_key,
        PAYMUX_IDEMPOTENCY_LEASE_SECONDS=str(LEASE),
        PAYMUX_ATTEMPT_SETTLE_AFTER_SECONDS="1",
        PAYMUX_GATEWAY_RETRY_BASE_DELAY="0.05",
        PAYMUX_GATEWAY_RETRY_MAX_DELAY="0.2",
    )
    creates = [
        Call("create", "/v1/payment_intents", {"amount": AMOUNT, "currency": "usd"})
        for _ in range(N_INTENTS)
    ]
    confirms: list[Call] = []
    create_confirms = [
        Call(
            "create_confirm",
            "/v1/payment_intents",
            {"amount": AMOUNT, "currency": "usd", "payment_method": PM, "confirm": True},
        )
        for _ in range(N_CREATE_CONFIRM)
    ]
    try:
        # The intents, each under its own key, while the sandbox is fast.
        http = client(server)
        try:
            for call in creates:
                r = post(http, call)
                assert r.status_code == 200, r.text
                call.first_status, call.first_body = 200, r.json()
                call.pi_id = r.json()["id"]
                assert r.json()["status"] == "requires_payment_method"
                confirms.append(
                    Call(
                        "confirm",
                        f"/v1/payment_intents/{call.pi_id}/confirm",
                        {"payment_method": PM},
                        pi_id=call.pi_id,
                    )
                )
        finally:
            http.close()
        marks["created"] = time.monotonic()
        r = httpx.post(
            f"{server.url}/sandbox/_control/latency",
            json={"seconds": LATENCY},
            timeout=10,
            trust_env=False,
        )
        assert r.status_code == 200, r.text

        # The burst: confirms interleaved with create+confirm requests; kill -9 mid-way.
        burst = interleave(confirms, create_confirms)
        assert len(burst) == N_INTENTS + N_CREATE_CONFIRM
        at_kill = burst_then_kill(server, burst)
        killed = marks["kill"] = time.monotonic()
    except BaseException:
        server.stop()
        print(server.tail(60))
        raise

    # What the dead server left behind.
    first_answers = Counter(
        (c.kind, c.first_status, code_of_body(c.first_body)) for c in burst if c.first_status
    )
    transport = Counter((c.kind, c.first_error) for c in burst if c.first_error)
    keys_at_kill = key_rows(url)
    key_states = Counter(
        (s, rp if rp else "-")
        for k, (s, rp, _) in keys_at_kill.items()
        if k in {c.key for c in burst}
    )
    statuses_at_kill = Counter(s for (s,) in query(url, "select status from payment_intents"))
    [(pending_at_kill,)] = query(
        url, "select count(*) from gateway_attempts where status = 'pending'"
    )
    print(
        f"\n[{backend}] at the kill: {at_kill}; first answers {dict(first_answers)}; "
        f"transport errors {dict(transport)}; burst keys {dict(key_states)}; "
        f"intents {dict(statuses_at_kill)}; pending attempts {pending_at_kill}"
    )
    # Nothing answered before the kill may be anything but a 200.
    bad_first = [
        (c.name(), c.first_status, c.first_body)
        for c in burst
        if c.first_status is not None and c.first_status != 200
    ]
    assert not bad_first, f"non-200 answers before the kill: {bad_first}"

    try:
        server.restart()
        marks["restarted"] = time.monotonic()
        # Past the lease of every key the dead process held.
        time.sleep(max(0.0, killed + LEASE + 0.3 - time.monotonic()))
        every = creates + confirms + create_confirms
        retry_all(server, every)
        marks["retried"] = time.monotonic()
        problems = [(c.name(), c.problem) for c in every if c.problem]
        assert not problems, f"{len(problems)} retries did not end 200: {problems[:10]}"

        in_use = Counter(code for c in every for (status, code) in c.answers if status == 409)
        processing = sum(
            1
            for c in every
            for (status, code) in c.answers
            if status == 200 and code == "processing"
        )
        resumed = sum(
            1
            for c in burst
            if keys_at_kill.get(c.key, ("", None, None))[0] == "in_flight"
            and keys_at_kill[c.key][2] is not None
        )
        print(
            f"[{backend}] retries: replayed {sum(bool(c.replayed) for c in every)}/{len(every)} "
            f"(burst {sum(bool(c.replayed) for c in burst)}/{len(burst)}), resumed from a "
            f"recovery point {resumed}, 409 {dict(in_use)}, 200 processing {processing}"
        )

        for c in every:
            assert c.final is not None, c.name()
            if c.first_status == 200:
                # Answered before the kill: replayed exactly as it was.
                assert c.replayed, f"{c.name()}: answered before the kill, not replayed"
                assert c.final == c.first_body, c.name()
            if c.kind == "create":
                assert c.final["id"] == c.pi_id, c.name()
            elif c.kind == "confirm":
                assert c.final["id"] == c.pi_id, c.name()
                assert c.final["status"] == "succeeded", (c.name(), c.final)
            else:
                assert c.final["status"] == "succeeded", (c.name(), c.final)
                assert c.pi_id in (None, c.final["id"]), c.name()
                c.pi_id = c.final["id"]
            assert c.final["amount"] == AMOUNT

        # The true state of every intent, one charge each at the sandbox, no duplicates.
        pi_ids = {c.pi_id for c in creates} | {c.pi_id for c in create_confirms}
        assert len(pi_ids) == N_INTENTS + N_CREATE_CONFIRM
        rows = query(url, "select id, status, amount_received from payment_intents")
        assert len(rows) == N_INTENTS + N_CREATE_CONFIRM, "duplicate or missing intents"
        assert {r[0] for r in rows} == pi_ids
        wrong = [r for r in rows if (r[1], r[2]) != ("succeeded", AMOUNT)]
        assert not wrong, f"intents not succeeded: {wrong}"
        attempts = Counter(
            (str(obj), str(op), str(st))
            for obj, op, st in query(
                url, "select object_id, operation, status from gateway_attempts"
            )
        )
        assert attempts == Counter({(p, "authorize", "settled"): 1 for p in pi_ids}), attempts
        charges = {p: sandbox_charges(tmp / "sandbox.db", str(p)) for p in pi_ids}
        not_one = {p: ch for p, ch in charges.items() if ch != ["succeeded"]}
        assert not not_one, f"intents without exactly one succeeded charge: {not_one}"

        marks["checked"] = time.monotonic()
        # A second round: every key is done now, so every request replays its final answer.
        http = client(server)
        try:
            for c in every:
                r = post(http, c)
                for _ in range(5):  # past the key's request rate: wait as a client does
                    if r.status_code != 429:
                        break
                    time.sleep(float(r.headers.get("retry-after") or 1))
                    r = post(http, c)
                assert r.status_code == 200, (c.name(), r.text)
                assert r.headers.get("idempotent-replayed") == "true", c.name()
                assert r.json() == c.final, c.name()
        finally:
            http.close()
        marks["replayed"] = time.monotonic()
        phases = ", ".join(f"{k} +{v - began:.1f}s" for k, v in marks.items())
        print(f"[{backend}] runtime {time.monotonic() - began:.1f}s ({phases})")
    except BaseException:
        print(server.tail(80))
        raise
    finally:
        server.stop()


def interleave(confirms: list[Call], create_confirms: list[Call]) -> list[Call]:
    """The confirms with the create+confirm requests spread evenly among them."""
    every = max(1, len(confirms) // max(1, len(create_confirms)))
    burst: list[Call] = []
    rest = list(create_confirms)
    for i, call in enumerate(confirms):
        burst.append(call)
        if i % every == every - 1 and rest:
            burst.append(rest.pop(0))
    return burst + rest


def code_of_body(body: dict[str, Any] | None) -> str:
    if body is None:
        return "-"
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    return str(body.get("status"))
