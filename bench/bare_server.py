"""The "bare" comparison server for bench/payments.py: the same stack as paymux with no
payment logic, only the database writes a create + confirm makes.

Stack: FastAPI + uvicorn (started like ``paymux serve``: ``configure_logging`` then
``uvicorn.run(..., log_config=None, access_log=True)``, the heap settled once started:
``paymux/heap.py``), ``paymux.storage.db.Database`` with
its default pool and engine settings (SQLite WAL, ``BEGIN IMMEDIATE`` writers), and the
paymux tables, written with SQLAlchemy Core statements of the same shape and width.

Per payment, with the sandbox card ``pm_card_visa`` and no Idempotency-Key, paymux commits
three write transactions for a create and then a confirm, and this server commits the same
three:

``POST /bare/payments``                 (paymux: create)
    1. INSERT payment_intents + INSERT events (payment_intent.created)
``POST /bare/payments/{id}/confirm``    (paymux: confirm)
    2. UPDATE payment_intents -> processing (conditional, RETURNING) + INSERT gateway_attempts
    3. UPDATE gateway_attempts -> settled + UPDATE payment_intents -> succeeded
       + INSERT events (payment_intent.succeeded)

``POST /bare/payments`` with ``confirm: true``, as paymux's create with ``confirm=true``:
the same writes in one request and two transactions, 1. and 2. in one (paymux starts the
confirmation's attempt in the create's transaction), then 3.

With an ``Idempotency-Key`` header, each POST also commits one transaction that INSERTs an
``idempotency_keys`` row before the work and one that UPDATEs it with the response after, as
paymux does. The reads paymux makes (the intent, the payment method) are not made here, nor is
the sandbox gateway called: that is the payment logic being measured.

Run: ``python bench/bare_server.py --database-url URL --port PORT`` (the schema must exist).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymux import heap
from paymux.domain.ids import new_id
from paymux.security import configure_logging
from paymux.storage.db import Database
from paymux.storage.models import (
    Account,
    Event,
    GatewayAttempt,
    IdempotencyKey,
    PaymentIntent,
    PaymentMethod,
)

ACCOUNT = "acct_bare"
PAYMENT_METHOD = "pm_" + "barevisa".ljust(24, "0")  # as wide as a paymux id
TOKEN = "pm_card_visa"
GATEWAY = "sandbox"

PI = PaymentIntent.__table__
EV = Event.__table__
ATT = GatewayAttempt.__table__
IDEM = IdempotencyKey.__table__

# Statements are built once; each request only binds its values (the cheapest honest way to
# make these writes through SQLAlchemy).
INSERT_PI = insert(PI)
INSERT_EVENT = insert(EV)
INSERT_ATTEMPT = insert(ATT)
INSERT_IDEM = insert(IDEM)
START_CONFIRM = (
    update(PI)
    .where(
        PI.c.id == bindparam("b_id"),
        PI.c.account_id == bindparam("b_account"),
        PI.c.status.in_(["requires_payment_method", "requires_confirmation"]),
    )
    .values(
        status="processing",
        payment_method_id=bindparam("b_pm"),
        confirm_count=PI.c.confirm_count + 1,
        last_payment_error=None,
        next_action=None,
        updated_us=bindparam("b_now"),
    )
    .returning(PI.c.id, PI.c.amount, PI.c.currency, PI.c.confirm_count, PI.c.created_us)
)
SETTLE_ATTEMPT = (
    update(ATT)
    .where(ATT.c.id == bindparam("b_id"))
    .values(status="settled", result=bindparam("b_result"), updated_us=bindparam("b_now"))
)
SUCCEED_PI = (
    update(PI)
    .where(PI.c.id == bindparam("b_id"))
    .values(
        status="succeeded",
        updated_us=bindparam("b_now"),
        gateway_reference=bindparam("b_reference"),
        risk_level="normal",
        next_action=None,
        amount_received=bindparam("b_amount"),
        amount_capturable=0,
    )
)
FINISH_IDEM = (
    update(IDEM)
    .where(IDEM.c.account_id == bindparam("b_account"), IDEM.c.key == bindparam("b_key"))
    .values(status="done", response_status=200, response_body=bindparam("b_body"))
)


class CreateBody(BaseModel):
    amount: int
    currency: str
    confirm: bool = False
    payment_method: str | None = None


class ConfirmBody(BaseModel):
    payment_method: str | None = None


def now_us() -> int:
    return time.time_ns() // 1000


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A payment-intent-shaped dict of the same width as paymux's (for events and responses)."""
    return {
        "id": row["id"],
        "object": "payment_intent",
        "amount": row["amount"],
        "currency": row["currency"].lower(),
        "status": row["status"],
        "amount_capturable": row.get("amount_capturable", 0),
        "amount_received": row.get("amount_received", 0),
        "amount_refunded": 0,
        "capture_method": "automatic",
        "customer": None,
        "payment_method": row.get("payment_method_id"),
        "setup_future_usage": None,
        "gateway": GATEWAY,
        "gateway_reference": row.get("gateway_reference"),
        "last_payment_error": None,
        "next_action": None,
        "cancellation_reason": None,
        "canceled_at": None,
        "description": None,
        "statement_descriptor": None,
        "metadata": {},
        "risk_level": row.get("risk_level"),
        "return_url": None,
        "created": row["created_us"] // 1_000_000,
        "updated": row["updated_us"] // 1_000_000,
        "livemode": False,
    }


