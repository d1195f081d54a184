"""Idempotency-Key semantics over HTTP on a real server (SQLite and PostgreSQL), and the 24 h
purge through the library.

The promise under test: one key, one execution. A retry replays the first answer (a decline
included), a different request under the same key is refused, a retry while the first is
still running gets 409 and saves nothing, and validation errors are not stored. The
acceptance test fires 50 identical confirms at once and counts charges at the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer, migrated_database_url
from paymux.config import Settings
from paymux.domain.clock import FrozenClock
from paymux.services import Paymux
from paymux.services.idempotency import Replay, request_fingerprint
from paymux.services.payments import CreateParams
from support.pgcluster import PgCluster

CONCURRENT = 50


def set_latency(server: RunningServer, seconds: float) -> None:
    r = httpx.post(f"{server.url}/sandbox/_control/latency", json={"seconds": seconds}, timeout=10)
    assert r.status_code == 200, r.text


@pytest.fixture
def latency(server: RunningServer) -> Iterator[Any]:
    """Set the sandbox's latency for one test; always back to 0 afterwards."""
    try:
        yield lambda seconds: set_latency(server, seconds)
    finally:
        set_latency(server, 0.0)


def key() -> str:
    return f"idem-{uuid.uuid4()}"


def create(api: Api, **params: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd", **params})


# -- replay, mismatch, scope ---------------------------------------------------------------


def test_a_retry_replays_the_stored_response_and_creates_nothing(api: Api) -> None:
    k = key()
    body = {"amount": 1234, "currency": "eur", "metadata": {"order": "42"}}
    first = api.post("/v1/payment_intents", body, headers={"Idempotency-Key": k})
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    before = api.counts()
    again = api.post("/v1/payment_intents", body, headers={"Idempotency-Key": k})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["request-id"] != first.headers["request-id"]
    assert api.counts() == before
    listed = api.ok("GET", "/v1/payment_intents")["data"]
    assert [pi["id"] for pi in listed] == [first.json()["id"]]


def test_a_stored_decline_is_replayed_with_its_402(api: Api) -> None:
    pi = create(api)
    k = key()
    path = f"/v1/payment_intents/{pi['id']}/confirm"
    body = {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"}
    first = api.post(path, body, headers={"Idempotency-Key": k})
    assert first.status_code == 402, first.text
    assert first.json()["error"]["code"] == "card_declined"
    assert first.json()["error"]["decline_code"] == "insufficient_funds"
    attempts = api.counts()["gateway_attempts"]
    again = api.post(path, body, headers={"Idempotency-Key": k})
    assert again.status_code == 402
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    # The replay did not reach the gateway again.
    assert api.counts()["gateway_attempts"] == attempts
    assert len(api.charges(pi["id"])) == 1
    # A new key is a new request: the intent accepts another card.
    ok = api.post(path, {"payment_method": "pm_card_visa"}, headers={"Idempotency-Key": key()})
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded"


def test_the_same_key_with_other_parameters_is_refused(api: Api) -> None:
    k = key()
    first = api.post(
        "/v1/payment_intents", {"amount": 2000, "currency": "usd"}, headers={"Idempotency-Key": k}
    )
    assert first.status_code == 200
    before = api.counts()
    for method_path, body in [
        ("/v1/payment_intents", {"amount": 2001, "currency": "usd"}),
        ("/v1/payment_intents", {"amount": 2000, "currency": "usd", "description": "x"}),
        ("/v1/customers", {"email": "a@example.com"}),
    ]:
        r = api.post(method_path, body, headers={"Idempotency-Key": k})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["type"] == "idempotency_error"
        assert error["code"] == "idempotency_key_mismatch"
        assert "idempotent-replayed" not in r.headers
    assert api.counts() == before
    # The original is still replayable.
    again = api.post(
        "/v1/payment_intents", {"amount": 2000, "currency": "usd"}, headers={"Idempotency-Key": k}
    )
    assert again.content == first.content


def test_a_key_belongs_to_one_account(api: Api, server: RunningServer) -> None:
    other = Api(server)
    try:
        k = key()
        mine = api.post(
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd"},
            headers={"Idempotency-Key": k},
        )
        theirs = other.post(
            "/v1/payment_intents",
            {"amount": 3000, "currency": "usd"},
            headers={"Idempotency-Key": k},
        )
        assert mine.status_code == 200 and theirs.status_code == 200, theirs.text
        assert "idempotent-replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"]
        assert theirs.json()["amount"] == 3000
        # Identical parameters on the other account still run there, not replay ours.
        same = other.post(
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd"},
            headers={"Idempotency-Key": f"{k}-2"},
        )
        assert same.status_code == 200
        r = other.post(
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd"},
            headers={"Idempotency-Key": k},
        )
        assert r.json()["error"]["code"] == "idempotency_key_mismatch"
        # Account A never sees account B's object by replay.
        replay = api.post(
            "/v1/payment_intents",
            {"amount": 2000, "currency": "usd"},
            headers={"Idempotency-Key": k},
        )
        assert replay.json()["id"] == mine.json()["id"]
    finally:
        other.close()


def test_a_retry_while_the_first_runs_gets_409_and_saves_nothing(
    api: Api, server: RunningServer, latency: Any
) -> None:
    pi = create(api, payment_method="pm_card_visa")
    k = key()
    path = f"/v1/payment_intents/{pi['id']}/confirm"
    latency(1.0)
    results: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: results.setdefault(
            "first", api.post(path, {}, headers={"Idempotency-Key": k})
        )
    )
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.sql(
            "select 1 from idempotency_keys where account_id = :a and key = :k",
            a=api.account_id,
            k=k,
        ):
            assert time.monotonic() < deadline, "the first request never took the key"
            time.sleep(0.02)
        busy = api.post(path, {}, headers={"Idempotency-Key": k})
        assert busy.status_code == 409, busy.text
        error = busy.json()["error"]
        assert error["type"] == "idempotency_error"
        assert error["code"] == "idempotency_key_in_use"
        row = server.sql(
            "select status, response_status from idempotency_keys "
            "where account_id = :a and key = :k",
            a=api.account_id,
            k=k,
        )
        assert [tuple(r) for r in row] == [("in_flight", None)]
    finally:
        thread.join(timeout=15)
    first = results["first"]
    assert first.status_code == 200 and first.json()["status"] == "succeeded"
    after = api.post(path, {}, headers={"Idempotency-Key": k})
    assert after.status_code == 200
    assert after.headers["idempotent-replayed"] == "true"
    assert after.content == first.content
    assert len(api.charges(pi["id"])) == 1


