"""The two ways a payment's outcome is written agree: the row-based settle of a plain intent
(services/attempts.py: Core statements, the changed attributes written by one UPDATE) and the
ORM settle of an invoice's intent (loaded by the ORM so that billing's hook,
billing/invoice_payments.py, works on the session's objects). For the same gateway outcome
each writes the same intent columns, to the same values, and emits the same events.

What each settle wrote is seen exactly: the gateway's authorize call is held at the connector
seam (the confirm's first transaction has committed, the settle's has not begun), the intent's
row is read there and again once the request answered, and the difference is compared with
the columns and values this test states for each outcome. paymux's real services through the
HTTP app, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.databases import migrated_database_fixture
from support.fake_gateway import Outcome
from support.harness import Harness

AMOUNT = 3000
# Written by the fraud module's own step in the same transaction (fraud/: its decision's
# bookkeeping, and its velocity settle, migration 0038), not by either settle; left out of
# the comparison.
NOT_THE_SETTLES = {"fraud_outcome", "fraud_settle"}


db = migrated_database_fixture("settle")


def _plain(value: Any) -> Any:
    """A JSON column as a value (SQLite's driver returns its text)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


async def _row(h: Harness, pi_id: str) -> dict[str, Any]:
    [found] = await h.sql("select * from payment_intents where id = :i", i=pi_id)
    return {k: _plain(v) for k, v in found._mapping.items()}


async def _settled(
    h: Harness,
    outcome: str,
    start: Callable[[], Awaitable[httpx.Response]],
    intent_of: Callable[[], Awaitable[str]],
) -> tuple[int, dict[str, Any], list[tuple[str, Any, Any]], str]:
    """Run ``start`` (a confirm) with the authorize held; returns the HTTP status, the
    columns its settle changed (new values), the events it emitted on the intent (type,
    status and amount_received of their object), and the intent's id."""
    gate = h.gw.hold("authorize")
    if outcome == "decline":
        h.gw.script("authorize", Outcome.decline("card_declined"))
    request = asyncio.create_task(start())
    await gate.wait_reached()
    pi_id = await intent_of()
    before = await _row(h, pi_id)
    [(events_before,)] = await h.sql("select count(*) from events where object_id = :o", o=pi_id)
    h.advance(5)  # the settle happens 5 s after the confirm began
    gate.release()
    response = await request
    after = await _row(h, pi_id)
    changed = {
        k: v for k, v in after.items() if v != before[k] and k not in NOT_THE_SETTLES
    }
    rows = await h.sql(
        "select type, data from events where object_id = :o order by created_us, id", o=pi_id
    )
    emitted = []
    for type_, data in rows[int(events_before):]:
        obj = _plain(data)  # the intent as the event shows it
        emitted.append((str(type_), obj.get("status"), obj.get("amount_received")))
    return response.status_code, changed, emitted, pi_id


async def _ok(h: Harness, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await h.post(path, body)
    assert r.status_code == 200, r.text
    return h.body(r)


async def plain_intent_settle(h: Harness, outcome: str) -> tuple[Any, ...]:
    pi = await _ok(
        h,
        "/v1/payment_intents",
        {"amount": AMOUNT, "currency": "usd", "payment_method": "tok_visa"},
    )
    pm_id = str(pi["payment_method"])

    async def intent() -> str:
        return str(pi["id"])

    return (
        *await _settled(
            h, outcome, lambda: h.post(f"/v1/payment_intents/{pi['id']}/confirm"), intent
        ),
        pm_id,
    )


async def invoice_intent_settle(h: Harness, outcome: str) -> tuple[Any, ...]:
    cus = (await _ok(h, "/v1/customers", {"email": "payer@example.com"}))["id"]
    pm_id = (await _ok(h, "/v1/payment_methods/tok_visa/attach", {"customer": cus}))["id"]
    invoice = (await _ok(h, "/v1/invoices", {"customer": cus, "currency": "usd"}))["id"]
    await _ok(h, "/v1/invoiceitems",
              {"customer": cus, "invoice": invoice, "amount": AMOUNT, "currency": "usd"})
    await _ok(h, f"/v1/invoices/{invoice}/finalize")

    async def intent() -> str:
        [(pi_id,)] = await h.sql(
            "select id from payment_intents where invoice_id = :i", i=invoice
        )
        return str(pi_id)

    return (
        *await _settled(
            h, outcome, lambda: h.post(f"/v1/invoices/{invoice}/pay", {"payment_method": pm_id}),
            intent,
        ),
        str(pm_id),
    )


def expected(
    outcome: str, h: Harness, pi_id: str, pm_id: str
) -> tuple[int, dict[str, Any], list[Any]]:
    """What a settle of ``outcome`` writes and emits, stated from the outcome alone."""
    [payment] = h.gw.payments_for(pi_id)
    settled_at = h.clock.now_us()
    if outcome == "succeed":
        return (
            200,
            {
                "status": "succeeded",
                "amount_received": AMOUNT,
                "gateway_reference": payment.id,
                "updated_us": settled_at,
            },
            [("payment_intent.succeeded", "succeeded", AMOUNT)],
        )
    return (
        402,
        {
            "status": "requires_payment_method",
            "payment_method_id": None,
            "gateway_reference": payment.id,
            "last_payment_error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "param": None,
                "message": "Your card was declined.",
                "user_message": (
                    "Your card was declined. Please try again or use another payment method."
                ),
                "action": "retry",
                "retryable": True,
                "gateway": "fake",
                "gateway_code": "card_declined",
                "request_id": None,
                "payment_method": pm_id,
            },
            "updated_us": settled_at,
        },
        [("payment_intent.payment_failed", "requires_payment_method", 0)],
    )


@pytest.mark.parametrize("outcome", ["succeed", "decline"])
def test_the_row_settle_and_the_invoice_settle_write_the_same_columns_and_events(
    db: str, tmp_path: Path, outcome: str
) -> None:
    async def test(h: Harness) -> None:
        results = {}
        for path, settle in (("row", plain_intent_settle), ("orm", invoice_intent_settle)):
            status, changed, emitted, pi_id, pm_id = await settle(h, outcome)
            assert (status, changed, emitted) == expected(outcome, h, pi_id, pm_id), path
            results[path] = (status, set(changed), [e[0] for e in emitted])
        assert results["row"] == results["orm"]

    async def main() -> None:
        async with Harness.open(db, tmp_path) as h:
            await test(h)

    asyncio.run(main())