def create_bare_app(database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(database_url)
        app.state.db = db
        async with db.write() as s:  # the account and the (already recorded) payment method
            if (await s.execute(select(Account.id).where(Account.id == ACCOUNT))).first() is None:
                await s.execute(
                    insert(Account.__table__).values(id=ACCOUNT, name="bare", created_us=now_us())
                )
                await s.execute(
                    insert(PaymentMethod.__table__).values(
                        id=PAYMENT_METHOD,
                        account_id=ACCOUNT,
                        customer_id=None,
                        gateway=GATEWAY,
                        token=TOKEN,
                        type="card",
                        card_brand="visa",
                        card_last4="4242",
                        card_exp_month=12,
                        card_exp_year=2030,
                        card_fingerprint="0" * 16,
                        card_country="US",
                        card_funding="credit",
                        metadata={},
                        created_us=now_us(),
                    )
                )
        heap.settle()  # as paymux serve, once started (paymux/heap.py)
        try:
            yield
        finally:
            await db.dispose()

    app = FastAPI(title="bare", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def idempotent(request: Request, payload: BaseModel, work: Any) -> Response:
        db: Database = request.app.state.db
        key = request.headers.get("idempotency-key")
        if key is not None:
            now = now_us()
            fingerprint = hashlib.sha256(payload.model_dump_json().encode()).hexdigest()
            async with db.write() as s:
                await s.execute(
                    INSERT_IDEM,
                    {
                        "account_id": ACCOUNT,
                        "key": key,
                        "method": request.method,
                        "path": request.url.path,
                        "request_hash": fingerprint,
                        "status": "in_flight",
                        "response_status": None,
                        "response_body": None,
                        "locked_us": now,
                        "created_us": now,
                    },
                )
        body = json.dumps(await work(db))
        if key is not None:
            async with db.write() as s:
                await s.execute(FINISH_IDEM, {"b_account": ACCOUNT, "b_key": key, "b_body": body})
        return Response(body, media_type="application/json")

    @app.post("/bare/payments")
    async def create(body: CreateBody, request: Request) -> Response:
        async def work(db: Database) -> dict[str, Any]:
            now = now_us()
            row: dict[str, Any] = {
                "id": new_id("pi"),
                "account_id": ACCOUNT,
                "status": "requires_payment_method",
                "amount": body.amount,
                "currency": body.currency.upper(),
                "amount_capturable": 0,
                "amount_received": 0,
                "amount_refunded": 0,
                "amount_refund_pending": 0,
                "capture_method": "automatic",
                "customer_id": None,
                "payment_method_id": None,
                "setup_future_usage": None,
                "off_session": False,
                "gateway": GATEWAY,
                "gateway_reference": None,
                "last_payment_error": None,
                "next_action": None,
                "return_url": None,
                "risk_level": None,
                "cancellation_reason": None,
                "canceled_us": None,
                "authorized_us": None,
                "description": None,
                "statement_descriptor": None,
                "metadata": {},
                "confirm_count": 0,
                "created_us": now,
                "updated_us": now,
            }
            shown = view(row)
            base = str(request.base_url).rstrip("/")  # what paymux adds for the browser
            shown["client"] = {
                "gateway": GATEWAY,
                "tokenize_url": f"{base}/sandbox/v1/tokens",
                "hosted_form_url": f"{base}/sandbox/elements?payment_intent={row['id']}",
            }
            event = {
                "id": new_id("evt"),
                "account_id": ACCOUNT,
                "type": "payment_intent.created",
                "object_id": row["id"],
                "data": shown,
                "created_us": now,
            }
            async with db.write() as s:  # 1. the intent and its event
                await s.execute(INSERT_PI, row)
                await s.execute(INSERT_EVENT, event)
                if body.confirm:  # paymux's create with confirm=true: 2. in the same one
                    started = await start_writes(s, row["id"], body.payment_method)
            if body.confirm:  # and 3.
                return await settle_writes(db, row["id"], *started)
            return shown

        return await idempotent(request, body, work)

    @app.post("/bare/payments/{pi_id}/confirm")
    async def confirm(pi_id: str, body: ConfirmBody, request: Request) -> Response:
        async def work(db: Database) -> dict[str, Any]:
            return await confirm_writes(db, pi_id, body.payment_method)

        return await idempotent(request, body, work)

    return app


async def confirm_writes(db: Database, pi_id: str, payment_method: str | None) -> dict[str, Any]:
    """The confirm's two write transactions (2. and 3. of the module's docstring)."""
    async with db.write() as s:  # 2. intent -> processing, the attempt recorded
        started = await start_writes(s, pi_id, payment_method)
    # (paymux calls the gateway here, with no transaction open)
    return await settle_writes(db, pi_id, *started)


async def start_writes(s: AsyncSession, pi_id: str, payment_method: str | None) -> tuple[Any, str]:
    """2. in ``s``: the intent to processing, the attempt recorded; (the intent's row as
    the UPDATE returned it, the attempt's id)."""
    now = now_us()
    started = (
        await s.execute(
            START_CONFIRM,
            {"b_id": pi_id, "b_account": ACCOUNT, "b_pm": PAYMENT_METHOD, "b_now": now},
        )
    ).one()
    attempt_id = new_id("att")
    await s.execute(
        INSERT_ATTEMPT,
        {
            "id": attempt_id,
            "account_id": ACCOUNT,
            "gateway": GATEWAY,
            "operation": "authorize",
            "object_id": pi_id,
            "idempotency_key": f"{pi_id}:authorize:{started.confirm_count}",
            "status": "pending",
            "request": {"token": payment_method or TOKEN, "customer_token": None},
            "result": None,
            "error": None,
            "created_us": now,
            "updated_us": now,
        },
    )
    return started, attempt_id


async def settle_writes(db: Database, pi_id: str, started: Any, attempt_id: str) -> dict[str, Any]:
    """3.: the attempt settled, the intent succeeded, its event."""
    reference = f"ch_sbx_{new_id('x', 20)[2:]}"
    now = now_us()
    row = {
        "id": pi_id,
        "amount": started.amount,
        "currency": started.currency,
        "status": "succeeded",
        "amount_capturable": 0,
        "amount_received": started.amount,
        "payment_method_id": PAYMENT_METHOD,
        "gateway_reference": reference,
        "risk_level": "normal",
        "created_us": started.created_us,
        "updated_us": now,
    }
    shown = view(row)
    result = {
        "status": "succeeded",
        "reference": reference,
        "amount_authorized": started.amount,
        "amount_captured": started.amount,
        "decline": None,
    }
    event = {
        "id": new_id("evt"),
        "account_id": ACCOUNT,
        "type": "payment_intent.succeeded",
        "object_id": pi_id,
        "data": shown,
        "created_us": now,
    }
    async with db.write() as s:  # 3. attempt settled, intent succeeded, its event
        await s.execute(SETTLE_ATTEMPT, {"b_id": attempt_id, "b_result": result, "b_now": now})
        await s.execute(
            SUCCEED_PI,
            {
                "b_id": pi_id,
                "b_now": now,
                "b_reference": reference,
                "b_amount": started.amount,
            },
        )
        await s.execute(INSERT_EVENT, event)
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    configure_logging(args.log_level, json_output=True)
    uvicorn.run(
        create_bare_app(args.database_url),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=True,
    )


if __name__ == "__main__":
    main()