def test_validation_errors_are_not_stored(api: Api) -> None:
    k = key()
    bad = api.post(
        "/v1/payment_intents", {"amount": 20.5, "currency": "usd"}, headers={"Idempotency-Key": k}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "parameter_invalid"
    assert bad.json()["error"]["param"] == "amount"
    both = api.post(
        "/v1/payment_intents",
        {"amount": 2050, "amount_decimal": "20.50", "currency": "usd"},
        headers={"Idempotency-Key": k},
    )
    assert both.status_code == 400
    assert both.json()["error"]["code"] == "parameters_exclusive"
    assert (
        api.server.sql(
            "select count(*) from idempotency_keys where account_id = :a", a=api.account_id
        )[0][0]
        == 0
    )
    fixed = api.post(
        "/v1/payment_intents", {"amount": 2050, "currency": "usd"}, headers={"Idempotency-Key": k}
    )
    assert fixed.status_code == 200, fixed.text
    assert "idempotent-replayed" not in fixed.headers
    assert fixed.json()["amount"] == 2050


def stored_keys(api: Api) -> int:
    rows = api.server.sql(
        "select count(*) from idempotency_keys where account_id = :a", a=api.account_id
    )
    return int(rows[0][0])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"amount": 0, "currency": "usd"}, "amount_invalid"),
        ({"amount": 10, "currency": "usd"}, "amount_too_small"),
        ({"amount": 2000, "currency": "xyz"}, "currency_unknown"),
        ({"amount_decimal": "20.505", "currency": "usd"}, None),
    ],
)
def test_an_invalid_amount_or_currency_is_not_stored_either(
    api: Api, body: dict[str, Any], code: str | None
) -> None:
    k = key()
    before = api.counts()
    bad = api.post("/v1/payment_intents", body, headers={"Idempotency-Key": k})
    assert bad.status_code == 400, bad.text
    if code is not None:
        assert bad.json()["error"]["code"] == code
    assert stored_keys(api) == 0
    assert api.counts() == before
    fixed = api.post(
        "/v1/payment_intents", {"amount": 2000, "currency": "usd"}, headers={"Idempotency-Key": k}
    )
    assert fixed.status_code == 200, fixed.text
    assert "idempotent-replayed" not in fixed.headers


def test_an_error_raised_while_the_request_runs_is_stored_and_replayed(api: Api) -> None:
    pi = create(api)
    api.ok("POST", f"/v1/payment_intents/{pi['id']}/cancel")
    k = key()
    path = f"/v1/payment_intents/{pi['id']}/confirm"
    first = api.post(path, {"payment_method": "pm_card_visa"}, headers={"Idempotency-Key": k})
    assert first.status_code == 400
    assert first.json()["error"]["code"] == "payment_intent_unexpected_state"
    again = api.post(path, {"payment_method": "pm_card_visa"}, headers={"Idempotency-Key": k})
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.status_code, again.content) == (400, first.content)


