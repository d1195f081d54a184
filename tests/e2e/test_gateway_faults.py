"""Gateway failures on a real server (SQLite and PostgreSQL), injected at the sandbox seam.

Every case ends with exactly one charge (or refund) at the sandbox: retries reuse the
attempt's idempotency key, and an outcome left unknown is settled later by the
``settle_attempt`` job, which asks the gateway by that same key.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import httpx
import pytest

from conftest import Api, RunningServer


def fault(
    server: RunningServer,
    operation: str,
    mode: str,
    count: int = 1,
    retry_after: float | None = None,
) -> None:
    body: dict[str, Any] = {"operation": operation, "mode": mode, "count": count}
    if retry_after is not None:
        body["retry_after"] = retry_after
    r = httpx.post(f"{server.url}/sandbox/_control/faults", json=body, timeout=10)
    assert r.status_code == 200, r.text


def create(api: Api, **params: Any) -> dict[str, Any]:
    return api.ok("POST", "/v1/payment_intents", {"amount": 2000, "currency": "usd", **params})


def confirm(api: Api, pi_id: str, card: str = "pm_card_visa") -> httpx.Response:
    return api.post(f"/v1/payment_intents/{pi_id}/confirm", {"payment_method": card})


def attempts(server: RunningServer, object_id: str) -> list[tuple[Any, ...]]:
    rows = server.sql(
        "select operation, status, error from gateway_attempts where object_id = :o "
        "order by created_us",
        o=object_id,
    )
    return [tuple(r) for r in rows]


def sandbox_objects(server: RunningServer, kind: str, reference: str) -> int:
    """Rows the sandbox processor holds, read straight from its own SQLite file."""
    db = sqlite3.connect(f"file:{server.settings.sandbox_db}?mode=ro", uri=True)
    try:
        row = db.execute(
            "select count(*) from objects where kind = ? and reference = ?", (kind, reference)
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


# -- authorize ------------------------------------------------------------------------------


def test_a_lost_response_is_retried_with_the_same_key_and_charges_once(
    api: Api, server: RunningServer
) -> None:
    pi = create(api)
    fault(server, "authorize", "lose_response", 1)
    r = confirm(api, pi["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded" and r.json()["amount_received"] == 2000
    charges = api.charges(pi["id"])
    assert len(charges) == 1 and charges[0]["status"] == "succeeded"
    assert attempts(server, pi["id"]) == [("authorize", "settled", None)]


def test_a_lost_decline_is_replayed_not_retried_into_a_second_charge(
    api: Api, server: RunningServer
) -> None:
    pi = create(api)
    fault(server, "authorize", "lose_response", 1)
    r = confirm(api, pi["id"], "pm_card_chargeDeclinedInsufficientFunds")
    assert r.status_code == 402, r.text
    assert r.json()["error"]["decline_code"] == "insufficient_funds"
    assert len(api.charges(pi["id"])) == 1
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "requires_payment_method"


def test_lost_responses_past_the_inline_retries_are_settled_by_the_job(
    api: Api, server: RunningServer
) -> None:
    retries = server.settings.gateway_retries
    pi = create(api)
    # More than the inline calls: the job must find the charge by key (lookup), not charge again.
    fault(server, "authorize", "lose_response", retries + 1 + 5)
    r = confirm(api, pi["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processing"
    assert len(api.charges(pi["id"])) == 1  # it was made; we just don't know it yet
    [(op, status, error)] = attempts(server, pi["id"])
    assert (op, status) == ("authorize", "pending") and "lost" in error
    done = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert done["amount_received"] == 2000
    assert len(api.charges(pi["id"])) == 1
    [(op, status, _)] = attempts(server, pi["id"])
    assert (op, status) == ("authorize", "settled")
    [[result]] = server.sql("select result from gateway_attempts where object_id = :o", o=pi["id"])
    result = json.loads(result) if isinstance(result, str) else result
    assert result["status"] == "succeeded" and result["reference"] == done["gateway_reference"]
    events = api.ok("GET", "/v1/events", params={"object_id": pi["id"]})["data"]
    assert [e["type"] for e in events].count("payment_intent.succeeded") == 1


@pytest.mark.parametrize(
    ("mode", "count"),
    [("timeout", 1), ("server_error", 1), ("connection_reset", 1), ("server_error", 3)],
)
def test_a_call_that_never_reached_the_gateway_is_retried_inline(
    api: Api, server: RunningServer, mode: str, count: int
) -> None:
    assert count <= server.settings.gateway_retries
    pi = create(api)
    fault(server, "authorize", mode, count)
    r = confirm(api, pi["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert len(api.charges(pi["id"])) == 1
    assert attempts(server, pi["id"]) == [("authorize", "settled", None)]


def test_a_short_retry_after_is_waited_out_inline(api: Api, server: RunningServer) -> None:
    pi = create(api)
    fault(server, "authorize", "rate_limit", 1, retry_after=0.1)
    began = time.monotonic()
    r = confirm(api, pi["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert time.monotonic() - began >= 0.1
    assert len(api.charges(pi["id"])) == 1


def test_a_long_retry_after_leaves_it_processing_and_the_job_retries_then(
    api: Api, server: RunningServer
) -> None:
    limit = server.settings.gateway_max_inline_retry_after
    retry_after = limit + 0.5
    pi = create(api)
    fault(server, "authorize", "rate_limit", 1, retry_after=retry_after)
    began = time.monotonic()
    r = confirm(api, pi["id"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processing"
    assert time.monotonic() - began < limit  # it did not wait inline
    assert api.charges(pi["id"]) == []
    # The sweep sees a stale pending attempt every 0.2 s, but the gateway asked us to wait.
    time.sleep(max(0.0, retry_after - 1.0 - (time.monotonic() - began)))
    assert api.ok("GET", f"/v1/payment_intents/{pi['id']}")["status"] == "processing"
    assert api.charges(pi["id"]) == []
    done = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert time.monotonic() - began >= retry_after
    assert done["amount_received"] == 2000
    assert len(api.charges(pi["id"])) == 1
    assert [a[:2] for a in attempts(server, pi["id"])] == [("authorize", "settled")]


# -- capture and refund ---------------------------------------------------------------------


@pytest.mark.parametrize("lost", [1, 4])
def test_a_capture_whose_response_is_lost_ends_captured_once(
    api: Api, server: RunningServer, lost: int
) -> None:
    pi = create(api, amount=10000, capture_method="manual")
    held = confirm(api, pi["id"], "pm_card_mastercard").json()
    assert held["status"] == "requires_capture"
    fault(server, "capture", "lose_response", lost)
    r = api.post(f"/v1/payment_intents/{pi['id']}/capture", {"amount_to_capture": 7500})
    assert r.status_code == 200, r.text
    inline = lost <= server.settings.gateway_retries
    assert r.json()["status"] == ("succeeded" if inline else "processing")
    done = api.wait_for(f"/v1/payment_intents/{pi['id']}", "status", "succeeded")
    assert done["amount_received"] == 7500 and done["amount_capturable"] == 0
    [charge] = api.charges(pi["id"])
    assert charge["status"] == "succeeded" and charge["amount_captured"] == 7500
    assert [a[:2] for a in attempts(server, pi["id"])] == [
        ("authorize", "settled"),
        ("capture", "settled"),
    ]


def test_a_refund_whose_response_is_always_lost_is_settled_by_the_job(
    api: Api, server: RunningServer
) -> None:
    pi = create(api, amount=5000, confirm=True, payment_method="pm_card_visa")
    assert pi["status"] == "succeeded"
    # Every inline call loses its response, and the job's first try too.
    fault(server, "refund", "lose_response", server.settings.gateway_retries + 2)
    r = api.post("/v1/refunds", {"payment_intent": pi["id"], "amount": 1500})
    assert r.status_code == 200, r.text
    refund = r.json()
    assert refund["status"] == "pending"
    assert api.ok("GET", f"/v1/refunds/{refund['id']}")["status"] == "pending"
    assert sandbox_objects(server, "refund", pi["id"]) == 1
    done = api.wait_for(f"/v1/refunds/{refund['id']}", "status", "succeeded", timeout=15)
    assert done["gateway_reference"]
    after = api.ok("GET", f"/v1/payment_intents/{pi['id']}")
    assert after["amount_refunded"] == 1500
    assert sandbox_objects(server, "refund", pi["id"]) == 1
    [charge] = api.charges(pi["id"])
    assert charge["amount_refunded"] == 1500
    assert attempts(server, refund["id"])[0][:2] == ("refund", "settled")
    pending = server.sql(
        "select amount_refund_pending from payment_intents where id = :i", i=pi["id"]
    )
    assert pending[0][0] == 0
    # What is left can still be refunded, and only that.
    rest = api.ok("POST", "/v1/refunds", {"payment_intent": pi["id"]})
    assert rest["amount"] == 3500 and rest["status"] == "succeeded"
    assert sandbox_objects(server, "refund", pi["id"]) == 2