# -- the acceptance test: 50 identical confirms at once --------------------------------------


async def _fire(
    server: RunningServer, api: Api, path: str, body: Any, headers: dict[str, str]
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    async with httpx.AsyncClient(
        base_url=server.url,
        timeout=60,
        limits=limits,
        headers={"authorization": f"Bearer {api.key}", **headers},
    ) as client:
        return list(
            await asyncio.gather(*(client.post(path, json=body) for _ in range(CONCURRENT)))
        )


def test_fifty_concurrent_confirms_with_one_key_charge_once(
    api: Api, server: RunningServer, latency: Any
) -> None:
    pi = create(api)
    latency(0.2)
    path = f"/v1/payment_intents/{pi['id']}/confirm"
    responses = asyncio.run(
        _fire(server, api, path, {"payment_method": "pm_card_visa"}, {"Idempotency-Key": key()})
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [
        r.text for r in responses if r.status_code not in (200, 409)
    ]
    ok = [r for r in responses if r.status_code == 200]
    assert ok, statuses
    assert all(r.json()["status"] == "succeeded" for r in ok)
    assert len({r.content for r in ok}) == 1, "every success must be the same stored body"
    assert sum(1 for r in ok if "idempotent-replayed" not in r.headers) <= 1
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_use"
    assert len(api.charges(pi["id"])) == 1
    final = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert final["status"] == "succeeded" and final["amount_received"] == 2000
    assert api.counts()["gateway_attempts"] == 1


def test_fifty_concurrent_confirms_without_a_key_charge_once(
    api: Api, server: RunningServer, latency: Any
) -> None:
    pi = create(api)
    latency(0.2)
    path = f"/v1/payment_intents/{pi['id']}/confirm"
    responses = asyncio.run(_fire(server, api, path, {"payment_method": "pm_card_visa"}, {}))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == 1, [r.text for r in ok]
    assert ok[0].json()["status"] == "succeeded"
    assert len(refused) == CONCURRENT - 1
    for r in refused:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "payment_intent_unexpected_state"
    assert len(api.charges(pi["id"])) == 1
    assert api.counts()["gateway_attempts"] == 1
    # Each use of a test token makes a payment method of its own, as on Stripe: at most one per
    # confirm (a confirm refused after resolving its token keeps it; one refused on its first
    # read, once another confirm has moved the intent on, never resolves it: how many are
    # which depends on timing). Exactly one of them is the intent's.
    assert 1 <= api.counts()["payment_methods"] <= CONCURRENT
    charged = api.ok("GET", f"/v1/payment_intents/{pi['id']}")["payment_method"]
    assert charged == ok[0].json()["payment_method"]


# -- purge after 24 h (library, frozen clock) --------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_keys_are_purged_after_24_hours_and_then_run_fresh(
    backend: str, tmp_path: Path, pg_cluster: PgCluster | None
) -> None:
    url = migrated_database_url(backend, tmp_path, pg_cluster, f"idem_purge_{uuid.uuid4().hex[:12]}")
    settings = Settings(
        database_url=url, sandbox_db=str(tmp_path / "sandbox.db"), run_worker=False, log_json=False
    )
    clock = FrozenClock(1_700_000_000_000_000)

    async def scenario() -> None:
        app = Paymux(settings, clock=clock)
        try:
            account = (await app.accounts.create_key()).account_id
            k, path = "order-1", "/v1/payment_intents"
            params = {"amount": 2000, "currency": "usd"}
            fp = request_fingerprint("POST", path, params)

            async def run_request() -> tuple[int, str, bool]:
                replay = await app.idempotency.begin(account, k, "POST", path, fp, livemode=False)
                if isinstance(replay, Replay):
                    return replay.status, replay.body, True
                body = json.dumps(
                    await app.payments.create(account, CreateParams(amount=2000, currency="usd"))
                )
                await app.idempotency.finish(account, k, 200, body, livemode=False)
                return 200, body, False

            status, first, replayed = await run_request()
            assert (status, replayed) == (200, False)
            clock.advance(24 * 3600 - 1)
            assert await app.idempotency.purge() == 0
            assert await run_request() == (200, first, True)
            clock.advance(2)  # 24 h + 1 s after the first request
            assert await app.idempotency.purge() == 1
            assert await app.idempotency.purge() == 0
            status, fresh, replayed = await run_request()
            assert (status, replayed) == (200, False)
            assert json.loads(fresh)["id"] != json.loads(first)["id"]
            assert await run_request() == (200, fresh, True)
        finally:
            await app.close()

    asyncio.run(scenario())
